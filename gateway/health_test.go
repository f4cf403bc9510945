package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testclock"
)

// TestHealthPingsAtMostOncePerInterval: 1000 calls spread over one
// interval, from many goroutines, ping the database at most twice (one
// ping per interval they touch), and the cached answer follows the ping.
func TestHealthPingsAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Unix(1_800_000_000, 0))
	var pings atomic.Int64
	var fail atomic.Bool
	c := &pingCache{now: clock.Now, ping: func(context.Context) error {
		pings.Add(1)
		if fail.Load() {
			return errors.New("down")
		}
		return nil
	}}
	const calls = 1000
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !c.up(t.Context()) {
				t.Error("reported down while the ping succeeds")
			}
		}()
		if i%100 == 99 {
			// 10 steps of 99 ms: the calls span just under one interval.
			clock.Add(99 * time.Millisecond)
		}
	}
	wg.Wait()
	if n := pings.Load(); n < 1 || n > 2 {
		t.Fatalf("%d calls within one interval made %d pings, want 1 or 2", calls, n)
	}

	// A new interval pings again, and a failed ping reads as down for the
	// whole interval.
	fail.Store(true)
	clock.Add(HealthInterval)
	before := pings.Load()
	for range 100 {
		if c.up(t.Context()) {
			t.Fatal("reported up after the ping failed")
		}
	}
	if n := pings.Load() - before; n != 1 {
		t.Fatalf("100 calls in a fresh interval made %d pings, want 1", n)
	}
}

// TestHealthConcurrentCallersShareOnePing: callers arriving while a ping
// is under way wait for it instead of pinging too.
func TestHealthConcurrentCallersShareOnePing(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Unix(1_800_000_000, 0))
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var pings atomic.Int64
	c := &pingCache{now: clock.Now, ping: func(context.Context) error {
		pings.Add(1)
		started <- struct{}{}
		<-release
		return nil
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.up(t.Context()) }()
	<-started
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); c.up(t.Context()) }()
	}
	close(release)
	wg.Wait()
	if n := pings.Load(); n != 1 {
		t.Fatalf("51 concurrent callers made %d pings, want 1", n)
	}
}

// TestHealthCallerCancelDoesNotPoisonCache: a caller that hangs up does not
// make the shared result "down".
func TestHealthCallerCancelDoesNotPoisonCache(t *testing.T) {
	t.Parallel()
	c := &pingCache{ping: func(ctx context.Context) error { return ctx.Err() }}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if !c.up(ctx) {
		t.Fatal("a canceled caller's ping read as down")
	}
}
