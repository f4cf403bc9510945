package adminapi

import (
	"strings"
	"time"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The response bodies live here, next to the requests, so that their JSON
// shape is pinned by this package's tests.

// User is a user as the API shows it: the stored fields plus the configured
// token limit, so that clients can show "3 of 10 tokens".
type User struct {
	ID          string             `json:"id"`
	Email       *string            `json:"email"`
	DisplayName *string            `json:"display_name"`
	Status      storage.UserStatus `json:"status"`
	TokenCount  int                `json:"token_count"`
	CreatedAt   time.Time          `json:"created_at"`
	// RateLimit is the quota on all of the user's tokens together; null
	// when the user has none of their own.
	RateLimit        *quota.Limit `json:"rate_limit"`
	MaxTokensPerUser int          `json:"max_tokens_per_user"`
}

// CreatedToken is the create response: the token JSON plus the plaintext,
// the only place it is ever shown.
type CreatedToken struct {
	Token
	Plaintext string `json:"token"`
}

// UsersPage is a page of GET /users. NextCursor is null on the last page,
// so that clients need no other end marker.
type UsersPage struct {
	Users      []User  `json:"users"`
	NextCursor *string `json:"next_cursor"`
}

// TokenList is the answer of GET /users/{user_id}/tokens; an object rather
// than a bare array, so that fields can be added later.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// auditList is the answer of GET /audit; an object for the same reason.
type auditList struct {
	Events []auditEvent `json:"events"`
}

// introspection is the RFC 7662 answer; an inactive token gets exactly
// {"active":false}, so that it reveals nothing about why.
type introspection struct {
	Active  bool   `json:"active"`
	Sub     string `json:"sub,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Exp     int64  `json:"exp,omitempty"`
	Iat     int64  `json:"iat,omitempty"`
}

// introspectionOf is the active answer for a live credential, in RFC 7662's
// names (sub, exp, iat) so that generic OAuth clients understand it.
func introspectionOf(c token.Credential) introspection {
	return introspection{
		Active:  true,
		Sub:     c.UserID,
		TokenID: c.TokenID,
		Scope:   strings.Join(c.Scopes, " "),
		Exp:     c.ExpiresAt.Unix(),
		Iat:     c.CreatedAt.Unix(),
	}
}
