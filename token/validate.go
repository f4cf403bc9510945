package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/armgate/armgate/quota"
)

// Scopes a token may carry.
const (
	ScopeAPI   = "api"
	ScopeAdmin = "admin"
)

// SelfServiceScopes returns the scopes a user may hold on tokens they
// create and rotate themselves: api only.
func SelfServiceScopes() []string { return []string{ScopeAPI} }

// MaxNameLen is the longest token name, in characters, after trimming.
const MaxNameLen = 100

// NormalizeName trims a token name and checks it: 1–100 characters of
// text as CheckText allows it.
func NormalizeName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("name is required and may not be blank")
	}
	if !utf8.ValidString(name) {
		return "", errors.New("name must be valid UTF-8")
	}
	if utf8.RuneCountInString(name) > MaxNameLen {
		return "", fmt.Errorf("name is longer than %d characters", MaxNameLen)
	}
	if err := CheckText("name", name); err != nil {
		return "", err
	}
	return name, nil
}

// NormalizeScopes checks scopes and removes duplicates; nil means the
// default, ["api"].
func NormalizeScopes(scopes []string) ([]string, error) {
	if scopes == nil {
		return []string{ScopeAPI}, nil
	}
	if len(scopes) == 0 {
		return nil, errors.New(`scopes may not be empty (omit it for the default ["api"])`)
	}
	var out []string
	for _, s := range scopes {
		if s != ScopeAPI && s != ScopeAdmin {
			return nil, fmt.Errorf("unknown scope %q (known: %q, %q)", s, ScopeAPI, ScopeAdmin)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// FormatDuration writes d as a person would type it: "48h", "1h30m",
// "90s", not Go's "48h0m0s" (the rule quota windows are written by).
func FormatDuration(d time.Duration) string { return quota.ShortWindow(d) }

// Expiry computes a new token's expiry from at most one of expiresIn (a Go
// duration string) and expiresAt (RFC 3339). With neither, the lifetime is
// def. A non-positive lifetime, a time in the past or a lifetime over max is
// an error: nothing is silently clamped.
func Expiry(now time.Time, expiresIn, expiresAt string, def, max time.Duration) (time.Time, error) {
	switch {
	case expiresIn != "" && expiresAt != "":
		return time.Time{}, errors.New("give expires_in or expires_at, not both")
	case expiresIn != "":
		d, err := time.ParseDuration(expiresIn)
		if err != nil {
			return time.Time{}, fmt.Errorf("expires_in: %q is not a duration such as \"720h\"", expiresIn)
		}
		if d <= 0 {
			return time.Time{}, errors.New("expires_in must be positive")
		}
		if d > max {
			return time.Time{}, fmt.Errorf("expires_in %s exceeds the maximum token lifetime %s", expiresIn, FormatDuration(max))
		}
		return now.Add(d), nil
	case expiresAt != "":
		t, err := time.Parse(time.RFC3339, expiresAt)
		if err != nil {
			return time.Time{}, fmt.Errorf("expires_at: %q is not an RFC 3339 time such as \"2027-01-31T00:00:00Z\"", expiresAt)
		}
		if !t.After(now) {
			return time.Time{}, errors.New("expires_at is in the past")
		}
		if t.Sub(now) > max {
			return time.Time{}, fmt.Errorf("expires_at is more than the maximum token lifetime %s away", FormatDuration(max))
		}
		return t, nil
	}
	return now.Add(def), nil
}
