package request

import (
	"encoding/json"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// The request bodies. Each is decoded with Decode and then checked by its
// method, which returns what to store or a 400 that names the field, so
// that nothing unchecked reaches the database. The command line builds the
// same bodies, so that it and the API refuse the same values with the same
// messages.

// User is the body of PUT /users/{user_id}. Omitted (or null) fields are
// left as they are on update.
type User struct {
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
	// RateLimit is the quota on all of the user's tokens together; null
	// removes it, omitted leaves it as it is.
	RateLimit Optional[RateLimit] `json:"rate_limit,omitzero"`
}

// UserPatch is a checked change of a user's fields; nil fields are left as
// they are.
type UserPatch struct {
	Email       *string
	DisplayName *string
}

// UserRateLimit validates the body's rate_limit: nil when it is not given,
// a zero Limit when it is null (remove).
func (b User) UserRateLimit() (*quota.Limit, error) {
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
func (b User) Patch() (UserPatch, error) {
	if b.Email != nil {
		if err := validateEmail(*b.Email); err != nil {
			return UserPatch{}, err
		}
	}
	if b.DisplayName != nil {
		if err := validateDisplayName(*b.DisplayName); err != nil {
			return UserPatch{}, err
		}
	}
	return UserPatch{Email: b.Email, DisplayName: b.DisplayName}, nil
}

func validateEmail(s string) error {
	if s == "" || len(s) > maxEmailLen {
		return BadRequest("email must be an email address of 1 to %d characters", maxEmailLen)
	}
	if err := token.CheckText("email", s); err != nil {
		return BadRequest("%v", err)
	}
	// Only a bare address: no display name, comments or angle brackets.
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return BadRequest("email %q is not an email address such as user@example.com", s)
	}
	return nil
}

func validateDisplayName(s string) error {
	switch {
	case !utf8.ValidString(s):
		return BadRequest("display_name must be valid UTF-8")
	case utf8.RuneCountInString(s) > maxDisplayNameLen:
		return BadRequest("display_name is longer than %d characters", maxDisplayNameLen)
	}
	if err := token.CheckText("display_name", s); err != nil {
		return BadRequest("%v", err)
	}
	return nil
}

// CreateToken is the body of POST /users/{user_id}/tokens.
type CreateToken struct {
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

// Token is a checked token create: what to store, less whose it is and
// the per-user limit, which the caller adds.
type Token struct {
	Name      string // trimmed
	Scopes    []string
	ExpiresAt time.Time // UTC
	// RateLimit and AllowedIPs are the token's controls (zero: none).
	RateLimit  quota.Limit
	AllowedIPs ipallow.List
}

// Token validates the body and returns the token to create; now is a
// parameter so that expiry checks are testable.
func (b CreateToken) Token(now time.Time, l TokenLimits) (Token, error) {
	name, err := token.NormalizeName(b.Name)
	if err != nil {
		return Token{}, BadRequest("%v", err)
	}
	scopes, err := token.NormalizeScopes(b.Scopes)
	if err != nil {
		return Token{}, BadRequest("%v", err)
	}
	exp, err := expiry(b.ExpiresIn, b.ExpiresAt, now, l)
	if err != nil {
		return Token{}, err
	}
	t := Token{Name: name, Scopes: scopes, ExpiresAt: exp}
	if b.RateLimit != nil {
		if t.RateLimit, err = b.RateLimit.Limit(); err != nil {
			return Token{}, err
		}
	}
	if t.AllowedIPs, err = AllowedIPs(b.AllowedIPs); err != nil {
		return Token{}, err
	}
	return t, nil
}

// SelfCreate is the body of the self-service POST /tokens: a name and a
// lifetime. Scopes are not the user's to choose; the field exists only to
// refuse it with a clear message.
type SelfCreate struct {
	Name      string          `json:"name"`
	ExpiresIn *string         `json:"expires_in"`
	ExpiresAt *string         `json:"expires_at"`
	Scopes    json.RawMessage `json:"scopes"`
}

// Token validates the body and returns the token to create: like the
// admin create, with the scopes always the self-service scopes.
func (b SelfCreate) Token(now time.Time, l TokenLimits) (Token, error) {
	if b.Scopes != nil {
		return Token{}, BadRequest("scopes cannot be chosen here: self-service tokens always have the scope %q", token.ScopeAPI)
	}
	return CreateToken{Name: b.Name, ExpiresIn: b.ExpiresIn, ExpiresAt: b.ExpiresAt,
		Scopes: token.SelfServiceScopes()}.Token(now, l)
}

// Revoke is the body of POST /tokens/{token_id}/revoke.
type Revoke struct {
	Reason string `json:"reason"`
}

// CleanReason validates the reason and returns it trimmed; it is stored
// and shown in the audit log and on the screens, so it must be text that
// shows as what it is (token.CheckText).
func (b Revoke) CleanReason() (string, error) {
	r := strings.TrimSpace(b.Reason)
	switch {
	case !utf8.ValidString(r):
		return "", BadRequest("reason must be valid UTF-8")
	case utf8.RuneCountInString(r) > maxRevokeReasonLen:
		return "", BadRequest("reason is longer than %d characters", maxRevokeReasonLen)
	}
	if err := token.CheckText("reason", r); err != nil {
		return "", BadRequest("%v", err)
	}
	return r, nil
}

// Empty is the body of calls that take no fields: nothing, or {}.
// Decoding into it still refuses any field, so that a client's mistaken
// payload is an error rather than silently ignored.
type Empty struct{}

const (
	// DefaultGrace is how long a rotated token keeps working when the
	// request names no grace: a day, so a nightly job picks up the new one.
	DefaultGrace = 24 * time.Hour
	// MaxGrace bounds the grace, so that a rotation cannot keep a
	// replaced secret alive for long.
	MaxGrace = 7 * 24 * time.Hour
)

// Rotate is the body of POST /tokens/{token_id}/rotate. The lifetime of
// the new token is given as at create.
type Rotate struct {
	Grace     *string `json:"grace"`
	ExpiresIn *string `json:"expires_in"`
	ExpiresAt *string `json:"expires_at"`
}

// Rotation validates the body and returns the grace of the old token and
// the expiry of the new one.
func (b Rotate) Rotation(now time.Time, l TokenLimits) (grace time.Duration, expiresAt time.Time, err error) {
	grace = DefaultGrace
	if b.Grace != nil {
		g, perr := time.ParseDuration(*b.Grace)
		if perr != nil {
			return 0, time.Time{}, BadRequest("grace must be a Go duration such as \"24h\" or \"0s\", got %q", *b.Grace)
		}
		if g < 0 || g > MaxGrace {
			return 0, time.Time{}, BadRequest("grace must be from 0s to %s, got %q", token.FormatDuration(MaxGrace), *b.Grace)
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
			return time.Time{}, BadRequest(`expires_in may not be empty (omit it for the default lifetime)`)
		}
	}
	if expiresAt != nil {
		if at = *expiresAt; at == "" {
			return time.Time{}, BadRequest(`expires_at may not be empty (omit it for the default lifetime)`)
		}
	}
	exp, err := token.Expiry(now, in, at, l.Lifetime, l.MaxLifetime)
	if err != nil {
		return time.Time{}, BadRequest("%v", err)
	}
	return exp.UTC(), nil
}
