package adminapi

import (
	"errors"
	"io"
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// The request bodies, their decoding and their validation are package
// request's; here a checked request becomes the store's change, in one
// place each for the handlers and the command line alike.

// TokenToStore is the checked create t as the store takes it: a token of
// userID, created only while the user holds fewer than maxPerUser.
func TokenToStore(userID string, t request.Token, maxPerUser int) storage.NewToken {
	return storage.NewToken{
		UserID:     userID,
		Name:       t.Name,
		Scopes:     t.Scopes,
		ExpiresAt:  t.ExpiresAt,
		MaxPerUser: maxPerUser,
		RateLimit:  t.RateLimit,
		AllowedIPs: t.AllowedIPs,
	}
}

// PatchToStore is the checked user change p as the store takes it.
func PatchToStore(p request.UserPatch) storage.UserPatch { return storage.UserPatch(p) }

// ControlsToStore is the checked controls change c as the store takes it.
func ControlsToStore(c request.Controls) storage.TokenControls { return storage.TokenControls(c) }

// capBody caps a request body at request.MaxBodyBytes. Past the cap its
// reads fail with request.ErrTooLarge, so that request.Read answers 413
// even when the body's Content-Length did not show the size (chunked).
func capBody(w http.ResponseWriter, body io.ReadCloser) io.ReadCloser {
	return cappedBody{http.MaxBytesReader(w, body, request.MaxBodyBytes)}
}

type cappedBody struct{ io.ReadCloser }

func (b cappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		err = request.ErrTooLarge
	}
	return n, err
}
