package request

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// wantError fails t unless err is an *Error with status whose message
// contains msgPart (and, for 400 and 413, the code that goes with it).
func wantError(t *testing.T, err error, status int, msgPart string) {
	t.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("error = %v (%T), want *Error %d", err, err, status)
	}
	if e.Status != status {
		t.Fatalf("status = %d (%s), want %d", e.Status, e.Message, status)
	}
	wantCode := map[int]string{400: "invalid_request", 413: "request_too_large"}[status]
	if wantCode != "" && e.Code != wantCode {
		t.Fatalf("code = %q, want %q", e.Code, wantCode)
	}
	if !strings.Contains(e.Message, msgPart) {
		t.Fatalf("message = %q, want it to contain %q", e.Message, msgPart)
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int // 0: success
		msg    string
	}{
		{name: "empty body is {}", body: ""},
		{name: "whitespace body is {}", body: " \n\t"},
		{name: "object", body: `{"name":"ci","scopes":["api"]}`},
		{name: "trailing whitespace", body: "{}\n\n"},
		{name: "null", body: "null", status: 400, msg: "must be a JSON object"},
		{name: "array", body: "[]", status: 400, msg: "must be a JSON object"},
		{name: "string", body: `"x"`, status: 400, msg: "must be a JSON object"},
		{name: "unknown field", body: `{"nme":"x"}`, status: 400, msg: `unknown field "nme" (known fields: name, expires_in, expires_at, scopes, rate_limit, allowed_ips)`},
		{name: "name not a string", body: `{"name":1}`, status: 400, msg: "name must be a string, not number"},
		{name: "scopes not an array", body: `{"scopes":"api"}`, status: 400, msg: "scopes must be an array of strings, not string"},
		{name: "scope not a string", body: `{"scopes":[1]}`, status: 400, msg: "must be a string"},
		{name: "expires_in not a string", body: `{"expires_in":3600}`, status: 400, msg: "expires_in must be a string"},
		{name: "second object", body: `{} {}`, status: 400, msg: "data after it"},
		{name: "trailing garbage", body: `{}x`, status: 400, msg: "data after it"},
		{name: "trailing bracket", body: `{}]`, status: 400, msg: "data after it"},
		{name: "truncated", body: `{"name":`, status: 400, msg: "truncated"},
		{name: "syntax error", body: `{"name" "x"}`, status: 400, msg: "not valid JSON"},
		{name: "just under the limit", body: `{"name":"x"}` + strings.Repeat(" ", MaxBodyBytes-12)},
		{name: "over the limit", body: `{"name":"x"}` + strings.Repeat(" ", MaxBodyBytes-11), status: 413, msg: "64 KiB"},
		{name: "over the limit with early garbage", body: "}" + strings.Repeat("x", MaxBodyBytes), status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body CreateToken
			err := Decode(strings.NewReader(tt.body), &body)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("error = %v", err)
				}
				return
			}
			wantError(t, err, tt.status, tt.msg)
		})
	}
}

func TestCreateToken(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := TokenLimits{MaxPerUser: 10, Lifetime: 90 * 24 * time.Hour, MaxLifetime: 365 * 24 * time.Hour}
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		body   CreateToken
		want   Token // checked when msg is empty
		errMsg string
	}{
		{name: "defaults", body: CreateToken{Name: "ci"},
			want: Token{Name: "ci", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "name trimmed", body: CreateToken{Name: "  deploy bot \t"},
			want: Token{Name: "deploy bot", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "scopes deduplicated", body: CreateToken{Name: "a", Scopes: []string{"admin", "api", "admin"}},
			want: Token{Name: "a", Scopes: []string{"admin", "api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "expires_in", body: CreateToken{Name: "a", ExpiresIn: str("720h")},
			want: Token{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(720 * time.Hour)}},
		{name: "expires_at", body: CreateToken{Name: "a", ExpiresAt: str("2026-02-01T01:00:00+01:00")},
			want: Token{Name: "a", Scopes: []string{"api"}, ExpiresAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "exactly the maximum", body: CreateToken{Name: "a", ExpiresIn: str("8760h")},
			want: Token{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.MaxLifetime)}},
		{name: "name missing", body: CreateToken{}, errMsg: "name is required"},
		{name: "name blank", body: CreateToken{Name: "   "}, errMsg: "name is required"},
		{name: "name too long", body: CreateToken{Name: strings.Repeat("é", 101)}, errMsg: "longer than 100"},
		{name: "name 100 characters", body: CreateToken{Name: strings.Repeat("é", 100)},
			want: Token{Name: strings.Repeat("é", 100), Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "name with control character", body: CreateToken{Name: "a\x00b"}, errMsg: "control characters"},
		{name: "name with newline", body: CreateToken{Name: "a\nb"}, errMsg: "control characters"},
		{name: "empty scopes", body: CreateToken{Name: "a", Scopes: []string{}}, errMsg: "scopes may not be empty"},
		{name: "unknown scope", body: CreateToken{Name: "a", Scopes: []string{"root"}}, errMsg: `unknown scope "root"`},
		{name: "both lifetimes", body: CreateToken{Name: "a", ExpiresIn: str("1h"), ExpiresAt: str("2026-02-01T00:00:00Z")}, errMsg: "not both"},
		{name: "bad duration", body: CreateToken{Name: "a", ExpiresIn: str("30d")}, errMsg: "not a duration"},
		{name: "negative duration", body: CreateToken{Name: "a", ExpiresIn: str("-1h")}, errMsg: "must be positive"},
		{name: "zero duration", body: CreateToken{Name: "a", ExpiresIn: str("0s")}, errMsg: "must be positive"},
		{name: "empty expires_in", body: CreateToken{Name: "a", ExpiresIn: str("")}, errMsg: "expires_in may not be empty"},
		{name: "empty expires_at", body: CreateToken{Name: "a", ExpiresAt: str("")}, errMsg: "expires_at may not be empty"},
		{name: "over the maximum", body: CreateToken{Name: "a", ExpiresIn: str("8761h")}, errMsg: "exceeds the maximum"},
		{name: "expires_at in the past", body: CreateToken{Name: "a", ExpiresAt: str("2025-12-31T23:59:59Z")}, errMsg: "in the past"},
		{name: "expires_at now", body: CreateToken{Name: "a", ExpiresAt: str("2026-01-01T00:00:00Z")}, errMsg: "in the past"},
		{name: "expires_at too far", body: CreateToken{Name: "a", ExpiresAt: str("2027-06-01T00:00:00Z")}, errMsg: "maximum token lifetime"},
		{name: "expires_at not RFC 3339", body: CreateToken{Name: "a", ExpiresAt: str("2026-02-01")}, errMsg: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.body.Token(now, limits)
			if tt.errMsg != "" {
				wantError(t, err, 400, tt.errMsg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Name != tt.want.Name ||
				strings.Join(n.Scopes, ",") != strings.Join(tt.want.Scopes, ",") || !n.ExpiresAt.Equal(tt.want.ExpiresAt) {
				t.Fatalf("got %+v, want %+v", n, tt.want)
			}
			if n.ExpiresAt.Location() != time.UTC {
				t.Errorf("expires_at not in UTC: %v", n.ExpiresAt)
			}
		})
	}
}

func TestUser(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		body   User
		errMsg string
	}{
		{name: "nothing", body: User{}},
		{name: "email", body: User{Email: str("jo@example.com")}},
		{name: "email with plus", body: User{Email: str("jo+arm@sub.example.co")}},
		{name: "display name", body: User{DisplayName: str("Jo Müller")}},
		{name: "empty display name", body: User{DisplayName: str("")}},
		{name: "display name 200", body: User{DisplayName: str(strings.Repeat("ß", 200))}},
		{name: "display name 201", body: User{DisplayName: str(strings.Repeat("ß", 201))}, errMsg: "longer than 200"},
		{name: "display name control", body: User{DisplayName: str("Jo\x1b[31m")}, errMsg: "control characters"},
		{name: "display name DEL", body: User{DisplayName: str("Jo\x7f")}, errMsg: "control characters"},
		{name: "display name invalid UTF-8", body: User{DisplayName: str("Jo\xff")}, errMsg: "UTF-8"},
		{name: "empty email", body: User{Email: str("")}, errMsg: "email must be"},
		{name: "no at", body: User{Email: str("jo.example.com")}, errMsg: "not an email address"},
		{name: "with name", body: User{Email: str("Jo <jo@example.com>")}, errMsg: "not an email address"},
		{name: "angle brackets", body: User{Email: str("<jo@example.com>")}, errMsg: "not an email address"},
		{name: "surrounding space", body: User{Email: str(" jo@example.com")}, errMsg: "not an email address"},
		{name: "two addresses", body: User{Email: str("a@example.com, b@example.com")}, errMsg: "not an email address"},
		{name: "too long", body: User{Email: str(strings.Repeat("a", 250) + "@x.io")}, errMsg: "1 to 254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.body.Patch()
			if tt.errMsg != "" {
				wantError(t, err, 400, tt.errMsg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Email != tt.body.Email || p.DisplayName != tt.body.DisplayName {
				t.Fatalf("patch %+v does not carry the body %+v", p, tt.body)
			}
		})
	}
}

func TestRevokeReason(t *testing.T) {
	for _, tt := range []struct {
		in, want, errMsg string
	}{
		{in: "", want: ""},
		{in: "  leaked in CI log ", want: "leaked in CI log"},
		{in: strings.Repeat("x", 501), errMsg: "longer than 500"},
		{in: "a\tb", errMsg: "control characters"},
	} {
		got, err := Revoke{Reason: tt.in}.CleanReason()
		if tt.errMsg != "" {
			wantError(t, err, 400, tt.errMsg)
		} else if err != nil || got != tt.want {
			t.Errorf("CleanReason(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestExactKeys: encoding/json matches field names case-insensitively and
// keeps the last of repeated keys; the admin API refuses both.
func TestExactKeys(t *testing.T) {
	tests := []struct {
		body   string
		errMsg string
	}{
		{`{"name":"a"}`, ""},
		{`{"name":"a","scopes":["api"],"expires_in":"1h"}`, ""},
		{`{"NAME":"a"}`, `unknown field "NAME"`},
		{`{"Name":"a"}`, `unknown field "Name"`},
		{`{"name":"a","name":"b"}`, `field "name" is given more than once`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			var req CreateToken
			err := Decode(strings.NewReader(tt.body), &req)
			if tt.errMsg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantError(t, err, 400, tt.errMsg)
		})
	}
}

var testLimits = TokenLimits{MaxPerUser: 10, Lifetime: time.Hour, MaxLifetime: 24 * time.Hour}
