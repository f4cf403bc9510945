package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/armgate/armgate/token"
)

func TestAdminUnmarshalCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		input string
		err   string
	}{
		{input: `armgate_admin`},
		{input: "armgate_admin {\n}"},
		{input: `armgate_admin foo`, err: "wrong argument count"},
		{input: "armgate_admin {\n\tadmin_key x\n}", err: "unrecognized subdirective: admin_key"},
		{input: "armgate_admin {\n\tfailure_limit 5 1m\n}"},
		{input: "armgate_admin {\n\tfailure_limit off\n}"},
		{input: "armgate_admin {\n\tfailure_limit 5\n}", err: "failure_limit takes <max> <window>, or off"},
		{input: "armgate_admin {\n\tfailure_limit 5 1m\n\tfailure_limit off\n}", err: "only once"},
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

// verdict is a scripted answer of a fake verifier (the limiter tests use
// it; the admin API's own handler tests live in package adminapi).
type verdict struct {
	cred   token.Credential
	result token.Status
	err    error
}

// TestMountRootLeadsToScreen: GET of the mount's root redirects to the
// screen relative to the mount; other methods and paths reach the API.
func TestMountRootLeadsToScreen(t *testing.T) {
	t.Parallel()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	m := mount{api: api, screen: api}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusFound},
		{http.MethodHead, "/", http.StatusFound},
		{http.MethodPost, "/", http.StatusTeapot},
		{http.MethodGet, "/users", http.StatusTeapot},
	} {
		rec := httptest.NewRecorder()
		m.serve(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
		if tc.want == http.StatusFound && rec.Header().Get("Location") != "ui/" {
			t.Errorf("%s %s: Location %q, want ui/", tc.method, tc.path, rec.Header().Get("Location"))
		}
	}
}
