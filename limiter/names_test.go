package limiter

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNamesTake: the event that reaches the budget is taken, the next one
// is refused with the time until the sliding window lets one through, and
// names do not share a budget.
func TestNamesTake(t *testing.T) {
	clk := newClock()
	n := NewNames(Config{Max: 3, Window: time.Hour}, clk.Now)
	for i := range 3 {
		if secs, ok := n.Take("alice"); !ok {
			t.Fatalf("event %d refused (retry after %d)", i+1, secs)
		}
	}
	clk.Set(epoch.Add(10 * time.Minute))
	secs, ok := n.Take("alice")
	if ok {
		t.Fatal("the 4th event within the window was taken")
	}
	// All three are in the bucket that started at 0: the block ends when
	// the next bucket starts, 50 minutes later.
	if secs != 50*60 {
		t.Errorf("retry after %d s, want %d", secs, 50*60)
	}
	// A refused event is not counted: at the end of the block one more is
	// taken, then the window is full again.
	if _, ok := n.Take("bob"); !ok {
		t.Error("bob refused for alice's events")
	}
	if _, ok := n.Take("alice "); !ok {
		t.Error(`"alice " refused for alice's events`)
	}
	clk.Set(epoch.Add(time.Hour))
	if _, ok := n.Take("alice"); !ok {
		t.Error("refused after the block ended")
	}
	if _, ok := n.Take("alice"); ok {
		t.Error("taken right after: the window still holds about three")
	}
}

// TestNamesConcurrent: check and count are one step, so many concurrent
// events of one name take exactly the budget.
func TestNamesConcurrent(t *testing.T) {
	clk := newClock()
	n := NewNames(Config{Max: 25, Window: time.Hour}, clk.Now)
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if _, ok := n.Take("alice"); ok {
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	if got := taken.Load(); got != 25 {
		t.Errorf("%d of 200 concurrent events taken, want 25", got)
	}
}

// TestNamesMemoryBounded: many names stay within MaxClients.
func TestNamesMemoryBounded(t *testing.T) {
	n := NewNames(Config{Max: 5, Window: time.Hour, MaxClients: 640}, nil)
	for i := range 10_000 {
		n.Take(fmt.Sprint("user-", i))
	}
	if got := n.l.tracked(); got > 640 {
		t.Errorf("%d names tracked, want at most 640", got)
	}
}
