package tests

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// limitedSite is a route behind armgate_auth with a failure limit of 3
// refusals per minute, for the tests that block an address.
const limitedSite = `handle /limited/* {
		armgate_auth {
			failure_limit 3 1m
		}
		respond "ok {http.auth.user.id}" 200
	}`

// knownCurrent is the metric that says the set of known tokens is current.
const knownCurrent = "caddy_armgate_known_tokens_current"

// newToken returns a well-formed token (valid checksum) that nobody created.
func newToken(t testing.TB) string {
	t.Helper()
	tok, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitKnownCurrent waits until p's set of known tokens is loaded.
func waitKnownCurrent(t testing.TB, p *caddyProc) {
	t.Helper()
	if !p.waitMetric(knownCurrent, 10*time.Second, func(v float64) bool { return v == 1 }) {
		t.Fatalf("caddy %s: the set of known tokens never became current", p.Name)
	}
}

// TestAbuseBlockedAddressKeepsExistingTokens: an address blocked for its
// unknown tokens still gets 200 for a live token, cached or not, and 401
// (not 429) for a revoked one; only its unknown tokens get 429.
func TestAbuseBlockedAddressKeepsExistingTokens(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	openStore(t, dsn)
	p := startCaddy(t, "A", procConfig{DSN: dsn, ExtraSite: limitedSite})
	waitKnownCurrent(t, p)
	_, cached := p.createToken("abby", "cached")
	_, fresh := p.createToken("abby", "fresh")
	revokedID, revoked := p.createToken("abby", "revoked")
	p.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+revokedID+"/revoke", `{"reason":"abuse test"}`)
	p.ensureCached(cached)

	for i := range 3 {
		if r := p.get("/limited/x", newToken(t)); r.Status != http.StatusUnauthorized {
			t.Fatalf("unknown token %d: %d, want 401", i+1, r.Status)
		}
	}
	if r := p.get("/limited/x", newToken(t)); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("unknown token from the blocked address: %d (Retry-After %q), want 429 with Retry-After",
			r.Status, r.Header.Get("Retry-After"))
	}
	lookups := p.metrics().Value("caddy_armgate_db_lookups_total")
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"cached live token", cached, http.StatusOK},
		{"live token not cached yet", fresh, http.StatusOK},
		{"revoked token", revoked, http.StatusUnauthorized},
		{"unknown token", newToken(t), http.StatusTooManyRequests},
		{"bad checksum", "arm_" + "0000000000000000000000000000000000000000", http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		if r := p.get("/limited/x", tt.tok); r.Status != tt.want {
			t.Errorf("%s from the blocked address: %d %s, want %d", tt.name, r.Status, r.Body, tt.want)
		}
	}
	if d := p.metrics().Value("caddy_armgate_db_lookups_total") - lookups; d < 2 {
		t.Errorf("%v lookups for the uncached live and revoked tokens, want at least 2", d)
	}
	// The address is still blocked for malformed headers.
	req, err := http.NewRequest(http.MethodGet, p.URL+"/limited/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer a b")
	if r, err := p.send(req); err != nil || r.Status != http.StatusTooManyRequests {
		t.Errorf("malformed header from the blocked address: %d %v, want 429", r.Status, err)
	}
}

// startStatsServer starts a PostgreSQL of the test's own with
// pg_stat_statements loaded and returns the DSN of a new database on it,
// where the extension is created: queries are then counted by PostgreSQL
// itself. The test is skipped where the module is not installed.
func startStatsServer(t *testing.T) string {
	t.Helper()
	s := testpg.StartPrivate(t)
	admin := s.DSN("postgres")
	pool, _ := openStore(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, `ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	s.Stop(t)
	s.Start(t)
	dsn := s.CreateDatabase(t)
	pool, _ = openStore(t, dsn)
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		t.Skipf("pg_stat_statements not available: %v", err)
	}
	return dsn
}

// lookupQueries returns how many times PostgreSQL ran the token lookup
// query (pg_stat_statements normalises its parameter).
func lookupQueries(t testing.TB, dsn string) int64 {
	t.Helper()
	pool, _ := openStore(t, dsn)
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
		WHERE query LIKE '%FROM armgate.tokens t JOIN armgate.users u%' AND query LIKE '%WHERE t.hash = $1%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// flood sends n distinct well-formed unknown tokens to p from workers
// goroutines and returns how many got each status.
func flood(t testing.TB, p *caddyProc, path string, n, workers int) map[int]int {
	t.Helper()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		counts = map[int]int{}
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				tok, err := token.Generate()
				if err != nil {
					t.Error(err)
					return
				}
				r, err := p.try(http.MethodGet, path, tok)
				mu.Lock()
				if err != nil {
					counts[-1]++
				} else {
					counts[r.Status]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

// TestAbuseUnknownFloodCostsNoQueries: with the listener up, 10,000 distinct
// well-formed unknown tokens cause at most the lookup budget's worth of
// queries (burst + rate × elapsed seconds), counted by PostgreSQL.
func TestAbuseUnknownFloodCostsNoQueries(t *testing.T) {
	t.Parallel()
	const rate, burst, n = 5, 20, 10_000
	dsn := startStatsServer(t)
	p := startCaddy(t, "F", procConfig{DSN: dsn, ExtraApp: "known_tokens {\n\t\t\tlookups_per_second 5\n\t\t\tburst 20\n\t\t}"})
	waitKnownCurrent(t, p)
	_, live := p.createToken("fred", "live")
	p.ensureCached(live)

	before := lookupQueries(t, dsn)
	refused := p.metrics().Value("caddy_armgate_absent_refused_total")
	start := time.Now()
	counts := flood(t, p, "/", n, 32)
	elapsed := time.Since(start)
	queries := lookupQueries(t, dsn) - before
	budget := burst + int64(rate*elapsed.Seconds()) + 1
	t.Logf("%d unknown tokens in %v: %v; %d lookup queries (budget %d)", n, elapsed.Round(time.Millisecond), counts, queries, budget)
	if counts[http.StatusUnauthorized] != n {
		t.Errorf("answers %v, want %d × 401", counts, n)
	}
	if queries > budget {
		t.Errorf("%d lookup queries for %d unknown tokens, want at most the budget %d", queries, n, budget)
	}
	if d := p.metrics().Value("caddy_armgate_absent_refused_total") - refused; d < float64(n)-float64(budget) {
		t.Errorf("absent_refused_total rose by %v, want at least %d", d, int64(n)-budget)
	}
	if r := p.get("/", live); r.Status != http.StatusOK {
		t.Errorf("live token after the flood: %d", r.Status)
	}
}

// TestAbuseCreatedElsewhereAccepted: a token created through instance A is
// accepted by instance B on its very first request, also while B refuses a
// flood of unknown tokens that has spent its lookup budget (B's set learns
// of the token through the creation's notification).
func TestAbuseCreatedElsewhereAccepted(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	openStore(t, dsn)
	// One lookup per 1000 s: once spent, only the set lets a token through.
	pc := procConfig{DSN: dsn, ExtraApp: "known_tokens {\n\t\t\tlookups_per_second 0.001\n\t\t\tburst 1\n\t\t}"}
	a, b := startCaddy(t, "A", pc), startCaddy(t, "B", pc)
	waitKnownCurrent(t, a)
	waitKnownCurrent(t, b)
	b.get("/", newToken(t)) // spends B's budget

	for i := range 5 {
		_, tok := a.createToken("cleo", "quiet-"+string(rune('a'+i)))
		if got := b.verdictOf(tok); got != answerLive {
			took, later, _ := b.waitVerdict(tok, answerLive)
			t.Errorf("token %d created on A, first request on B (no flood): %v (%v after %v)", i+1, got, later, took)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := b.try(http.MethodGet, "/", newToken(t)); err == nil {
					sent.Add(1)
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	wait.For(t, "200 flood requests", func() bool { return sent.Load() >= 200 })
	for i := range 5 {
		_, tok := a.createToken("cleo", "flood-"+string(rune('a'+i)))
		if got := b.verdictOf(tok); got != answerLive {
			t.Errorf("token %d created on A during a flood at B, first request on B: %v", i+1, got)
		}
	}
	stop()
	wg.Wait()
	if v := b.metrics().Value("caddy_armgate_absent_refused_total"); v < 100 {
		t.Errorf("absent_refused_total = %v during the flood: the set did not refuse the flood", v)
	}
}

// TestAbuseKnownSetReloadsAfterReconnect: when the listener's backend is
// terminated, the set is stale (unknown tokens are looked up) until the
// listener is back and the set reloaded; a token created while the
// listener was cut, whose notification nobody heard, is then accepted.
func TestAbuseKnownSetReloadsAfterReconnect(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, store := openStore(t, dsn)
	ctx := context.Background()
	p := startCaddy(t, "R", procConfig{DSN: dsn,
		ExtraApp: "known_tokens {\n\t\t\tlookups_per_second 0.001\n\t\t\tburst 1\n\t\t\treload_jitter 200ms\n\t\t}"})
	waitKnownCurrent(t, p)
	p.get("/", newToken(t)) // spends the budget

	old := listenerPIDs(armgateBackends(t, pool))
	if len(old) != 1 {
		t.Fatalf("armgate-listen backends: %v, want one", old)
	}
	var terminated bool
	if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 5000)`, old[0]).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d): %v %v", old[0], terminated, err)
	}
	// Created straight in the database while the listener (most likely)
	// waits out its reconnect delay: nobody hears this notification.
	_, missed, err := store.CreateToken(ctx, "test", storage.NewToken{
		UserID: "rory", Name: "missed", Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !wait.Until(10*time.Second, func() bool {
		now := listenerPIDs(armgateBackends(t, pool))
		return len(now) == 1 && now[0] != old[0]
	}) {
		t.Fatal("listener not back 10s after pg_terminate_backend")
	}
	waitKnownCurrent(t, p)
	if n := p.CountLog("known tokens loaded"); n != 2 {
		t.Errorf("%d log lines say the known tokens were loaded, want 2 (start and reconnect)", n)
	}
	if got := p.verdictOf(missed); got != answerLive {
		t.Errorf("token created while the listener was cut: %v after the reconnect, want %v", got, answerLive)
	}
	refused := p.metrics().Value("caddy_armgate_absent_refused_total")
	if got := p.verdictOf(newToken(t)); got != answerInvalid {
		t.Errorf("unknown token after the reconnect: %v", got)
	}
	if p.metrics().Value("caddy_armgate_absent_refused_total") != refused+1 {
		t.Error("an unknown token after the reconnect was not refused by the set")
	}
}
