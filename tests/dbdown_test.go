package tests

import (
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// TestDatabaseDown stops PostgreSQL under a running gateway: a token valid in
// the cache still passes, an uncached one gets 503 with Retry-After (never
// 200, never 401), and once the server is back everything recovers without
// restarting Caddy. The admin endpoint's /healthz (no credential) follows:
// 200 before, 503 with "database":"down" during, 200 after.
func TestDatabaseDown(t *testing.T) {
	srv := testpg.StartPrivate(t)
	g := startGateway(t, gatewayConfig{DSN: srv.CreateDatabase(t)})
	// The gateway migrates and connects its listener in the background
	// after the load, and the connect clears the cache: wait for healthz
	// to be up before caching a token.
	if !wait.Until(30*time.Second, func() bool { return g.get("/admin/healthz", "").Status == 200 }) {
		t.Fatalf("healthz not up after the start: %s", g.get("/admin/healthz", "").Body)
	}
	_, cached := g.createToken("gina", "cached", nil, time.Hour)
	_, uncached := g.createToken("gina", "uncached", nil, time.Hour)
	negative := wellFormedUnknown(t)
	if r := g.get("/x", cached); r.Status != 200 {
		t.Fatalf("before the outage: %d %s", r.Status, r.Body)
	}
	if r := g.get("/x", negative); r.Status != 401 {
		t.Fatalf("unknown token before the outage: %d %s", r.Status, r.Body)
	}
	health := func() (int, any) {
		r := g.get("/admin/healthz", "")
		return r.Status, r.json(t)["database"]
	}
	if status, db := health(); status != 200 || db != "up" {
		t.Fatalf("healthz before the outage: %d, database %v", status, db)
	}
	g.Pool.Reset() // the test's own pool, so it reconnects afterwards

	srv.Stop(t)
	// healthz pings at most once a second, so it may answer from its last
	// ping for up to that long.
	if !wait.Until(10*time.Second, func() bool { status, db := health(); return status == 503 && db == "down" }) {
		status, db := health()
		t.Errorf("healthz during the outage: %d, database %v; want 503, down", status, db)
	}
	before := g.Upstream.hits.Load()
	if r := g.get("/x", cached); r.Status != 200 {
		t.Errorf("cached valid token during the outage: %d %s", r.Status, r.Body)
	}
	for name, tok := range map[string]string{"uncached valid": uncached, "unknown": wellFormedUnknown(t)} {
		r := g.get("/x", tok)
		if r.Status != 503 {
			t.Errorf("%s token during the outage: %d %s, want 503", name, r.Status, r.Body)
		}
		if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("%s: Retry-After = %q", name, ra)
		}
		if r.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: 503 carries a challenge", name)
		}
		if body := r.json(t); body["error"] != "unavailable" {
			t.Errorf("%s: error = %v", name, body["error"])
		}
	}
	if got := g.Upstream.hits.Load() - before; got != 1 {
		t.Errorf("upstream hits during the outage = %d, want 1 (the cached token only)", got)
	}

	srv.Start(t)
	// The pool redials on demand; allow a few attempts for connections
	// that died with the old server to be discarded.
	var last response
	wait.Until(10*time.Second, func() bool {
		last = g.get("/x", uncached)
		if last.Status != 200 && last.Status != 503 {
			t.Fatalf("after the restart: %d %s", last.Status, last.Body)
		}
		return last.Status == 200
	})
	if last.Status != 200 {
		t.Fatalf("no recovery after the restart: %d %s", last.Status, last.Body)
	}
	if r := g.get("/x", wellFormedUnknown(t)); r.Status != 401 {
		t.Errorf("unknown token after recovery: %d", r.Status)
	}
	if !wait.Until(10*time.Second, func() bool { status, db := health(); return status == 200 && db == "up" }) {
		status, db := health()
		t.Errorf("healthz after recovery: %d, database %v; want 200, up", status, db)
	}
}
