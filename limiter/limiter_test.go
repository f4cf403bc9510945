package limiter

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testclock"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newClock returns a settable clock that starts at epoch, a bucket
// boundary.
func newClock() *testclock.Clock { return testclock.New(epoch) }

func (l *Limiter) tracked() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.clients)
		s.mu.Unlock()
	}
	return n
}

// TestSlidingWindow: the previous bucket counts in proportion to the part of
// it the window still covers, so a client is held to about max refusals per
// window, also across bucket boundaries.
func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := New(Config{Max: 4, Window: time.Minute}, clk.Now)
	a := netip.MustParseAddr("198.51.100.1")
	failAt := func(d time.Duration) { clk.Set(epoch.Add(d)); l.Fail(a) }
	blockedAt := func(d time.Duration) bool {
		clk.Set(epoch.Add(d))
		_, b := l.Blocked(a)
		return b
	}
	for _, d := range []time.Duration{50 * time.Second, 55 * time.Second, 58 * time.Second} {
		failAt(d)
	}
	if blockedAt(59 * time.Second) {
		t.Fatal("blocked after 3 of 4")
	}
	// At 75s the estimate is 3*(45/60) + 1 = 3.25: under 4.
	failAt(75 * time.Second)
	if blockedAt(75 * time.Second) {
		t.Fatal("blocked at an estimate of 3.25")
	}
	// At 76s: 3*(44/60) + 2 = 4.2: blocked until 3*(1-f) + 2 < 4, f > 1/3: 80s.
	failAt(76 * time.Second)
	if !blockedAt(76 * time.Second) {
		t.Fatal("not blocked at an estimate of 4.2")
	}
	if !blockedAt(80*time.Second - time.Millisecond) {
		t.Error("released too early")
	}
	if blockedAt(80 * time.Second) {
		t.Error("still blocked after the estimate fell under the limit")
	}
	// One more refusal at once blocks again: the client keeps to ~4/min.
	failAt(81 * time.Second)
	if !blockedAt(81 * time.Second) {
		t.Error("not blocked again")
	}
}

func TestRetryAfterAndHorizon(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := New(Config{Max: 2, Window: 10 * time.Second}, clk.Now)
	a := netip.MustParseAddr("192.0.2.1")
	if l.horizon.Load() != 0 || l.MayBlock() {
		t.Fatal("horizon set with nobody blocked")
	}
	l.Fail(a)
	l.Fail(a)
	secs, blocked := l.Blocked(a)
	if !blocked || secs != 10 {
		t.Fatalf("blocked = %v, Retry-After %d, want true 10", blocked, secs)
	}
	if !l.MayBlock() {
		t.Fatal("horizon not set")
	}
	if _, blocked := l.Blocked(netip.MustParseAddr("192.0.2.2")); blocked {
		t.Error("another address is blocked")
	}
	clk.Add(time.Duration(secs) * time.Second)
	if _, blocked := l.Blocked(a); blocked {
		t.Fatal("still blocked after Retry-After")
	}
	if l.horizon.Load() != 0 {
		t.Error("horizon not reset once nobody is blocked")
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"203.0.113.5", "203.0.113.5"},
		{"::ffff:203.0.113.5", "203.0.113.5"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	}
	for _, tt := range tests {
		if got := Key(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("Key(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	// Addresses of one /64 share a budget.
	clk := newClock()
	l := New(Config{Max: 2}, clk.Now)
	l.Fail(netip.MustParseAddr("2001:db8:1:2::1"))
	l.Fail(netip.MustParseAddr("2001:db8:1:2:ffff::2"))
	if _, blocked := l.Blocked(netip.MustParseAddr("2001:db8:1:2::3")); !blocked {
		t.Error("one /64 is not counted as one client")
	}
	if _, blocked := l.Blocked(netip.MustParseAddr("2001:db8:1:3::1")); blocked {
		t.Error("the next /64 is blocked too")
	}
}

// TestMemoryBound: a flood from ever new addresses keeps at most MaxClients
// tracked, and forgets stale ones after the window.
func TestMemoryBound(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := New(Config{Max: 3, Window: time.Minute, MaxClients: 640}, clk.Now)
	for i := range 100_000 {
		l.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := l.tracked(); n > 640 || n < 320 {
		t.Errorf("tracked %d addresses, want at most 640 (and most of them)", n)
	}
	// Two windows later every entry is stale; the next refusals sweep them.
	clk.Add(2*time.Minute + time.Second)
	for i := range l.shards {
		for k := range l.shards[i].clients {
			l.Fail(k)
			break
		}
	}
	if n := l.tracked(); n > numShards {
		t.Errorf("tracked %d addresses after the sweep, want at most %d", n, numShards)
	}
}

// TestEvictionPrefersUnblocked: a full shard forgets unblocked addresses
// before blocked ones when it can see one among its sample.
func TestEvictionPrefersUnblocked(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := New(Config{Max: 2, Window: time.Minute, MaxClients: numShards * 4}, clk.Now)
	bad := netip.MustParseAddr("198.51.100.99")
	l.Fail(bad)
	l.Fail(bad)
	s := l.shard(bad)
	// Fill bad's shard with unblocked addresses, then overflow it a lot.
	added := 0
	for i := 0; added < 200; i++ {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if l.shard(a) == s {
			l.Fail(a)
			added++
		}
	}
	if len(s.clients) > l.perShard {
		t.Fatalf("shard holds %d, cap %d", len(s.clients), l.perShard)
	}
	// With a sample of 8 out of 4 entries, the blocked one is never the
	// one with the smallest block.
	if _, ok := s.clients[bad]; !ok {
		t.Error("the blocked address was evicted while unblocked ones were there")
	}
}

// TestNoAllocs: the check allocates nothing, whether or not someone is
// blocked, and neither does counting a tracked client.
func TestNoAllocs(t *testing.T) {
	l := New(Config{}, newClock().Now)
	a := netip.MustParseAddr("192.0.2.5")
	if n := testing.AllocsPerRun(100, func() { l.Blocked(a) }); n != 0 {
		t.Errorf("Blocked() with nobody blocked allocates %v", n)
	}
	for range DefaultMax {
		l.Fail(netip.MustParseAddr("192.0.2.6"))
	}
	if n := testing.AllocsPerRun(100, func() { l.Blocked(a) }); n != 0 {
		t.Errorf("Blocked() with someone blocked allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { l.Fail(a) }); n != 0 {
		t.Errorf("Fail() of a tracked client allocates %v", n)
	}
}

// TestConcurrent: many goroutines failing from many addresses never make a
// shard track more than its share of MaxClients (checked while they run
// and after), and blocking still works; run it with -race as well.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	const maxClients = 128
	l := New(Config{Max: 5, Window: time.Second, MaxClients: maxClients}, newClock().Now)
	perShard := (maxClients + numShards - 1) / numShards
	over := func() (int, bool) {
		for i := range l.shards {
			s := &l.shards[i]
			s.mu.Lock()
			n := len(s.clients)
			s.mu.Unlock()
			if n > perShard {
				return n, true
			}
		}
		return 0, false
	}
	var wg sync.WaitGroup
	var done atomic.Bool
	var worst atomic.Int64
	wg.Go(func() {
		for !done.Load() {
			if n, bad := over(); bad {
				worst.Store(int64(n))
			}
		}
	})
	var workers sync.WaitGroup
	for g := range 4 {
		workers.Go(func() {
			for i := range 5000 {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i % 300 >> 8), byte(i % 300)})
				if _, blocked := l.Blocked(a); !blocked {
					l.Fail(a)
				}
			}
		})
	}
	workers.Wait()
	done.Store(true)
	wg.Wait()
	if n := worst.Load(); n != 0 {
		t.Errorf("a shard tracked %d clients while running, its share is %d", n, perShard)
	}
	if n, bad := over(); bad {
		t.Errorf("a shard tracks %d clients, its share is %d", n, perShard)
	}
	if n := l.tracked(); n > maxClients {
		t.Errorf("tracked %d clients, at most %d", n, maxClients)
	}
	// A fresh client with Max refusals is blocked.
	a := netip.MustParseAddr("192.0.2.77")
	for range 5 {
		l.Fail(a)
	}
	if _, blocked := l.Blocked(a); !blocked {
		t.Error("not blocked after Max refusals")
	}
}
