package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
)

var answerExpired = verdict{http.StatusUnauthorized, "The access token expired"}

// TestExpiredRefusalCostsOneLookup: presenting an expired token again and
// again costs the database one lookup (expiry is final, so its refusal is
// cached like any other answer), where it used to cost one per request.
func TestExpiredRefusalCostsOneLookup(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, _ := openStore(t, dsn)
	p := startCaddy(t, "E", procConfig{DSN: dsn, ExtraApp: longTTL})
	id, tok := p.createToken("erin", "old")
	if _, err := pool.Exec(context.Background(), `UPDATE armgate.tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	before := p.metrics().Value("caddy_armgate_db_lookups_total")
	for i := range 200 {
		if got := p.verdictOf(tok); got != answerExpired {
			t.Fatalf("request %d: %v, want %v", i, got, answerExpired)
		}
	}
	if d := p.metrics().Value("caddy_armgate_db_lookups_total") - before; d > 1 {
		t.Errorf("200 requests with an expired token cost %v database lookups, want at most 1", d)
	}
}

// health reads p's /admin/healthz: the status and the listener's state.
func (p *caddyProc) health() (int, string) {
	p.t.Helper()
	r := p.get("/admin/healthz", "")
	var h struct{ Listener string }
	_ = json.Unmarshal(r.Body, &h)
	return r.Status, h.Listener
}

// TestStalledListener stops the listener's PostgreSQL backend with SIGSTOP:
// the connection hangs without closing. The heartbeat notices within twice
// its interval (/healthz says the listener is down, listener_connected and
// known_tokens_current go to 0); the listener cannot reconnect at once
// (its role may not log in for now, so the down state lasts long enough to
// observe), and a token revoked meanwhile by another process, still cached
// on the instance, is refused once the listener is back and has cleared
// the cache.
func TestStalledListener(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, store := openStore(t, dsn)
	ctx := context.Background()

	var b [6]byte
	_, _ = rand.Read(b[:])
	role := "listen_" + hex.EncodeToString(b[:])
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	const hb = 500 * time.Millisecond
	p := startCaddy(t, "S", procConfig{DSN: dsn, ExtraApp: fmt.Sprintf(
		"listen_database %q\n\t\tlistener_heartbeat %s\n\t\t%s", u.String(), hb, longTTL)})
	if status, l := p.health(); status != http.StatusOK || l != "up" {
		t.Fatalf("healthz before: %d, listener %q", status, l)
	}
	id, tok := p.createToken("stan", "cached")
	p.ensureCached(tok)

	var pid int
	if err := pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE usename = $1 AND application_name = 'armgate-listen'`, role).Scan(&pid); err != nil {
		t.Fatalf("the listener's backend: %v", err)
	}
	// Sessions already open keep working; new ones are refused.
	if _, err := pool.Exec(ctx, `ALTER ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	stopped := time.Now()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	var took time.Duration
	for {
		status, l := p.health()
		if status == http.StatusServiceUnavailable && l == "down" {
			took = time.Since(stopped)
			break
		}
		if time.Since(stopped) > 30*time.Second {
			t.Fatalf("healthz still %d, listener %q 30s after the backend stopped", status, l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("stalled listener reported down after %v (heartbeat %v)", took, hb)
	// The bound is twice the heartbeat (the log line shows what it was);
	// the test asserts no time limit beyond the 30 s that tells the heartbeat
	// from TCP keepalive (hours): shared test machines are too noisy for one.
	m := p.metrics()
	if m.Value("caddy_armgate_listener_connected") != 0 || m.Value("caddy_armgate_known_tokens_current") != 0 {
		t.Errorf("listener_connected %v, known_tokens_current %v while the listener is down; want 0, 0",
			m.Value("caddy_armgate_listener_connected"), m.Value("caddy_armgate_known_tokens_current"))
	}

	// Revoked by another process: this instance cannot hear it.
	if _, _, err := store.RevokeToken(ctx, "test", id, "while the listener was stalled"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ALTER ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	if !p.waitMetric("caddy_armgate_listener_connected", 30*time.Second, func(v float64) bool { return v == 1 }) {
		t.Fatal("listener not back 30s after logins were allowed again")
	}
	if status, l := p.health(); status != http.StatusOK || l != "up" {
		t.Errorf("healthz after: %d, listener %q", status, l)
	}
	if got := p.verdictOf(tok); got != answerRevoked {
		t.Errorf("token revoked while the listener was stalled: %v after it came back, want %v", got, answerRevoked)
	}
	var stillStopped int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&stillStopped); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped backend %d still listed: %d (it exits after SIGCONT: its client closed the socket)", pid, stillStopped)
}

// TestKnownTokensExact creates and deletes tokens through two instances,
// interleaved, each deleting tokens the other created too: afterwards both
// instances' known_tokens equal the rows that exist (the creating instance
// used to count its own token twice, and a deletion through the other left
// the second entry behind).
func TestKnownTokensExact(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, _ := openStore(t, dsn)
	a := startCaddy(t, "A", procConfig{DSN: dsn})
	b := startCaddy(t, "B", procConfig{DSN: dsn})
	procs := []*caddyProc{a, b}
	var ids []string
	for i := range 40 {
		creator := procs[i%2]
		id, _ := creator.createToken(fmt.Sprintf("user%d", i%4), fmt.Sprintf("t%d", i))
		ids = append(ids, id)
		if i%3 == 2 {
			// Delete an older token through the other instance, and now and
			// then the one just created through its creator.
			victim := ids[0]
			ids = ids[1:]
			procs[(i+1)%2].adminOK(http.StatusNoContent, http.MethodDelete, "/tokens/"+victim, "")
		}
		if i%7 == 6 {
			victim := ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			creator.adminOK(http.StatusNoContent, http.MethodDelete, "/tokens/"+victim, "")
		}
	}
	var rows int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM armgate.tokens`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(ids) {
		t.Fatalf("%d rows, want %d", rows, len(ids))
	}
	for _, p := range procs {
		ok := p.waitMetric("caddy_armgate_known_tokens", propagationWait, func(v float64) bool { return v == float64(rows) })
		if got := p.metrics().Value("caddy_armgate_known_tokens"); !ok || math.IsNaN(got) {
			t.Errorf("caddy %s: known_tokens %v, want %d (the rows that exist)", p.Name, got, rows)
		}
	}
}
