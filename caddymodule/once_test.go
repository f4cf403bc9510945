package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestCaddyfileOnce: a block or subdirective that may appear once is
// accepted once and refused the second time, by every parser that reads
// one.
func TestCaddyfileOnce(t *testing.T) {
	for _, tc := range []struct {
		name, once, twice string
		u                 func() caddyfile.Unmarshaler
	}{
		{"auth failure_limit", "armgate_auth {\nfailure_limit off\n}", "armgate_auth {\nfailure_limit off\nfailure_limit 5 1m\n}",
			func() caddyfile.Unmarshaler { return new(AuthHandler) }},
		{"admin failure_limit", "armgate_admin {\nfailure_limit 5 1m\n}", "armgate_admin {\nfailure_limit 5 1m\nfailure_limit off\n}",
			func() caddyfile.Unmarshaler { return new(AdminHandler) }},
		{"self write_limit", "armgate_self {\nwrite_limit off\n}", "armgate_self {\nwrite_limit off\nwrite_limit 5 1m\n}",
			func() caddyfile.Unmarshaler { return new(SelfHandler) }},
		{"leaks", "armgate {\ndatabase x\nleaks {\ngithub off\n}\n}", "armgate {\ndatabase x\nleaks {\ngithub off\n}\nleaks {\ngithub off\n}\n}",
			func() caddyfile.Unmarshaler { return new(App) }},
	} {
		if err := tc.u().UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.once)); err != nil {
			t.Errorf("%s once: %v", tc.name, err)
		}
		err := tc.u().UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.twice))
		if err == nil || !strings.Contains(err.Error(), tc.name[strings.LastIndex(tc.name, " ")+1:]+" may appear only once") {
			t.Errorf("%s twice: got %v, want a may-appear-only-once error", tc.name, err)
		}
	}
}
