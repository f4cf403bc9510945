package caddymodule

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestWarnLaxTrustedProxies: of the servers of a provisioned http app, only
// the one with trusted_proxies and without trusted_proxies_strict is named.
func TestWarnLaxTrustedProxies(t *testing.T) {
	proxies := json.RawMessage(`{"source": "static", "ranges": ["10.0.0.0/8"]}`)
	// Provisioning does not listen; the addresses only need to differ.
	servers := map[string]any{
		"lax":     map[string]any{"listen": []string{"127.0.0.1:40001"}, "trusted_proxies": proxies},
		"strict":  map[string]any{"listen": []string{"127.0.0.1:40002"}, "trusted_proxies": proxies, "trusted_proxies_strict": 1},
		"direct":  map[string]any{"listen": []string{"127.0.0.1:40003"}},
		"lax_too": map[string]any{"listen": []string{"127.0.0.1:40004"}, "trusted_proxies": proxies},
	}
	httpApp, err := json.Marshal(map[string]any{"servers": servers})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{"http": httpApp},
	}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	warnLaxTrustedProxies(ctx, zap.New(core))
	var named []string
	for _, e := range logs.All() {
		if e.Level != zapcore.WarnLevel {
			t.Errorf("log at %v: %s", e.Level, e.Message)
		}
		named = append(named, e.ContextMap()["server"].(string))
	}
	if len(named) != 2 || named[0] != "lax" || named[1] != "lax_too" {
		t.Errorf("warned about %q, want [lax lax_too]", named)
	}
}
