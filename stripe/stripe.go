// Package stripe counts events that every CPU adds to at once, such as one
// per request. A single atomic counter is a cache line that the CPUs take
// from each other on every add; a Counter spreads the adds over stripes on
// lines of their own, and sums them when read.
package stripe

import "sync/atomic"

// stripes is the number of stripes of a Counter (a power of two).
const stripes = 16

// Counter is a striped counter. The zero Counter is ready to use; it must
// not be copied after first use.
type Counter struct {
	s [stripes]struct {
		n atomic.Uint64
		_ [56]byte // the rest of the cache line
	}
}

// Add adds one to the stripe that hint chooses. Adders running at the same
// time should pass hints that differ in their low bits, such as a hash of
// what they count or the address of an object of their own.
func (c *Counter) Add(hint uint64) { c.s[hint%stripes].n.Add(1) }

// Load returns the count: the sum of the stripes, each read atomically.
func (c *Counter) Load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].n.Load()
	}
	return n
}
