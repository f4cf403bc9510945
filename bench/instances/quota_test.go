package instances

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// BenchmarkQuotaSync measures a quota shared by two instances with
// `quota { sync 1s }`: one token, its quota a tenth of the requests sent,
// sent half to each instance at a fixed offered rate R for a few seconds
// (sub-benchmark rate=R), then at 10R with a fresh token and a ten times
// larger quota. The load is open-loop and rate-controlled: a ticker sends
// the requests that are due, whatever the answers, so the achieved rate is
// the offered one unless the machine cannot keep up (then it says so).
// Per rate it reports the achieved rate, the requests admitted beyond the
// quota against the README's bound, PostgreSQL's transactions per second
// (pg_stat_database of the benchmark's database: every session, so quota
// syncs, the listener and the flushes together, less the benchmark's own
// two readings) and the instances' quota syncs per second; the
// transactions must not grow with the rate. Settings: ARMGATE_QUOTA_RATE
// (R, default 40), ARMGATE_QUOTA_SECS (seconds per rate, default 10).
//
//	bash bench/quota.sh
func BenchmarkQuotaSync(b *testing.B) {
	rate := envInt(b, "ARMGATE_QUOTA_RATE", 40)
	secs := envInt(b, "ARMGATE_QUOTA_SECS", 10)
	procs, dsn := startInstances(b, 2, "quota {\n\t\t\tsync 1s\n\t\t}")
	pool, store := gatewayproc.OpenStore(b, dsn)

	// Idle: what the instances cost the database with no traffic. A
	// measurement interval, not a wait for a condition.
	c0 := readCounters(b, pool, procs)
	time.Sleep(time.Duration(secs) * time.Second)
	idle := readCounters(b, pool, procs).since(c0)
	b.Logf("idle: %.1f transactions/s, %.1f quota syncs/s", idle.xacts, idle.syncs)

	var results []quotaStep
	for _, r := range []int{rate, 10 * rate} {
		b.Run(fmt.Sprintf("rate=%d", r), func(b *testing.B) {
			var st quotaStep
			for b.Loop() {
				st = runQuotaStep(b, pool, store, procs, r, secs)
			}
			results = append(results, st)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(st.achieved, "req/s")
			b.ReportMetric(float64(st.admitted-st.quota), "overshoot")
			b.ReportMetric(float64(st.bound), "bound")
			b.ReportMetric(st.xacts, "xact/s")
			b.ReportMetric(st.syncs, "syncs/s")
		})
	}
	b.Logf("%8s %9s %7s %6s %9s %9s %6s %7s %8s %8s", "offered", "achieved", "sent", "quota", "admitted",
		"overshoot", "bound", "errors", "xact/s", "syncs/s")
	b.Logf("%8s %9s %7s %6s %9s %9s %6s %7s %8.1f %8.1f", "idle", "0", "-", "-", "-", "-", "-", "-", idle.xacts, idle.syncs)
	for _, st := range results {
		b.Logf("%8d %9.1f %7d %6d %9d %9d %6d %7d %8.1f %8.1f", st.offered, st.achieved, st.sent, st.quota,
			st.admitted, st.admitted-st.quota, st.bound, st.errors, st.xacts, st.syncs)
		if st.achieved < 0.95*float64(st.offered) {
			b.Logf("  offered %d req/s, achieved only %.1f: the machine did not keep up", st.offered, st.achieved)
		}
	}
	if len(results) == 2 {
		b.Logf("achieved step: %.2fx; transactions/s %.1f -> %.1f", results[1].achieved/results[0].achieved,
			results[0].xacts, results[1].xacts)
	}
}

// quotaStep is one rate's result.
type quotaStep struct {
	offered          int
	sent, quota      int64
	admitted, errors int64
	unlimited        int64 // admitted without RateLimit-Policy: the quota did not apply
	bound            int64
	achieved         float64 // requests answered per second
	xacts, syncs     float64 // per second
}

// runQuotaStep drives a fresh token with quota rate×secs/10 at rate
// requests/s for secs seconds, alternating between the instances.
func runQuotaStep(b *testing.B, pool *pgxpool.Pool, store *storage.Store, procs []*gatewayproc.Proc, rate, secs int) quotaStep {
	b.Helper()
	ctx := context.Background()
	st := quotaStep{offered: rate, quota: int64(rate * secs / 10)}
	t, plain, err := store.CreateToken(ctx, "bench", storage.NewToken{
		UserID: "bench", Name: fmt.Sprintf("q%d-%d", rate, time.Now().UnixNano()), Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 1000, CreateUser: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	// Set before any instance has seen the token, so its first lookup on
	// each carries the quota.
	lim := &quota.Limit{Requests: st.quota, Window: 24 * time.Hour}
	if _, _, err := store.SetTokenControls(ctx, "admin", t.ID, storage.TokenControls{RateLimit: lim}, nil); err != nil {
		b.Fatal(err)
	}

	n := rate * secs
	jobs := make(chan *gatewayproc.Proc, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for p := range jobs {
				r, err := p.Try(http.MethodGet, "/", plain)
				mu.Lock()
				switch {
				case err != nil:
					st.errors++
				case r.Status == http.StatusOK:
					st.admitted++
					if r.Header.Get("RateLimit-Policy") == "" {
						st.unlimited++
					}
				case r.Status != http.StatusTooManyRequests:
					st.errors++
				}
				mu.Unlock()
			}
		})
	}

	c0 := readCounters(b, pool, procs)
	begin := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	for sent := 0; sent < n; {
		now := <-tick.C
		due := min(n, int(now.Sub(begin).Seconds()*float64(rate))+1)
		for ; sent < due; sent++ {
			jobs <- procs[sent%len(procs)]
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	took := time.Since(begin)
	rates := readCounters(b, pool, procs).since(c0)
	st.sent = int64(n)
	st.achieved = float64(n-int(st.errors)) / took.Seconds()
	st.xacts, st.syncs = rates.xacts, rates.syncs
	// The README's bound: 2 × instances × rate per instance × sync, and
	// never more than (instances − 1) × quota.
	const syncSeconds = 1
	st.bound = min(int64(2*st.achieved*syncSeconds), int64(len(procs)-1)*st.quota)
	if st.unlimited > 0 {
		b.Errorf("%d requests were admitted without the quota's RateLimit-Policy", st.unlimited)
	}
	return st
}

// counters is one reading of the database's transactions (committed and
// rolled back, pg_stat_database) and the sum of the instances' quota syncs.
type counters struct {
	at           time.Time
	xacts, syncs float64
}

func readCounters(b *testing.B, pool *pgxpool.Pool, procs []*gatewayproc.Proc) counters {
	b.Helper()
	c := counters{at: time.Now()}
	if err := pool.QueryRow(context.Background(), `SELECT xact_commit + xact_rollback FROM pg_stat_database
		WHERE datname = current_database()`).Scan(&c.xacts); err != nil {
		b.Fatal(err)
	}
	for _, p := range procs {
		m, err := p.Scrape()
		if err != nil {
			b.Fatal(err)
		}
		c.syncs += m.Value("caddy_armgate_quota_syncs_total")
	}
	return c
}

// rates are per-second rates between two readings.
type rates struct{ xacts, syncs float64 }

// since returns the rates from c0 to c, less the reading's own transaction.
func (c counters) since(c0 counters) rates {
	d := c.at.Sub(c0.at).Seconds()
	return rates{xacts: (c.xacts - c0.xacts - 1) / d, syncs: (c.syncs - c0.syncs) / d}
}
