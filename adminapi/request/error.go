package request

import "fmt"

// The statuses a refusal here can have, as numbers so that this package
// needs no net/http.
const (
	statusBadRequest      = 400 // http.StatusBadRequest
	statusContentTooLarge = 413 // http.StatusRequestEntityTooLarge
)

// Error is an API error response: status plus the {"error", "message"}
// body. Decoders and validators return it so that the handler can answer
// every refusal in one place without knowing what went wrong.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// BadRequest returns a 400 invalid_request error; nearly every refusal of
// a malformed request is one.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: statusBadRequest, Code: "invalid_request", Message: fmt.Sprintf(format, args...)}
}

// ErrTooLarge is the 413 for a body over MaxBodyBytes. The handler also
// answers it when Content-Length alone shows the body is too large, and
// its capped body reader returns it past the cap.
var ErrTooLarge = &Error{Status: statusContentTooLarge, Code: "request_too_large",
	Message: fmt.Sprintf("the request body exceeds %d KiB", MaxBodyBytes>>10)}
