package caddymodule

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestSelfUnmarshalCaddyfile: every armgate_self option, parsed and refused.
func TestSelfUnmarshalCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		input, user string
		origins     []string
		limit       *WriteLimit
		err         string
	}{
		{input: `armgate_self`},
		{input: "armgate_self {\n\tuser {http.request.header.X-User-Id}\n}", user: "{http.request.header.X-User-Id}"},
		{input: "armgate_self {\n\torigins https://a.example http://b.example:8080\n\torigins https://c.example\n}",
			origins: []string{"https://a.example", "http://b.example:8080", "https://c.example"}},
		{input: "armgate_self {\n\twrite_limit 5 10m\n}", limit: &WriteLimit{Max: 5, Window: caddy.Duration(10 * time.Minute)}},
		{input: "armgate_self {\n\twrite_limit off\n}", limit: &WriteLimit{Off: true}},
		{input: `armgate_self foo`, err: "wrong argument count"},
		{input: "armgate_self {\n\tuser\n}", err: "wrong argument count"},
		{input: "armgate_self {\n\tuser a b\n}", err: "wrong argument count"},
		{input: "armgate_self {\n\tuser a\n\tuser b\n}", err: "only once"},
		{input: "armgate_self {\n\tscopes admin\n}", err: "unrecognized subdirective: scopes"},
		{input: "armgate_self {\n\torigins https://a.example/\n}", err: "scheme://host"},
		{input: "armgate_self {\n\torigins *\n}", err: "scheme://host"},
		{input: "armgate_self {\n\torigins\n}", err: "wrong argument count"},
		{input: "armgate_self {\n\twrite_limit 5\n}", err: "<max> <window>"},
		{input: "armgate_self {\n\twrite_limit -1 1h\n}", err: "positive number"},
		{input: "armgate_self {\n\twrite_limit 5 0s\n}", err: "at least 1s"},
		{input: "armgate_self {\n\twrite_limit 5 1h\n\twrite_limit off\n}", err: "only once"},
	} {
		var h SelfHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.input, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.input, err, tt.err)
		case tt.err != "":
		case h.User != tt.user:
			t.Errorf("%q: user %q, want %q", tt.input, h.User, tt.user)
		case strings.Join(h.Origins, " ") != strings.Join(tt.origins, " "):
			t.Errorf("%q: origins %q", tt.input, h.Origins)
		case tt.limit != nil && (h.WriteLimit == nil || *h.WriteLimit != *tt.limit):
			t.Errorf("%q: write limit %+v, want %+v", tt.input, h.WriteLimit, tt.limit)
		}
	}
}

// TestSelfUser: the user option is resolved per request with the request's
// placeholders; one that is not set resolves to "" (401 from the API).
func TestSelfUser(t *testing.T) {
	for _, tt := range []struct {
		option, header, authUser, want string
	}{
		{option: defaultSelfUser, authUser: "alice", want: "alice"},
		{option: defaultSelfUser, header: "bob", want: ""},
		{option: "{http.request.header.X-User-Id}", header: "bob", want: "bob"},
		{option: "{http.request.header.X-User-Id}", want: ""},
		{option: "carol", want: "carol"},
	} {
		r := httptest.NewRequest("GET", "/tokens", nil)
		if tt.header != "" {
			r.Header.Set("X-User-Id", tt.header)
		}
		repl := caddyhttp.NewTestReplacer(r)
		if tt.authUser != "" {
			repl.Set("http.auth.user.id", tt.authUser)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		h := SelfHandler{User: tt.option}
		if got := h.user(r); got != tt.want {
			t.Errorf("%s with header %q: %q, want %q", tt.option, tt.header, got, tt.want)
		}
	}
	if got := (&SelfHandler{User: defaultSelfUser}).user(httptest.NewRequest("GET", "/", nil)); got != "" {
		t.Errorf("without a replacer: %q", got)
	}
}
