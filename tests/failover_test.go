package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// TestFailover runs two gateway instances on a multi-host DSN (a primary and
// its streaming standby, target_session_attrs=read-write), crashes the
// primary under load and promotes the standby. Through the gap: no 200 for
// an unknown or a revoked token, cached live tokens keep 200, requests that
// need the database get 503 (never 401 for a valid token). After the
// promotion, without restarting anything: lookups, admin calls and the
// invalidation listener work on the new primary. It logs the gap (primary
// stop → first 200 for an uncached token) and makes no timing assertion.
func TestFailover(t *testing.T) {
	t.Parallel()
	primary := testpg.StartPrivate(t)
	dbDSN := primary.CreateDatabase(t)
	db, err := testpg.DatabaseName(dbDSN)
	if err != nil {
		t.Fatal(err)
	}
	migrateOnce(t, dbDSN)
	standby := primary.StartStandby(t)
	dsn := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=%s user=postgres sslmode=disable "+
		"target_session_attrs=read-write connect_timeout=2", primary.Port(), standby.Port(), db)

	a := startCaddy(t, "A", procConfig{DSN: dsn, ExtraApp: longTTL})
	b := startCaddy(t, "B", procConfig{DSN: dsn, ExtraApp: longTTL})

	_, cached := a.createToken("ops", "cached")
	revokedID, revoked := a.createToken("ops", "revoked")
	_, probe := a.createToken("ops", "probe") // never requested before the stop: uncached
	forBID, forB := a.createToken("ops", "for-b")
	a.ensureCached(cached, revoked)
	a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+revokedID+"/revoke", `{"reason":"test"}`)
	a.ensureCachedAs(answerRevoked, revoked)
	// Replication is asynchronous: let the standby catch up, or the crash
	// could lose the revocation (see docs/production.md).
	primary.WaitReplayed(t, standby)

	var n int
	var nMu sync.Mutex
	load := startLoad(a, 4, func() (string, string) {
		nMu.Lock()
		defer nMu.Unlock()
		n++
		switch n % 3 {
		case 0:
			return "cached", cached
		case 1:
			return "revoked", revoked
		default:
			tok, err := token.Generate() // a fresh one each time: never negatively cached
			if err != nil {
				return "unknown", "" // no token: a refusal all the same
			}
			return "unknown", tok
		}
	})

	t.Cleanup(func() { load.stop() }) // on an early failure; stopping twice is harmless

	stopAt := time.Now()
	primary.StopImmediate(t)
	stoppedAt := time.Now()
	probes := make(chan []loadSample, 1)
	unavailable := make(chan struct{})
	go func() { probes <- probeUntilOK(a, probe, 60*time.Second, unavailable) }()
	// Promote only once the gap is visible: the uncached token got a 503.
	select {
	case <-unavailable:
	case p := <-probes:
		t.Fatalf("the uncached token got no 503 with the primary down: %s", tallySamples(p))
	}
	promoteAt := time.Now()
	standby.Promote(t)
	promotedAt := time.Now()
	probed := <-probes
	samples := load.stop()
	t.Logf("load on A: %s", tallySamples(samples))

	errs := 0
	report := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, s := range samples {
		at := s.start.Sub(stopAt)
		if s.err != nil {
			report("%s token at %v: %v", s.kind, at, s.err)
			continue
		}
		switch s.kind {
		case "unknown", "revoked":
			if s.status == http.StatusOK {
				report("%s token got 200 at %v after the stop", s.kind, at)
			}
		case "cached":
			// Until the promotion nothing can drop A's cache (its listener
			// is down); afterwards the cache is cleared when the listener
			// reconnects, and the token may need the database once.
			if s.end.Before(promoteAt) && s.status != http.StatusOK {
				report("cached live token got %d during the gap (at %v)", s.status, at)
			} else if s.status != http.StatusOK && s.status != http.StatusServiceUnavailable {
				report("cached live token got %d at %v", s.status, at)
			}
		}
	}
	if errs > 10 {
		t.Errorf("%d more errors not listed", errs-10)
	}
	var firstOK time.Time
	gapStatuses := map[int]int{}
	for _, s := range probed {
		if s.err != nil {
			t.Errorf("uncached token: %v", s.err)
			continue
		}
		if s.status == http.StatusOK {
			firstOK = s.end
			break
		}
		gapStatuses[s.status]++
		if s.status != http.StatusServiceUnavailable {
			t.Errorf("uncached valid token got %d during the gap, want 503", s.status)
		}
	}
	if gapStatuses[http.StatusServiceUnavailable] == 0 {
		t.Error("the uncached valid token never got 503 during the gap")
	}
	if firstOK.IsZero() {
		t.Fatalf("the uncached valid token never got 200 after the promotion (%v)", gapStatuses)
	}
	t.Logf("failover gap (primary stop → first 200 for an uncached token): %v; "+
		"pg_ctl stop -m immediate took %v, pg_ctl promote -w took %v, promotion done → first 200: %v; "+
		"uncached token answers during the gap: %v",
		firstOK.Sub(stopAt).Round(time.Millisecond), stoppedAt.Sub(stopAt).Round(time.Millisecond),
		promotedAt.Sub(promoteAt).Round(time.Millisecond), firstOK.Sub(promotedAt).Round(time.Millisecond), gapStatuses)

	// An admin call works on the new primary.
	newID, newTok := createTokenEventually(a, "ops", "after-failover")
	if r := a.get("/", newTok); r.Status != http.StatusOK {
		t.Errorf("token created after the failover: %d %s", r.Status, r.Body)
	}
	if newID == "" {
		t.Fatal("no token id")
	}
	if got := a.verdictOf(revoked); got != answerRevoked {
		t.Errorf("revoked token after the failover: %v", got)
	}

	// B's listener moves to the new primary: a revocation made through A
	// reaches B's cache (ttl 10m, so only the notification can refuse it).
	b.use(t)
	if !b.waitMetric("caddy_armgate_listener_connected", 30*time.Second, func(v float64) bool { return v == 1 }) {
		t.Fatal("B's listener did not reconnect after the promotion")
	}
	// B's pool may still hold connections to the old primary: each costs one
	// 503 (never a 401) before the pool dials the new primary.
	if warm := probeUntilOK(b, forB, 30*time.Second, nil); warm[len(warm)-1].status != http.StatusOK {
		t.Fatalf("B never answered 200 for a live token after the failover: %s", tallySamples(warm))
	} else {
		for _, s := range warm {
			if s.err != nil || (s.status != http.StatusOK && s.status != http.StatusServiceUnavailable) {
				t.Errorf("B, live token after the failover: %d %v", s.status, s.err)
			}
		}
	}
	b.ensureCached(forB)
	before := b.metrics().Value("caddy_armgate_invalidations_received_total")
	a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+forBID+"/revoke", `{}`)
	took, got, ok := b.waitVerdict(forB, answerRevoked)
	if !ok {
		t.Fatalf("B still answers %v for a token revoked through A after the failover", got)
	}
	if after := b.metrics().Value("caddy_armgate_invalidations_received_total"); after <= before {
		t.Errorf("B received no invalidation (%v → %v)", before, after)
	}
	t.Logf("revocation through A refused by B %v later", took.Round(time.Millisecond))
}

// migrateOnce applies the schema on dsn with a short-lived pool.
func migrateOnce(t testing.TB, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := storage.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
}

// probeUntilOK requests tok on p until it gets a 200 (or max passes),
// pausing briefly between requests; it returns every request made.
// It closes unavailable at the first 503.
func probeUntilOK(p *caddyProc, tok string, max time.Duration, unavailable chan struct{}) []loadSample {
	var out []loadSample
	seen503 := false
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		s := loadSample{kind: "probe", start: time.Now()}
		r, err := p.try(http.MethodGet, "/", tok)
		s.end, s.status, s.err = time.Now(), r.Status, err
		out = append(out, s)
		if err == nil && r.Status == http.StatusOK {
			break
		}
		if err == nil && r.Status == http.StatusServiceUnavailable && !seen503 && unavailable != nil {
			seen503 = true
			close(unavailable)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return out
}

// createTokenEventually creates a token through p's admin API, retrying
// while it answers 503 (the pool may still hold connections to the old
// primary), for at most 30 s.
func createTokenEventually(p *caddyProc, user, name string) (id, plain string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := p.admin(http.MethodPost, "/users/"+user+"/tokens", `{"name":"`+name+`"}`)
		if r.Status == http.StatusCreated {
			var created struct{ ID, Token string }
			if err := json.Unmarshal(r.Body, &created); err != nil {
				p.t.Fatal(err)
			}
			return created.ID, created.Token
		}
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			p.t.Fatalf("caddy %s: creating a token: %d %s", p.Name, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
