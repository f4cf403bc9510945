package adminapi

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The JSON the admin API, the self-service API, the CLI (--json) and the
// screens see is this package's: storage rows carry no JSON names, and each
// row becomes its wire type in one function here. TestWireShapes pins the
// result byte for byte.

// Token is a token as the API shows it: never the plaintext or hash.
type Token struct {
	ID            string       `json:"id"`
	UserID        string       `json:"user_id"`
	Name          string       `json:"name"`
	Hint          string       `json:"hint"`
	Scopes        []string     `json:"scopes"`
	Status        token.Status `json:"status"`
	CreatedAt     time.Time    `json:"created_at"`
	ExpiresAt     time.Time    `json:"expires_at"`
	LastUsedAt    *time.Time   `json:"last_used_at"`
	RevokedAt     *time.Time   `json:"revoked_at"`
	RevokedReason *string      `json:"revoked_reason"`
	// RevokedBy is the actor of the revocation, null while not revoked.
	RevokedBy *string `json:"revoked_by"`
	// RotatedTo is the id of the token that replaced this one, if any.
	RotatedTo *string `json:"rotated_to"`
	// RateLimit is the token's own quota; null when it has none.
	RateLimit *quota.Limit `json:"rate_limit"`
	// AllowedIPs are the CIDRs the token may be used from; empty: anywhere.
	AllowedIPs []string `json:"allowed_ips"`
	// LeakedAt and LeakURL: when a leak report named the token and where
	// it was found; set only for a token revoked as leaked.
	LeakedAt *time.Time `json:"leaked_at"`
	LeakURL  *string    `json:"leak_url"`
}

// TokenJSON is t as the API shows it.
func TokenJSON(t storage.Token) Token {
	return Token{
		ID: t.ID, UserID: t.UserID, Name: t.Name, Hint: t.Hint, Scopes: t.Scopes, Status: t.Status,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt,
		RevokedAt: t.RevokedAt, RevokedReason: t.RevokedReason, RevokedBy: t.RevokedBy, RotatedTo: t.RotatedTo,
		RateLimit: t.RateLimit, AllowedIPs: t.AllowedIPs, LeakedAt: t.LeakedAt, LeakURL: t.LeakURL,
	}
}

// tokensJSON is ts as the API shows them: [] when there are none.
func tokensJSON(ts []storage.Token) []Token {
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, TokenJSON(t))
	}
	return out
}

// TokenListJSON is the answer of GET /users/{user_id}/tokens.
func TokenListJSON(ts []storage.Token) TokenList { return TokenList{Tokens: tokensJSON(ts)} }

// CreatedTokenJSON is the create response of t with its plaintext.
func CreatedTokenJSON(t storage.Token, plain string) CreatedToken {
	return CreatedToken{Token: TokenJSON(t), Plaintext: plain}
}

// UserJSON is u as the API shows it, with the configured token limit.
func UserJSON(u storage.User, maxTokens int) User {
	return User{
		ID: u.ID, Email: u.Email, DisplayName: u.DisplayName, Status: u.Status, TokenCount: u.TokenCount,
		CreatedAt: u.CreatedAt, RateLimit: u.RateLimit, MaxTokensPerUser: maxTokens,
	}
}

// UsersPageJSON is a page of GET /users: users, with more when a next page
// follows the last of them.
func UsersPageJSON(users []storage.User, more bool, maxTokens int) UsersPage {
	page := UsersPage{Users: make([]User, 0, len(users))}
	for _, u := range users {
		page.Users = append(page.Users, UserJSON(u, maxTokens))
	}
	if more && len(users) > 0 {
		c := EncodeCursor(users[len(users)-1].ID)
		page.NextCursor = &c
	}
	return page
}

// auditEvent is one entry of the audit log as GET /audit shows it.
type auditEvent struct {
	At     time.Time      `json:"at"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target"`
	Detail map[string]any `json:"detail"`
}

// auditListJSON is the answer of GET /audit.
func auditListJSON(events []storage.AuditEvent) auditList {
	l := auditList{Events: make([]auditEvent, 0, len(events))}
	for _, e := range events {
		l.Events = append(l.Events, auditEvent{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail})
	}
	return l
}

// Event is a lifecycle event of the outbox as GET /events shows it.
type Event struct {
	ID            string     `json:"id"`
	Type          string     `json:"type"`
	UserID        string     `json:"user_id"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	SentAt        *time.Time `json:"sent_at"`
	LastError     *string    `json:"last_error"`
	// Payload is the body the receiver gets, as it was queued.
	Payload json.RawMessage `json:"payload"`
}

// EventJSON is e as the API shows it.
func EventJSON(e storage.Event) Event {
	return Event{
		ID: e.ID, Type: e.Type, UserID: e.UserID, Status: e.Status, Attempts: e.Attempts, CreatedAt: e.CreatedAt,
		NextAttemptAt: e.NextAttemptAt, SentAt: e.SentAt, LastError: e.LastError, Payload: e.Payload,
	}
}

// EventsPageJSON is a page of GET /events: events, with more when a next
// page follows the last of them.
func EventsPageJSON(events []storage.Event, more bool) EventsPage {
	page := EventsPage{Events: make([]Event, 0, len(events))}
	for _, e := range events {
		page.Events = append(page.Events, EventJSON(e))
	}
	if more && len(events) > 0 {
		c := events[len(events)-1].ID
		page.NextCursor = &c
	}
	return page
}

// DayUsage is one token's requests on one UTC day.
type DayUsage struct {
	Day          string `json:"day"` // YYYY-MM-DD
	Allowed      int64  `json:"allowed"`
	QuotaRefused int64  `json:"quota_refused"`
	IPRefused    int64  `json:"ip_refused"`
}

// UsageJSON is the answer of GET /tokens/{token_id}/usage: the days, and
// the last client address (null when none is known).
func UsageJSON(days []storage.DayUsage, last netip.Addr) Usage {
	u := Usage{Days: make([]DayUsage, 0, len(days))}
	for _, d := range days {
		u.Days = append(u.Days, DayUsage{Day: d.Day, Allowed: d.Allowed, QuotaRefused: d.QuotaRefused, IPRefused: d.IPRefused})
	}
	if last.IsValid() {
		a := last.String()
		u.LastIP = &a
	}
	return u
}
