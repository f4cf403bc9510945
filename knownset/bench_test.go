package knownset

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"runtime"
	"slices"
	"testing"
)

// benchTokens is the number of tokens the benchmarks hold.
const benchTokens = 1_000_000

// benchPrefixes returns the prefixes of n distinct SHA-256 hashes.
func benchPrefixes(n int) []uint64 {
	ps := make([]uint64, n)
	var b [8]byte
	for i := range ps {
		binary.BigEndian.PutUint64(b[:], uint64(i))
		h := sha256.Sum256(b[:])
		ps[i] = binary.BigEndian.Uint64(h[:8])
	}
	return ps
}

func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func loadedSet(b *testing.B, ps []uint64) *Set {
	b.Helper()
	s := New()
	if err := s.Load(context.Background(), scanOf(ps...)); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkContains looks up tokens in a set of 1M: present ones, and
// absent ones (the case of a flood of unknown tokens).
func BenchmarkContains(b *testing.B) {
	ps := benchPrefixes(benchTokens)
	s := loadedSet(b, ps)
	// Every lookup goes to another part of the table, as with real
	// traffic: a cache miss, not a warm line.
	absent := benchPrefixes(2 * benchTokens)[benchTokens:]
	b.Run("present", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if s.Absent(ps[i%benchTokens]) {
				b.Fatal("absent")
			}
			i++
		}
	})
	b.Run("absent", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !s.Absent(absent[i%benchTokens]) {
				b.Fatal("present")
			}
			i++
		}
	})
	b.Run("absent-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				s.Absent(absent[i%benchTokens])
				i++
			}
		})
	})
}

// BenchmarkMemory reports the live heap per token of a set loaded with 1M
// tokens (runtime.MemStats before and after, after full collections), and
// after 10% more tokens were added one by one.
func BenchmarkMemory(b *testing.B) {
	ps := benchPrefixes(benchTokens + benchTokens/10)
	for b.Loop() {
		before := heapAfterGC()
		s := loadedSet(b, ps[:benchTokens])
		loaded := heapAfterGC()
		for _, p := range ps[benchTokens:] {
			s.Add(p)
		}
		added := heapAfterGC()
		b.ReportMetric(float64(loaded-before)/benchTokens, "B/token")
		b.ReportMetric(float64(added-before)/float64(len(ps)), "B/token-after-adds")
		runtime.KeepAlive(s)
	}
}

// BenchmarkBuild loads a set from 1M prefixes held in memory, in random
// order and grouped by their first byte (as Store.ScanTokenHashes yields
// them).
func BenchmarkBuild(b *testing.B) {
	random := benchPrefixes(benchTokens)
	grouped := slices.Clone(random)
	slices.SortStableFunc(grouped, func(x, y uint64) int { return cmp.Compare(x>>56, y>>56) })
	for _, tc := range []struct {
		name string
		ps   []uint64
	}{{"random", random}, {"grouped", grouped}} {
		b.Run(tc.name, func(b *testing.B) {
			scan := scanOf(tc.ps...)
			s := New()
			for b.Loop() {
				if err := s.Load(context.Background(), scan); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/1M")
		})
	}
}

func BenchmarkBudgetAllow(b *testing.B) {
	bud := NewBudget(DefaultRate, DefaultBurst)
	b.ReportAllocs()
	for b.Loop() {
		bud.Allow()
	}
}
