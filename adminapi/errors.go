// Package adminapi is armgate's admin API as a plain net/http handler:
// routes, authentication (admin keys or an admin-scope token) and the
// endpoints for users, tokens, introspection, audit and logout, together
// with the responses they send. The request bodies, their decoding and
// validation are the subpackage request's, which needs neither net/http
// nor the store, so that its fuzz targets build small. It does not import
// Caddy, so that it can be unit-tested on its own; caddymodule's
// armgate_admin only provisions it and delegates to it.
package adminapi

import (
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/refusal"
)

// Error is an admin API error response: status plus the {"error",
// "message"} body. Decoders, validators and handlers return it so that the
// handler can answer every refusal in one place without knowing what went
// wrong. It is request.Error, which the body validation returns.
type Error = request.Error

// badRequest returns a 400 invalid_request error; nearly every refusal of
// a malformed request is one.
func badRequest(format string, args ...any) *Error { return request.BadRequest(format, args...) }

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
