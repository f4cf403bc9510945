package caddymodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

func wantAPIError(t *testing.T, err error, status int, msgPart string) {
	t.Helper()
	e, ok := errors.AsType[*apiError](err)
	if !ok {
		t.Fatalf("error = %v (%T), want *apiError %d", err, err, status)
	}
	if e.status != status {
		t.Fatalf("status = %d (%s), want %d", e.status, e.message, status)
	}
	wantCode := map[int]string{400: "invalid_request", 413: "request_too_large"}[status]
	if wantCode != "" && e.code != wantCode {
		t.Fatalf("code = %q, want %q", e.code, wantCode)
	}
	if !strings.Contains(e.message, msgPart) {
		t.Fatalf("message = %q, want it to contain %q", e.message, msgPart)
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
		{name: "unknown field", body: `{"nme":"x"}`, status: 400, msg: `unknown field "nme" (known fields: name, expires_in, expires_at, scopes)`},
		{name: "name not a string", body: `{"name":1}`, status: 400, msg: "name must be a string, not number"},
		{name: "scopes not an array", body: `{"scopes":"api"}`, status: 400, msg: "scopes must be an array of strings, not string"},
		{name: "scope not a string", body: `{"scopes":[1]}`, status: 400, msg: "must be a string"},
		{name: "expires_in not a string", body: `{"expires_in":3600}`, status: 400, msg: "expires_in must be a string"},
		{name: "second object", body: `{} {}`, status: 400, msg: "data after it"},
		{name: "trailing garbage", body: `{}x`, status: 400, msg: "data after it"},
		{name: "trailing bracket", body: `{}]`, status: 400, msg: "data after it"},
		{name: "truncated", body: `{"name":`, status: 400, msg: "truncated"},
		{name: "syntax error", body: `{"name" "x"}`, status: 400, msg: "not valid JSON"},
		{name: "just under the limit", body: `{"name":"x"}` + strings.Repeat(" ", maxBodyBytes-12)},
		{name: "over the limit", body: `{"name":"x"}` + strings.Repeat(" ", maxBodyBytes-11), status: 413, msg: "64 KiB"},
		{name: "over the limit with early garbage", body: "}" + strings.Repeat("x", maxBodyBytes), status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body createTokenRequest
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
	body := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(strings.Repeat(" ", maxBodyBytes+10))), maxBodyBytes)
	wantAPIError(t, decodeJSON(body, &userRequest{}), 413, "")
}

func TestCreateTokenRequest(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := tokenLimits{maxPerUser: 10, lifetime: 90 * 24 * time.Hour, maxLifetime: 365 * 24 * time.Hour}
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		body   createTokenRequest
		want   storage.NewToken // checked when msg is empty
		errMsg string
	}{
		{name: "defaults", body: createTokenRequest{Name: "ci"},
			want: storage.NewToken{Name: "ci", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.lifetime)}},
		{name: "name trimmed", body: createTokenRequest{Name: "  deploy bot \t"},
			want: storage.NewToken{Name: "deploy bot", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.lifetime)}},
		{name: "scopes deduplicated", body: createTokenRequest{Name: "a", Scopes: []string{"admin", "api", "admin"}},
			want: storage.NewToken{Name: "a", Scopes: []string{"admin", "api"}, ExpiresAt: now.Add(limits.lifetime)}},
		{name: "expires_in", body: createTokenRequest{Name: "a", ExpiresIn: str("720h")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(720 * time.Hour)}},
		{name: "expires_at", body: createTokenRequest{Name: "a", ExpiresAt: str("2026-02-01T01:00:00+01:00")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "exactly the maximum", body: createTokenRequest{Name: "a", ExpiresIn: str("8760h")},
			want: storage.NewToken{Name: "a", Scopes: []string{"api"}, ExpiresAt: now.Add(limits.maxLifetime)}},
		{name: "name missing", body: createTokenRequest{}, errMsg: "name is required"},
		{name: "name blank", body: createTokenRequest{Name: "   "}, errMsg: "name is required"},
		{name: "name too long", body: createTokenRequest{Name: strings.Repeat("é", 101)}, errMsg: "longer than 100"},
		{name: "name 100 characters", body: createTokenRequest{Name: strings.Repeat("é", 100)},
			want: storage.NewToken{Name: strings.Repeat("é", 100), Scopes: []string{"api"}, ExpiresAt: now.Add(limits.lifetime)}},
		{name: "name with control character", body: createTokenRequest{Name: "a\x00b"}, errMsg: "control characters"},
		{name: "name with newline", body: createTokenRequest{Name: "a\nb"}, errMsg: "control characters"},
		{name: "empty scopes", body: createTokenRequest{Name: "a", Scopes: []string{}}, errMsg: "scopes may not be empty"},
		{name: "unknown scope", body: createTokenRequest{Name: "a", Scopes: []string{"root"}}, errMsg: `unknown scope "root"`},
		{name: "both lifetimes", body: createTokenRequest{Name: "a", ExpiresIn: str("1h"), ExpiresAt: str("2026-02-01T00:00:00Z")}, errMsg: "not both"},
		{name: "bad duration", body: createTokenRequest{Name: "a", ExpiresIn: str("30d")}, errMsg: "not a duration"},
		{name: "negative duration", body: createTokenRequest{Name: "a", ExpiresIn: str("-1h")}, errMsg: "must be positive"},
		{name: "zero duration", body: createTokenRequest{Name: "a", ExpiresIn: str("0s")}, errMsg: "must be positive"},
		{name: "empty expires_in", body: createTokenRequest{Name: "a", ExpiresIn: str("")}, errMsg: "expires_in may not be empty"},
		{name: "empty expires_at", body: createTokenRequest{Name: "a", ExpiresAt: str("")}, errMsg: "expires_at may not be empty"},
		{name: "over the maximum", body: createTokenRequest{Name: "a", ExpiresIn: str("8761h")}, errMsg: "exceeds the maximum"},
		{name: "expires_at in the past", body: createTokenRequest{Name: "a", ExpiresAt: str("2025-12-31T23:59:59Z")}, errMsg: "in the past"},
		{name: "expires_at now", body: createTokenRequest{Name: "a", ExpiresAt: str("2026-01-01T00:00:00Z")}, errMsg: "in the past"},
		{name: "expires_at too far", body: createTokenRequest{Name: "a", ExpiresAt: str("2027-06-01T00:00:00Z")}, errMsg: "maximum token lifetime"},
		{name: "expires_at not RFC 3339", body: createTokenRequest{Name: "a", ExpiresAt: str("2026-02-01")}, errMsg: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.body.newToken("u1", now, limits)
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
		body   userRequest
		errMsg string
	}{
		{name: "nothing", body: userRequest{}},
		{name: "email", body: userRequest{Email: str("jo@example.com")}},
		{name: "email with plus", body: userRequest{Email: str("jo+arm@sub.example.co")}},
		{name: "display name", body: userRequest{DisplayName: str("Jo Müller")}},
		{name: "empty display name", body: userRequest{DisplayName: str("")}},
		{name: "display name 200", body: userRequest{DisplayName: str(strings.Repeat("ß", 200))}},
		{name: "display name 201", body: userRequest{DisplayName: str(strings.Repeat("ß", 201))}, errMsg: "longer than 200"},
		{name: "display name control", body: userRequest{DisplayName: str("Jo\x1b[31m")}, errMsg: "control characters"},
		{name: "display name DEL", body: userRequest{DisplayName: str("Jo\x7f")}, errMsg: "control characters"},
		{name: "display name invalid UTF-8", body: userRequest{DisplayName: str("Jo\xff")}, errMsg: "UTF-8"},
		{name: "empty email", body: userRequest{Email: str("")}, errMsg: "email must be"},
		{name: "no at", body: userRequest{Email: str("jo.example.com")}, errMsg: "not an email address"},
		{name: "with name", body: userRequest{Email: str("Jo <jo@example.com>")}, errMsg: "not an email address"},
		{name: "angle brackets", body: userRequest{Email: str("<jo@example.com>")}, errMsg: "not an email address"},
		{name: "surrounding space", body: userRequest{Email: str(" jo@example.com")}, errMsg: "not an email address"},
		{name: "two addresses", body: userRequest{Email: str("a@example.com, b@example.com")}, errMsg: "not an email address"},
		{name: "too long", body: userRequest{Email: str(strings.Repeat("a", 250) + "@x.io")}, errMsg: "1 to 254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.body.patch()
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
		got, err := revokeRequest{Reason: tt.in}.reason()
		if tt.errMsg != "" {
			wantAPIError(t, err, 400, tt.errMsg)
		} else if err != nil || got != tt.want {
			t.Errorf("reason(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
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
		got, err := parseTokenID(tt.in)
		if tt.want == "" {
			wantAPIError(t, err, 400, "invalid token id")
		} else if err != nil || got != tt.want {
			t.Errorf("parseTokenID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
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
				limit, err = parseLimit(q)
			}
			if tt.errMsg != "" {
				wantAPIError(t, err, 400, tt.errMsg)
			} else if err != nil || limit != tt.limit {
				t.Fatalf("limit = %d, %v; want %d", limit, err, tt.limit)
			}
		})
	}
	for _, s := range []string{"", "active", "deactivated"} {
		if got, err := parseUserStatus(s); err != nil || got != s {
			t.Errorf("parseUserStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"Active", "revoked", "all"} {
		_, err := parseUserStatus(s)
		wantAPIError(t, err, 400, "status must be")
	}
}

func TestCursor(t *testing.T) {
	for _, id := range []string{"a", "jo@example.com", "A-Z_09.@-", strings.Repeat("z", 128)} {
		got, err := decodeCursor(encodeCursor(id))
		if err != nil || got != id {
			t.Errorf("cursor round trip of %q = %q, %v", id, got, err)
		}
	}
	if got, err := decodeCursor(""); err != nil || got != "" {
		t.Errorf("empty cursor = %q, %v", got, err)
	}
	for _, c := range []string{"!!", "YQ==", encodeCursor("a b"), encodeCursor(strings.Repeat("z", 129)), encodeCursor("a/b")} {
		_, err := decodeCursor(c)
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
		{name: "too large", target: "/introspect", ctype: form, body: "token=" + strings.Repeat("a", maxBodyBytes), status: 413},
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

func TestCreatedTokenJSON(t *testing.T) {
	b, err := json.Marshal(createdToken{Token: storage.Token{ID: "t1", Scopes: []string{"api"}}, Plaintext: "arm_secret"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"id", "user_id", "name", "hint", "scopes", "status", "created_at", "expires_at",
		"last_used_at", "revoked_at", "revoked_reason", "token"} {
		if _, ok := m[k]; !ok {
			t.Errorf("create response lacks %q: %s", k, b)
		}
	}
	if len(m) != 12 {
		t.Errorf("create response has %d fields, want 12: %s", len(m), b)
	}
}

func TestAdminUnmarshalCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		input string
		err   string
	}{
		{input: `armgate_admin`},
		{input: "armgate_admin {\n}"},
		{input: `armgate_admin foo`, err: "wrong argument count"},
		{input: "armgate_admin {\n\tadmin_key x\n}", err: "unrecognized subdirective: admin_key"},
	} {
		var h AdminHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if tt.err == "" && err != nil {
			t.Errorf("%q: %v", tt.input, err)
		} else if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: error %v, want %q", tt.input, err, tt.err)
		}
	}
}

// ---- handler tests with fakes (no database)

const (
	testAdminKey = "admin-key-for-tests-0123456789"
	tokAdmin     = "tok-admin"
	tokAPI       = "tok-api"
	tokRevoked   = "tok-revoked"
	tokBroken    = "tok-db-down"
	testTokenID  = "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"
)

type verdict struct {
	cred   token.Credential
	result verifier.Result
	err    error
}

type fakeVerifier map[string]verdict

func (f fakeVerifier) Verify(_ context.Context, tok string) (token.Credential, verifier.Result, error) {
	v, ok := f[tok]
	if !ok {
		return token.Credential{}, verifier.Unknown, nil
	}
	return v.cred, v.result, v.err
}

// fakeStore implements the calls a test needs; any other call panics on
// the nil embedded interface.
type fakeStore struct {
	adminStore
	calls      []string
	revokeErr  error
	createErr  error
	logoutErr  error
	lastActor  string
	lastRevoke string
}

func (s *fakeStore) RevokeToken(_ context.Context, actor, id, reason string) (storage.Token, storage.Invalidation, error) {
	s.calls = append(s.calls, "revoke "+id)
	s.lastActor, s.lastRevoke = actor, reason
	if s.revokeErr != nil {
		return storage.Token{}, storage.Invalidation{}, s.revokeErr
	}
	return storage.Token{ID: id, Status: token.StatusRevoked}, storage.Invalidation{Hashes: [][]byte{[]byte("h")}}, nil
}

func (s *fakeStore) Logout(_ context.Context, id string) (storage.Token, storage.Invalidation, error) {
	s.calls = append(s.calls, "logout "+id)
	if s.logoutErr != nil {
		return storage.Token{}, storage.Invalidation{}, s.logoutErr
	}
	return storage.Token{ID: id}, storage.Invalidation{Hashes: [][]byte{[]byte("h")}}, nil
}

func (s *fakeStore) CreateToken(_ context.Context, actor string, n storage.NewToken) (storage.Token, string, error) {
	s.calls = append(s.calls, "create "+n.Name)
	s.lastActor = actor
	if s.createErr != nil {
		return storage.Token{}, "", s.createErr
	}
	return storage.Token{ID: testTokenID, UserID: n.UserID, Name: n.Name, Scopes: n.Scopes}, "arm_plain", nil
}

func (s *fakeStore) GetUser(_ context.Context, id string) (storage.User, error) {
	s.calls = append(s.calls, "get user "+id)
	return storage.User{ID: id, Status: "active"}, nil
}

// orderedWriter records when the response starts, to check that the cache
// is invalidated before.
type orderedWriter struct {
	*httptest.ResponseRecorder
	events *[]string
}

func (o orderedWriter) WriteHeader(code int) {
	*o.events = append(*o.events, "respond")
	o.ResponseRecorder.WriteHeader(code)
}

func newTestAdmin(store *fakeStore, events *[]string) *AdminHandler {
	h := &AdminHandler{
		store: store,
		verifier: fakeVerifier{
			tokAdmin:   {cred: token.Credential{TokenID: "id-admin", Scopes: []string{"api", "admin"}}, result: verifier.Active},
			tokAPI:     {cred: token.Credential{TokenID: "id-api", Scopes: []string{"api"}}, result: verifier.Active},
			tokRevoked: {cred: token.Credential{TokenID: "id-rev", Scopes: []string{"admin"}}, result: verifier.Revoked},
			tokBroken:  {err: errors.New("connection refused")},
		},
		invalidate: func(storage.Invalidation) { *events = append(*events, "invalidate") },
		limits:     tokenLimits{maxPerUser: 10, lifetime: time.Hour, maxLifetime: 2 * time.Hour},
		timeout:    time.Second,
		now:        time.Now,
		logger:     zap.NewNop(),
	}
	h.adminKey, h.hasAdminKey = sha256.Sum256([]byte(testAdminKey)), true
	h.routes()
	return h
}

func TestAdminServeHTTP(t *testing.T) {
	tests := []struct {
		name, method, target, auth, body string
		status                           int
		code                             string
		header                           map[string]string
		calls                            string // store calls, joined by ";"
	}{
		{name: "no credential", method: "GET", target: "/users/u1", status: 401, code: "unauthorized",
			header: map[string]string{"WWW-Authenticate": `Bearer realm="armgate admin"`}},
		{name: "other scheme", method: "GET", target: "/users/u1", auth: "Basic YTpi", status: 401, code: "unauthorized"},
		{name: "wrong key", method: "GET", target: "/users/u1", auth: "Bearer nope", status: 401, code: "unauthorized",
			header: map[string]string{"WWW-Authenticate": `Bearer realm="armgate admin"`}},
		{name: "key prefix", method: "GET", target: "/users/u1", auth: "Bearer " + testAdminKey[:10], status: 401, code: "unauthorized"},
		{name: "revoked admin token", method: "GET", target: "/users/u1", auth: "Bearer " + tokRevoked, status: 401, code: "unauthorized"},
		{name: "token without admin scope", method: "GET", target: "/users/u1", auth: "Bearer " + tokAPI, status: 403, code: "forbidden"},
		{name: "database down during auth", method: "GET", target: "/users/u1", auth: "Bearer " + tokBroken, status: 503, code: "unavailable",
			header: map[string]string{"Retry-After": "5"}},
		{name: "unknown route needs auth first", method: "GET", target: "/nope", status: 401, code: "unauthorized"},
		{name: "admin key", method: "GET", target: "/users/u1", auth: "Bearer " + testAdminKey, status: 200,
			header: map[string]string{"Cache-Control": "no-store", "Content-Type": "application/json"}, calls: "get user u1"},
		{name: "admin key, lower-case scheme", method: "GET", target: "/users/u1", auth: "bearer  " + testAdminKey, status: 200, calls: "get user u1"},
		{name: "admin token", method: "GET", target: "/users/u1", auth: "Bearer " + tokAdmin, status: 200, calls: "get user u1"},
		{name: "bad user id", method: "GET", target: "/users/a%20b", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "unknown route", method: "GET", target: "/nope", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "root", method: "GET", target: "/", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "trailing slash", method: "GET", target: "/users/", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "unclean path", method: "GET", target: "/tokens/../users/u1", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "wrong method", method: "PATCH", target: "/users/u1", auth: "Bearer " + testAdminKey, status: 405,
			code: "method_not_allowed", header: map[string]string{"Allow": "GET, HEAD, PUT"}},
		{name: "wrong method on tokens", method: "PUT", target: "/tokens/" + testTokenID, auth: "Bearer " + testAdminKey, status: 405,
			header: map[string]string{"Allow": "GET, HEAD, DELETE"}},
		{name: "malformed token id", method: "POST", target: "/tokens/123/revoke", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "revoke", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"reason":"leaked"}`, status: 200, calls: "revoke " + testTokenID},
		{name: "revoke without body", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + tokAdmin,
			status: 200, calls: "revoke " + testTokenID},
		{name: "revoke unknown field", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"why":"x"}`, status: 400, code: "invalid_request"},
		{name: "revoke too large", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"reason":"` + strings.Repeat("x", maxBodyBytes) + `"}`, status: 413, code: "request_too_large"},
		{name: "create", method: "POST", target: "/users/u1/tokens", auth: "Bearer " + testAdminKey,
			body: `{"name":" ci ","scopes":["api"]}`, status: 201, calls: "create ci"},
		{name: "create over the max lifetime", method: "POST", target: "/users/u1/tokens", auth: "Bearer " + testAdminKey,
			body: `{"name":"ci","expires_in":"3h"}`, status: 400, code: "invalid_request"},
		{name: "logout", method: "POST", target: "/logout", auth: "Bearer " + tokAPI, status: 204, calls: "logout id-api"},
		{name: "logout with revoked token", method: "POST", target: "/logout", auth: "Bearer " + tokRevoked, status: 401, code: "unauthorized"},
		{name: "logout with admin key", method: "POST", target: "/logout", auth: "Bearer " + testAdminKey, status: 401, code: "unauthorized"},
		{name: "logout without credential", method: "POST", target: "/logout", status: 401, code: "unauthorized"},
		{name: "logout database down", method: "POST", target: "/logout", auth: "Bearer " + tokBroken, status: 503, code: "unavailable"},
		{name: "logout wrong method", method: "GET", target: "/logout", auth: "Bearer " + testAdminKey, status: 405,
			header: map[string]string{"Allow": "POST"}},
		{name: "introspect active", method: "POST", target: "/introspect", auth: "Bearer " + testAdminKey, body: "token=" + tokAPI, status: 200},
		{name: "introspect needs admin", method: "POST", target: "/introspect", auth: "Bearer " + tokAPI, body: "token=" + tokAPI, status: 403},
		{name: "introspect database down", method: "POST", target: "/introspect", auth: "Bearer " + testAdminKey, body: "token=" + tokBroken, status: 503},
		{name: "list users bad limit", method: "GET", target: "/users?limit=0", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "audit bad user", method: "GET", target: "/audit?user_id=a%2Fb", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			store := &fakeStore{}
			h := newTestAdmin(store, &events)
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if strings.HasPrefix(tt.body, "token=") {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(orderedWriter{rec, &events}, r, nil); err != nil {
				t.Fatalf("ServeHTTP error: %v", err)
			}
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				var e errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.code || e.Message == "" {
					t.Fatalf("body = %s, want error %q with a message", rec.Body, tt.code)
				}
			}
			for k, v := range tt.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := strings.Join(store.calls, ";"); got != tt.calls {
				t.Errorf("store calls = %q, want %q", got, tt.calls)
			}
			if rec.Code >= 400 && len(events) > 1 {
				t.Errorf("a refused request invalidated the cache: %v", events)
			}
		})
	}
}

func TestAdminInvalidatesBeforeAnswering(t *testing.T) {
	for _, tt := range []struct{ target, auth, actor string }{
		{"/tokens/" + testTokenID + "/revoke", testAdminKey, storage.ActorAdminKey},
		{"/tokens/" + testTokenID + "/revoke", tokAdmin, storage.ActorToken("id-admin")},
		{"/logout", tokAPI, ""},
	} {
		var events []string
		store := &fakeStore{}
		h := newTestAdmin(store, &events)
		r := httptest.NewRequest("POST", tt.target, nil)
		r.Header.Set("Authorization", "Bearer "+tt.auth)
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(orderedWriter{rec, &events}, r, nil)
		if strings.Join(events, ",") != "invalidate,respond" {
			t.Errorf("%s: events = %v, want invalidate before respond", tt.target, events)
		}
		if store.lastActor != tt.actor {
			t.Errorf("%s: actor = %q, want %q", tt.target, store.lastActor, tt.actor)
		}
	}
}

func TestAdminStorageErrors(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{storage.ErrNotFound, 404, "not_found"},
		{storage.ErrTokenLimit, 409, "token_limit_reached"},
		{storage.ErrNameTaken, 409, "name_taken"},
		{storage.ErrUserDeactivated, 409, "user_deactivated"},
		{storage.ErrTokenExpired, 409, "token_expired"},
		{errors.New("dial tcp: connection refused"), 503, "unavailable"},
		{context.DeadlineExceeded, 503, "unavailable"},
	} {
		var events []string
		h := newTestAdmin(&fakeStore{createErr: tt.err}, &events)
		r := httptest.NewRequest("POST", "/users/u1/tokens", strings.NewReader(`{"name":"ci"}`))
		r.Header.Set("Authorization", "Bearer "+testAdminKey)
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, r, nil)
		var e errorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != tt.status || e.Error != tt.code {
			t.Errorf("%v: %d %s, want %d %s", tt.err, rec.Code, rec.Body, tt.status, tt.code)
		}
		if tt.status == 503 && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: 503 without Retry-After", tt.err)
		}
		if len(events) != 0 {
			t.Errorf("%v: failed change invalidated the cache", tt.err)
		}
	}
}

func TestAdminCreateShowsPlaintextOnce(t *testing.T) {
	var events []string
	h := newTestAdmin(&fakeStore{}, &events)
	r := httptest.NewRequest("POST", "/users/u1/tokens", strings.NewReader(`{"name":"ci"}`))
	r.Header.Set("Authorization", "Bearer "+testAdminKey)
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, r, nil)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 201 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got["token"] != "arm_plain" || got["id"] != testTokenID {
		t.Errorf("create response = %s", rec.Body)
	}
}

func TestAdminIntrospectInactive(t *testing.T) {
	for _, tok := range []string{tokRevoked, "unknown", "arm_" + strings.Repeat("0", 38)} {
		var events []string
		h := newTestAdmin(&fakeStore{}, &events)
		r := httptest.NewRequest("POST", "/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		r.Header.Set("Authorization", "Bearer "+testAdminKey)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, r, nil)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":false}` {
			t.Errorf("%s: %d %s", tok, rec.Code, rec.Body)
		}
	}
}

// FuzzAdminDecode feeds arbitrary bodies to the decoding and validation of
// the create-token, user and revoke bodies: it must never panic, and every
// refusal is a 400 invalid_request, or a 413 exactly when the body is over
// the limit.
func FuzzAdminDecode(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"name":"ci"}`, `{"name":" a ","scopes":["api","admin"],"expires_in":"720h"}`,
		`{"name":"a","expires_at":"2030-01-01T00:00:00Z"}`, `{"name":"a","expires_in":"1h","expires_at":"x"}`,
		`{"email":"jo@example.com","display_name":"Jo"}`, `{"email":null}`, `{"reason":"leak"}`,
		`{"name":1}`, `{"scopes":[null]}`, `{"x":1}`, `{}{}`, `{"name":"\u0000"}`, "{\"name\":\"\xff\"}",
		`{"name":"a","name":"b"}`, `{"display_name":"` + strings.Repeat("x", 300) + `"}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits := tokenLimits{maxPerUser: 10, lifetime: 90 * 24 * time.Hour, maxLifetime: 365 * 24 * time.Hour}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) {
			if err == nil {
				return
			}
			e, ok := errors.AsType[*apiError](err)
			switch {
			case !ok:
				t.Fatalf("%s: error %v is not an API error", what, err)
			case e.status == 413 && e.code == "request_too_large" && len(data) > maxBodyBytes:
			case e.status == 400 && e.code == "invalid_request" && len(data) <= maxBodyBytes && e.message != "":
			default:
				t.Fatalf("%s: %d %s %q for a %d-byte body", what, e.status, e.code, e.message, len(data))
			}
		}
		var c createTokenRequest
		err := decodeJSON(bytes.NewReader(data), &c)
		check("decode token", err)
		if err == nil {
			n, err := c.newToken("u1", now, limits)
			check("validate token", err)
			if err == nil && (n.Name == "" || len(n.Scopes) == 0 || !n.ExpiresAt.After(now)) {
				t.Fatalf("accepted an invalid token request: %+v", n)
			}
		}
		var u userRequest
		err = decodeJSON(bytes.NewReader(data), &u)
		check("decode user", err)
		if err == nil {
			_, err = u.patch()
			check("validate user", err)
		}
		var rv revokeRequest
		err = decodeJSON(bytes.NewReader(data), &rv)
		check("decode revoke", err)
		if err == nil {
			_, err = rv.reason()
			check("validate revoke", err)
		}
	})
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
			var req createTokenRequest
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
