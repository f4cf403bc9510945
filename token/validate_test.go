package token_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/token"
)

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "ci", "ci", true},
		{"trimmed", "  laptop \t", "laptop", true},
		{"trimmed newline", "\nlaptop\n", "laptop", true},
		{"inner space kept", " my laptop ", "my laptop", true},
		{"empty", "", "", false},
		{"blank", " \t \n", "", false},
		{"100 ascii", strings.Repeat("a", 100), strings.Repeat("a", 100), true},
		{"101 ascii", strings.Repeat("a", 101), "", false},
		{"100 ascii after trim", "  " + strings.Repeat("a", 100) + "  ", strings.Repeat("a", 100), true},
		{"100 two-byte", strings.Repeat("é", 100), strings.Repeat("é", 100), true},
		{"101 two-byte", strings.Repeat("é", 101), "", false},
		{"100 three-byte", strings.Repeat("日", 100), strings.Repeat("日", 100), true},
		{"101 three-byte", strings.Repeat("日", 101), "", false},
		{"100 four-byte", strings.Repeat("🔑", 100), strings.Repeat("🔑", 100), true},
		{"101 four-byte", strings.Repeat("🔑", 101), "", false},
		{"NUL", "a\x00b", "", false},
		{"inner newline", "a\nb", "", false},
		{"inner tab", "a\tb", "", false},
		{"escape", "a\x1bb", "", false},
		{"DEL", "a\x7fb", "", false},
		{"C1 control", "a\u0085b", "", false},
		{"invalid UTF-8", "a\xffb", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.NormalizeName(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("NormalizeName(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
			if err != nil && err.Error() == "" {
				t.Error("empty error message")
			}
		})
	}
}

func TestNormalizeScopes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []string
		want []string
		ok   bool
	}{
		{"default", nil, []string{"api"}, true},
		{"empty", []string{}, nil, false},
		{"api", []string{"api"}, []string{"api"}, true},
		{"admin", []string{"admin"}, []string{"admin"}, true},
		{"both", []string{"admin", "api"}, []string{"admin", "api"}, true},
		{"duplicates", []string{"api", "admin", "api", "admin"}, []string{"api", "admin"}, true},
		{"unknown", []string{"api", "root"}, nil, false},
		{"case matters", []string{"API"}, nil, false},
		{"blank scope", []string{""}, nil, false},
		{"padded scope", []string{" api"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.NormalizeScopes(tc.in)
			if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
				t.Errorf("NormalizeScopes(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const def, max = 90 * 24 * time.Hour, 365 * 24 * time.Hour
	for _, tc := range []struct {
		name, in, at string
		want         time.Time
		ok           bool
	}{
		{"default", "", "", now.Add(def), true},
		{"expires_in", "720h", "", now.Add(720 * time.Hour), true},
		{"expires_in minutes", "90m", "", now.Add(90 * time.Minute), true},
		{"expires_in exactly max", "8760h", "", now.Add(max), true},
		{"expires_in over max", "8760h1s", "", time.Time{}, false},
		{"expires_in zero", "0s", "", time.Time{}, false},
		{"expires_in negative", "-1h", "", time.Time{}, false},
		{"expires_in days unit", "30d", "", time.Time{}, false},
		{"expires_in bare number", "3600", "", time.Time{}, false},
		{"expires_at", "", "2026-04-01T00:00:00Z", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), true},
		{"expires_at offset", "", "2026-04-01T02:00:00+02:00", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), true},
		{"expires_at exactly max", "", now.Add(max).Format(time.RFC3339), now.Add(max), true},
		{"expires_at over max", "", now.Add(max + time.Second).Format(time.RFC3339), time.Time{}, false},
		{"expires_at now", "", now.Format(time.RFC3339), time.Time{}, false},
		{"expires_at past", "", "2026-02-28T12:00:00Z", time.Time{}, false},
		{"expires_at date only", "", "2026-04-01", time.Time{}, false},
		{"expires_at garbage", "", "tomorrow", time.Time{}, false},
		{"both", "720h", "2026-04-01T00:00:00Z", time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.Expiry(now, tc.in, tc.at, def, max)
			if (err == nil) != tc.ok || !got.Equal(tc.want) {
				t.Errorf("Expiry(%q, %q) = %v, %v; want %v, ok=%v", tc.in, tc.at, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	future, past := now.Add(time.Hour), now.Add(-time.Hour)
	for _, tc := range []struct {
		exp                  time.Time
		revoked, deactivated bool
		want                 token.Status
	}{
		{future, false, false, token.Active},
		{future, true, false, token.Revoked},
		{future, false, true, token.Deactivated},
		{future, true, true, token.Revoked},
		{now, false, false, token.Expired},
		{past, true, true, token.Expired},
	} {
		c := token.Credential{ExpiresAt: tc.exp, Revoked: tc.revoked, UserDeactivated: tc.deactivated}
		if got := c.Status(now); got != tc.want {
			t.Errorf("Status(exp %v, revoked %v, deactivated %v) = %q, want %q", tc.exp.Sub(now), tc.revoked, tc.deactivated, got, tc.want)
		}
	}
	c := token.Credential{Scopes: []string{"api"}}
	if !c.HasScope("api") || c.HasScope("admin") {
		t.Error("HasScope wrong")
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		48 * time.Hour: "48h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		8760 * time.Hour: "8760h", 0: "0s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := token.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
