package storage

import (
	"errors"
	"time"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// Audit actions.
const (
	ActionUserCreate     = "user.create"
	ActionUserUpdate     = "user.update"
	ActionUserDeactivate = "user.deactivate"
	ActionUserReactivate = "user.reactivate"
	ActionTokenCreate    = "token.create"
	ActionTokenRevoke    = "token.revoke"
	ActionTokenReapprove = "token.reapprove"
	ActionTokenDelete    = "token.delete"
	ActionTokenLogout    = "token.logout"
	ActionTokenRotate    = "token.rotate"
	ActorAdminKey        = "admin_key"
	actorTokenPrefix     = "token:"
	actorUserPrefix      = "user:"
)

// UserStatus is the status of a user.
type UserStatus string

// User statuses.
const (
	UserActive      UserStatus = "active"
	UserDeactivated UserStatus = "deactivated"
)

// ActorToken is the audit actor for a change made with the token id.
func ActorToken(id string) string { return actorTokenPrefix + id }

// ActorUser is the audit actor for a change a user made on their own tokens
// (self-service).
func ActorUser(id string) string { return actorUserPrefix + id }

// AlreadyRotatedError is the ErrTokenNotActive of a token rotated before:
// it names the successor.
type AlreadyRotatedError struct{ To string }

func (e *AlreadyRotatedError) Error() string { return "this token was already rotated to " + e.To }
func (e *AlreadyRotatedError) Unwrap() error { return ErrTokenNotActive }

// Domain errors; the admin handler maps them to status codes.
var (
	ErrNotFound        = errors.New("not found")
	ErrNameTaken       = errors.New("a token with this name already exists for this user")
	ErrTokenLimit      = errors.New("the user has reached the maximum number of tokens")
	ErrUserDeactivated = errors.New("the user is deactivated")
	ErrTokenExpired    = errors.New("the token has expired")
	// ErrTokenNotActive: only an active token that was not rotated yet can
	// be rotated.
	ErrTokenNotActive = errors.New("only an active token can be rotated")
	// ErrExpiryPassed: a new token's expiry passed before it was stored
	// (e.g. expires_in "1ns").
	ErrExpiryPassed = errors.New("the requested expiry has already passed; ask for a longer lifetime")
)

// User is an ARM account.
type User struct {
	ID          string
	Email       *string
	DisplayName *string
	Status      UserStatus
	TokenCount  int
	CreatedAt   time.Time
	// RateLimit is the quota on all of the user's tokens together; null
	// when the user has none of their own.
	RateLimit  *quota.Limit `db:"-"`
	RLRequests *int64       `db:"rl_requests"`
	RLWindow   *int64       `db:"rl_window"`
}

// Token is a token's row: never the plaintext or hash. Rows carry no JSON
// names: the admin API's types say how a token is shown.
type Token struct {
	ID            string
	UserID        string
	Name          string
	Hint          string
	Scopes        []string
	Status        token.Status `db:"-"`
	CreatedAt     time.Time
	ExpiresAt     time.Time
	LastUsedAt    *time.Time
	RevokedAt     *time.Time
	RevokedReason *string
	// RevokedBy is the actor of the revocation, null while not revoked.
	RevokedBy *string
	// RotatedTo is the id of the token that replaced this one, if any.
	RotatedTo *string
	// RateLimit is the token's own quota; null when it has none.
	RateLimit *quota.Limit `db:"-"`
	// AllowedIPs are the CIDRs the token may be used from; empty: anywhere.
	AllowedIPs []string `db:"-"`
	// LeakedAt and LeakURL: when a leak report named the token and where
	// it was found; set only for a token revoked as leaked.
	LeakedAt *time.Time
	LeakURL  *string
}

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	At     time.Time
	Actor  string
	Action string
	Target string
	Detail map[string]any
}
