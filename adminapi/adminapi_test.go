package adminapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func wantAPIError(t *testing.T, err error, status int, msgPart string) {
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
			var body CreateTokenRequest
			err := decodeJSON(strings.NewReader(tt.body), &body)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("error = %v", err)
				}
				return
			}
			wantAPIError(t, err, tt.status, tt.msg)
		})
	}
}

func TestDecodeJSONMaxBytesReader(t *testing.T) {
	// In the handler the body is an http.MaxBytesReader; its error is a 413 too.
	rec := httptest.NewRecorder()
	body := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(strings.Repeat(" ", MaxBodyBytes+10))), MaxBodyBytes)
	wantAPIError(t, decodeJSON(body, &UserRequest{}), 413, "")
}

func TestCreateTokenRequest(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := TokenLimits{MaxPerUser: 10, Lifetime: 90 * 24 * time.Hour, MaxLifetime: 365 * 24 * time.Hour}
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		body   CreateTokenRequest
		want   storage.NewToken // checked when msg is empty
		errMsg string
	}{
		{name: "defaults", body: CreateTokenRequest{Name: "ci"},
			want: storage.NewToken{Name: "ci", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "name trimmed", body: CreateTokenRequest{Name: "  deploy bot \t"},
			want: storage.NewToken{Name: "deploy bot", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "scopes deduplicated", body: CreateTokenRequest{Name: "a", Scopes: []string{"admin", "api", "admin"}},
			want: storage.NewToken{Name: "a", Scopes: []string{"admin", "api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "expires_in", body: CreateTokenRequest{Name: "a", ExpiresIn: str("720h")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(720 * time.Hour)}},
		{name: "expires_at", body: CreateTokenRequest{Name: "a", ExpiresAt: str("2026-02-01T01:00:00+01:00")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "exactly the maximum", body: CreateTokenRequest{Name: "a", ExpiresIn: str("8760h")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.MaxLifetime)}},
		{name: "name missing", body: CreateTokenRequest{}, errMsg: "name is required"},
		{name: "name blank", body: CreateTokenRequest{Name: "   "}, errMsg: "name is required"},
		{name: "name too long", body: CreateTokenRequest{Name: strings.Repeat("é", 101)}, errMsg: "longer than 100"},
		{name: "name 100 characters", body: CreateTokenRequest{Name: strings.Repeat("é", 100)},
			want: storage.NewToken{Name: strings.Repeat("é", 100), Scopes: []string{"api"}, ExpiresAt: now.Add(limits.Lifetime)}},
		{name: "name with control character", body: CreateTokenRequest{Name: "a\x00b"}, errMsg: "control characters"},
		{name: "name with newline", body: CreateTokenRequest{Name: "a\nb"}, errMsg: "control characters"},
		{name: "empty scopes", body: CreateTokenRequest{Name: "a", Scopes: []string{}}, errMsg: "scopes may not be empty"},
		{name: "unknown scope", body: CreateTokenRequest{Name: "a", Scopes: []string{"root"}}, errMsg: `unknown scope "root"`},
		{name: "both lifetimes", body: CreateTokenRequest{Name: "a", ExpiresIn: str("1h"), ExpiresAt: str("2026-02-01T00:00:00Z")}, errMsg: "not both"},
		{name: "bad duration", body: CreateTokenRequest{Name: "a", ExpiresIn: str("30d")}, errMsg: "not a duration"},
		{name: "negative duration", body: CreateTokenRequest{Name: "a", ExpiresIn: str("-1h")}, errMsg: "must be positive"},
		{name: "zero duration", body: CreateTokenRequest{Name: "a", ExpiresIn: str("0s")}, errMsg: "must be positive"},
		{name: "empty expires_in", body: CreateTokenRequest{Name: "a", ExpiresIn: str("")}, errMsg: "expires_in may not be empty"},
		{name: "empty expires_at", body: CreateTokenRequest{Name: "a", ExpiresAt: str("")}, errMsg: "expires_at may not be empty"},
		{name: "over the maximum", body: CreateTokenRequest{Name: "a", ExpiresIn: str("8761h")}, errMsg: "exceeds the maximum"},
		{name: "expires_at in the past", body: CreateTokenRequest{Name: "a", ExpiresAt: str("2025-12-31T23:59:59Z")}, errMsg: "in the past"},
		{name: "expires_at now", body: CreateTokenRequest{Name: "a", ExpiresAt: str("2026-01-01T00:00:00Z")}, errMsg: "in the past"},
		{name: "expires_at too far", body: CreateTokenRequest{Name: "a", ExpiresAt: str("2027-06-01T00:00:00Z")}, errMsg: "maximum token lifetime"},
		{name: "expires_at not RFC 3339", body: CreateTokenRequest{Name: "a", ExpiresAt: str("2026-02-01")}, errMsg: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.body.NewToken("u1", now, limits)
			if tt.errMsg != "" {
				wantAPIError(t, err, 400, tt.errMsg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.UserID, tt.want.MaxPerUser = "u1", 10
			if n.UserID != tt.want.UserID || n.Name != tt.want.Name || n.MaxPerUser != 10 ||
				strings.Join(n.Scopes, ",") != strings.Join(tt.want.Scopes, ",") || !n.ExpiresAt.Equal(tt.want.ExpiresAt) {
				t.Fatalf("got %+v, want %+v", n, tt.want)
			}
			if n.ExpiresAt.Location() != time.UTC {
				t.Errorf("expires_at not in UTC: %v", n.ExpiresAt)
			}
		})
	}
}

func TestUserRequest(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		body   UserRequest
		errMsg string
	}{
		{name: "nothing", body: UserRequest{}},
		{name: "email", body: UserRequest{Email: str("jo@example.com")}},
		{name: "email with plus", body: UserRequest{Email: str("jo+arm@sub.example.co")}},
		{name: "display name", body: UserRequest{DisplayName: str("Jo Müller")}},
		{name: "empty display name", body: UserRequest{DisplayName: str("")}},
		{name: "display name 200", body: UserRequest{DisplayName: str(strings.Repeat("ß", 200))}},
		{name: "display name 201", body: UserRequest{DisplayName: str(strings.Repeat("ß", 201))}, errMsg: "longer than 200"},
		{name: "display name control", body: UserRequest{DisplayName: str("Jo\x1b[31m")}, errMsg: "control characters"},
		{name: "display name DEL", body: UserRequest{DisplayName: str("Jo\x7f")}, errMsg: "control characters"},
		{name: "display name invalid UTF-8", body: UserRequest{DisplayName: str("Jo\xff")}, errMsg: "UTF-8"},
		{name: "empty email", body: UserRequest{Email: str("")}, errMsg: "email must be"},
		{name: "no at", body: UserRequest{Email: str("jo.example.com")}, errMsg: "not an email address"},
		{name: "with name", body: UserRequest{Email: str("Jo <jo@example.com>")}, errMsg: "not an email address"},
		{name: "angle brackets", body: UserRequest{Email: str("<jo@example.com>")}, errMsg: "not an email address"},
		{name: "surrounding space", body: UserRequest{Email: str(" jo@example.com")}, errMsg: "not an email address"},
		{name: "two addresses", body: UserRequest{Email: str("a@example.com, b@example.com")}, errMsg: "not an email address"},
		{name: "too long", body: UserRequest{Email: str(strings.Repeat("a", 250) + "@x.io")}, errMsg: "1 to 254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.body.Patch()
			if tt.errMsg != "" {
				wantAPIError(t, err, 400, tt.errMsg)
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
		got, err := RevokeRequest{Reason: tt.in}.CleanReason()
		if tt.errMsg != "" {
			wantAPIError(t, err, 400, tt.errMsg)
		} else if err != nil || got != tt.want {
			t.Errorf("CleanReason(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTokenID(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"},
		{"0190B6B8-6B7E-7C1A-9F3E-2D5C8A1B4E6F", "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"},
		{"", ""},
		{"42", ""},
		{"0190b6b86b7e7c1a9f3e2d5c8a1b4e6f", ""},
		{"{0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f}", ""},
		{"urn:uuid:0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", ""},
		{"0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6g", ""},
		{"0190b6b8x6b7e-7c1a-9f3e-2d5c8a1b4e6f", ""},
	} {
		got, err := ParseTokenID(tt.in)
		if tt.want == "" {
			wantAPIError(t, err, 400, "invalid token id")
		} else if err != nil || got != tt.want {
			t.Errorf("ParseTokenID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestQueryParameters(t *testing.T) {
	tests := []struct {
		query  string
		known  []string
		limit  int
		errMsg string
	}{
		{query: "", known: []string{"limit"}, limit: 50},
		{query: "limit=1", known: []string{"limit"}, limit: 1},
		{query: "limit=500", known: []string{"limit"}, limit: 500},
		{query: "limit=", known: []string{"limit"}, errMsg: "limit must be an integer"},
		{query: "limit=0", known: []string{"limit"}, errMsg: "limit must be an integer from 1 to 500"},
		{query: "limit=501", known: []string{"limit"}, errMsg: "limit must be"},
		{query: "limit=-1", known: []string{"limit"}, errMsg: "limit must be"},
		{query: "limit=ten", known: []string{"limit"}, errMsg: "limit must be"},
		{query: "limit=1.5", known: []string{"limit"}, errMsg: "limit must be"},
		{query: "limit=1&limit=2", known: []string{"limit"}, errMsg: "more than once"},
		{query: "state=active", known: []string{"status", "limit"}, errMsg: `unknown query parameter "state"`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			err := queryParams(q, tt.known...)
			var limit int
			if err == nil {
				limit, err = ParseLimit(q)
			}
			if tt.errMsg != "" {
				wantAPIError(t, err, 400, tt.errMsg)
			} else if err != nil || limit != tt.limit {
				t.Fatalf("limit = %d, %v; want %d", limit, err, tt.limit)
			}
		})
	}
	for _, s := range []string{"", "active", "deactivated"} {
		if got, err := ParseUserStatus(s); err != nil || got != s {
			t.Errorf("ParseUserStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"Active", "revoked", "all"} {
		_, err := ParseUserStatus(s)
		wantAPIError(t, err, 400, "status must be")
	}
}

func TestCursor(t *testing.T) {
	for _, id := range []string{"a", "jo@example.com", "A-Z_09.@-", strings.Repeat("z", 128)} {
		got, err := DecodeCursor(EncodeCursor(id))
		if err != nil || got != id {
			t.Errorf("cursor round trip of %q = %q, %v", id, got, err)
		}
	}
	if got, err := DecodeCursor(""); err != nil || got != "" {
		t.Errorf("empty cursor = %q, %v", got, err)
	}
	for _, c := range []string{"!!", "YQ==", EncodeCursor("a b"), EncodeCursor(strings.Repeat("z", 129)), EncodeCursor("a/b")} {
		_, err := DecodeCursor(c)
		wantAPIError(t, err, 400, "invalid cursor")
	}
}

func TestParseIntrospection(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name, target, ctype, body string
		want                      string
		status                    int
		msg                       string
	}{
		{name: "token", target: "/introspect", ctype: form, body: "token=arm_x", want: "arm_x"},
		{name: "with hint", target: "/introspect", ctype: form + "; charset=utf-8", body: "token=arm_x&token_type_hint=access_token", want: "arm_x"},
		{name: "missing", target: "/introspect", ctype: form, body: "", status: 400, msg: "token parameter is required"},
		{name: "empty", target: "/introspect", ctype: form, body: "token=", status: 400, msg: "token parameter is required"},
		{name: "twice", target: "/introspect", ctype: form, body: "token=a&token=b", status: 400, msg: "once"},
		{name: "JSON", target: "/introspect", ctype: "application/json", body: `{"token":"x"}`, status: 400, msg: "x-www-form-urlencoded"},
		{name: "no content type", target: "/introspect", body: "token=x", status: 400, msg: "x-www-form-urlencoded"},
		{name: "query string", target: "/introspect?token=x", ctype: form, body: "", status: 400, msg: "not in the query string"},
		{name: "malformed form", target: "/introspect", ctype: form, body: "token=%zz", status: 400, msg: "malformed"},
		{name: "too large", target: "/introspect", ctype: form, body: "token=" + strings.Repeat("a", MaxBodyBytes), status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(tt.body))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			got, err := parseIntrospection(r)
			if tt.status != 0 {
				wantAPIError(t, err, tt.status, tt.msg)
			} else if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestIntrospectionJSON(t *testing.T) {
	b, _ := json.Marshal(introspection{Active: false})
	if string(b) != `{"active":false}` {
		t.Errorf("inactive = %s", b)
	}
	c := token.Credential{TokenID: "t1", UserID: "u1", Scopes: []string{"api", "admin"},
		CreatedAt: time.Unix(1700000000, 5), ExpiresAt: time.Unix(1800000000, 0)}
	b, _ = json.Marshal(introspectionOf(c))
	want := `{"active":true,"sub":"u1","token_id":"t1","scope":"api admin","exp":1800000000,"iat":1700000000}`
	if string(b) != want {
		t.Errorf("active = %s, want %s", b, want)
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
			var req CreateTokenRequest
			err := decodeJSON(strings.NewReader(tt.body), &req)
			if tt.errMsg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantAPIError(t, err, 400, tt.errMsg)
		})
	}
}
