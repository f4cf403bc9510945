package tests

import (
	"context"
	"fmt"
	"github.com/armgate/armgate/internal/wait"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/quota"
)

// TestQuotaOvershootBenchmark measures a quota shared by two instances: one
// token, its quota a tenth of the requests sent, sent half to each instance
// at a total rate R for a few seconds, then at 10R with a fresh token (and a
// ten times larger quota). For each rate it prints the requests admitted
// against the quota (the overshoot, against the README's bound instances ×
// rate per instance × sync) and the PostgreSQL transactions per second
// (pg_stat_database xact_commit, every session of the database: pool,
// listener, flushes), which must not grow with the request rate. It asserts
// nothing about time and does not run by default:
//
//	ARMGATE_BENCH=1 bash scripts/test.sh -count=1 -run TestQuotaOvershootBenchmark -v ./tests
//
// Settings: ARMGATE_QUOTA_RATE (R, default 100), ARMGATE_QUOTA_SECS
// (seconds per rate, default 10).
func TestQuotaOvershootBenchmark(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("set " + envBench + "=1 to run the quota benchmark")
	}
	rate, secs := 100, 10
	if v, err := strconv.Atoi(os.Getenv("ARMGATE_QUOTA_RATE")); err == nil && v > 0 {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("ARMGATE_QUOTA_SECS")); err == nil && v > 0 {
		secs = v
	}
	dsn := testpg.NewDatabase(t)
	pool, st := openStore(t, dsn)
	cfg := procConfig{DSN: dsn, ExtraApp: "quota {\n sync 1s\n}"}
	procs := []*caddyProc{startCaddy(t, "qa", cfg), startCaddy(t, "qb", cfg)}
	ctx := context.Background()
	xacts := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Idle baseline: what the instances cost the database with no traffic.
	x0 := xacts()
	start := time.Now()
	time.Sleep(time.Duration(secs) * time.Second) // a measurement interval, not a wait for a condition
	idle := float64(xacts()-x0-1) / time.Since(start).Seconds()
	t.Logf("idle: %.1f transactions/s", idle)

	t.Logf("%8s %8s %8s %9s %9s %8s %9s %11s", "rate/s", "sent", "quota", "admitted", "overshoot", "bound", "achieved", "xact/s")
	for _, r := range []int{rate, 10 * rate} {
		id, tok := procs[0].createToken("bench", fmt.Sprintf("q%d", r))
		q := int64(r * secs / 10)
		setControls(t, st, id, &quota.Limit{Requests: q, Window: 24 * time.Hour}, nil)
		for _, p := range procs { // until both carry the quota (these count)
			wait.Until(10*time.Second, func() bool { return p.get("/", tok).Header.Get("RateLimit-Policy") != "" })
		}
		var admitted, sent, errs atomic.Int64
		admitted.Store(2)
		x0 := xacts()
		begin := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256)
		interval := time.Second / time.Duration(r)
		n := r * secs
		for i := range n {
			if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(p *caddyProc) {
				defer func() { <-sem; wg.Done() }()
				resp, err := p.try(http.MethodGet, "/", tok)
				sent.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case resp.Status == http.StatusOK:
					admitted.Add(1)
				}
			}(procs[i%2])
		}
		wg.Wait()
		took := time.Since(begin).Seconds()
		xs := float64(xacts()-x0-1) / took
		achieved := float64(sent.Load()) / took
		// The README's bound: 2 × instances × rate per instance × sync,
		// at the rate achieved.
		bound := int64(2 * achieved * 1.0)
		t.Logf("%8d %8d %8d %9d %9d %8d %9.0f %11.1f  (errors %d)", r, sent.Load(), q, admitted.Load(),
			admitted.Load()-q, bound, achieved, xs, errs.Load())
	}
}
