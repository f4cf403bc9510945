package testclock

import (
	"sync"
	"testing"
	"time"
)

// TestClock: the clock stands still, Add moves it by the duration (also
// from many goroutines at once), Set moves it to the given time, and the
// method value Now reads the current time.
func TestClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(start)
	now := c.Now
	if got := now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	c.Add(90 * time.Second)
	if got, want := now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Add, Now() = %v, want %v", got, want)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Add(time.Millisecond)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(90*time.Second+800*time.Millisecond); !got.Equal(want) {
		t.Fatalf("after concurrent Adds, Now() = %v, want %v", got, want)
	}

	earlier := start.Add(-time.Hour)
	c.Set(earlier)
	if got := now(); !got.Equal(earlier) {
		t.Fatalf("after Set, Now() = %v, want %v", got, earlier)
	}
}
