package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestEventsConfig: the events block resolves its placeholders and refuses
// a bad webhook or secret with an error that never holds the secret.
func TestEventsConfig(t *testing.T) {
	const good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw5y0bYjoSZ/o="
	t.Setenv("ARMGATE_TEST_WEBHOOK_SECRET", good)
	repl := caddy.NewReplacer()
	if c, err := (*EventsConfig)(nil).gatewayConfig(repl); c != nil || err != nil {
		t.Fatalf("no events block: %v, %v", c, err)
	}
	c, err := (&EventsConfig{Webhook: "https://hooks.example.com/x", Secret: "{env.ARMGATE_TEST_WEBHOOK_SECRET}",
		ExpiringNotice: -1}).gatewayConfig(repl)
	if err != nil || c.Secret != good || c.ExpiringNotice >= 0 {
		t.Fatalf("gatewayConfig = %+v, %v", c, err)
	}
	for _, bad := range []EventsConfig{
		{Secret: good},
		{Webhook: "hooks.example.com", Secret: good},
		{Webhook: "https://hooks.example.com/x"},
		{Webhook: "https://hooks.example.com/x", Secret: "whsec_c2hvcnQ="},
		{Webhook: "https://hooks.example.com/x", Secret: "not-a-whsec-secret-but-long-enough-to-matter"},
		{Webhook: "https://hooks.example.com/x", Secret: good, RetryMin: -1},
	} {
		_, err := bad.gatewayConfig(repl)
		if err == nil {
			t.Errorf("%+v accepted", bad)
			continue
		}
		if bad.Secret != "" && strings.Contains(err.Error(), strings.TrimPrefix(bad.Secret, "whsec_")) {
			t.Errorf("the error holds the secret: %v", err)
		}
	}
}
