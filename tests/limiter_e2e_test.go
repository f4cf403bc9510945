package tests

import (
	"net/http"
	"testing"
	"time"
)

// The failure limiter through a real Caddy: its state is per process,
// shared by every armgate_auth with the same settings and kept across
// config reloads, and it counts the address Caddy's client_ip names. The
// assertions use unknown tokens only: a blocked address is answered 429 for
// those whatever the order of the gateway's checks.

const limit3 = "failure_limit 3 1m"

// blockLoopback refuses three unknown tokens from g's client and checks
// that the fourth is answered 429.
func blockLoopback(t *testing.T, g *gateway, path string) {
	t.Helper()
	for i := 1; i <= 3; i++ {
		if r := g.get(path, wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
			t.Fatalf("unknown token #%d: status %d, want 401; body %s", i, r.Status, r.Body)
		}
	}
	if r := g.get(path, wellFormedUnknown(t)); r.Status != http.StatusTooManyRequests {
		t.Fatalf("unknown token #4: status %d, want 429; body %s", r.Status, r.Body)
	}
}

// TestFailureLimitSurvivesReload: an address blocked before a config
// reload is still blocked after it; another address is not.
func TestFailureLimitSurvivesReload(t *testing.T) {
	g := startGateway(t, gatewayConfig{AuthExtra: limit3})
	blockLoopback(t, g, "/v1/x")

	// A changed config (another port, another upstream) loaded into the
	// running Caddy: a reload, as through the admin endpoint's /load.
	g2 := startGateway(t, gatewayConfig{DSN: g.DSN, AuthExtra: limit3})
	if g2.URL == g.URL {
		t.Fatal("the reload did not change the config")
	}
	if r := g2.get("/v1/x", wellFormedUnknown(t)); r.Status != http.StatusTooManyRequests {
		t.Errorf("after the reload: status %d, want 429 (the block was lost); body %s", r.Status, r.Body)
	}
	if r := g2.from("127.0.0.2").get("/v1/x", wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
		t.Errorf("another address after the reload: status %d, want 401", r.Status)
	}
}

// TestFailureLimitSharedAcrossHandlers: two armgate_auth blocks with the
// same settings give an address one budget, not two.
func TestFailureLimitSharedAcrossHandlers(t *testing.T) {
	g := startGateway(t, gatewayConfig{AuthExtra: limit3,
		ExtraSite: "handle /other/* {\n\t\tarmgate_auth {\n\t\t\t" + limit3 + "\n\t\t}\n\t\trespond \"other\" 200\n\t}"})
	for i, path := range []string{"/v1/x", "/other/y", "/v1/x"} {
		if r := g.get(path, wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
			t.Fatalf("unknown token #%d on %s: status %d, want 401", i+1, path, r.Status)
		}
	}
	for _, path := range []string{"/other/y", "/v1/x"} {
		if r := g.get(path, wellFormedUnknown(t)); r.Status != http.StatusTooManyRequests {
			t.Errorf("%s after 3 refusals over both routes: status %d, want 429", path, r.Status)
		}
	}
}

// TestFailureLimitTrustedProxiesStrict: behind a trusted proxy with
// trusted_proxies_strict, Caddy takes the right-most untrusted
// X-Forwarded-For entry (the one the proxy appended), so a client that
// writes another address at the left neither gets that address blocked nor
// dodges its own block.
func TestFailureLimitTrustedProxiesStrict(t *testing.T) {
	g := startGateway(t, gatewayConfig{AuthExtra: limit3,
		ExtraGlobal: "servers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\ttrusted_proxies_strict\n\t}"})
	_, live := g.createToken("victim", "laptop", nil, time.Hour)
	const attacker, victim = "203.0.113.5", "198.51.100.7"
	// The test client plays the proxy (127.0.0.1 is trusted): it appends
	// the address it saw to what the client sent.
	via := func(xff, tok string) response {
		t.Helper()
		h := http.Header{}
		h.Set("X-Forwarded-For", xff)
		h.Set("Authorization", "Bearer "+tok)
		return g.do(http.MethodGet, "/v1/x", nil, h)
	}
	for i := 1; i <= 3; i++ {
		if r := via(victim+", "+attacker, wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
			t.Fatalf("attacker's unknown token #%d: status %d, want 401", i, r.Status)
		}
	}
	// The attacker is blocked under its own address, whatever it spoofs.
	for _, spoofed := range []string{victim, "192.0.2.99", "127.0.0.1"} {
		if r := via(spoofed+", "+attacker, wellFormedUnknown(t)); r.Status != http.StatusTooManyRequests {
			t.Errorf("attacker spoofing %s: status %d, want 429", spoofed, r.Status)
		}
	}
	// The address it named is not blocked.
	if r := via(victim, wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
		t.Errorf("victim's unknown token: status %d, want 401 (the attacker got it blocked)", r.Status)
	}
	if r := via(victim, live); r.Status != http.StatusOK {
		t.Errorf("victim's live token: status %d, want 200", r.Status)
	}
}
