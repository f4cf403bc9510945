// Package knownset holds the set of the tokens that exist, as 64-bit prefixes
// of their SHA-256 hashes, so that a well-formed but unknown token can be
// refused without asking the database.
//
// A prefix shared by two hashes only makes an absent token look present (one
// database lookup confirms it is unknown); a token that exists must never look
// absent. The set is therefore a multiset: every token adds one entry and a
// deletion removes one entry, so a deletion never drops another token with
// the same prefix; deletions notified while a load runs are not applied, as
// the scan may already lack the row (see Remove).
//
// The entries come from loads and notifications only, so that every instance
// counts each existing token exactly once. The instance that creates a token
// must know it before it answers, yet its own notification of the creation
// arrives later; so it records the token with AddLocal, in a short list that
// Contains consults but Len does not count, until the notification (Add)
// takes its place. A local add is thus idempotent per token: it never turns
// into a second entry, and a deletion notified by any instance leaves none.
//
// Reads are lock-free: one atomic pointer load and a few atomic word loads in
// an open-addressing table. Writers (notifications, loads) take a mutex.
package knownset

import (
	"context"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armgate/armgate/token"
)

// Prefix returns the key of a token hash in the set: its first eight bytes,
// big-endian.
func Prefix(h token.Hash) uint64 { return binary.BigEndian.Uint64(h[:8]) }

// PrefixOf is Prefix for a hash held as a byte slice (as notifications
// carry it); it returns false for a slice shorter than eight bytes.
func PrefixOf(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// ScanFunc calls fn with the prefix of every token that exists, from one
// consistent snapshot (Store.ScanTokenHashes in package storage).
type ScanFunc func(ctx context.Context, fn func(prefix uint64)) error

// Set is the set of known token prefixes. The zero value is not usable; use
// New.
type Set struct {
	tab     atomic.Pointer[table]
	current atomic.Bool

	loadMu sync.Mutex // serialises Load

	mu      sync.Mutex // guards the writers' state below and writes to tab
	epoch   uint64     // bumped by MarkStale
	loading bool
	pending []uint64 // adds seen during a load

	// local lists the tokens this instance created whose notification has
	// not arrived yet (see AddLocal); replaced, never changed, under mu.
	local atomic.Pointer[[]localAdd]
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// localAdd is a token created on this instance, awaiting its notification.
type localAdd struct {
	p     uint64
	until int64 // unix nanoseconds
}

// Local adds are bounded in number and time: a notification arrives
// milliseconds after its commit, and while the listener is down the set is
// not current (and is reloaded on reconnect) anyway.
const (
	localTTL = time.Minute
	maxLocal = 4096
)

// New returns an empty set that is not current.
func New() *Set {
	s := &Set{}
	s.tab.Store(newTable(0))
	return s
}

// Current reports whether the set reflects every token that exists: it was
// loaded and the listener has not been disconnected since.
func (s *Set) Current() bool { return s.current.Load() }

// Absent reports whether the token with prefix p certainly does not exist:
// the set is current and p is not in it.
func (s *Set) Absent(p uint64) bool {
	// current is read first: a load publishes its table before it sets
	// current, so a true here comes with the loaded table or a newer one.
	return s.current.Load() && !s.tab.Load().contains(key(p)) && !s.hasLocal(p)
}

func (s *Set) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// hasLocal reports whether p was added locally and is still awaiting its
// notification.
func (s *Set) hasLocal(p uint64) bool {
	l := s.local.Load()
	if l == nil {
		return false
	}
	n := s.clock().UnixNano()
	for _, a := range *l {
		if a.p == p && n < a.until {
			return true
		}
	}
	return false
}

// AddLocal records a token this instance has just created, before it
// answers: Contains reports it at once, Len does not count it. The
// notification of the creation (Add) replaces it, so it is counted once.
func (s *Set) AddLocal(p uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.clock().UnixNano()
	var next []localAdd
	if l := s.local.Load(); l != nil {
		for _, a := range *l {
			if n < a.until {
				next = append(next, a)
			}
		}
	}
	if len(next) >= maxLocal {
		// Oldest first: a token dropped here is still found by a lookup
		// within the budget until its notification arrives.
		next = next[len(next)-maxLocal+1:]
	}
	next = append(next, localAdd{p: p, until: n + int64(localTTL)})
	s.local.Store(&next)
}

// dropLocal forgets one local add of p, if any; s.mu is held.
func (s *Set) dropLocal(p uint64) {
	l := s.local.Load()
	if l == nil {
		return
	}
	i := slices.IndexFunc(*l, func(a localAdd) bool { return a.p == p })
	if i < 0 {
		return
	}
	var next []localAdd
	if len(*l) > 1 {
		next = slices.Delete(slices.Clone(*l), i, i+1)
		s.local.Store(&next)
	} else {
		s.local.Store(nil)
	}
}

// Refuse reports whether the well-formed token with hash h is to be refused
// as unknown without a lookup: the set is current, h is absent from it, and
// the budget b has no lookup left for it. A nil budget allows no lookups.
func (s *Set) Refuse(h token.Hash, b *Budget) bool {
	return s.Absent(Prefix(h)) && (b == nil || !b.Allow())
}

// Len returns the number of entries (tokens, as far as the set knows).
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tab.Load().live
}

// Add records a notified creation (of this instance's tokens too: it
// replaces their AddLocal). During a load it is also kept for the loaded
// table, so a creation notified while the scan runs is never lost.
func (s *Set) Add(p uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocal(p)
	s.insert(key(p))
	if s.loading {
		s.pending = append(s.pending, p)
	}
}

// Remove records a deleted token: it drops one entry for p, if any.
//
// During a load a deletion is not applied: the scan may or may not have seen
// the row, and dropping an entry the scan never had could drop the entry of
// another token with the same prefix. The entry stays until the next load; a
// lookup answers for it meanwhile.
//
// One case remains: a deletion committed before a scan's snapshot whose
// notification is handled only after the load ended. Its entry is not in
// the table, so Remove drops nothing unless another existing token has the
// same 64-bit prefix (odds about n/2^64, 5e-14 at 1M tokens); that token
// would then be looked up only within the lookup budget until the next
// load.
func (s *Set) Remove(p uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loading {
		return
	}
	t := s.tab.Load()
	t.remove(key(p))
	// Shrink after mass deletions: a rebuilt table is half full, so this
	// keeps it within 8/0.4 = 20 bytes per token.
	if len(t.slots) > 4096 && float64(t.live) < 0.4*float64(len(t.slots)) {
		s.tab.Store(t.grow(0))
	}
}

// MarkStale records that events may be missed from now on (the listener
// disconnected): the set is not current until the next load completes, and a
// load already running does not make it current.
func (s *Set) MarkStale() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.current.Store(false)
}

// Load rebuilds the set from scan and makes it current, unless MarkStale was
// called meanwhile. The listener must be connected (LISTEN in place) before
// Load starts, so that every change after the scan's snapshot is notified.
// Adds notified during the scan are applied to the new table; deletions are
// not (see Remove). Loads are serialised; while one runs the set is not
// current. On error the previous table stays and the set is not current.
func (s *Set) Load(ctx context.Context, scan ScanFunc) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()

	s.mu.Lock()
	epoch := s.epoch
	s.loading = true
	s.pending = nil
	s.current.Store(false)
	hint := s.tab.Load().live + 1024
	s.mu.Unlock()

	keys := make([]uint64, 0, hint)
	err := scan(ctx, func(p uint64) { keys = append(keys, key(p)) })
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		s.mu.Lock()
		s.loading = false
		s.pending = nil
		s.mu.Unlock()
		return err
	}
	t := buildTable(keys)
	keys = nil

	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.Store(t)
	for _, p := range s.pending {
		s.insert(key(p))
	}
	s.loading = false
	s.pending = nil
	if s.epoch == epoch {
		s.current.Store(true)
	}
	return nil
}

// insert adds k, growing the table when it is too full; s.mu is held.
func (s *Set) insert(k uint64) {
	t := s.tab.Load()
	if !t.insert(k) {
		t = t.grow(1)
		t.insert(k)
		s.tab.Store(t)
	}
}

// ---- table

// Reserved slot values. Prefixes 0 and 1 are stored as 2 (key): a few more
// false positives, never a false negative.
const (
	empty     = 0
	tombstone = 1
)

func key(p uint64) uint64 {
	if p <= tombstone {
		return 2
	}
	return p
}

// Fill factors: a table is built with n/buildLoad slots and rebuilt half
// full when entries and tombstones exceed maxLoad of it (or entries fall
// under 0.4 of it, see Remove). At 8 bytes per slot that is 8/0.7 ≈ 11.4
// bytes per token after a load and at most 8/0.4 = 20 in between.
const (
	buildLoad = 0.7
	maxLoad   = 0.8
)

// table is an open-addressing multiset of keys with linear probing. Readers
// use atomic loads only; one writer at a time (Set.mu) stores slots
// atomically, so a reader sees each slot either before or after a write.
type table struct {
	slots []atomic.Uint64
	live  int // entries (writer-side)
	used  int // entries plus tombstones (writer-side)
}

func newTable(n int) *table {
	size := int(float64(n)/buildLoad) + 8
	return &table{slots: make([]atomic.Uint64, size)}
}

// buildTable builds a table of keys. It places them in order of their top
// bits (one counting-sort pass), so that the writes go to one small part of
// the table at a time instead of a cache miss per key: about three times
// faster at 1M keys.
func buildTable(keys []uint64) *table {
	t := newTable(len(keys))
	const shift = 64 - 10
	var counts [1<<10 + 1]int
	for _, k := range keys {
		counts[k>>shift+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	sorted := make([]uint64, len(keys))
	for _, k := range keys {
		sorted[counts[k>>shift]] = k
		counts[k>>shift]++
	}
	for _, k := range sorted {
		t.put(k)
	}
	return t
}

// home maps k to a slot without a division: k times the table size, high
// word. Keys are hash prefixes, uniform already, and the mapping keeps their
// order, so keys that come grouped by their first byte (as a scan yields
// them) fill one small part of the table at a time.
func (t *table) home(k uint64) int {
	hi, _ := bits.Mul64(k, uint64(len(t.slots)))
	return int(hi)
}

func (t *table) contains(k uint64) bool {
	n := len(t.slots)
	for i := t.home(k); ; {
		switch t.slots[i].Load() {
		case k:
			return true
		case empty:
			return false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// put stores k in the first empty slot of its run (tombstones are not
// reused, so a concurrent reader never misses a key that moved).
func (t *table) put(k uint64) {
	n := len(t.slots)
	i := t.home(k)
	for t.slots[i].Load() != empty {
		if i++; i == n {
			i = 0
		}
	}
	t.slots[i].Store(k)
	t.live++
	t.used++
}

// insert puts k unless the table would exceed maxLoad; false means grow.
func (t *table) insert(k uint64) bool {
	if float64(t.used+1) > maxLoad*float64(len(t.slots)) {
		return false
	}
	t.put(k)
	return true
}

// remove replaces one occurrence of k with a tombstone.
func (t *table) remove(k uint64) {
	n := len(t.slots)
	for i := t.home(k); ; {
		switch t.slots[i].Load() {
		case k:
			t.slots[i].Store(tombstone)
			t.live--
			return
		case empty:
			return
		}
		if i++; i == n {
			i = 0
		}
	}
}

// grow returns a copy without tombstones with room for extra more entries.
func (t *table) grow(extra int) *table {
	keys := make([]uint64, 0, t.live+extra)
	for i := range t.slots {
		if k := t.slots[i].Load(); k > tombstone {
			keys = append(keys, k)
		}
	}
	// Leave room so that a stream of adds does not rebuild every time.
	nt := newTable(max(len(keys)+extra, int(float64(len(keys))*buildLoad/0.5)))
	for _, k := range keys {
		nt.put(k)
	}
	return nt
}
