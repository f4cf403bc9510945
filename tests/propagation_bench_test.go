package tests

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// Environment of the propagation benchmark.
const (
	envBench       = "ARMGATE_BENCH"        // set to 1 to run it
	envBenchTokens = "ARMGATE_BENCH_TOKENS" // tokens to revoke; default 250
)

// TestPropagationBenchmark measures how long a revocation made through
// instance A takes to be refused by instance B, two Caddy processes on one
// PostgreSQL. Every token is cached on both first; then, one at a time, a
// goroutine polls B with the token back to back while the test revokes it
// through A's admin API, and the time from sending the revoke to B's first
// 401 is recorded. It prints p50, p99 and max; it asserts nothing about
// time. It is not a timed test and does not run by default:
//
//	ARMGATE_BENCH=1 go test -count=1 -run TestPropagationBenchmark -v ./tests
//
// (no -race: the race detector slows the polling client, not the gateway).
func TestPropagationBenchmark(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("set " + envBench + "=1 to run the propagation benchmark")
	}
	n := 250
	if v := os.Getenv(envBenchTokens); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envBenchTokens, v)
		}
	}
	dsn := testpg.NewDatabase(t)
	_, store := openStore(t, dsn)
	pc := procConfig{DSN: dsn, ExtraApp: longTTL}
	a, b := startCaddy(t, "A", pc), startCaddy(t, "B", pc)

	type tok struct{ id, plain string }
	toks := make([]tok, n)
	ctx := context.Background()
	for i := range toks {
		created, plain, err := store.CreateToken(ctx, "bench", storage.NewToken{
			UserID: fmt.Sprintf("bench-%03d", i/10), Name: fmt.Sprintf("t%d", i), Scopes: []string{token.ScopeAPI},
			ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = tok{created.ID, plain}
	}
	plains := make([]string, n)
	for i, tk := range toks {
		plains[i] = tk.plain
	}
	a.ensureCached(plains...)
	b.ensureCached(plains...)

	m0 := b.metrics()
	sinceSend := make([]time.Duration, 0, n)   // revoke sent through A → B refuses
	sinceAnswer := make([]time.Duration, 0, n) // A answered → B refuses (≤ 0: B was first)
	var polls int
	var pollTime time.Duration
	for i, tk := range toks {
		type result struct {
			at    time.Time
			polls int
			err   error
		}
		done := make(chan result, 1)
		polling := make(chan struct{})
		go func() {
			var res result
			deadline := time.Now().Add(propagationWait)
			for {
				r, err := b.try(http.MethodGet, "/", tk.plain)
				res.polls++
				if res.polls == 1 {
					close(polling)
				}
				switch {
				case err != nil:
					res.err = err
				case r.Status == http.StatusUnauthorized:
					res.at = time.Now()
				case r.Status != http.StatusOK:
					res.err = fmt.Errorf("B answered %d %s", r.Status, r.Body)
				case time.Now().After(deadline):
					res.err = fmt.Errorf("B still accepts the token %v after the revoke", propagationWait)
				default:
					continue
				}
				done <- res
				return
			}
		}()
		<-polling
		sent := time.Now()
		a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+tk.id+"/revoke", `{"reason":"benchmark"}`)
		answered := time.Now()
		res := <-done
		if res.err != nil {
			t.Fatalf("token %d: %v", i, res.err)
		}
		sinceSend = append(sinceSend, res.at.Sub(sent))
		sinceAnswer = append(sinceAnswer, res.at.Sub(answered))
		polls += res.polls
		pollTime += res.at.Sub(sent)
	}
	m1 := b.metrics()

	t.Logf("propagation of %d revocations from A to B (two Caddy processes, one PostgreSQL, loopback):", n)
	t.Logf("  revoke sent to A -> B refuses:     %s", formatPercentiles(sinceSend))
	t.Logf("  A answered the revoke -> B refuses: %s", formatPercentiles(sinceAnswer))
	t.Logf("  B polled every %v on average; B: %v invalidations received, %v database lookups",
		(pollTime / time.Duration(max(polls, 1))).Round(time.Microsecond),
		m1.Value("caddy_armgate_invalidations_received_total")-m0.Value("caddy_armgate_invalidations_received_total"),
		m1.Value("caddy_armgate_db_lookups_total")-m0.Value("caddy_armgate_db_lookups_total"))
	if p99 := durationQuantile(sinceSend, 0.99); p99 <= 100*time.Millisecond {
		t.Logf("  target p99 <= 100ms: met (%v)", p99.Round(time.Microsecond))
	} else {
		t.Logf("  target p99 <= 100ms: NOT met (%v)", p99.Round(time.Microsecond))
	}
}

// durationQuantile returns the q-durationQuantile of ds by the nearest-rank method.
func durationQuantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// formatPercentiles formats p50, p99 and max of ds.
func formatPercentiles(ds []time.Duration) string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v  p99 %v  max %v", r(durationQuantile(ds, 0.5)), r(durationQuantile(ds, 0.99)), r(durationQuantile(ds, 1)))
}
