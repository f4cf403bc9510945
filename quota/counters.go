package quota

import (
	"context"
	"hash/maphash"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Kinds of counted subjects, as the store keys them.
const (
	KindToken = 't'
	KindUser  = 'u'
)

// Row is one window's count as the sync exchanges it with the store: this
// instance's requests since the previous sync (Delta) go in, the count of
// every instance together (Count) comes back.
type Row struct {
	Kind    byte   // KindToken or KindUser
	Subject string // the token id or the user id
	Window  int64  // the window's length in seconds
	Start   int64  // the window's start, Unix seconds
	Delta   int64
	// Count is set by the store: the cluster-wide count of the window
	// after Delta was added.
	Count int64
}

// Store is where the instances meet.
type Store interface {
	// SyncQuota adds every row's Delta to its window's count and sets
	// every row's Count, in one statement whatever the number of rows.
	SyncQuota(ctx context.Context, rows []Row) error
}

// Config tunes Counters.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Store reconciles the counts across instances; nil counts in this
	// process only.
	Store Store
}

// Counters holds the window counts and the usage of the tokens and users
// this process has seen. It is safe for concurrent use.
type Counters struct {
	now    func() time.Time
	store  Store
	tokens shards[*Token]
	users  shards[*User]
	// front holds the tokens' states last looked up, by their id's hash:
	// the hit path reads it without a lock. A shard's read lock is a write
	// to its cache line, and two CPUs serving the same tokens passed those
	// lines back and forth (0.7 µs per request in profiles under load).
	front [frontSlots]atomic.Pointer[Token]

	// syncMu serialises Sync (it owns every window's pushed counts).
	syncMu sync.Mutex
	// usageMu guards pending and serialises TakeUsage.
	usageMu sync.Mutex
	pending map[usageKey]*Usage
	addrs   map[string]netip.Addr

	// Syncs and SyncErrors count the syncs that reached the store and
	// those that failed.
	Syncs, SyncErrors atomic.Uint64
}

// frontSlots is the size of Counters.front (a power of two): 32 KiB. A
// state may sit in either of two slots, so that two busy tokens whose ids
// hash to the same slot do not keep displacing each other.
const frontSlots = 4096

// frontSlotsOf returns the two slots of the front table for an id whose
// maphash (with seed) is h.
func frontSlotsOf(h uint64) (i, j uint64) {
	return h & (frontSlots - 1), (h >> 32) & (frontSlots - 1)
}

// New returns empty Counters.
func New(cfg Config) *Counters {
	c := &Counters{now: cfg.Now, store: cfg.Store}
	if c.now == nil {
		c.now = time.Now
	}
	c.tokens.init()
	c.users.init()
	return c
}

// Now returns the counters' clock reading.
func (c *Counters) Now() time.Time { return c.now() }

// window counts one subject's requests in fixed windows of secs seconds.
// local and base pack the window's index (start / secs) in their high 32
// bits and a count in the low 32, so that a count from a past window reads
// as zero without anyone resetting it.
type window struct {
	secs atomic.Int64
	// local counts this instance's requests.
	local atomic.Uint64
	// base is the other instances' count at the last sync.
	base atomic.Uint64
	// pushed is the part of local already sent to the store, for the
	// window pushedIdx of length pushedSecs; only Sync touches them.
	pushed, pushedIdx uint64
	pushedSecs        int64
}

func pack(idx uint64, n int64) uint64 {
	return idx<<32 | uint64(min(max(n, 0), math.MaxUint32))
}

// countIn returns the count packed in v if it belongs to window idx.
func countIn(v, idx uint64) int64 {
	if v>>32 != idx {
		return 0
	}
	return int64(uint32(v))
}

// take counts one request in window idx if that keeps the count within
// limit; it returns whether it did and the count.
func (w *window) take(idx uint64, secs, limit int64) (bool, int64) {
	if w.secs.Load() != secs {
		w.resize(secs)
	}
	others := countIn(w.base.Load(), idx)
	for {
		old := w.local.Load()
		n := countIn(old, idx)
		if others+n >= limit {
			return false, others + n
		}
		if w.local.CompareAndSwap(old, pack(idx, n+1)) {
			return true, others + n + 1
		}
	}
}

// untake takes back a request take counted in window idx.
func (w *window) untake(idx uint64) {
	for {
		old := w.local.Load()
		n := countIn(old, idx)
		if n == 0 || w.local.CompareAndSwap(old, pack(idx, n-1)) {
			return
		}
	}
}

// resize starts counting in windows of secs seconds (the limit changed):
// the counts of the old length no longer apply.
func (w *window) resize(secs int64) {
	if old := w.secs.Load(); old != secs && w.secs.CompareAndSwap(old, secs) {
		w.local.Store(0)
		w.base.Store(0)
	}
}

// day counts a token's requests in one UTC day.
type day struct {
	_                         [0]func() // not comparable (first: a last zero-size field would add padding)
	day                       atomic.Int64
	allowed, quota, ipRefused atomic.Int64
}

// Token is the state of one token: its window, its user's, its usage per
// UTC day and its last client address. It is 256 bytes, so that the
// allocator places it on 64-byte boundaries, in four cache lines: what
// every request reads and seldom anybody writes, the window, the day
// counts, and what only flushes touch. The CPU that served a token last
// holds the lines that every request writes; with the read-mostly fields
// on those lines too, the other CPU also fetched them just to read the id
// and the last address (TestTokenLayout).
type Token struct {
	id   string
	user *User
	// lastIP is the last client address, as Caddy's client_ip gave it;
	// addrDirty tells the next flush to write it. lastIPHash is its
	// maphash, so that a request from the same address compares on this
	// line instead of following lastIP to two other objects.
	lastIP     atomic.Pointer[string]
	lastIPHash atomic.Uint64
	// idAt is where the id a caller last found this state by keeps its
	// bytes (the verifier's cache entry, which never changes them): the
	// same pointer and length is the same id without reading the bytes.
	// It keeps that memory alive while it is stored.
	idAt atomic.Pointer[byte]
	// text caches a header value built from the token's limits (the
	// RateLimit-Policy), so that a hit does not format it again.
	text atomic.Pointer[limitsText]
	// dropped is set when the state is forgotten (dropToken), so that the
	// front table, which may still hold it, no longer hands it out.
	dropped   atomic.Bool
	addrDirty atomic.Bool

	win  window
	_    [16]byte
	days [2]day // by day number & 1

	mu sync.Mutex // guards carry, rolls the day slots, pairs lastIP with its hash
	// carry holds counts of a day whose slot was reused before a flush
	// took them.
	carry []Usage
	// idle counts the usage flushes that found nothing (TakeUsage only).
	idle int
	_    [24]byte
}

// limitsText is a value that depends only on the limits tok and usr.
type limitsText struct {
	tok, usr Limit
	text     string
}

// LimitsText returns the value last stored with SetLimitsText for the
// limits tok and usr, if those are still the limits it was stored for.
func (t *Token) LimitsText(tok, usr Limit) (string, bool) {
	c := t.text.Load()
	if c == nil || c.tok != tok || c.usr != usr {
		return "", false
	}
	return c.text, true
}

// SetLimitsText stores s as the value for the limits tok and usr; s must
// not point into memory that is written again.
func (t *Token) SetLimitsText(tok, usr Limit, s string) {
	t.text.Store(&limitsText{tok: tok, usr: usr, text: s})
}

// User is the state of one user's window, shared by their tokens.
type User struct {
	id  string
	win window
	// refs is the number of Tokens pointing here (under the users shard
	// lock).
	refs int
}

// Status is where a request left one limit.
type Status struct {
	Limit Limit
	// Remaining is what the window still admits.
	Remaining int64
	// Reset is the seconds until the window ends.
	Reset int64
}

// Decision is the outcome of Take.
type Decision struct {
	Allowed bool
	// RetryAfter is, when refused, the seconds until the exhausted window
	// ends.
	RetryAfter int64
	// ByUser: the user's quota refused the request (else the token's).
	ByUser bool
	// Token and User are the limits that applied (a zero Limit: none).
	Token, User Status
}

// Token returns the state of the token id of user userID, creating it on
// first use. On the hit path (a token seen before) it reads the front
// table, which writes nothing and allocates nothing.
func (c *Counters) Token(id, userID string) *Token {
	h := maphash.String(seed, id)
	i, j := frontSlotsOf(h)
	f, g := &c.front[i], &c.front[j]
	for _, s := range [2]*atomic.Pointer[Token]{f, g} {
		if t := s.Load(); t != nil && t.isID(id) && !t.dropped.Load() {
			return t
		}
	}
	sh := c.tokens.shardOf(h)
	t, ok := sh.get(id)
	if !ok {
		t = c.newToken(sh, id, userID)
	}
	// The first slot unless another live state holds it.
	if o := f.Load(); o != nil && !o.dropped.Load() {
		f = g
	}
	f.Store(t)
	return t
}

// isID reports whether the state is id's. It reads id's bytes only when
// they are not where they were last time, and then remembers where they are.
func (t *Token) isID(id string) bool {
	p := unsafe.StringData(id)
	if len(id) == len(t.id) && p != nil && t.idAt.Load() == p {
		return true
	}
	if t.id != id {
		return false
	}
	t.idAt.Store(p)
	return true
}

// newToken creates the state of id in sh, its shard, unless another call
// just did.
func (c *Counters) newToken(sh *shard[*Token], id, userID string) *Token {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t, ok := sh.m[id]; ok {
		return t
	}
	// Clone: the ids may point into a larger cached object.
	t := &Token{id: strings.Clone(id), user: c.userRef(userID)}
	sh.m[t.id] = t
	return t
}

// userRef returns the user's state with one more reference.
func (c *Counters) userRef(id string) *User {
	sh := c.users.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u, ok := sh.m[id]
	if !ok {
		u = &User{id: strings.Clone(id)}
		sh.m[u.id] = u
	}
	u.refs++
	return u
}

// status fills a Status for a window of secs seconds.
func status(l Limit, used, nowSec, idx, secs int64) Status {
	return Status{Limit: l, Remaining: max(l.Requests-used, 0), Reset: (idx+1)*secs - nowSec}
}

// Take decides on one request of the token under the token's limit tok and
// its user's limit usr (zero Limits do not apply) and counts it, allowed
// or refused, in the token's usage. A refused request counts in no window.
// It allocates nothing.
func (t *Token) Take(now time.Time, tok, usr Limit) Decision {
	sec := now.Unix()
	var d Decision
	d.Allowed = true
	var tidx uint64
	if !tok.IsZero() {
		secs := tok.Seconds()
		idx := sec / secs
		ok, used := t.win.take(uint64(idx), secs, tok.Requests)
		d.Token = status(tok, used, sec, idx, secs)
		if !ok {
			d.Allowed, d.RetryAfter = false, d.Token.Reset
		}
		tidx = uint64(idx)
	}
	if d.Allowed && !usr.IsZero() {
		secs := usr.Seconds()
		idx := sec / secs
		ok, used := t.user.win.take(uint64(idx), secs, usr.Requests)
		d.User = status(usr, used, sec, idx, secs)
		if !ok {
			d.Allowed, d.RetryAfter, d.ByUser = false, d.User.Reset, true
			if !tok.IsZero() {
				t.win.untake(tidx)
				d.Token.Remaining++
			}
		}
	}
	s := t.slot(sec / 86400)
	if d.Allowed {
		s.allowed.Add(1)
	} else {
		s.quota.Add(1)
	}
	return d
}

// RefuseIP counts a request refused by the token's allow-list.
func (t *Token) RefuseIP(now time.Time) {
	t.slot(now.Unix() / 86400).ipRefused.Add(1)
}

// Seen records ip (a client address as text) as the token's last; it
// allocates only when the address changes.
func (t *Token) Seen(ip string) {
	if ip == "" {
		return
	}
	// A different address with the same 64-bit hash (seeded per process)
	// would go unrecorded until the next change: a stale display, never a
	// wrong decision.
	h := maphash.String(seed, ip)
	if t.lastIPHash.Load() == h && t.lastIP.Load() != nil {
		return
	}
	s := strings.Clone(ip)
	// Under mu, so that the address and the hash stored last are a pair.
	t.mu.Lock()
	t.lastIP.Store(&s)
	t.lastIPHash.Store(h)
	t.mu.Unlock()
	t.addrDirty.Store(true)
}

// slot returns the usage counts of day d (days since the Unix epoch).
func (t *Token) slot(d int64) *day {
	s := &t.days[d&1]
	if s.day.Load() != d {
		t.roll(s, d)
	}
	return s
}

// roll moves s to day d, carrying its counts of an earlier day over to
// the next flush.
func (t *Token) roll(s *day, d int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := s.day.Load()
	if old == d {
		return
	}
	if u := takeDay(t.id, s, old); u.any() {
		t.carry = append(t.carry, u)
	}
	s.day.Store(d)
}

// shards is a map from ids split in 64 locked parts.
type shards[V any] [64]shard[V]

var seed = maphash.MakeSeed()

func (s *shards[V]) init() {
	for i := range s {
		s[i].m = map[string]V{}
	}
}

// shard is one part of shards.
type shard[V any] struct {
	mu sync.RWMutex
	m  map[string]V
	_  [40]byte // keep each lock on its own cache line
}

// shardOf returns the part for a key whose maphash (with seed) is h.
func (s *shards[V]) shardOf(h uint64) *shard[V] { return &s[h&63] }

func (s *shards[V]) shard(key string) *shard[V] { return s.shardOf(maphash.String(seed, key)) }

func (sh *shard[V]) get(key string) (V, bool) {
	sh.mu.RLock()
	v, ok := sh.m[key]
	sh.mu.RUnlock()
	return v, ok
}

// each calls fn for every value, one shard at a time, outside the locks.
func (s *shards[V]) each(fn func(V)) {
	var vs []V
	for i := range s {
		sh := &s[i]
		vs = vs[:0]
		sh.mu.RLock()
		for _, v := range sh.m {
			vs = append(vs, v)
		}
		sh.mu.RUnlock()
		for _, v := range vs {
			fn(v)
		}
	}
}
