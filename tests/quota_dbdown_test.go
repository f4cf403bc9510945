package tests

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// TestQuotaDatabaseDown: with PostgreSQL stopped under a running gateway
// (a server of this test's own), a cached token's quota keeps counting in
// the process: every request still lowers RateLimit's r by one, and the one
// past the quota is refused with 429 quota_exceeded. Once the server is
// back, the gateway recovers without a restart (an uncached token passes,
// /healthz is up), the counts made during the outage reach PostgreSQL, and
// the exhausted quota stays exhausted.
func TestQuotaDatabaseDown(t *testing.T) {
	srv := testpg.StartPrivate(t)
	dsn := srv.CreateDatabase(t)
	pool, _ := openStore(t, dsn)
	// A cache ttl longer than the test, so that the token stays cached
	// through the outage whatever the machine's speed.
	p := startCaddy(t, "quota-dbdown", procConfig{DSN: dsn, ExtraApp: "cache {\n ttl 10m\n}\nquota {\n sync 200ms\n}"})

	const quota = 20
	p.adminOK(http.StatusCreated, http.MethodPut, "/users/dora", `{}`)
	var created struct{ ID, Token string }
	r := p.adminOK(http.StatusCreated, http.MethodPost, "/users/dora/tokens", `{"name":"twenty","rate_limit":{"requests":20,"window":"24h"}}`)
	if err := json.Unmarshal(r.Body, &created); err != nil || created.Token == "" {
		t.Fatalf("creating the token: %s (%v)", r.Body, err)
	}
	_, fresh := p.createToken("dora", "fresh") // never used before the outage

	// remaining sends one request with the token and returns RateLimit's r
	// and t for the token's policy (the status must be want).
	remaining := func(when string, want int) (rem, reset int64) {
		t.Helper()
		r := p.get("/", created.Token)
		if r.Status != want {
			t.Fatalf("%s: %d %s, want %d", when, r.Status, r.Body, want)
		}
		for _, it := range parseRateLimit(t, r.Header, "RateLimit") {
			if it.name == "token" {
				return it.params["r"], it.params["t"]
			}
		}
		t.Fatalf("%s: no token item in RateLimit %q", when, r.Header.Values("RateLimit"))
		return 0, 0
	}

	// Use part of the quota before the outage, until the token is served
	// from the cache.
	rem, reset := remaining("the first request", http.StatusOK)
	if reset < 300 {
		t.Skipf("the 24-hour quota window ends in %d s, within this test", reset)
	}
	if rem != quota-1 {
		t.Fatalf("the first request: r=%d, want %d", rem, quota-1)
	}
	p.ensureCached(created.Token)
	rem, _ = remaining("before the outage", http.StatusOK)
	if rem < 2 || rem > quota-3 {
		t.Fatalf("before the outage: r=%d after at least 3 requests; the test needs 2 or more left", rem)
	}

	health := func() (int, any) {
		r := p.get("/admin/healthz", "")
		var h struct{ Database string }
		_ = json.Unmarshal(r.Body, &h)
		return r.Status, h.Database
	}
	pool.Reset()
	srv.Stop(t)
	if !wait.Until(10*time.Second, func() bool { s, db := health(); return s == http.StatusServiceUnavailable && db == "down" }) {
		s, db := health()
		t.Fatalf("healthz after stopping PostgreSQL: %d, database %q; want 503, down", s, db)
	}
	if r := p.get("/", fresh); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("an uncached token during the outage: %d %s, want 503 (the database is really down)", r.Status, r.Body)
	}

	// The rest is still counted, one by one, and the next is refused.
	t.Logf("PostgreSQL down with r=%d of %d left", rem, quota)
	for rem > 0 {
		next, _ := remaining("during the outage", http.StatusOK)
		if next != rem-1 {
			t.Fatalf("during the outage: r=%d after r=%d, want %d", next, rem, rem-1)
		}
		rem = next
	}
	r = p.get("/", created.Token)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("during the outage, the request past the quota: %d %s, want 429", r.Status, r.Body)
	}
	var prob struct{ Error string }
	if err := json.Unmarshal(r.Body, &prob); err != nil || prob.Error != "quota_exceeded" || r.Header.Get("Retry-After") == "" {
		t.Errorf("the refusal during the outage: %s, Retry-After %q", r.Body, r.Header.Get("Retry-After"))
	}

	// Back up: the gateway recovers without a restart.
	srv.Start(t)
	var last response
	if !wait.Until(15*time.Second, func() bool { last = p.get("/", fresh); return last.Status == http.StatusOK }) {
		t.Fatalf("an uncached token after the restart: %d %s, want 200", last.Status, last.Body)
	}
	if !wait.Until(10*time.Second, func() bool { s, db := health(); return s == http.StatusOK && db == "up" }) {
		s, db := health()
		t.Errorf("healthz after the restart: %d, database %q; want 200, up", s, db)
	}
	// The outage's counts reach PostgreSQL with the next syncs.
	var stored int64
	if !wait.Until(10*time.Second, func() bool {
		err := pool.QueryRow(t.Context(), `SELECT coalesce(sum(count), 0) FROM armgate.quota_counters
			WHERE kind = 't' AND subject = $1`, created.ID).Scan(&stored)
		return err == nil && stored >= quota
	}) {
		t.Errorf("PostgreSQL holds %d requests of the token after the outage, want at least %d", stored, quota)
	}
	t.Logf("after the restart PostgreSQL holds %d requests of the token", stored)
	if r := p.get("/", created.Token); r.Status != http.StatusTooManyRequests {
		t.Errorf("the exhausted token after the restart: %d %s, want 429", r.Status, r.Body)
	}
}
