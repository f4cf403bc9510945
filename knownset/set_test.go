package knownset

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/token"
)

// scanOf returns a ScanFunc that yields ps.
func scanOf(ps ...uint64) ScanFunc {
	return func(_ context.Context, fn func(uint64)) error {
		for _, p := range ps {
			fn(p)
		}
		return nil
	}
}

func load(t *testing.T, s *Set, ps ...uint64) {
	t.Helper()
	if err := s.Load(t.Context(), scanOf(ps...)); err != nil {
		t.Fatal(err)
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	h := token.Sum("arm_x")
	want := binary.BigEndian.Uint64(h[:8])
	if got := Prefix(h); got != want {
		t.Errorf("Prefix = %x, want %x", got, want)
	}
	if got, ok := PrefixOf(h[:]); !ok || got != want {
		t.Errorf("PrefixOf = %x %v, want %x", got, ok, want)
	}
	if _, ok := PrefixOf(h[:7]); ok {
		t.Error("PrefixOf(7 bytes) ok")
	}
}

func TestAddRemoveContains(t *testing.T) {
	t.Parallel()
	s := New()
	if s.Current() || s.Contains(42) || s.Absent(42) {
		t.Fatal("a new set is empty and not current")
	}
	load(t, s, 10, 20, 30)
	for _, tc := range []struct {
		name    string
		do      func()
		present []uint64
		absent  []uint64
	}{
		{"loaded", func() {}, []uint64{10, 20, 30}, []uint64{40, 11}},
		{"add", func() { s.Add(40) }, []uint64{10, 20, 30, 40}, []uint64{50}},
		{"remove", func() { s.Remove(20) }, []uint64{10, 30, 40}, []uint64{20}},
		{"remove absent is a no-op", func() { s.Remove(99) }, []uint64{10, 30, 40}, []uint64{99}},
		// Two tokens with one prefix: deleting one keeps the other.
		{"add a colliding token", func() { s.Add(30) }, []uint64{30}, nil},
		{"remove one of two", func() { s.Remove(30) }, []uint64{30}, nil},
		{"remove the second", func() { s.Remove(30) }, nil, []uint64{30}},
		// 0 and 1 are reserved slot values: still stored.
		{"reserved values", func() { s.Add(0); s.Add(1) }, []uint64{0, 1}, nil},
	} {
		tc.do()
		for _, p := range tc.present {
			if !s.Contains(p) || s.Absent(p) {
				t.Errorf("%s: %d absent", tc.name, p)
			}
		}
		for _, p := range tc.absent {
			if s.Contains(p) || !s.Absent(p) {
				t.Errorf("%s: %d present", tc.name, p)
			}
		}
	}
}

// TestGrow adds and removes far beyond the loaded size and checks every
// entry against a reference multiset.
func TestGrow(t *testing.T) {
	t.Parallel()
	s := New()
	load(t, s)
	ref := map[uint64]int{}
	r := rand.New(rand.NewPCG(1, 2))
	var keys []uint64
	for i := range 20000 {
		if i%3 == 2 && len(keys) > 0 {
			j := r.IntN(len(keys))
			p := keys[j]
			keys[j] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			s.Remove(p)
			ref[p]--
			continue
		}
		p := r.Uint64()
		if r.IntN(10) == 0 && len(keys) > 0 {
			p = keys[r.IntN(len(keys))] // a second token with the same prefix
		}
		keys = append(keys, p)
		s.Add(p)
		ref[p]++
	}
	n := 0
	for p, c := range ref {
		n += c
		if got := s.Contains(p); got != (c > 0) {
			t.Fatalf("Contains(%d) = %v with count %d", p, got, c)
		}
	}
	if s.Len() != n {
		t.Errorf("Len = %d, want %d", s.Len(), n)
	}
	if l := len(s.tab.Load().slots); float64(l) > float64(n)/0.4+16 {
		t.Errorf("%d slots for %d entries", l, n)
	}
}

// TestShrink: a set that lost most of its tokens gives the memory back.
func TestShrink(t *testing.T) {
	t.Parallel()
	s := New()
	ps := make([]uint64, 100000)
	for i := range ps {
		ps[i] = mix(uint64(i) + 2)
	}
	load(t, s, ps...)
	for _, p := range ps[10000:] {
		s.Remove(p)
	}
	for _, p := range ps[:10000] {
		if !s.Contains(p) {
			t.Fatalf("%x lost", p)
		}
	}
	if n := len(s.tab.Load().slots); n > 10000/0.4 {
		t.Errorf("%d slots left for 10000 tokens", n)
	}
}

func TestStaleCurrent(t *testing.T) {
	t.Parallel()
	s := New()
	load(t, s, 1000)
	if !s.Current() {
		t.Fatal("not current after a load")
	}
	s.MarkStale()
	if s.Current() || s.Absent(5) {
		t.Fatal("current after MarkStale")
	}
	if !s.Contains(1000) {
		t.Error("MarkStale dropped an entry")
	}
	load(t, s, 2000)
	if !s.Current() || s.Contains(1000) || !s.Contains(2000) {
		t.Error("a load replaces the entries and makes the set current")
	}

	// A failed load leaves the set stale with its entries.
	boom := errors.New("boom")
	err := s.Load(t.Context(), func(_ context.Context, fn func(uint64)) error { fn(3000); return boom })
	if !errors.Is(err, boom) || s.Current() || !s.Contains(2000) || s.Contains(3000) {
		t.Errorf("failed load: err %v, current %v", err, s.Current())
	}

	// MarkStale during a load: the load completes but the set stays stale.
	err = s.Load(t.Context(), func(_ context.Context, fn func(uint64)) error {
		if s.Current() {
			t.Error("current during a load")
		}
		fn(4000)
		s.MarkStale()
		return nil
	})
	if err != nil || s.Current() || !s.Contains(4000) {
		t.Errorf("load with MarkStale: err %v, current %v", err, s.Current())
	}
}

// TestLoadKeepsConcurrentAdds: creations notified while a scan runs are in
// the loaded set; deletions notified then stay (a false positive, never a
// false negative).
func TestLoadKeepsConcurrentAdds(t *testing.T) {
	t.Parallel()
	s := New()
	load(t, s, 7)
	s.Add(8)
	err := s.Load(t.Context(), func(_ context.Context, fn func(uint64)) error {
		fn(7)
		s.Add(100) // committed after the snapshot: not in the scan
		s.Add(7)   // a second token with prefix 7, also after the snapshot
		s.Remove(8)
		fn(8) // the scan saw token 8 before its deletion committed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []uint64{7, 8, 100} {
		if !s.Contains(p) {
			t.Errorf("%d lost", p)
		}
	}
	s.Remove(7)
	if !s.Contains(7) {
		t.Error("one deletion dropped both tokens with prefix 7")
	}
}

// TestLoadConcurrent races many adds from other goroutines against loads
// and readers: no add is ever lost.
func TestLoadConcurrent(t *testing.T) {
	t.Parallel()
	s := New()
	const writers, perWriter = 4, 2000
	var (
		mu    sync.Mutex
		added []uint64 // committed so far: the next scan includes them
		wg    sync.WaitGroup
		done  atomic.Bool
	)
	scan := func(_ context.Context, fn func(uint64)) error {
		mu.Lock()
		snap := append([]uint64(nil), added...)
		mu.Unlock()
		for _, p := range snap {
			fn(p)
		}
		return nil
	}
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				p := mix(uint64(w+1)<<32 | uint64(i+2))
				mu.Lock()
				added = append(added, p) // commit, then notify
				mu.Unlock()
				s.Add(p)
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for !done.Load() {
			s.Contains(rand.Uint64())
		}
	})
	var loads sync.WaitGroup
	loads.Go(func() {
		for range 20 {
			if err := s.Load(context.Background(), scan); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	loads.Wait()
	done.Store(true)
	readers.Wait()
	if !s.Current() {
		t.Error("not current after the loads")
	}
	for _, p := range added {
		if !s.Contains(p) {
			t.Fatalf("%x lost", p)
		}
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		want  int // allowed in an immediate burst of 100 calls
	}{
		{"default", DefaultRate, DefaultBurst, DefaultBurst},
		{"burst 1", 1, 1, 1},
		{"zero rate", 0, 10, 0},
		{"zero burst", 5, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(tc.rate, tc.burst)
			got := 0
			for range 100 {
				if b.Allow() {
					got++
				}
			}
			// At most one more token can accrue while the loop runs.
			if got < tc.want || got > tc.want+1 || tc.want == 0 && got != 0 {
				t.Errorf("allowed %d of 100, want %d", got, tc.want)
			}
		})
	}
	t.Run("refills", func(t *testing.T) {
		b := NewBudget(1000, 1)
		for b.Allow() {
		}
		wait.For(t, "the budget to refill", b.Allow)
	})
	t.Run("concurrent callers share it", func(t *testing.T) {
		b := NewBudget(0.001, 50)
		var n atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					if b.Allow() {
						n.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n.Load() != 50 {
			t.Errorf("allowed %d, want 50", n.Load())
		}
	})
}

func TestLoader(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		rows  = []uint64{1 << 40}
		scans atomic.Int64
		block = make(chan struct{})
	)
	scan := func(ctx context.Context, fn func(uint64)) error {
		scans.Add(1)
		mu.Lock()
		snap := append([]uint64(nil), rows...)
		mu.Unlock()
		if len(snap) == 3 { // the third state blocks until released
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		for _, p := range snap {
			fn(p)
		}
		return nil
	}
	s := New()
	l := NewLoader(s, scan, LoaderOptions{Jitter: 50 * time.Millisecond})
	defer l.Stop()
	l.Connected()
	wait.For(t, "the first load", s.Current)
	if !s.Contains(1 << 40) {
		t.Fatal("loaded set lacks the row")
	}
	l.Add(2 << 40)
	l.Disconnected()
	if s.Current() {
		t.Fatal("current after Disconnected")
	}
	mu.Lock()
	rows = append(rows, 2<<40)
	mu.Unlock()
	l.Connected() // a reconnect: after jitter
	wait.For(t, "the reload", s.Current)

	// A disconnect cancels a running load; the set stays stale.
	mu.Lock()
	rows = append(rows, 3<<40)
	mu.Unlock()
	before := scans.Load()
	l.Rescan()
	wait.For(t, "the blocked scan", func() bool { return scans.Load() > before })
	l.Disconnected()
	close(block)
	l.Stop() // waits for the cancelled load
	if s.Current() {
		t.Error("current after a cancelled load")
	}
}

// mix spreads small numbers over the 64 bits, like hash prefixes.
func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	return k ^ k>>33
}

func TestRefuse(t *testing.T) {
	t.Parallel()
	known, unknown := token.Sum("arm_known"), token.Sum("arm_unknown")
	s := New()
	b := NewBudget(0.001, 2)
	if s.Refuse(unknown, b) {
		t.Error("refused by a set that is not current")
	}
	load(t, s, Prefix(known))
	if s.Refuse(known, nil) {
		t.Error("refused a known token")
	}
	// The budget lets two lookups through, then refuses.
	got := []bool{s.Refuse(unknown, b), s.Refuse(unknown, b), s.Refuse(unknown, b), s.Refuse(unknown, nil)}
	if want := []bool{false, false, true, true}; !slices.Equal(got, want) {
		t.Errorf("Refuse(unknown) = %v, want %v", got, want)
	}
}

// TestAddLocal: a token added locally (by the instance that created it) is
// known at once but counted only when its notification arrives, whichever
// comes first, so that every instance counts it once; a deletion notified
// by any instance then leaves no entry.
func TestAddLocal(t *testing.T) {
	s := New()
	t0 := time.Now()
	now := t0
	s.now = func() time.Time { return now }
	load(t, s, 5)

	s.AddLocal(10)
	if s.Absent(10) || !s.Contains(10) || s.Len() != 1 {
		t.Fatalf("after a local add: absent %v, len %d; want known and uncounted", s.Absent(10), s.Len())
	}
	s.Add(10) // its own notification
	if s.Len() != 2 {
		t.Fatalf("len %d after the notification, want 2", s.Len())
	}
	s.Remove(10) // deleted, possibly through another instance
	if s.Len() != 1 || !s.Absent(10) {
		t.Fatalf("after the deletion: len %d, absent %v; want 1, absent", s.Len(), s.Absent(10))
	}

	// The notification first, then the local add: still counted once.
	s.Add(20)
	s.AddLocal(20)
	if s.Len() != 2 {
		t.Fatalf("len %d, want 2", s.Len())
	}
	s.Remove(20)
	if s.Len() != 1 {
		t.Fatalf("len %d after the deletion, want 1", s.Len())
	}
	// The local add that outlived its notification lapses.
	now = t0.Add(localTTL)
	if !s.Absent(20) {
		t.Error("a local add outlived its time")
	}

	// Bounded: the oldest local adds give way.
	for i := range maxLocal + 10 {
		s.AddLocal(uint64(1000 + i))
	}
	if got := len(*s.local.Load()); got != maxLocal {
		t.Errorf("%d local adds kept, want %d", got, maxLocal)
	}
	if s.Contains(1000) || !s.Contains(uint64(1000+maxLocal+9)) {
		t.Error("the oldest local adds were not the ones dropped")
	}
	if s.Len() != 1 {
		t.Errorf("local adds counted: len %d, want 1", s.Len())
	}
}
