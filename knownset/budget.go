package knownset

import (
	"sync/atomic"
	"time"
)

// Budget is a token bucket of database lookups for tokens absent from a
// current set: it lets through the few lookups needed for a token created on
// another instance whose notification has not arrived yet, and refuses the
// rest of a flood of unknown tokens. It is lock-free (GCRA: one atomic
// compare-and-swap per call).
type Budget struct {
	interval int64 // nanoseconds per lookup; 0: no budget
	tau      int64 // burst tolerance
	start    time.Time
	tat      atomic.Int64 // theoretical arrival time, ns since start
}

// Default budget: a few lookups per second with a small burst.
const (
	DefaultRate  = 5.0
	DefaultBurst = 20
)

// NewBudget returns a budget of rate lookups per second with bursts of up to
// burst. A rate or burst of zero or less allows nothing.
func NewBudget(rate float64, burst int) *Budget {
	b := &Budget{start: time.Now()}
	if rate > 0 && burst > 0 {
		b.interval = max(int64(float64(time.Second)/rate), 1)
		b.tau = int64(burst-1) * b.interval
	}
	return b
}

// Allow takes one lookup from the budget and reports whether there was one.
func (b *Budget) Allow() bool {
	if b.interval == 0 {
		return false
	}
	now := int64(time.Since(b.start))
	for {
		tat := b.tat.Load()
		next := max(tat, now) + b.interval
		if next-now > b.tau+b.interval {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
