package verifier

import (
	"encoding/binary"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// scopeSet is a credential's scopes as bits; the only scopes a token can
// carry are api and admin (token.NormalizeScopes refuses any other).
type scopeSet uint8

const (
	scopeAPI scopeSet = 1 << iota
	scopeAdmin
)

// scopeSlices are the Scopes of a credential rebuilt from a cache entry,
// one shared slice per set so that a hit allocates nothing. Their capacity
// equals their length: an append by a caller copies.
var scopeSlices = [4][]string{
	0:                     {},
	scopeAPI:              {token.ScopeAPI},
	scopeAdmin:            {token.ScopeAdmin},
	scopeAPI | scopeAdmin: {token.ScopeAPI, token.ScopeAdmin},
}

func scopesOf(names []string) scopeSet {
	var s scopeSet
	for _, n := range names {
		switch n {
		case token.ScopeAPI:
			s |= scopeAPI
		case token.ScopeAdmin:
			s |= scopeAdmin
		}
	}
	return s
}

const (
	flagRevoked uint8 = 1 << iota
	flagUserDeactivated
)

// entry is a cached known token, packed: a 96-byte header followed, in the
// same allocation, by the token id, the user id, the name, the expiry as the
// response header shows it and the encoded allow-list, back to back. The
// header holds no pointer, so the whole entry is one object the garbage
// collector never scans (176 bytes for a UUID token id, a 12-byte user id,
// a short name and no allow-list). Only newEntry may create one.
type entry struct {
	// tail is the hash after its first eight bytes, which are the cache
	// key: a hit counts only when the whole hash matches.
	tail [len(token.Hash{}) - 8]byte
	// createdAt and expiresAt are the credential's times, staleAt the end
	// of the entry's life (loaded + cache ttl); unix nanoseconds, 0 for
	// the zero time.
	createdAt, expiresAt, staleAt int64
	// userAt, nameAt, expAt, ipsAt and strsLen are offsets into the
	// strings that follow the header: token id, user id, name, the
	// expiry formatted for the response header, the encoded allow-list.
	userAt, nameAt, expAt, ipsAt, strsLen uint32
	// The token's and the user's quotas: requests per window seconds.
	tokReq, tokWin, userReq, userWin uint32
	// usedSec is the last second (since usedEpoch) in which a request used
	// the token, so that its last use is queued at most once a second.
	usedSec atomic.Uint32
	scopes  scopeSet
	flags   uint8
}

const entryHeader = unsafe.Sizeof(entry{})

func newEntry(h token.Hash, c token.Credential, staleAt time.Time) *entry {
	var expBuf [len("2006-01-02T15:04:05Z") + 8]byte
	var exp []byte
	if !c.ExpiresAt.IsZero() {
		exp = c.ExpiresAt.UTC().AppendFormat(expBuf[:0], time.RFC3339)
	}
	strs := c.TokenID + c.UserID + c.Name + string(exp) + c.AllowedIPs.Encoded()
	if uint64(len(strs)) > math.MaxUint32 {
		panic("verifier: credential strings over 4 GiB")
	}
	// One pointer-free allocation, in words so that it is 8-byte aligned.
	words := make([]uint64, (entryHeader+uintptr(len(strs))+7)/8)
	e := (*entry)(unsafe.Pointer(&words[0]))
	*e = entry{
		createdAt: nanos(c.CreatedAt),
		expiresAt: nanos(c.ExpiresAt),
		staleAt:   nanos(staleAt),
		userAt:    uint32(len(c.TokenID)),
		nameAt:    uint32(len(c.TokenID) + len(c.UserID)),
		expAt:     uint32(len(c.TokenID) + len(c.UserID) + len(c.Name)),
		ipsAt:     uint32(len(c.TokenID) + len(c.UserID) + len(c.Name) + len(exp)),
		strsLen:   uint32(len(strs)),
		scopes:    scopesOf(c.Scopes),
		tokReq:    uint32(c.RateLimit.Requests),
		tokWin:    uint32(c.RateLimit.Seconds()),
		userReq:   uint32(c.UserRateLimit.Requests),
		userWin:   uint32(c.UserRateLimit.Seconds()),
	}
	if len(strs) > 0 { // else the address past the header is past the allocation
		copy(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e), entryHeader)), len(strs)), strs)
	}
	copy(e.tail[:], h[8:])
	if c.Revoked {
		e.flags |= flagRevoked
	}
	if c.UserDeactivated {
		e.flags |= flagUserDeactivated
	}
	return e
}

// strs returns the strings stored after the header; they are never
// written after newEntry, and point into the entry, keeping it alive.
func (e *entry) strs() string {
	if e.strsLen == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), entryHeader)), e.strsLen)
}

// matches reports whether e is the entry of h (whose key it is stored under).
// Three word compares: the array compare calls runtime.memequal.
func (e *entry) matches(h *token.Hash) bool {
	le := binary.LittleEndian
	return le.Uint64(e.tail[0:]) == le.Uint64(h[8:]) &&
		le.Uint64(e.tail[8:]) == le.Uint64(h[16:]) &&
		le.Uint64(e.tail[16:]) == le.Uint64(h[24:])
}

func (e *entry) tokenID() string { return e.strs()[:e.userAt] }

// credential rebuilds the credential without allocating.
func (e *entry) credential() token.Credential {
	strs := e.strs()
	return token.Credential{
		TokenID:         strs[:e.userAt],
		UserID:          strs[e.userAt:e.nameAt],
		Name:            strs[e.nameAt:e.expAt],
		Scopes:          scopeSlices[e.scopes&3],
		CreatedAt:       fromNanos(e.createdAt),
		ExpiresAt:       fromNanos(e.expiresAt),
		Revoked:         e.flags&flagRevoked != 0,
		UserDeactivated: e.flags&flagUserDeactivated != 0,
		RateLimit:       limit(e.tokReq, e.tokWin),
		UserRateLimit:   limit(e.userReq, e.userWin),
		AllowedIPs:      allowList(strs[e.ipsAt:]),
		ExpiresText:     strs[e.expAt:e.ipsAt],
	}
}

func limit(req, win uint32) quota.Limit {
	if req == 0 {
		return quota.Limit{}
	}
	return quota.Limit{Requests: int64(req), Window: time.Duration(win) * time.Second}
}

// allowList decodes an allow-list newEntry stored; it was valid then.
func allowList(enc string) ipallow.List {
	l, _ := ipallow.FromEncoded(enc)
	return l
}

var (
	minNanos = time.Unix(0, math.MinInt64+1)
	maxNanos = time.Unix(0, math.MaxInt64)
)

// nanos is t in unix nanoseconds, clamped to what an int64 holds (years
// 1678 to 2262), 0 for the zero time.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minNanos):
		return math.MinInt64 + 1
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// negSlot remembers one unknown hash until a time (unix nanoseconds).
type negSlot struct {
	h     token.Hash
	until int64
}

// negWays is the number of slots a hash may occupy in the negative table.
const negWays = 4

// negTable remembers unknown hashes in a fixed, preallocated table apart
// from the cache of known tokens, so that a flood of unknown tokens can
// only displace other unknown tokens, never evict a known one. A hash goes
// to one bucket of negWays slots, replacing the slot that expires first.
type negTable struct {
	buckets [][negWays]negSlot
	locks   [64]sync.Mutex // striped by bucket
}

// newNegTable returns a table of at least n slots (a power of two).
func newNegTable(n int) *negTable {
	return &negTable{buckets: make([][negWays]negSlot, pow2AtLeast((n+negWays-1)/negWays))}
}

func (t *negTable) bucket(h *token.Hash) (*[negWays]negSlot, *sync.Mutex) {
	i := cacheKey(h[:]) & uint64(len(t.buckets)-1)
	return &t.buckets[i], &t.locks[i%uint64(len(t.locks))]
}

// has reports whether h is remembered as unknown at now.
func (t *negTable) has(h *token.Hash, now int64) bool {
	b, mu := t.bucket(h)
	mu.Lock()
	defer mu.Unlock()
	for i := range b {
		if b[i].h == *h {
			return now < b[i].until
		}
	}
	return false
}

// add remembers h as unknown until until.
func (t *negTable) add(h *token.Hash, until int64) {
	b, mu := t.bucket(h)
	mu.Lock()
	defer mu.Unlock()
	victim := 0
	for i := range b {
		if b[i].h == *h {
			victim = i
			break
		}
		if b[i].until < b[victim].until {
			victim = i
		}
	}
	b[victim] = negSlot{h: *h, until: until}
}

// del forgets h.
func (t *negTable) del(h []byte) {
	var hh token.Hash
	if copy(hh[:], h) != len(hh) {
		return // not a hash, never stored
	}
	b, mu := t.bucket(&hh)
	mu.Lock()
	defer mu.Unlock()
	for i := range b {
		if b[i].h == hh {
			b[i] = negSlot{}
		}
	}
}

// clear forgets every hash.
func (t *negTable) clear() {
	for i := range t.locks {
		t.locks[i].Lock()
	}
	clear(t.buckets)
	for i := range t.locks {
		t.locks[i].Unlock()
	}
}
