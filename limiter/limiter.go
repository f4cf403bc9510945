// Package limiter counts refused requests per client address and blocks an
// address that exceeds a budget: a sliding window per address (two fixed
// buckets, the previous one weighted by how much of it the window still
// covers), IPv6 addresses counted per /64, memory bounded by an
// approximate-LRU eviction over 64 independently locked shards.
package limiter

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults: 50 refusals per client address per minute, 100000 addresses
// tracked. A person with a mistyped, revoked or expired token, or a small
// office behind one NAT address, stays far below that; a script spraying
// guesses from one address is held to under one refusal a second.
const (
	DefaultMax        = 50
	DefaultWindow     = time.Minute
	DefaultMaxClients = 100_000
)

const (
	shardBits = 6
	numShards = 1 << shardBits
	// evictionSample is how many tracked addresses a full shard looks at
	// to choose the one to forget (an approximate LRU, as in Redis).
	evictionSample = 8
)

// Config sets a Limiter's budget. Zero values take the defaults.
type Config struct {
	// Max is the number of refusals allowed per Window.
	Max int
	// Window is the period over which refusals are counted.
	Window time.Duration
	// MaxClients bounds the number of addresses tracked; beyond it, the
	// least recently failing are forgotten (about 150 bytes each).
	MaxClients int
}

// WithDefaults returns c with its zero values replaced by the defaults.
func (c Config) WithDefaults() Config {
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	return c
}

// Limiter is safe for concurrent use.
type Limiter struct {
	max      float64
	window   int64 // nanoseconds
	perShard int
	seed     uint64
	now      func() time.Time

	// horizon is 0 when no client is blocked, else a time (Unix
	// nanoseconds) before which some client may be: while nobody is
	// blocked, MayBlock reads only this, not even the clock.
	horizon atomic.Int64

	shards [numShards]shard
}

type shard struct {
	mu        sync.Mutex
	clients   map[netip.Addr]failures
	nextSweep int64
	_         [40]byte // keep shards on separate cache lines
}

// failures is what the limiter knows of one client address.
type failures struct {
	bucket    int64  // index of the current window bucket: time / window
	cur, prev uint32 // refusals in the current and the previous bucket
	until     int64  // blocked until this time (Unix nanoseconds), or 0
}

// New returns a Limiter for cfg (zero values take the defaults) that reads
// the time from now (time.Now when nil).
func New(cfg Config, now func() time.Time) *Limiter {
	cfg = cfg.WithDefaults()
	if now == nil {
		now = time.Now
	}
	l := &Limiter{
		max:      float64(cfg.Max),
		window:   int64(cfg.Window),
		perShard: max(1, (cfg.MaxClients+numShards-1)/numShards),
		seed:     rand.Uint64() | 1,
		now:      now,
	}
	for i := range l.shards {
		l.shards[i].clients = make(map[netip.Addr]failures)
	}
	return l
}

// MayBlock reports whether any address may be blocked. While nobody is, it
// reads one atomic and nothing else, so a caller can skip working out the
// client address.
func (l *Limiter) MayBlock() bool {
	h := l.horizon.Load()
	return h != 0 && l.before(h, l.now().UnixNano())
}

// before reports whether t is before the horizon h, else clears it: nobody
// is blocked any more. A failure that raised the horizon meanwhile makes
// the CAS fail and is kept.
func (l *Limiter) before(h, t int64) bool {
	if t < h {
		return true
	}
	l.horizon.CompareAndSwap(h, 0)
	return false
}

// Blocked reports whether addr is blocked, and for how many more whole
// seconds (at least 1).
func (l *Limiter) Blocked(addr netip.Addr) (retryAfter int, ok bool) {
	h := l.horizon.Load()
	if h == 0 {
		return 0, false
	}
	t := l.now().UnixNano()
	if !l.before(h, t) {
		return 0, false
	}
	key := Key(addr)
	s := l.shard(key)
	s.mu.Lock()
	c, found := s.clients[key]
	s.mu.Unlock()
	if !found || t >= c.until {
		return 0, false
	}
	return retrySeconds(c.until - t), true
}

// Fail counts a refusal from addr.
func (l *Limiter) Fail(addr netip.Addr) {
	l.fail(Key(addr), l.now().UnixNano())
}

// Key is the address a client is counted under: IPv4-mapped IPv6 as IPv4,
// no zone, and IPv6 reduced to its /64, since one client usually holds a
// whole /64.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// fail counts an event of key at t, unless key is blocked: then it counts
// nothing and returns the end of the block and false.
func (l *Limiter) fail(key netip.Addr, t int64) (until int64, counted bool) {
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t >= s.nextSweep {
		l.sweep(s, t)
	}
	c, found := s.clients[key]
	if !found && len(s.clients) >= l.perShard {
		l.evict(s)
	}
	if t < c.until {
		// A blocked client is refused before it is checked, so for Fail
		// this can only be a refusal that raced with its own block.
		return c.until, false
	}
	b := t / l.window
	switch b {
	case c.bucket:
		c.cur++
	case c.bucket + 1:
		c.prev, c.cur = c.cur, 1
	default:
		c.prev, c.cur = 0, 1
	}
	c.bucket = b
	if l.estimate(c, t) >= l.max {
		c.until = l.release(c)
		for h := l.horizon.Load(); h < c.until && !l.horizon.CompareAndSwap(h, c.until); h = l.horizon.Load() {
		}
	}
	s.clients[key] = c
	return 0, true
}

// estimate is the number of refusals in the window that ends at t.
func (l *Limiter) estimate(c failures, t int64) float64 {
	frac := float64(t-c.bucket*l.window) / float64(l.window)
	return float64(c.prev)*(1-frac) + float64(c.cur)
}

// release is the first time at which the estimate falls under max again if
// no further refusal comes.
func (l *Limiter) release(c failures) int64 {
	w := float64(l.window)
	start := c.bucket * l.window
	if float64(c.cur) >= l.max {
		// In the next bucket the estimate is cur*(1-frac).
		return start + l.window + int64(math.Round(w*(1-l.max/float64(c.cur))))
	}
	// Here prev*(1-frac) + cur >= max > cur, so prev > 0.
	return start + int64(math.Round(w*(1-(l.max-float64(c.cur))/float64(c.prev))))
}

// sweep forgets the addresses that are not blocked and whose refusals have
// left the window; at most once a window per shard.
func (l *Limiter) sweep(s *shard, t int64) {
	s.nextSweep = t + l.window
	b := t / l.window
	for k, c := range s.clients {
		if c.until <= t && c.bucket < b-1 {
			delete(s.clients, k)
		}
	}
}

// evict forgets one address of a full shard: of a few sampled (Go's map
// iteration starts at a random place), the one blocked for the shortest
// time, else the one that failed longest ago. Under a flood of spoofed
// addresses this may forget a blocked one; memory stays bounded either way.
func (l *Limiter) evict(s *shard) {
	var victim netip.Addr
	var vc failures
	n := 0
	for k, c := range s.clients {
		if n == 0 || c.until < vc.until || c.until == vc.until && c.bucket < vc.bucket {
			victim, vc = k, c
		}
		if n++; n == evictionSample {
			break
		}
	}
	delete(s.clients, victim)
}

func (l *Limiter) shard(key netip.Addr) *shard {
	b := key.As16()
	x := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])*0x9e3779b97f4a7c15) * l.seed
	return &l.shards[x>>(64-shardBits)]
}

// retrySeconds rounds d nanoseconds up to whole seconds, at least 1.
func retrySeconds(d int64) int {
	return max(1, int((d+int64(time.Second)-1)/int64(time.Second)))
}
