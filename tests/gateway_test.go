package tests

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

const (
	realmChallenge = `Bearer realm="ARM API"`
	genericInvalid = `Bearer realm="ARM API", error="invalid_token", error_description="The access token is invalid"`
)

// wellFormedUnknown returns a token with a valid checksum that no database
// knows.
func wellFormedUnknown(t testing.TB) string {
	t.Helper()
	tok, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// badChecksum flips the last checksum character of tok.
func badChecksum(tok string) string {
	last := tok[len(tok)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return tok[:len(tok)-1] + string(repl)
}

// TestRequestPath covers every row of the README's table of answers through a running
// Caddy: status, WWW-Authenticate, JSON body, and that refusals never reach
// the upstream.
func TestRequestPath(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	ctx := context.Background()

	_, live := g.createToken("alice", "live", nil, time.Hour)
	revokedTok, revoked := g.createToken("alice", "revoked", nil, time.Hour)
	if _, _, err := g.Store.RevokeToken(ctx, "test", revokedTok.ID, "test"); err != nil {
		t.Fatal(err)
	}
	_, deactivated := g.createToken("bob", "deact", nil, time.Hour)
	if _, _, err := g.Store.SetUserActive(ctx, "test", "bob", false); err != nil {
		t.Fatal(err)
	}
	expiredTok, expired := g.createToken("carol", "expired", nil, time.Hour)
	if _, err := g.Pool.Exec(ctx, `UPDATE armgate.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, expiredTok.ID); err != nil {
		t.Fatal(err)
	}
	deletedTok, deleted := g.createToken("carol", "deleted", nil, time.Hour)
	if _, err := g.Store.DeleteToken(ctx, "test", deletedTok.ID); err != nil {
		t.Fatal(err)
	}
	_, adminOnly := g.createToken("dave", "admin-only", []string{token.ScopeAdmin}, time.Hour)

	tests := []struct {
		name      string
		auth      []string // Authorization header values
		status    int
		challenge string // exact WWW-Authenticate; "" means absent
		errCode   string
	}{
		{"no header", nil, 401, realmChallenge, "unauthorized"},
		{"other scheme", []string{"Basic YWxpY2U6cHc="}, 401, realmChallenge, "unauthorized"},
		{"empty value", []string{""}, 400, realmChallenge + `, error="invalid_request"`, "invalid_request"},
		{"bare Bearer", []string{"Bearer"}, 400, realmChallenge + `, error="invalid_request"`, "invalid_request"},
		{"Bearer and spaces", []string{"Bearer    "}, 400, realmChallenge + `, error="invalid_request"`, "invalid_request"},
		{"extra part", []string{"Bearer " + live + " extra"}, 400, realmChallenge + `, error="invalid_request"`, "invalid_request"},
		{"two headers", []string{"Bearer " + live, "Bearer " + live}, 400, realmChallenge + `, error="invalid_request"`, "invalid_request"},
		{"garbage", []string{"Bearer not-a-token"}, 401, genericInvalid, "invalid_token"},
		{"bad checksum", []string{"Bearer " + badChecksum(live)}, 401, genericInvalid, "invalid_token"},
		{"unknown", []string{"Bearer " + wellFormedUnknown(t)}, 401, genericInvalid, "invalid_token"},
		{"deleted", []string{"Bearer " + deleted}, 401, genericInvalid, "invalid_token"},
		{"revoked", []string{"Bearer " + revoked}, 401, realmChallenge + `, error="invalid_token", error_description="The access token was revoked"`, "invalid_token"},
		{"deactivated", []string{"Bearer " + deactivated}, 401, realmChallenge + `, error="invalid_token", error_description="The access token's user is deactivated"`, "invalid_token"},
		{"expired", []string{"Bearer " + expired}, 401, realmChallenge + `, error="invalid_token", error_description="The access token expired"`, "invalid_token"},
		{"lacks scope", []string{"Bearer " + adminOnly}, 403, realmChallenge + `, error="insufficient_scope", scope="api"`, "insufficient_scope"},
		{"live", []string{"Bearer " + live}, 200, "", ""},
		{"live, lower-case scheme and tabs", []string{"  bearer\t\t" + live + "  "}, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := g.Upstream.hits.Load()
			r := g.do(http.MethodGet, "/v1/things", nil, http.Header{"Authorization": tt.auth})
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			if got := r.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			reached := g.Upstream.hits.Load() - before
			if tt.status != 200 {
				if reached != 0 {
					t.Errorf("a refused request reached the upstream")
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				body := r.json(t)
				if body["error"] != tt.errCode {
					t.Errorf("error = %v, want %q", body["error"], tt.errCode)
				}
				if msg, _ := body["message"].(string); msg == "" {
					t.Errorf("no message in %s", r.Body)
				}
				for _, secret := range []string{live, revoked, deactivated, expired, deleted, adminOnly} {
					if strings.Contains(string(r.Body), secret) || strings.Contains(tt.challenge, secret) {
						t.Errorf("the response echoes a token")
					}
				}
				return
			}
			if reached != 1 {
				t.Errorf("upstream hits = %d, want 1", reached)
			}
		})
	}
}

// TestIdentityReachesUpstream checks the placeholders and header_up: the
// upstream sees who is calling and never the token.
func TestIdentityReachesUpstream(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok, plain := g.createToken("user.42@arm", "ci pipeline", nil, time.Hour)
	r := g.get("/v1/echo", plain)
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	got := r.json(t)
	want := map[string]string{"user_id": "user.42@arm", "token_id": tok.ID, "token_name": "ci pipeline", "authorization": "", "path": "/v1/echo"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("upstream saw %s = %v, want %q", k, got[k], v)
		}
	}
	if h := g.Upstream.lastHeader(); h.Get("Authorization") != "" {
		t.Errorf("Authorization reached the upstream")
	}
}

// TestCustomScope: armgate_auth { scope admin } refuses api-only tokens with
// a challenge that names the scope.
func TestCustomScope(t *testing.T) {
	g := startGateway(t, gatewayConfig{Scope: "admin"})
	_, apiTok := g.createToken("erin", "api", nil, time.Hour)
	_, both := g.createToken("erin", "both", []string{token.ScopeAPI, token.ScopeAdmin}, time.Hour)
	r := g.get("/x", apiTok)
	if r.Status != 403 || r.Header.Get("WWW-Authenticate") != realmChallenge+`, error="insufficient_scope", scope="admin"` {
		t.Fatalf("api token on an admin route: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	if r := g.get("/x", both); r.Status != 200 {
		t.Fatalf("api+admin token: %d %s", r.Status, r.Body)
	}
}

// TestExpiredWhileCached: a token that expires while it sits in the cache is
// refused from the first request after its expiry.
func TestExpiredWhileCached(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	// A short lifetime, doubled when a slow machine let the token expire
	// before its first request was answered.
	var (
		tok   storage.Token
		plain string
	)
	for lifetime := time.Second; ; lifetime *= 2 {
		tok, plain = g.createToken("frank", "short "+lifetime.String(), nil, lifetime)
		r := g.get("/x", plain)
		if r.Status == 200 {
			break
		}
		if r.Status != 401 || !time.Now().After(tok.ExpiresAt) || lifetime > 30*time.Second {
			t.Fatalf("fresh token: %d %s", r.Status, r.Body)
		}
	}
	// Poll until it is refused; a request sent after the expiry must never
	// be served.
	refused := wait.Until(10*time.Second, func() bool {
		sent := time.Now()
		r := g.get("/x", plain)
		switch {
		case r.Status == 401:
			return true
		case r.Status != 200:
			t.Fatalf("token near its expiry: %d %s", r.Status, r.Body)
		case sent.After(tok.ExpiresAt):
			t.Fatalf("a request sent %v after the expiry got 200", sent.Sub(tok.ExpiresAt))
		}
		return false
	})
	if !refused {
		t.Fatal("the expired token is still served 10s later")
	}
}

// TestFailureLimit: after failure_limit refused tokens from one address the
// client gets 429 with Retry-After for a token that does not exist; the
// refusal never reaches the upstream. A live token from the same address
// still gets through (tests/abuse_test.go covers the rest).
func TestFailureLimit(t *testing.T) {
	g := startGateway(t, gatewayConfig{AuthExtra: "failure_limit 3 1m", ExtraSite: "handle /metrics {\n\t\tmetrics\n\t}"})
	metrics := func() promtext.Samples {
		r := g.get("/metrics", "")
		m, err := promtext.Parse(bytes.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		if !m.Has("caddy_armgate_db_lookups_total") {
			t.Fatalf("no caddy_armgate_db_lookups_total in /metrics: %.300s", r.Body)
		}
		return m
	}
	// The live token is created behind the gateway's back: wait for the
	// set of known tokens, which then learns of it by notification.
	if !wait.Until(10*time.Second, func() bool { return metrics().Value("caddy_armgate_known_tokens_current") == 1 }) {
		t.Fatal("the set of known tokens never became current")
	}
	_, live := g.createToken("hank", "live", nil, time.Hour)
	for i := range 3 {
		if r := g.get("/x", wellFormedUnknown(t)); r.Status != 401 {
			t.Fatalf("refusal %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	if before := metrics().Value("caddy_armgate_db_lookups_total"); before < 3 {
		t.Fatalf("db lookups before the limit = %v, want at least the 3 refused tokens (the lookup budget)", before)
	}
	hits := g.Upstream.hits.Load()
	r := g.get("/x", wellFormedUnknown(t))
	if r.Status != 429 {
		t.Fatalf("unknown token after the limit: %d %s, want 429", r.Status, r.Body)
	}
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if body := r.json(t); body["error"] != "too_many_requests" {
		t.Errorf("error = %v", body["error"])
	}
	if g.Upstream.hits.Load() != hits {
		t.Error("a limited request reached the upstream")
	}
	if r := g.get("/x", live); r.Status != 200 {
		t.Errorf("live token from the blocked address: %d %s, want 200", r.Status, r.Body)
	}
}
