// Package verifier decides on bearer tokens: format check, SHA-256, a
// ristretto cache of known tokens, a separate fixed table of unknown ones,
// collapsed database lookups and invalidation. It needs neither Caddy nor
// PostgreSQL: the database sits behind the Loader function.
package verifier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/armgate/armgate/knownset"
	"github.com/armgate/armgate/stripe"
	"github.com/armgate/armgate/token"
)

// ErrNotFound is what a Loader returns for an unknown hash.
var ErrNotFound = errors.New("token not found")

// Loader reads the credential for a token hash from the source of truth. It
// returns ErrNotFound for unknown hashes; any other error means the decision
// could not be made.
type Loader func(ctx context.Context, h token.Hash) (token.Credential, error)

// Config tunes a Verifier.
type Config struct {
	// TTL bounds the life of a cache entry for a known token; an entry
	// never outlives its token's expiry. Zero turns the cache off.
	TTL time.Duration
	// NegativeTTL is how long an unknown hash is remembered.
	NegativeTTL time.Duration
	// MaxEntries bounds the number of cached known tokens. Unknown tokens
	// go to a separate fixed table of MaxEntries/8 slots (at least 1024, at
	// most 65536).
	MaxEntries int64
	// QueryTimeout bounds one database lookup.
	QueryTimeout time.Duration
	// Known, if set, is the set of the tokens that exist: a well-formed
	// token absent from it while it is current is refused without a
	// lookup, unless Budget still has one (a token created a moment ago on
	// another instance may not be in the set yet). Nil: every miss is
	// looked up.
	Known *knownset.Set
	// Budget is the lookups allowed for tokens absent from Known; nil
	// allows none.
	Budget *knownset.Budget
	// AbsentWait is how long a token absent from Known, with no lookup
	// left in Budget, waits for Known to learn of it before it is refused:
	// the notification of a token created on another instance arrives
	// milliseconds after its commit, and its client may be faster. The
	// wait costs no query; it also slows a flood down. Zero refuses at
	// once.
	AbsentWait time.Duration
}

// Stats counts what the Verifier did, for metrics.
type Stats struct {
	// Hits is striped by the token's cache key: every request adds to it.
	Hits                                     stripe.Counter
	Misses, Loads, LoadErrors, Invalidations atomic.Uint64
	// AbsentRefused counts tokens refused as unknown without a lookup,
	// because the set of known tokens is current and lacks them.
	AbsentRefused atomic.Uint64
}

// Negative table size bounds, in slots.
const minNegSlots, maxNegSlots = 1024, 1 << 16

// usedEpoch is the origin of entry.usedSec (seconds in a uint32 reach 2156).
var usedEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	cfg  Config
	load Loader
	// cache holds known tokens, keyed by the first eight bytes of the hash
	// (a uint64 key costs ristretto no allocation, where a []byte key
	// escapes to the heap on every Get). It has no ristretto TTL: each
	// entry carries its own end of life, checked on every hit.
	cache *ristretto.Cache[uint64, *entry]
	// front holds the entries last found in cache, by key: a hit reads one
	// atomic pointer. ristretto's Get hashes the key again, takes a shard's
	// read lock (a write to a cache line that every CPU takes in turn) and
	// queues the access for its policy goroutine: about 1 µs per request
	// under load. An entry gets here only from a cache hit, under mu and
	// the generation it was found in, and Drop and DropAll clear it, so
	// that front never serves what the cache no longer may.
	front []atomic.Pointer[entry]
	// neg remembers unknown hashes, apart from cache.
	neg   *negTable
	group singleflight.Group
	now   func() time.Time

	// gen is bumped by every invalidation; a lookup that started under an
	// older generation does not store its result. mu makes "check gen, then
	// Set" atomic with respect to "bump gen, then Del".
	mu  sync.RWMutex
	gen atomic.Uint64
	// closed is set by Close under mu: from then on no Set, Del or Clear
	// reaches the cache (a load still in flight at Close would otherwise
	// send on ristretto's closed channel and panic), and lookups skip it.
	closed atomic.Bool

	usedMu sync.Mutex
	used   map[string]time.Time

	Stats Stats
}

// New returns a Verifier that reads through load.
func New(cfg Config, load Loader) (*Verifier, error) {
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 3 * time.Second
	}
	v := &Verifier{cfg: cfg, load: load, now: time.Now, used: map[string]time.Time{}}
	if cfg.TTL > 0 {
		if cfg.MaxEntries <= 0 {
			return nil, fmt.Errorf("max_entries must be positive, got %d", cfg.MaxEntries)
		}
		c, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
			NumCounters:        numCounters(cfg.MaxEntries),
			MaxCost:            cfg.MaxEntries,
			BufferItems:        64,
			IgnoreInternalCost: true, // cost 1 per entry: MaxCost counts entries
		})
		if err != nil {
			return nil, err
		}
		v.cache = c
		slots := int(min(max(cfg.MaxEntries/8, minNegSlots), maxNegSlots))
		v.neg = newNegTable(slots)
		v.front = make([]atomic.Pointer[entry], pow2AtLeast(slots))
	}
	return v, nil
}

// Close releases the cache. Loads still in flight finish without caching;
// Verify keeps working, reading through to the Loader.
func (v *Verifier) Close() {
	v.mu.Lock()
	already := v.closed.Swap(true)
	v.mu.Unlock()
	if v.cache != nil && !already {
		v.cache.Close()
	}
}

// Verify decides on the token tok. An error means the decision needed the
// database and the database failed; the caller must fail closed (503).
// ctx only bounds the wait: the lookup itself runs on a detached context, so
// a client that hangs up does not cancel a query that others share (pgx
// closes connections whose queries are cancelled mid-flight).
func (v *Verifier) Verify(ctx context.Context, tok string) (token.Credential, token.Status, error) {
	// Only the length is checked before hashing, so that what is hashed is
	// bounded; the rest of the format and the checksum are checked on a
	// cache miss only (lookup): a cached token passed them when it was
	// loaded, and the hit path is the one that runs for every request.
	if len(tok) != token.Len {
		return token.Credential{}, token.Unknown, nil
	}
	h := token.Sum(tok)
	now := v.now()
	e, err := v.lookup(ctx, tok, &h, now)
	if err != nil || e == nil {
		return token.Credential{}, token.Unknown, err
	}
	cred := e.credential()
	switch cred.Status(now) {
	case token.Expired:
		return cred, token.Expired, nil
	case token.Revoked:
		return cred, token.Revoked, nil
	case token.Deactivated:
		return cred, token.Deactivated, nil
	}
	v.markUsed(e, now)
	return cred, token.Active, nil
}

// lookup returns the entry of tok, whose hash is h; nil for an unknown
// token. A token that is not in the cache must have the format and checksum
// of a token before anything else looks for it.
func (v *Verifier) lookup(ctx context.Context, tok string, h *token.Hash, now time.Time) (*entry, error) {
	if v.cache != nil && !v.closed.Load() {
		// Another hash with the same first eight bytes (the chance that
		// any two of a million entries share them is about 3e-8) is a
		// miss: the load below replaces that entry. So is an entry past
		// its cache ttl. An entry whose token expired meanwhile is still
		// a hit: the caller refuses it as expired.
		n := now.UnixNano()
		k := cacheKey(h[:])
		if e := v.cached(h, k, n); e != nil {
			v.Stats.Hits.Add(k)
			return e, nil
		}
		if v.neg.has(h, n) {
			v.Stats.Hits.Add(k)
			return nil, nil
		}
	}
	if token.Check(tok) != nil {
		return nil, nil
	}
	v.Stats.Misses.Add(1)
	if v.cfg.Known != nil && v.cfg.Known.Refuse(*h, v.cfg.Budget) && !v.awaitKnown(ctx, h) {
		v.Stats.AbsentRefused.Add(1)
		return nil, nil
	}
	return v.loadShared(ctx, *h)
}

// absentPoll is how often awaitKnown looks at the set again.
const absentPoll = 2 * time.Millisecond

// awaitKnown waits up to AbsentWait for h to stop being absent from the
// known set (its creation was notified, or the set went stale); it reports
// whether that happened, so that h is to be looked up after all.
func (v *Verifier) awaitKnown(ctx context.Context, h *token.Hash) bool {
	if v.cfg.AbsentWait <= 0 {
		return false
	}
	p := knownset.Prefix(*h)
	t := time.NewTicker(absentPoll)
	defer t.Stop()
	deadline := time.Now().Add(v.cfg.AbsentWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if !v.cfg.Known.Absent(p) {
			return true
		}
	}
	return false
}

// NeedsBlindLookup reports whether deciding on tok needs a database lookup
// that the set of known tokens cannot vouch for: tok is well-formed, its
// answer is not cached, and the set is not current (loading, listener
// down, or none configured). The caller may then refuse a client it
// already blocks without querying; in every other case Verify answers a
// token that exists as it is.
func (v *Verifier) NeedsBlindLookup(tok string) bool {
	if token.Check(tok) != nil {
		return false
	}
	if v.cfg.Known != nil && v.cfg.Known.Current() {
		return false
	}
	h := token.Sum(tok)
	if v.cache != nil && !v.closed.Load() {
		n := v.now().UnixNano()
		if v.cached(&h, cacheKey(h[:]), n) != nil {
			return false
		}
		if v.neg.has(&h, n) {
			return false
		}
	}
	return true
}

// loadShared is the miss path, a function of its own so that the closure
// capturing h moves only this copy of h to the heap, not lookup's.
func (v *Verifier) loadShared(ctx context.Context, h token.Hash) (*entry, error) {
	// Loads are shared per hash and generation: a request that starts after
	// an invalidation must not join a load that may have read the database
	// before the change, or the very next request would still see the old
	// state.
	gen := v.gen.Load()
	var key [len(h) + 8]byte
	copy(key[:], h[:])
	binary.BigEndian.PutUint64(key[len(h):], gen)
	ch := v.group.DoChan(string(key[:]), func() (any, error) { return v.loadAndStore(h, gen) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*entry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// loadAndStore reads h and caches the result unless an invalidation
// happened since gen, the generation read before the load started. It
// returns a nil entry (and no error) for an unknown token.
func (v *Verifier) loadAndStore(h token.Hash, gen uint64) (*entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.QueryTimeout)
	defer cancel()
	v.Stats.Loads.Add(1)
	cred, err := v.load(ctx, h)
	now := v.now()
	var e *entry
	switch {
	case err == nil:
		e = newEntry(h, cred, now.Add(v.cfg.TTL))
	case errors.Is(err, ErrNotFound):
	default:
		v.Stats.LoadErrors.Add(1)
		return nil, err // never cached
	}
	if v.cache == nil {
		return e, nil
	}
	// A known token is cached for the cache ttl; its entry refuses it as
	// expired from its expiry on, so an entry never lets a token pass past
	// it. A token that is expired already is cached too: expiry is final
	// (re-approval refuses an expired token, and no call moves an expiry
	// later), so presenting it again and again must cost no query.
	if e == nil && v.cfg.NegativeTTL <= 0 {
		return nil, nil
	}
	v.mu.RLock()
	if v.gen.Load() == gen && !v.closed.Load() {
		if e != nil {
			if v.cache.Set(cacheKey(h[:]), e, 1) && !now.Before(cred.ExpiresAt) {
				// ristretto applies a Set asynchronously; the client of an
				// expired token retries at once, so wait until the refusal
				// is in place (a rare path: once per expired token and
				// cache ttl). Under mu: Close must not run meanwhile.
				v.cache.Wait()
			}
		} else {
			v.neg.add(&h, now.Add(v.cfg.NegativeTTL).UnixNano())
		}
	}
	v.mu.RUnlock()
	return e, nil
}

// Drop removes the entries for the given token hashes, at once: the next
// Verify of any of them reads the database.
func (v *Verifier) Drop(hashes [][]byte) {
	v.Stats.Invalidations.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen.Add(1)
	if v.cache == nil || v.closed.Load() {
		return
	}
	for _, h := range hashes {
		// Deleting another token's entry that shares the key (or the
		// front slot) only costs it a lookup.
		k := cacheKey(h)
		v.frontSlot(k).Store(nil)
		v.cache.Del(k)
		v.neg.del(h)
	}
}

// cached returns the live entry of h, whose cache key is k, at n (unix
// nanoseconds): from the front table, else from the cache, which promotes
// it to the front table. Nil if neither has one.
func (v *Verifier) cached(h *token.Hash, k uint64, n int64) *entry {
	f := v.frontSlot(k)
	if e := f.Load(); e != nil && e.matches(h) && n < e.staleAt {
		return e
	}
	gen := v.gen.Load()
	if e, ok := v.cache.Get(k); ok && e.matches(h) && n < e.staleAt {
		v.promote(f, e, gen)
		return e
	}
	return nil
}

// frontSlot is the slot of front for the cache key k.
func (v *Verifier) frontSlot(k uint64) *atomic.Pointer[entry] {
	return &v.front[k&uint64(len(v.front)-1)]
}

// promote puts e, just found in the cache, into its front slot f, unless an
// invalidation happened since gen, the generation read before the cache was
// asked: Drop may have deleted e from the cache meanwhile, and must not
// find it in front afterwards. Under mu, so that "check gen, then store" is
// atomic with respect to "bump gen, then clear".
func (v *Verifier) promote(f *atomic.Pointer[entry], e *entry, gen uint64) {
	v.mu.RLock()
	if v.gen.Load() == gen && !v.closed.Load() {
		f.Store(e)
	}
	v.mu.RUnlock()
}

// pow2AtLeast returns the smallest power of two at least n (1 for n <= 1).
func pow2AtLeast[T int | int64](n T) T {
	p := T(1)
	for p < n {
		p *= 2
	}
	return p
}

// numCounters is the number of TinyLFU counters for a cache of max
// entries: about ten per entry, as ristretto advises, and a power of two,
// since ristretto rounds its count-min sketch up to one. Of the powers of
// two around 10*max it takes the nearer (by ratio), so that the sketch is
// between 7 and 14 counters per entry instead of up to 20 (1 M entries
// would otherwise get 16.8 M counters, 34 MB of sketch, where 8.4 M do).
func numCounters(max int64) int64 {
	want := 10 * max
	up := pow2AtLeast(want)
	if down := up / 2; down > 0 && float64(want)/float64(down) < float64(up)/float64(want) {
		return down
	}
	return up
}

// cacheKey is the cache key of a token hash: its first eight bytes. A
// shorter slice (never a real hash) is zero-padded.
func cacheKey(h []byte) uint64 {
	var b [8]byte
	copy(b[:], h)
	return binary.BigEndian.Uint64(b[:])
}

// DropAll empties the cache, for when invalidations may have been missed.
func (v *Verifier) DropAll() {
	v.Stats.Invalidations.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen.Add(1)
	if v.cache != nil && !v.closed.Load() {
		for i := range v.front {
			v.front[i].Store(nil)
		}
		v.cache.Clear()
		v.neg.clear()
	}
}

// Memory estimates, from BenchmarkCacheMemory (Go 1.26, ristretto v2.4.2,
// credentials with a UUID, a 12-byte user id and a short name): within
// about 15 % of the measured heap from 100 000 to 1 M entries.
const (
	// bytesPerCounter is ristretto's fixed cost per TinyLFU counter: two
	// bytes of count-min sketch and, rounded, two of bloom filter.
	bytesPerCounter = 4
	// bytesPerEntry is one cached known token: the entry with its strings
	// (176) and ristretto's bookkeeping for it (108 to 172 bytes, as its
	// Go maps grow in steps).
	bytesPerEntry = 308
)

// CacheEntries returns the number of known tokens in the cache.
func (v *Verifier) CacheEntries() int64 {
	if v.cache == nil {
		return 0
	}
	return v.cache.MaxCost() - v.cache.RemainingCost()
}

// CacheBytes estimates the memory the cache holds: ristretto's fixed
// structures, the table of unknown tokens and the front table, allocated at
// start, and each cached known token. An entry that ristretto evicted while
// the front table still holds it is not counted: at most one per slot.
func (v *Verifier) CacheBytes() int64 {
	if v.cache == nil {
		return 0
	}
	fixed := numCounters(v.cfg.MaxEntries)*bytesPerCounter +
		int64(len(v.neg.buckets))*int64(unsafe.Sizeof([negWays]negSlot{})) +
		int64(len(v.front))*int64(unsafe.Sizeof(v.front[0]))
	return fixed + v.CacheEntries()*bytesPerEntry
}

// markUsed queues the token's last use, at most once a second per cached
// token, so the hot path rarely takes the lock.
func (v *Verifier) markUsed(e *entry, now time.Time) {
	sec := uint32(now.Unix() - usedEpoch)
	if old := e.usedSec.Load(); old == sec || !e.usedSec.CompareAndSwap(old, sec) {
		return
	}
	v.usedMu.Lock()
	v.used[e.tokenID()] = now
	v.usedMu.Unlock()
}

// TakeUsed returns the last-use times queued since the previous call.
func (v *Verifier) TakeUsed() map[string]time.Time {
	v.usedMu.Lock()
	defer v.usedMu.Unlock()
	if len(v.used) == 0 {
		return nil
	}
	u := v.used
	v.used = map[string]time.Time{}
	return u
}

// PutBackUsed requeues times that could not be stored, keeping newer ones.
func (v *Verifier) PutBackUsed(u map[string]time.Time) {
	v.usedMu.Lock()
	defer v.usedMu.Unlock()
	for id, at := range u {
		if cur, ok := v.used[id]; !ok || cur.Before(at) {
			v.used[id] = at
		}
	}
}
