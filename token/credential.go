package token

import (
	"slices"
	"time"
)

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
func (c *Credential) Status(now time.Time) Status {
	return StatusAt(now, c.ExpiresAt, c.Revoked, c.UserDeactivated)
}

// HasScope reports whether the credential carries scope.
func (c *Credential) HasScope(scope string) bool {
	return slices.Contains(c.Scopes, scope)
}
