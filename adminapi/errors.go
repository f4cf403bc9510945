// Package adminapi is armgate's admin API as a plain net/http handler:
// routes, authentication (admin keys or an admin-scope token) and the
// endpoints for users, tokens, introspection, audit and logout, together
// with the wire format they use (decoding, validation, errors, responses).
// It does not import Caddy, so that it can be unit-tested and fuzzed on its
// own; caddymodule's armgate_admin only provisions it and delegates to it.
package adminapi

import (
	"fmt"
	"net/http"

	"github.com/armgate/armgate/refusal"
)

// Error is an admin API error response: status plus the {"error",
// "message"} body. Decoders and validators return it so that the handler
// can answer every refusal in one place without knowing what went wrong.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// badRequest returns a 400 invalid_request error; nearly every refusal of
// a malformed request is one.
func badRequest(format string, args ...any) *Error {
	return &Error{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

// errTooLarge is the 413 for a body over MaxBodyBytes; the handler also
// uses it when Content-Length alone shows the body is too large.
var errTooLarge = &Error{http.StatusRequestEntityTooLarge, "request_too_large",
	fmt.Sprintf("the request body exceeds %d KiB", MaxBodyBytes>>10)}

// ErrorBody is the JSON body of every refusal, of the admin API and of the
// gateway alike, so that clients parse one shape.
type ErrorBody = refusal.Body

// WriteError writes e as the admin API's JSON error response.
func WriteError(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, ErrorBody{Error: e.Code, Message: e.Message})
}

// WriteJSON writes v as the JSON response body. Responses may carry token
// data, so they are never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	refusal.WriteJSON(w, status, v)
}
