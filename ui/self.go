package ui

import (
	"net/http"
)

// Self returns the handler of the self-service screen ("My API Tokens").
// Until the screen exists it answers every path with 404, in the screens'
// JSON error shape.
func Self() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "the self-service screen is not part of this build")
	})
}
