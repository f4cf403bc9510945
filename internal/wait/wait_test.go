package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	if !Until(time.Minute, func() bool { return n.Add(1) == 5 }) {
		t.Fatal("Until gave up on a condition that holds at the fifth poll")
	}
	if got := n.Load(); got != 5 {
		t.Errorf("cond polled %d times, want 5 (stop at the first true)", got)
	}
	start := time.Now()
	if Until(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until reported a condition that never holds")
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("Until gave up before its timeout")
	}
}

// fakeT records a Fatalf instead of stopping the goroutine.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = format
}

func TestForPasses(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	ft := &fakeT{TB: t}
	For(ft, "the third poll", func() bool { return n.Add(1) == 3 })
	if ft.failed != "" {
		t.Errorf("For failed on a condition that holds: %s", ft.failed)
	}
}
