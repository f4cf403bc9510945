package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// TestAuthExpiresHeader: a request that passes carries its token's expiry,
// RFC 3339 in UTC, under the configured name; a refused one does not.
func TestAuthExpiresHeader(t *testing.T) {
	initProcessMetrics()
	expires := time.Date(2027, 3, 4, 5, 6, 7, 891_000_000, time.FixedZone("CET", 3600))
	live := token.Credential{TokenID: "tid-1", UserID: "uid-1", Scopes: []string{"api"}, ExpiresAt: expires}
	v := verifyFunc(func(_ context.Context, tok string) (token.Credential, token.Status, error) {
		if tok == "tok-live" {
			return live, token.Active, nil
		}
		return token.Credential{}, token.Unknown, nil
	})
	tests := []struct {
		name, option, tok string
		header, want      string // want "" means absent
	}{
		{"default", "", "tok-live", "ARM-Token-Expires", "2027-03-04T04:06:07Z"},
		{"renamed", "X-Token-Expiry", "tok-live", "X-Token-Expiry", "2027-03-04T04:06:07Z"},
		{"renamed, default absent", "X-Token-Expiry", "tok-live", "ARM-Token-Expires", ""},
		{"off", "off", "tok-live", "ARM-Token-Expires", ""},
		{"refused", "", "tok-unknown", "ARM-Token-Expires", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &AuthHandler{Realm: "Test API", Scope: "api", ExpiresHeader: tt.option}
			if err := h.Validate(); err != nil {
				t.Fatal(err)
			}
			h.configureExpiresHeader()
			h.verifier, h.logger, h.challenge = v, zap.NewNop(), `Bearer realm="Test API"`
			w := httptest.NewRecorder()
			var atNext string
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
				// Set before next: a proxied upstream's headers add to it.
				atNext = w.Header().Get(tt.header)
				w.WriteHeader(http.StatusOK)
				return nil
			})
			if err := h.ServeHTTP(w, authRequest(context.Background(), "Bearer "+tt.tok), next); err != nil {
				t.Fatal(err)
			}
			if got := w.Header().Values(tt.header); tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
				t.Errorf("%s = %q, want %q", tt.header, got, tt.want)
			}
			if tt.want != "" && atNext != tt.want {
				t.Errorf("at next, %s = %q, want %q", tt.header, atNext, tt.want)
			}
		})
	}
}

func TestExpiresHeaderCaddyfile(t *testing.T) {
	for _, tt := range []struct{ input, want, err string }{
		{input: "armgate_auth {\n\texpires_header X-Expiry\n}", want: "X-Expiry"},
		{input: "armgate_auth {\n\texpires_header off\n}", want: "off"},
		{input: "armgate_auth {\n\texpires_header\n}", err: "wrong argument count"},
		{input: "armgate_auth {\n\texpires_header a b\n}", err: "wrong argument count"},
	} {
		var h AuthHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.input, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.input, err, tt.err)
		case tt.err == "" && h.ExpiresHeader != tt.want:
			t.Errorf("%q: expires_header %q, want %q", tt.input, h.ExpiresHeader, tt.want)
		}
	}
	h := AuthHandler{ExpiresHeader: "Bad Header"}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "not a valid header name") {
		t.Errorf("a header name with a space: %v", err)
	}
}

// TestExpiresValue: whole seconds in UTC, formatted here or taken from the
// cached credential, and each response its own value.
func TestExpiresValue(t *testing.T) {
	at := time.Date(2026, 12, 2, 21, 30, 0, 999_999_999, time.FixedZone("X", -7*3600))
	h := &AuthHandler{}
	for _, cred := range []token.Credential{
		{ExpiresAt: at},
		{ExpiresAt: at, ExpiresText: "2026-12-03T04:30:00Z"},
	} {
		wa, wb := httptest.NewRecorder(), httptest.NewRecorder()
		h.setPassHeaders(wa, &cred, nil, &quota.Decision{})
		h.setPassHeaders(wb, &cred, nil, &quota.Decision{})
		a, b := wa.Header()[defaultExpiresHeader], wb.Header()[defaultExpiresHeader]
		if len(a) != 1 || a[0] != "2026-12-03T04:30:00Z" {
			t.Fatalf("expiry header = %q", a)
		}
		a[0] = "edited in place"
		if b[0] != "2026-12-03T04:30:00Z" {
			t.Errorf("values share storage: %q", b)
		}
	}
}
