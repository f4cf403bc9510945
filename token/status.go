package token

import (
	"fmt"
	"time"
)

// Status is a token's state as the gateway decides on it. The zero value is
// Unknown, so a forgotten assignment fails closed.
type Status uint8

const (
	// Unknown covers tokens that do not exist: malformed, bad checksum,
	// never issued or deleted. The gateway tells the caller no more.
	Unknown Status = iota
	// Active: the token may pass (the caller still checks the scope).
	Active
	Expired
	Revoked
	// Deactivated: the token's user is deactivated.
	Deactivated
)

// The wire names of the statuses, for string fields and JSON.
const (
	StatusExpired     = "expired"
	StatusRevoked     = "revoked"
	StatusDeactivated = "deactivated"
	StatusActive      = "active"
	// StatusInvalid is Unknown's name: like the RFC 6750 error, it does not
	// say whether the token was never issued, mistyped or deleted.
	StatusInvalid = "invalid"
)

var statusNames = [...]string{
	Unknown:     StatusInvalid,
	Active:      StatusActive,
	Expired:     StatusExpired,
	Revoked:     StatusRevoked,
	Deactivated: StatusDeactivated,
}

// statusDescriptions are the RFC 6750 error_description values. They reveal
// nothing the caller does not know: the caller holds the token.
var statusDescriptions = [...]string{
	Unknown:     "The access token is invalid",
	Expired:     "The access token expired",
	Revoked:     "The access token was revoked",
	Deactivated: "The access token's user is deactivated",
}

// String returns the status's wire name: "active", "expired", "revoked",
// "deactivated", or "invalid" for Unknown.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return StatusInvalid
}

// Description returns the error_description of a refusal for the status;
// empty for Active.
func (s Status) Description() string {
	if int(s) < len(statusDescriptions) {
		return statusDescriptions[s]
	}
	return statusDescriptions[Unknown]
}

// MarshalText returns the wire name.
func (s Status) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// UnmarshalText reads a wire name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, name := range statusNames {
		if string(b) == name {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("unknown token status %q", b)
}

// StatusAt returns the status of an existing token at now: expired (at or
// past expiresAt), revoked, deactivated (its user is), else active; the
// first that applies.
func StatusAt(now, expiresAt time.Time, revoked, userDeactivated bool) Status {
	switch {
	case !now.Before(expiresAt):
		return Expired
	case revoked:
		return Revoked
	case userDeactivated:
		return Deactivated
	default:
		return Active
	}
}
