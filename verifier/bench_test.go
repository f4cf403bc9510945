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

// memEntries is the cache size at which memory per entry is measured
// (the default max_entries).
const memEntries = 1_000_000

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

// BenchmarkCacheMemory fills a cache sized for 1M tokens with 1M positive
// entries through the real store path and reports the live heap per entry
// (runtime.MemStats before and after, after full collections):
//
//   - B/entry: everything, divided by the entries actually stored;
//   - ristretto-fixed-B/entry: what an empty cache with max_entries 1M
//     holds already (TinyLFU count-min sketch for 10M counters, bloom
//     filter, shards), per entry;
//   - entry-B/entry: armgate's own value (the entry struct, the credential's
//     strings and scopes slice), measured by building the same entries
//     outside any cache;
//   - ristretto-item-B/entry: the rest, ristretto's per-item bookkeeping
//     (store map, TTL buckets, policy cost map).
//
// Run it alone: go test -run '^$' -bench CacheMemory -benchtime 1x ./verifier
func BenchmarkCacheMemory(b *testing.B) {
	for b.Loop() {
		base := heapAfterGC()
		// armgate's part alone.
		own := make([]*entry, memEntries)
		for i := range own {
			own[i] = &entry{hash: benchHash(i), found: true, cred: benchCred(i)}
		}
		ownBytes := float64(heapAfterGC()-base) - float64(8*memEntries)
		runtime.KeepAlive(own)
		own = nil

		base = heapAfterGC()
		var cur int
		v, err := New(Config{TTL: time.Hour, NegativeTTL: time.Minute, MaxEntries: memEntries},
			func(context.Context, token.Hash) (token.Credential, error) { return benchCred(cur), nil })
		if err != nil {
			b.Fatal(err)
		}
		empty := heapAfterGC()
		for cur = range memEntries {
			if _, err := v.loadAndStore(benchHash(cur), v.gen.Load()); err != nil {
				b.Fatal(err)
			}
			if cur%10_000 == 0 {
				v.Wait() // keep ristretto's set buffer from dropping sets
			}
		}
		v.Wait()
		full := heapAfterGC()
		m := v.CacheMetrics()
		stored := float64(m.KeysAdded() - m.KeysEvicted())
		if stored < 0.95*memEntries {
			b.Fatalf("only %.0f of %d entries stored (%d sets dropped, %d rejected)",
				stored, memEntries, m.SetsDropped(), m.SetsRejected())
		}
		// Every entry must be a hit.
		for _, i := range []int{0, memEntries / 2, memEntries - 1} {
			h := benchHash(i)
			if e, ok := v.cache.Get(cacheKey(h[:])); !ok || e.hash != h {
				b.Fatalf("entry %d missing", i)
			}
		}
		fixed := float64(empty - base)
		total := float64(full - base)
		b.ReportMetric(total/stored, "B/entry")
		b.ReportMetric(fixed/memEntries, "ristretto-fixed-B/entry")
		b.ReportMetric(ownBytes/memEntries, "entry-B/entry")
		b.ReportMetric((total-fixed)/stored-ownBytes/memEntries, "ristretto-item-B/entry")
		b.ReportMetric(stored, "entries")
		v.Close()
	}
}
