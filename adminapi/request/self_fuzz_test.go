package request

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/armgate/armgate/token"
)

// FuzzSelfDecode feeds arbitrary bodies to the self-service create, revoke
// and rotate decoding and validation: it never panics, every refusal is a
// 400 invalid_request (or 413 exactly when the body is over the limit), and
// whatever is accepted satisfies the rules: text that shows as what it is
// (valid UTF-8 in the raw body, no control or format characters), a
// trimmed name of 1–100 characters, the api scope only, an expiry after now
// and at most max_token_lifetime away, a grace from 0s to 168h.
func FuzzSelfDecode(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"name":"laptop","expires_in":"720h"}`, `{"name":" a "}`, `{"name":"x","scopes":["admin"]}`,
		`{"name":"x","scopes":null}`, `{"name":"report\u202egpj.exe"}`, `{"name":"c\u200bi"}`, "{\"name\":\"a\xff\xfeb\"}",
		`{"name":"a\ud800"}`, `{"name":"\ud83d\ude00"}`, `{"reason":"lost"}`, `{"reason":"a\u2028b"}`, `{"grace":"0s"}`,
		`{"grace":"168h","expires_in":"24h"}`, `{"grace":"0s","expires_in":"8760h"}`, `{"grace":"-1s"}`,
		`{"expires_at":"2026-01-02T00:00:00Z","name":"x"}`, `{"name":"x","name":"y"}`, `{"NAME":"x"}`,
	} {
		for kind := range uint8(3) {
			f.Add([]byte(s), kind)
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := TokenLimits{MaxPerUser: 10, Lifetime: time.Hour, MaxLifetime: 24 * time.Hour}
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		refused := func(what string, err error) bool { return fuzzRefused(t, what, err, len(data)) }
		accepted := func() {
			if !utf8.Valid(data) || loneSurrogate(data) >= 0 {
				t.Fatalf("accepted a body whose text JSON decoding would change: %q", data)
			}
		}
		text := func(field, s string, maxLen int) {
			if err := token.CheckText(field, s); err != nil || s != strings.TrimSpace(s) || utf8.RuneCountInString(s) > maxLen {
				t.Fatalf("accepted %s %q (%v)", field, s, err)
			}
		}
		switch kind % 3 {
		case 0:
			var b SelfCreate
			if refused("decode create", Decode(bytes.NewReader(data), &b)) {
				return
			}
			n, err := b.Token(now, limits)
			if refused("validate create", err) {
				return
			}
			accepted()
			text("name", n.Name, token.MaxNameLen)
			if n.Name == "" || !slices.Equal(n.Scopes, []string{token.ScopeAPI}) ||
				!n.ExpiresAt.After(now) || n.ExpiresAt.After(now.Add(limits.MaxLifetime)) {
				t.Fatalf("accepted an invalid self-service token: %+v", n)
			}
		case 1:
			var b Revoke
			if refused("decode revoke", Decode(bytes.NewReader(data), &b)) {
				return
			}
			reason, err := b.CleanReason()
			if refused("validate revoke", err) {
				return
			}
			accepted()
			text("reason", reason, maxRevokeReasonLen)
		case 2:
			var b Rotate
			if refused("decode rotate", Decode(bytes.NewReader(data), &b)) {
				return
			}
			grace, exp, err := b.Rotation(now, limits)
			if refused("validate rotate", err) {
				return
			}
			accepted()
			if grace < 0 || grace > MaxGrace || !exp.After(now) || exp.After(now.Add(limits.MaxLifetime)) {
				t.Fatalf("accepted an invalid rotation: grace %s, expiry %s", grace, exp)
			}
		}
	})
}
