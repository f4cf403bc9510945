package stripe

import (
	"sync"
	"testing"
	"unsafe"
)

func TestCounterSums(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.Add(uint64(g*1000 + i))
			}
		})
	}
	wg.Wait()
	if n := c.Load(); n != 8000 {
		t.Fatalf("Load = %d, want 8000", n)
	}
	for i := range c.s {
		if n := c.s[i].n.Load(); n != 8000/stripes {
			t.Errorf("stripe %d holds %d, want %d: the hint does not spread", i, n, 8000/stripes)
		}
	}
}

// TestStripesOnOwnLines: two stripes never share a 64-byte cache line.
func TestStripesOnOwnLines(t *testing.T) {
	var c Counter
	if d := uintptr(unsafe.Pointer(&c.s[1].n)) - uintptr(unsafe.Pointer(&c.s[0].n)); d < 64 {
		t.Fatalf("stripes %d bytes apart, want at least 64", d)
	}
}
