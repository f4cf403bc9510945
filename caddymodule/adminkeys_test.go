package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestAdminKeysCaddyfile: admin_key may repeat, and every key is kept.
func TestAdminKeysCaddyfile(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`armgate {
		database postgres://x
		admin_key {env.OLD}
		admin_key {file./run/new}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.AdminKeys, ","); got != "{env.OLD},{file./run/new}" {
		t.Errorf("admin keys %q", got)
	}
}

// TestAdminKeyLength: a key shorter than 32 characters once resolved fails
// provisioning (so `caddy validate` too) with an error that names its
// position and length, never the key.
func TestAdminKeyLength(t *testing.T) {
	long := strings.Repeat("k", 32)
	short := "short-admin-key-0123456789abcde" // 31 characters
	if len(short) != 31 {
		t.Fatalf("short key has %d characters", len(short))
	}
	t.Setenv("ARMGATE_TEST_KEY_LONG", long)
	t.Setenv("ARMGATE_TEST_KEY_SHORT", short)
	t.Setenv("ARMGATE_TEST_KEY_EMPTY", "")
	for _, tt := range []struct {
		name string
		app  map[string]any
		err  string // "" for none
	}{
		{"one long key", map[string]any{"admin_key": "{env.ARMGATE_TEST_KEY_LONG}"}, ""},
		{"two long keys", map[string]any{"admin_keys": []string{long, "{env.ARMGATE_TEST_KEY_LONG}"}}, ""},
		{"no key", map[string]any{}, ""},
		{"second key short", map[string]any{"admin_keys": []string{long, "{env.ARMGATE_TEST_KEY_SHORT}"}},
			"armgate: admin_key #2 is 31 characters; at least 32 are required"},
		{"literal short key", map[string]any{"admin_keys": []string{short}},
			"armgate: admin_key #1 is 31 characters"},
		{"old field first", map[string]any{"admin_key": long, "admin_keys": []string{long, short}},
			"armgate: admin_key #3 is 31 characters"},
		{"unset variable", map[string]any{"admin_key": "{env.ARMGATE_TEST_KEY_EMPTY}"},
			"armgate: admin_key #1 is 0 characters"},
		{"counts characters, not bytes", map[string]any{"admin_keys": []string{strings.Repeat("é", 31)}},
			"admin_key #1 is 31 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.app["database"] = "postgres://armgate@127.0.0.1:1/armgate?connect_timeout=1"
			cfg, err := json.Marshal(map[string]any{
				"admin": map[string]any{"disabled": true},
				"apps":  map[string]any{"armgate": tt.app},
			})
			if err != nil {
				t.Fatal(err)
			}
			var c caddy.Config
			if err := json.Unmarshal(cfg, &c); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&c)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("validate: %v, want an error containing %q", err, tt.err)
			case err != nil && strings.Contains(err.Error(), short):
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}
