package adminapi

import (
	"net/http"
	"time"

	"github.com/armgate/armgate/token"
)

// Rotation and revoke-all: the calls for rolling a CI secret over without
// downtime and for signing a user out everywhere.

const (
	// DefaultGrace is how long a rotated token keeps working when the
	// request names no grace: a day, so a nightly job picks up the new one.
	DefaultGrace = 24 * time.Hour
	// MaxGrace bounds the grace, so that a rotation cannot keep a
	// replaced secret alive for long.
	MaxGrace = 7 * 24 * time.Hour
)

// RotateRequest is the body of POST /tokens/{token_id}/rotate. The
// lifetime of the new token is given as at create. The command line builds
// it too, so that both refuse the same values with the same messages.
type RotateRequest struct {
	Grace     *string `json:"grace"`
	ExpiresIn *string `json:"expires_in"`
	ExpiresAt *string `json:"expires_at"`
}

// Rotation validates the body and returns the grace of the old token and
// the expiry of the new one.
func (b RotateRequest) Rotation(now time.Time, l TokenLimits) (grace time.Duration, expiresAt time.Time, err error) {
	grace = DefaultGrace
	if b.Grace != nil {
		g, perr := time.ParseDuration(*b.Grace)
		if perr != nil {
			return 0, time.Time{}, badRequest("grace must be a Go duration such as \"24h\" or \"0s\", got %q", *b.Grace)
		}
		if g < 0 || g > MaxGrace {
			return 0, time.Time{}, badRequest("grace must be from 0s to %s, got %q", token.FormatDuration(MaxGrace), *b.Grace)
		}
		grace = g
	}
	exp, err := expiry(b.ExpiresIn, b.ExpiresAt, now, l)
	if err != nil {
		return 0, time.Time{}, err
	}
	return grace, exp, nil
}

// expiry checks a body's expires_in and expires_at (nil when omitted) and
// returns the new token's expiry, in UTC: the rule of create and rotate
// alike. An empty string given is a 400, since omitting the field is how to
// ask for the default lifetime.
func expiry(expiresIn, expiresAt *string, now time.Time, l TokenLimits) (time.Time, error) {
	var in, at string
	if expiresIn != nil {
		if in = *expiresIn; in == "" {
			return time.Time{}, badRequest(`expires_in may not be empty (omit it for the default lifetime)`)
		}
	}
	if expiresAt != nil {
		if at = *expiresAt; at == "" {
			return time.Time{}, badRequest(`expires_at may not be empty (omit it for the default lifetime)`)
		}
	}
	exp, err := token.Expiry(now, in, at, l.Lifetime, l.MaxLifetime)
	if err != nil {
		return time.Time{}, badRequest("%v", err)
	}
	return exp.UTC(), nil
}

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
	id, body, err := change[RotateRequest](r, pathTokenID)
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
	userID, body, err := change[RevokeRequest](r, pathUserID)
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
