package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/armgate/armgate/token"
)

// heapAfterGC returns the live heap after a full collection.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchCred is a credential shaped like one read from PostgreSQL: its own
// strings (a UUID, a user id, a name) and scopes slice.
func benchCred(i int) token.Credential {
	return token.Credential{
		TokenID:   fmt.Sprintf("0190b6b8-6b7e-7c1a-9f3e-%012x", i),
		UserID:    fmt.Sprintf("user-%07d", i/10),
		Name:      fmt.Sprintf("token-%d", i%10),
		Scopes:    []string{token.ScopeAPI},
		CreatedAt: time.Now(),
		ExpiresAt: time.Now().Add(24 * time.Hour),
	}
}

func benchHash(i int) token.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// BenchmarkCacheMemory fills a cache sized for n tokens with n known
// tokens through the real store path and reports the live heap per entry
// (runtime.MemStats before and after, after full collections):
//
//   - B/entry: everything, divided by the entries actually stored;
//   - ristretto-fixed-B/entry: what an empty cache with max_entries n
//     holds already (TinyLFU count-min sketch for 10n counters, bloom
//     filter, shards) and the fixed table of unknown tokens, per entry;
//   - entry-B/entry: armgate's own value (the entry and its strings),
//     measured by building the same entries outside any cache;
//   - ristretto-item-B/entry: the rest, ristretto's per-item bookkeeping
//     (store map, policy cost map).
//
// Run it alone: go test -run '^$' -bench CacheMemory -benchtime 1x ./verifier
func BenchmarkCacheMemory(b *testing.B) {
	for _, n := range []int{100_000, 200_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				cacheMemory(b, n)
			}
		})
	}
}

func cacheMemory(b *testing.B, n int) {
	base := heapAfterGC()
	// armgate's part alone.
	stale := time.Now().Add(time.Hour)
	own := make([]*entry, n)
	for i := range own {
		own[i] = newEntry(benchHash(i), benchCred(i), stale)
	}
	ownBytes := float64(heapAfterGC()-base) - float64(8*n)
	runtime.KeepAlive(own)
	own = nil

	base = heapAfterGC()
	var cur int
	v, err := New(Config{TTL: time.Hour, NegativeTTL: time.Minute, MaxEntries: int64(n)},
		func(context.Context, token.Hash) (token.Credential, error) { return benchCred(cur), nil })
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	empty := heapAfterGC()
	for cur = range n {
		if _, err := v.loadAndStore(benchHash(cur), v.gen.Load()); err != nil {
			b.Fatal(err)
		}
		if cur%10_000 == 0 {
			v.wait() // keep ristretto's set buffer from dropping sets
		}
	}
	v.wait()
	full := heapAfterGC()
	stored := float64(v.CacheEntries())
	if stored < 0.95*float64(n) {
		b.Fatalf("only %.0f of %d entries stored", stored, n)
	}
	// Every entry must be a hit.
	for _, i := range []int{0, n / 2, n - 1} {
		h := benchHash(i)
		if e, ok := v.cache.Get(cacheKey(h[:])); !ok || !e.matches(&h) {
			b.Fatalf("entry %d missing", i)
		}
	}
	fixed := float64(empty - base)
	total := float64(full - base)
	b.ReportMetric(total/stored, "B/entry")
	b.ReportMetric(fixed/float64(n), "ristretto-fixed-B/entry")
	b.ReportMetric(ownBytes/float64(n), "entry-B/entry")
	b.ReportMetric((total-fixed)/stored-ownBytes/float64(n), "ristretto-item-B/entry")
	b.ReportMetric(stored, "entries")
	b.ReportMetric(float64(v.CacheBytes())/stored, "estimated-B/entry")
}
