package storage_test

import (
	"context"
	"github.com/armgate/armgate/internal/wait"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/storage"
)

// TestListenHeartbeat: a listener whose backend is stopped (SIGSTOP: the
// connection hangs without closing) notices within twice the heartbeat,
// reports the disconnect, abandons the connection and connects again; a
// notification sent meanwhile is not delivered on the hung connection, and
// the new one receives the next.
func TestListenHeartbeat(t *testing.T) {
	e := newEnv(t)
	cfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	const app = "listen-heartbeat-test"
	cfg.RuntimeParams["application_name"] = app
	const hb = 300 * time.Millisecond
	var (
		mu                    sync.Mutex
		events                []string
		connects, disconnects atomic.Int64
		disconnectedAt        atomic.Int64
		invalidations         atomic.Int64
	)
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		storage.Listen(ctx, cfg, storage.ListenHooks{
			Invalidate: func(storage.Invalidation) { invalidations.Add(1) },
			Connected:  func() { connects.Add(1); record("connected") },
			Disconnected: func() {
				disconnectedAt.Store(time.Now().UnixNano())
				disconnects.Add(1)
				record("disconnected")
			},
			LogError:  func(err error) { t.Log(err) },
			Heartbeat: hb,
		})
	})
	wait.For(t, "the first connect", func() bool { return connects.Load() == 1 })
	// Heartbeats come back without a disconnect.
	var pid int
	wait.For(t, "a heartbeat answered", func() bool {
		err := e.pool.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'idle' AND query LIKE 'SELECT pg_notify%'`, app).Scan(&pid)
		return err == nil
	})
	if disconnects.Load() != 0 {
		t.Fatalf("disconnected with a healthy backend: %v", events)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP backend %d: %v", pid, err)
	}
	stopped := time.Now()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	e.exec(t, `SELECT pg_notify($1, '{"all":true}')`, storage.Channel)

	wait.For(t, "the disconnect", func() bool { return disconnects.Load() == 1 })
	took := time.Duration(disconnectedAt.Load() - stopped.UnixNano())
	t.Logf("stalled listener noticed after %v (heartbeat %v)", took, hb)
	// The bound is twice the heartbeat (logged above); no time limit is
	// asserted beyond waitFor's, which tells the heartbeat from TCP keepalive.
	wait.For(t, "the reconnect", func() bool { return connects.Load() == 2 })
	if n := invalidations.Load(); n != 0 {
		t.Errorf("%d notifications delivered on the hung connection", n)
	}
	e.exec(t, `SELECT pg_notify($1, '{"all":true}')`, storage.Channel)
	wait.For(t, "a notification on the new connection", func() bool { return invalidations.Load() == 1 })
	var old int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2`, app, pid).Scan(&old); err != nil || old != 1 {
		t.Errorf("listen backends besides the stopped one: %d, %v; want 1", old, err)
	}
}
