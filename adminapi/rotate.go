package adminapi

import (
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
)

// Rotation and revoke-all: the calls for rolling a CI secret over without
// downtime and for signing a user out everywhere.

// RotatedToken is the rotate response: the new token with its plaintext and
// the id of the token it replaces.
type RotatedToken struct {
	CreatedToken
	RotatedFrom string `json:"rotated_from"`
}

// RevokedCount is the answer of POST /users/{user_id}/tokens/revoke: how
// many tokens it newly revoked.
type RevokedCount struct {
	Revoked int `json:"revoked"`
}

func (h *handler) rotateToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.Rotate](r, pathTokenID)
	if err != nil {
		return err
	}
	grace, exp, err := body.Rotation(h.now(), h.limits)
	if err != nil {
		return err
	}
	t, plain, inv, err := h.store.RotateToken(r.Context(), actor(r), id, grace, exp)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusCreated, RotatedToken{CreatedToken: CreatedTokenJSON(t, plain), RotatedFrom: id})
}

func (h *handler) revokeAllTokens(w http.ResponseWriter, r *http.Request) error {
	userID, body, err := change[request.Revoke](r, pathUserID)
	if err != nil {
		return err
	}
	reason, err := body.CleanReason()
	if err != nil {
		return err
	}
	n, inv, err := h.store.RevokeAllTokens(r.Context(), actor(r), userID, reason)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, RevokedCount{Revoked: n})
}
