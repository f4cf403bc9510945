package token

import (
	"slices"
	"time"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
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
	// RateLimit is the token's own quota; zero when none is set (the
	// configured default then applies).
	RateLimit quota.Limit
	// UserRateLimit is the quota on all of the user's tokens together;
	// zero when none is set.
	UserRateLimit quota.Limit
	// AllowedIPs is the token's allow-list; empty allows every address.
	AllowedIPs ipallow.List
	// ExpiresText is ExpiresAt in RFC 3339, UTC, when whoever built the
	// credential had it formatted already (the verifier's cache does);
	// empty otherwise.
	ExpiresText string
}

// Status returns the credential's status at now.
func (c *Credential) Status(now time.Time) Status {
	return StatusAt(now, c.ExpiresAt, c.Revoked, c.UserDeactivated)
}

// HasScope reports whether the credential carries scope.
func (c *Credential) HasScope(scope string) bool {
	return slices.Contains(c.Scopes, scope)
}
