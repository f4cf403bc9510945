package tests

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// from returns a copy of g whose client connects from the loopback address
// ip (any of 127.0.0.0/8 works on Linux), so that one test can be several
// clients as Caddy's client_ip sees them.
func (g *gateway) from(ip string) *gateway {
	c := *g
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	return &c
}

// TestAdminFailureLimitE2E: with armgate_admin's default failure limit (20
// refused credentials per minute), the 21st wrong key from one address is
// answered 429 with Retry-After; the valid key from that address still
// passes, and another address is unaffected.
func TestAdminFailureLimitE2E(t *testing.T) {
	g := startGateway(t, gatewayConfig{AdminFailureLimit: true})
	attacker, other := g.from("127.0.0.1"), g.from("127.0.0.2")
	wrong := strings.Repeat("x", len(testAdminKey))
	for i := 1; i <= 20; i++ {
		if r := attacker.adminAs(wrong, http.MethodGet, "/users", nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("wrong key #%d: status %d, want 401; body %s", i, r.Status, r.Body)
		}
	}
	r := attacker.adminAs(wrong, http.MethodGet, "/users", nil)
	if r.Status != http.StatusTooManyRequests || r.json(t)["error"] != "too_many_requests" {
		t.Fatalf("wrong key #21: status %d, want 429 too_many_requests; body %s", r.Status, r.Body)
	}
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", r.Header.Get("Retry-After"))
	}
	// No credential at all is refused 429 too.
	if r := attacker.adminAs("", http.MethodGet, "/users", nil); r.Status != http.StatusTooManyRequests {
		t.Errorf("no credential from the blocked address: status %d, want 429", r.Status)
	}
	if r := attacker.admin(http.MethodGet, "/users", nil); r.Status != http.StatusOK {
		t.Errorf("valid key from the blocked address: status %d, want 200; body %s", r.Status, r.Body)
	}
	// An admin-scope token is a valid credential too.
	_, adminTok := g.createToken("root", "ops", []string{"admin"}, time.Hour)
	if r := attacker.adminAs(adminTok, http.MethodGet, "/users", nil); r.Status != http.StatusOK {
		t.Errorf("admin token from the blocked address: status %d, want 200; body %s", r.Status, r.Body)
	}
	if r := other.adminAs(wrong, http.MethodGet, "/users", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("wrong key from another address: status %d, want 401", r.Status)
	}
	if r := other.admin(http.MethodGet, "/users", nil); r.Status != http.StatusOK {
		t.Errorf("valid key from another address: status %d, want 200", r.Status)
	}
	// The screen's static files are not limited.
	if r := attacker.get("/admin/ui/", ""); r.Status != http.StatusOK {
		t.Errorf("admin screen from the blocked address: status %d, want 200", r.Status)
	}
}

// TestAdminKeysE2E: every configured admin key is valid at once.
func TestAdminKeysE2E(t *testing.T) {
	second := "second-admin-key-for-rotation-0123456789"
	g := startGateway(t, gatewayConfig{ExtraApp: "admin_key " + second})
	for _, key := range []string{testAdminKey, second} {
		if r := g.adminAs(key, http.MethodGet, "/users", nil); r.Status != http.StatusOK {
			t.Errorf("key %d characters long: status %d, want 200", len(key), r.Status)
		}
	}
	if r := g.adminAs(second[:len(second)-1], http.MethodGet, "/users", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("a prefix of a key: status %d, want 401", r.Status)
	}
}

// TestAdminKeyTooShortValidate: `caddy validate` of the built binary fails
// for a 31-character admin key given through {env.*}, and its output names
// the key's position and length but never the key.
func TestAdminKeyTooShortValidate(t *testing.T) {
	bin := caddyBinary(t)
	short := "short-admin-key-0123456789abcde"
	if len(short) != 31 {
		t.Fatalf("the short key has %d characters", len(short))
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	src := `{
	admin off
	armgate {
		database "postgres://armgate@127.0.0.1:1/armgate?connect_timeout=1"
		admin_key {env.ARMGATE_TEST_KEY_OLD}
		admin_key {env.ARMGATE_TEST_KEY_NEW}
	}
}
http://127.0.0.1:1 {
	armgate_admin
}
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, newKey string
		ok           bool
	}{
		{"31 characters", short, false},
		{"32 characters", short + "f", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(),
				"ARMGATE_TEST_KEY_OLD="+testAdminKey, "ARMGATE_TEST_KEY_NEW="+tt.newKey)
			out, err := cmd.CombinedOutput()
			if tt.ok {
				if err != nil {
					t.Fatalf("validate: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate passed with a 31-character key:\n%s", out)
			}
			if !strings.Contains(string(out), "armgate: admin_key #2 is 31 characters; at least 32 are required") {
				t.Errorf("the error does not state the key and its length:\n%s", out)
			}
			if strings.Contains(string(out), short) {
				t.Errorf("the output shows the key:\n%s", out)
			}
		})
	}
}
