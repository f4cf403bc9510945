package adminapi

import (
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The request bodies. Each is decoded with decodeJSON and then checked by
// its method, which returns what to store or a 400 that names the field,
// so that nothing unchecked reaches the database.

// UserRequest is the body of PUT /users/{user_id}. Omitted (or null)
// fields are left as they are on update.
type UserRequest struct {
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
	// RateLimit is the quota on all of the user's tokens together; null
	// removes it, omitted leaves it as it is.
	RateLimit Optional[RateLimit] `json:"rate_limit,omitzero"`
}

// UserRateLimit validates the body's rate_limit: nil when it is not given,
// a zero Limit when it is null (remove).
func (b UserRequest) UserRateLimit() (*quota.Limit, error) {
	if !b.RateLimit.Set {
		return nil, nil
	}
	var l quota.Limit
	if b.RateLimit.Value != nil {
		var err error
		if l, err = b.RateLimit.Value.Limit(); err != nil {
			return nil, err
		}
	}
	return &l, nil
}

// Patch validates the body and returns the update to apply; the store
// itself trusts what it is given.
func (b UserRequest) Patch() (storage.UserPatch, error) {
	if b.Email != nil {
		if err := validateEmail(*b.Email); err != nil {
			return storage.UserPatch{}, err
		}
	}
	if b.DisplayName != nil {
		if err := validateDisplayName(*b.DisplayName); err != nil {
			return storage.UserPatch{}, err
		}
	}
	return storage.UserPatch{Email: b.Email, DisplayName: b.DisplayName}, nil
}

func validateEmail(s string) error {
	if s == "" || len(s) > maxEmailLen {
		return badRequest("email must be an email address of 1 to %d characters", maxEmailLen)
	}
	if err := token.CheckText("email", s); err != nil {
		return badRequest("%v", err)
	}
	// Only a bare address: no display name, comments or angle brackets.
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return badRequest("email %q is not an email address such as user@example.com", s)
	}
	return nil
}

func validateDisplayName(s string) error {
	switch {
	case !utf8.ValidString(s):
		return badRequest("display_name must be valid UTF-8")
	case utf8.RuneCountInString(s) > maxDisplayNameLen:
		return badRequest("display_name is longer than %d characters", maxDisplayNameLen)
	}
	if err := token.CheckText("display_name", s); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

// CreateTokenRequest is the body of POST /users/{user_id}/tokens.
type CreateTokenRequest struct {
	Name      string   `json:"name"`
	ExpiresIn *string  `json:"expires_in"`
	ExpiresAt *string  `json:"expires_at"`
	Scopes    []string `json:"scopes"`
	// RateLimit and AllowedIPs are the token's controls; omitted or null:
	// none.
	RateLimit  *RateLimit `json:"rate_limit,omitempty"`
	AllowedIPs []string   `json:"allowed_ips,omitempty"`
}

// TokenLimits are the app settings a token create is checked against;
// they come from the armgate app, which this package does not know.
type TokenLimits struct {
	MaxPerUser            int
	Lifetime, MaxLifetime time.Duration
}

// NewToken validates the body and returns what to store for userID; now
// is a parameter so that expiry checks are testable.
func (b CreateTokenRequest) NewToken(userID string, now time.Time, l TokenLimits) (storage.NewToken, error) {
	name, err := token.NormalizeName(b.Name)
	if err != nil {
		return storage.NewToken{}, badRequest("%v", err)
	}
	scopes, err := token.NormalizeScopes(b.Scopes)
	if err != nil {
		return storage.NewToken{}, badRequest("%v", err)
	}
	exp, err := expiry(b.ExpiresIn, b.ExpiresAt, now, l)
	if err != nil {
		return storage.NewToken{}, err
	}
	n := storage.NewToken{
		UserID:     userID,
		Name:       name,
		Scopes:     scopes,
		ExpiresAt:  exp,
		MaxPerUser: l.MaxPerUser,
	}
	if b.RateLimit != nil {
		if n.RateLimit, err = b.RateLimit.Limit(); err != nil {
			return storage.NewToken{}, err
		}
	}
	if n.AllowedIPs, err = AllowedIPs(b.AllowedIPs); err != nil {
		return storage.NewToken{}, err
	}
	return n, nil
}

// RevokeRequest is the body of POST /tokens/{token_id}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// CleanReason validates the reason and returns it trimmed; it is stored
// and shown in the audit log and on the screens, so it must be text that
// shows as what it is (token.CheckText).
func (b RevokeRequest) CleanReason() (string, error) {
	r := strings.TrimSpace(b.Reason)
	switch {
	case !utf8.ValidString(r):
		return "", badRequest("reason must be valid UTF-8")
	case utf8.RuneCountInString(r) > maxRevokeReasonLen:
		return "", badRequest("reason is longer than %d characters", maxRevokeReasonLen)
	}
	if err := token.CheckText("reason", r); err != nil {
		return "", badRequest("%v", err)
	}
	return r, nil
}

// emptyRequest is the body of calls that take no fields: nothing, or {}.
// Decoding into it still refuses any field, so that a client's mistaken
// payload is an error rather than silently ignored.
type emptyRequest struct{}
