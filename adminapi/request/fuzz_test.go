package request

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// fuzzRefused reports whether err refused a fuzzed body of n bytes, and
// fails t unless the refusal is the API's: 413 past MaxBodyBytes, else 400
// invalid_request with a message.
func fuzzRefused(t *testing.T, what string, err error, n int) bool {
	t.Helper()
	if err == nil {
		return false
	}
	e, ok := errors.AsType[*Error](err)
	switch {
	case !ok:
		t.Fatalf("%s: error %v is not an API error", what, err)
	case e.Status == 413 && e.Code == "request_too_large" && n > MaxBodyBytes:
	case e.Status == 400 && e.Code == "invalid_request" && n <= MaxBodyBytes && e.Message != "":
	default:
		t.Fatalf("%s: %d %s %q for a %d-byte body", what, e.Status, e.Code, e.Message, n)
	}
	return true
}

// FuzzAdminDecode feeds arbitrary bodies to the decoding and validation of
// the create-token, user, revoke, rotate and self-service create bodies: it must never panic, and every
// refusal is a 400 invalid_request, or a 413 exactly when the body is over
// the limit.
func FuzzAdminDecode(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"name":"ci"}`, `{"name":" a ","scopes":["api","admin"],"expires_in":"720h"}`,
		`{"name":"a","expires_at":"2030-01-01T00:00:00Z"}`, `{"name":"a","expires_in":"1h","expires_at":"x"}`,
		`{"email":"jo@example.com","display_name":"Jo"}`, `{"email":null}`, `{"reason":"leak"}`,
		`{"name":1}`, `{"scopes":[null]}`, `{"x":1}`, `{}{}`, `{"name":"\u0000"}`, "{\"name\":\"\xff\"}",
		`{"name":"a","name":"b"}`, `{"display_name":"` + strings.Repeat("x", 300) + `"}`,
		`{"grace":"1h"}`, `{"grace":"-1s"}`, `{"grace":"169h","expires_in":"1h"}`, `{"grace":null}`, `{"name":"a","scopes":null}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := TokenLimits{MaxPerUser: 10, Lifetime: 90 * 24 * time.Hour, MaxLifetime: 365 * 24 * time.Hour}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) { fuzzRefused(t, what, err, len(data)) }
		var c CreateToken
		err := Decode(bytes.NewReader(data), &c)
		check("decode token", err)
		if err == nil {
			n, err := c.Token(now, limits)
			check("validate token", err)
			if err == nil && (n.Name == "" || len(n.Scopes) == 0 || !n.ExpiresAt.After(now)) {
				t.Fatalf("accepted an invalid token request: %+v", n)
			}
		}
		var u User
		err = Decode(bytes.NewReader(data), &u)
		check("decode user", err)
		if err == nil {
			_, err = u.Patch()
			check("validate user", err)
		}
		var ro Rotate
		err = Decode(bytes.NewReader(data), &ro)
		check("decode rotate", err)
		if err == nil {
			grace, exp, err := ro.Rotation(now, limits)
			check("validate rotate", err)
			if err == nil && (grace < 0 || grace > MaxGrace || !exp.After(now)) {
				t.Fatalf("accepted an invalid rotation: grace %s, expiry %s", grace, exp)
			}
		}
		var sc SelfCreate
		err = Decode(bytes.NewReader(data), &sc)
		check("decode self create", err)
		if err == nil {
			n, err := sc.Token(now, limits)
			check("validate self create", err)
			if err == nil && (n.Name == "" || len(n.Scopes) != 1 || n.Scopes[0] != "api") {
				t.Fatalf("accepted an invalid self-service token: %+v", n)
			}
		}
		var rv Revoke
		err = Decode(bytes.NewReader(data), &rv)
		check("decode revoke", err)
		if err == nil {
			_, err = rv.CleanReason()
			check("validate revoke", err)
		}
	})
}
