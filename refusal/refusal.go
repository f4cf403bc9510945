// Package refusal writes armgate's JSON answers and refusals: the one body
// shape {"error", "message"} that the gateway's request path and the admin
// API share, so that clients parse one shape, and the texts of the request
// path's refusals. It imports neither Caddy nor the admin API, so the
// request path depends on neither.
package refusal

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON body of every refusal, of the admin API and of the
// gateway alike.
type Body struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// The request path's refusal codes and texts. A token's own refusal text
// is its token.Status's Description.
const (
	CodeUnauthorized = "unauthorized"
	MsgTokenRequired = "A bearer token is required"

	CodeInvalidRequest    = "invalid_request"
	MsgMalformedHeader    = "The Authorization header must be a single 'Bearer <token>'"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
	// MsgLacksScope is followed by the scope's name.
	MsgLacksScope = "The access token lacks the required scope "

	CodeCanceled = "canceled"
	MsgCanceled  = "The client closed the request"

	CodeUnavailable = "unavailable"
	MsgUnavailable  = "The token store is unavailable; retry shortly"

	CodeTooManyRequests = "too_many_requests"
	MsgTooManyRefused   = "Too many refused tokens from this address; retry after the time in Retry-After"

	CodeIPNotAllowed = "ip_not_allowed"
	MsgIPNotAllowed  = "This token may not be used from this client address"
)

// WriteJSON writes v as the JSON response body. Responses may carry token
// data, so they are never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Write writes a refusal with the given status, code and message, and the
// WWW-Authenticate challenge unless it is empty. The body never echoes a
// credential: callers pass fixed texts.
func Write(w http.ResponseWriter, status int, challenge, code, msg string) {
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	WriteJSON(w, status, Body{Error: code, Message: msg})
}
