package token

import (
	"slices"
	"time"
)

// Token statuses. A token's status is the first that applies, in this order.
const (
	StatusExpired     = "expired"
	StatusRevoked     = "revoked"
	StatusDeactivated = "deactivated"
	StatusActive      = "active"
)

// Status returns the status of a token: expired (at or past expiresAt),
// revoked, deactivated (its user is), else active.
func Status(now, expiresAt time.Time, revoked, userDeactivated bool) string {
	switch {
	case !now.Before(expiresAt):
		return StatusExpired
	case revoked:
		return StatusRevoked
	case userDeactivated:
		return StatusDeactivated
	default:
		return StatusActive
	}
}

// Credential is what the gateway knows about a token: everything needed to
// decide on a request, nothing secret.
type Credential struct {
	TokenID         string
	UserID          string
	Name            string
	Scopes          []string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	Revoked         bool
	UserDeactivated bool
}

// Status returns the credential's status at now.
func (c *Credential) Status(now time.Time) string {
	return Status(now, c.ExpiresAt, c.Revoked, c.UserDeactivated)
}

// HasScope reports whether the credential carries scope.
func (c *Credential) HasScope(scope string) bool {
	return slices.Contains(c.Scopes, scope)
}
