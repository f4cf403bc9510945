package tests

// Several gateway instances on one database (see the README on cache, invalidation and scale): a change made
// through one instance's admin API reaches the others' caches; last use is
// written in batches; metrics move without per-token labels.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// longTTL makes the cache hold a token far longer than any test runs, so a
// refusal within a test can only come from an invalidation.
const longTTL = "cache {\n\t\t\tttl 10m\n\t\t}"

// propagationWait bounds how long a test waits for another instance to see
// a change. It is a bound for the wait loop, not a timing assertion.
const propagationWait = 5 * time.Second

// createToken creates the user if needed and a token for it through p's
// admin API; it returns the token id and plaintext.
func (p *caddyProc) createToken(user, name string, scopes ...string) (id, plain string) {
	p.t.Helper()
	if r := p.admin(http.MethodPut, "/users/"+user, `{}`); r.Status != http.StatusOK && r.Status != http.StatusCreated {
		p.t.Fatalf("PUT /admin/users/%s: %d %s", user, r.Status, r.Body)
	}
	body := map[string]any{"name": name}
	if len(scopes) > 0 {
		body["scopes"] = scopes
	}
	b, _ := json.Marshal(body)
	r := p.adminOK(http.StatusCreated, http.MethodPost, "/users/"+user+"/tokens", string(b))
	var created struct{ ID, Token string }
	if err := json.Unmarshal(r.Body, &created); err != nil || created.ID == "" || created.Token == "" {
		p.t.Fatalf("token create answered %s (%v)", r.Body, err)
	}
	return created.ID, created.Token
}

// logout revokes tok through p's admin API with the token itself.
func (p *caddyProc) logout(tok string) response {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.URL+"/admin/logout", nil)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	r, err := p.send(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

// verdict is what an instance answers for a token: the status and, for a
// refusal, the error_description of the challenge.
type verdict struct {
	status int
	desc   string
}

func (v verdict) String() string {
	if v.desc == "" {
		return http.StatusText(v.status)
	}
	return http.StatusText(v.status) + " (" + v.desc + ")"
}

var (
	answerLive        = verdict{http.StatusOK, ""}
	answerRevoked     = verdict{http.StatusUnauthorized, "The access token was revoked"}
	answerDeactivated = verdict{http.StatusUnauthorized, "The access token's user is deactivated"}
	answerInvalid     = verdict{http.StatusUnauthorized, "The access token is invalid"}
)

// verdictOf asks p about tok.
func (p *caddyProc) verdictOf(tok string) verdict {
	p.t.Helper()
	r := p.get("/", tok)
	v := verdict{status: r.Status}
	if _, after, ok := strings.Cut(r.Header.Get("WWW-Authenticate"), `error_description="`); ok {
		v.desc, _, _ = strings.Cut(after, `"`)
	}
	return v
}

// ensureCachedAs is ensureCached for a state that may be a refusal: it
// repeats passes until one makes no database lookup, checking every answer.
func (p *caddyProc) ensureCachedAs(want verdict, toks ...string) {
	p.t.Helper()
	wait.For(p.t, "caddy "+p.Name+" to serve the tokens from its cache", func() bool {
		before := p.metrics().Value("caddy_armgate_db_lookups_total")
		for _, tok := range toks {
			if got := p.verdictOf(tok); got != want {
				p.t.Fatalf("caddy %s before the change: %v, want %v", p.Name, got, want)
			}
		}
		return p.metrics().Value("caddy_armgate_db_lookups_total") == before
	})
}

// waitVerdict polls p tightly until it answers want for tok, for at most
// propagationWait; it returns how long that took and whether it happened.
func (p *caddyProc) waitVerdict(tok string, want verdict) (time.Duration, verdict, bool) {
	p.t.Helper()
	start := time.Now()
	for {
		got := p.verdictOf(tok)
		if got == want {
			return time.Since(start), got, true
		}
		if time.Since(start) > propagationWait {
			return time.Since(start), got, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestInstancesPropagateChanges runs two Caddy processes on one database.
// Every token is served from both caches; a change made through A's admin
// API is seen by A's very next request (A drops its entries before it
// answers) and by B after a bounded wait (B learns it over LISTEN). The
// cache ttl is 10 minutes, so B's refusal can only come from the
// invalidation.
func TestInstancesPropagateChanges(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	openStore(t, dsn)
	pc := procConfig{DSN: dsn, ExtraApp: longTTL}
	a, b := startCaddy(t, "A", pc), startCaddy(t, "B", pc)

	revokeID, revokeTok := a.createToken("rita", "revoke-me")
	_, dora1 := a.createToken("dora", "one")
	_, dora2 := a.createToken("dora", "two")
	deleteID, deleteTok := a.createToken("dan", "delete-me")
	_, logoutTok := a.createToken("lou", "logout")

	steps := []struct {
		name     string
		toks     []string
		from, to verdict
		change   func()
	}{
		{"revoke", []string{revokeTok}, answerLive, answerRevoked, func() {
			a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+revokeID+"/revoke", `{"reason":"propagation test"}`)
		}},
		{"reapprove", []string{revokeTok}, answerRevoked, answerLive, func() {
			a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+revokeID+"/reapprove", ``)
		}},
		{"deactivate user", []string{dora1, dora2}, answerLive, answerDeactivated, func() {
			a.adminOK(http.StatusOK, http.MethodPost, "/users/dora/deactivate", ``)
		}},
		{"reactivate user", []string{dora1, dora2}, answerDeactivated, answerLive, func() {
			a.adminOK(http.StatusOK, http.MethodPost, "/users/dora/reactivate", ``)
		}},
		{"delete", []string{deleteTok}, answerLive, answerInvalid, func() {
			a.adminOK(http.StatusNoContent, http.MethodDelete, "/tokens/"+deleteID, ``)
		}},
		{"logout", []string{logoutTok}, answerLive, answerRevoked, func() {
			if r := a.logout(logoutTok); r.Status != http.StatusNoContent {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a.use(t)
			b.use(t)
			a.ensureCachedAs(st.from, st.toks...)
			b.ensureCachedAs(st.from, st.toks...)
			st.change()
			for _, tok := range st.toks {
				if got := a.verdictOf(tok); got != st.to {
					t.Errorf("A, the next request after its own change: %v, want %v", got, st.to)
				}
			}
			for i, tok := range st.toks {
				took, got, ok := b.waitVerdict(tok, st.to)
				if !ok {
					t.Errorf("B, token %d: still %v after %v, want %v", i, got, propagationWait, st.to)
					continue
				}
				t.Logf("B answered %v for token %d after %v", got, i, took.Round(time.Microsecond))
			}
		})
	}
}

// TestMetricsMove scrapes a running Caddy's /metrics and checks that
// armgate's metrics are there and move with the traffic, and that nothing
// is labelled by token or user.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	openStore(t, dsn)
	p := startCaddy(t, "metrics", procConfig{DSN: dsn})
	const user = "metrics-user-5e1f"
	revokeID, revokeTok := p.createToken(user, "to-revoke")
	_, okTok := p.createToken(user, "allowed")
	_, adminOnly := p.createToken(user, "admin-only", "admin")

	p.ensureCached(okTok)
	before := p.metrics()
	for range 3 {
		if r := p.get("/", okTok); r.Status != 200 {
			t.Fatalf("live token: %d", r.Status)
		}
	}
	p.get("/", "")                   // missing
	p.get("/", " ")                  // malformed (empty token)
	p.get("/", wellFormedUnknown(t)) // invalid
	p.get("/", badChecksum(okTok))   // invalid, no lookup
	p.get("/", adminOnly)            // insufficient_scope
	p.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+revokeID+"/revoke", `{}`)
	p.get("/", revokeTok) // revoked
	// The instance's own NOTIFY comes back over LISTEN.
	const invalidations = "caddy_armgate_invalidations_received_total"
	if !p.waitMetric(invalidations, propagationWait, func(v float64) bool { return v > before.Value(invalidations) }) {
		t.Errorf("%s did not move after a revoke", invalidations)
	}
	after := p.metrics()

	decisions := func(result string) string {
		return `caddy_armgate_auth_decisions_total{result="` + result + `"}`
	}
	grew := map[string]float64{
		decisions("allowed"):                             3,
		decisions("missing"):                             1,
		decisions("malformed"):                           1,
		decisions("invalid"):                             2,
		decisions("insufficient_scope"):                  1,
		decisions("revoked"):                             1,
		"caddy_armgate_cache_hits_total":                 3,
		"caddy_armgate_cache_misses_total":               1,
		"caddy_armgate_db_lookups_total":                 1,
		"caddy_armgate_db_lookup_duration_seconds_count": 1,
		invalidations:                                    1,
	}
	for series, least := range grew {
		if !after.Has(series) {
			t.Errorf("%s is missing", series)
		} else if d := after.Value(series) - before.Value(series); d < least {
			t.Errorf("%s grew by %v, want at least %v", series, d, least)
		}
	}
	exact := map[string]float64{
		decisions("unavailable"):           0,
		"caddy_armgate_listener_connected": 1,
	}
	for series, want := range exact {
		if got := after.Value(series); !after.Has(series) || got != want {
			t.Errorf("%s = %v (present: %v), want %v", series, got, after.Has(series), want)
		}
	}
	for _, series := range []string{
		"caddy_armgate_pool_total_conns", "caddy_armgate_pool_idle_conns",
		"caddy_armgate_pool_acquired_conns", "caddy_armgate_pool_empty_acquire_total",
		`caddy_armgate_db_lookup_duration_seconds_bucket{le="+Inf"}`, "caddy_armgate_db_lookup_duration_seconds_sum",
		"caddy_armgate_cache_entries", "caddy_armgate_cache_bytes_estimated",
	} {
		if !after.Has(series) {
			t.Errorf("%s is missing", series)
		}
	}
	if after.Value("caddy_armgate_pool_total_conns") < 1 {
		t.Errorf("pool_total_conns = %v after lookups", after.Value("caddy_armgate_pool_total_conns"))
	}

	// No series of armgate's carries a token or user label, and no secret
	// or identifier appears anywhere in the exposition.
	raw, err := http.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Body.Close()
	var text bytes.Buffer
	if _, err := text.ReadFrom(raw.Body); err != nil {
		t.Fatal(err)
	}
	for series := range after {
		if !strings.HasPrefix(series, "caddy_armgate_") {
			continue
		}
		for l := range after[series].Labels {
			if l != "result" && l != "le" {
				t.Errorf("%s has label %q; armgate's metrics are labelled by result (and le) only", series, l)
			}
		}
	}
	for _, s := range []string{user, okTok, revokeTok, adminOnly, revokeID, okTok[:8]} {
		if strings.Contains(text.String(), s) {
			t.Errorf("/metrics contains %q", s)
		}
	}
}

// TestLastUsedBatched checks that last use is recorded without a write per
// request: with last_used_flush 1s, 100 requests lead to last_used_at being
// set by a handful of row updates, and a token used just before a graceful
// shutdown (SIGTERM) has its last use written even with an hour-long flush
// interval. Row updates are counted by a trigger rather than from
// pg_stat_user_tables, whose counters PostgreSQL 15 publishes up to seconds
// late and so could hide writes.
func TestLastUsedBatched(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, _ := openStore(t, dsn)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE public.token_row_updates (n bigint NOT NULL);
		INSERT INTO public.token_row_updates VALUES (0);
		CREATE FUNCTION public.count_token_row_update() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN UPDATE public.token_row_updates SET n = n + 1; RETURN NULL; END $$;
		CREATE TRIGGER count_row_update AFTER UPDATE ON armgate.tokens
			FOR EACH ROW EXECUTE FUNCTION public.count_token_row_update();`); err != nil {
		t.Fatal(err)
	}
	rowUpdates := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT n FROM public.token_row_updates`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	lastUsed := func(id string) *time.Time {
		var at *time.Time
		if err := pool.QueryRow(ctx, `SELECT last_used_at FROM armgate.tokens WHERE id = $1`, id).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}

	t.Run("interval", func(t *testing.T) {
		p := startCaddy(t, "flush-1s", procConfig{DSN: dsn, ExtraApp: "last_used_flush 1s"})
		id, tok := p.createToken("uma", "busy")
		writes := func() int64 { return int64(p.metrics().Value("caddy_armgate_last_used_writes_total")) }
		start := time.Now()
		updatesBefore, writesBefore := rowUpdates(), writes()
		const requests = 100
		for range requests {
			if r := p.get("/", tok); r.Status != 200 {
				t.Fatalf("live token: %d", r.Status)
			}
		}
		// Wait for a write the instance reports, and until every row update
		// seen is one of its writes (one token: one row per write).
		var at *time.Time
		var n, w int64
		wait.For(t, "a last-use write that sets last_used_at, with last_used_flush 1s", func() bool {
			at, n = lastUsed(id), rowUpdates()-updatesBefore
			w = writes() - writesBefore
			return at != nil && n == w
		})
		if at.Before(start.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("last_used_at = %v, want between %v and now", at, start)
		}
		elapsed := time.Since(start)
		t.Logf("%d requests over %v: %d row updates of armgate.tokens", requests, elapsed.Round(time.Millisecond), n)
		// At most one update per flush (and per second of use).
		if limit := int64(elapsed/time.Second) + 2; n < 1 || n > limit {
			t.Errorf("%d row updates for %d requests, want between 1 and %d", n, requests, limit)
		}
		// The admin API shows it.
		var shown struct {
			LastUsedAt *time.Time `json:"last_used_at"`
		}
		r := p.adminOK(http.StatusOK, http.MethodGet, "/tokens/"+id, "")
		if err := json.Unmarshal(r.Body, &shown); err != nil || shown.LastUsedAt == nil {
			t.Errorf("GET /admin/tokens/%s: last_used_at missing: %s", id, r.Body)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		p := startCaddy(t, "flush-1h", procConfig{DSN: dsn, ExtraApp: "last_used_flush 1h"})
		id, tok := p.createToken("uma", "at-shutdown")
		if r := p.get("/", tok); r.Status != 200 {
			t.Fatalf("live token: %d", r.Status)
		}
		if at := lastUsed(id); at != nil {
			t.Fatalf("last_used_at written before any flush: %v", at)
		}
		p.stop()
		if at := lastUsed(id); at == nil {
			t.Error("last_used_at not written at graceful shutdown")
		}
	})
}

// armgateBackends lists the PostgreSQL backends of armgate (the pool's and
// the listener's) connected to the database of pool, by pid.
func armgateBackends(t testing.TB, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) map[int32]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := q.Query(ctx, `SELECT pid, application_name FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'armgate%'`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[int32]string{}
	var pid int32
	var app string
	if _, err := pgx.ForEachRow(rows, []any{&pid, &app}, func() error { m[pid] = app; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// listenerPIDs returns the pids of the armgate-listen backends in bs.
func listenerPIDs(bs map[int32]string) []int32 {
	var pids []int32
	for pid, app := range bs {
		if app == "armgate-listen" {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}
