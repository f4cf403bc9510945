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

	"github.com/armgate/armgate/adminapi/request"
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

// TestCapBody: in the handler the body is capped at request.MaxBodyBytes
// (an http.MaxBytesReader); a body past the cap that Content-Length did
// not announce is a 413 too.
func TestCapBody(t *testing.T) {
	rec := httptest.NewRecorder()
	body := capBody(rec, io.NopCloser(strings.NewReader(strings.Repeat(" ", request.MaxBodyBytes+10))))
	wantAPIError(t, request.Decode(body, &request.User{}), 413, "")
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
		{name: "too large", target: "/introspect", ctype: form, body: "token=" + strings.Repeat("a", request.MaxBodyBytes), status: 413},
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
