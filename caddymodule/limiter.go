package caddymodule

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// now is the limiter's clock; tests replace it.
var now = time.Now

// Failure limiter defaults: 50 refused tokens per client address per minute.
// A person with a mistyped, revoked or expired token, or a small office
// behind one NAT address, stays far below that; a script spraying guesses
// from one address is held to under one database lookup a second.
const (
	defaultFailureMax     = 50
	defaultFailureWindow  = time.Minute
	defaultFailureClients = 100_000
	limiterShards         = 64
	// evictionSample is how many tracked addresses a full shard looks at
	// to choose the one to forget (an approximate LRU, as in Redis).
	evictionSample = 8
)

// FailureLimit configures armgate_auth's per-client failure limiter: a
// client address that presented Max refused tokens (401 invalid_token or a
// malformed 400) within Window gets 429 with Retry-After, before any cache
// or database lookup, until its failure rate falls back under the limit.
// Outcomes caused by the database (503) do not count. The client address is
// Caddy's client_ip (mind trusted_proxies behind a load balancer); IPv6
// addresses count per /64.
type FailureLimit struct {
	// Off turns the limiter off.
	Off bool `json:"off,omitempty"`
	// Max is the number of refused tokens allowed per Window. Default 50.
	Max int `json:"max,omitempty"`
	// Window is the period over which refusals are counted (a sliding
	// window). Default 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// MaxClients bounds the number of client addresses tracked; beyond
	// it, the least recently failing are forgotten. Default 100000
	// (about 15 MB at most).
	MaxClients int `json:"max_clients,omitempty"`
}

func (f *FailureLimit) validate() error {
	if f == nil || f.Off {
		return nil
	}
	if f.Max < 0 || f.Window < 0 || f.MaxClients < 0 {
		return errors.New("armgate_auth: failure_limit values must be positive")
	}
	if f.Window != 0 && time.Duration(f.Window) < time.Second {
		return fmt.Errorf("armgate_auth: failure_limit window must be at least 1s, got %s", time.Duration(f.Window))
	}
	return nil
}

// newLimiter returns the limiter for the configuration, or nil when it is
// off.
func newLimiter(f *FailureLimit) *limiter {
	if f == nil {
		f = new(FailureLimit)
	}
	if f.Off {
		return nil
	}
	max, window, clients := f.Max, time.Duration(f.Window), f.MaxClients
	if max == 0 {
		max = defaultFailureMax
	}
	if window == 0 {
		window = defaultFailureWindow
	}
	if clients == 0 {
		clients = defaultFailureClients
	}
	l := &limiter{
		max:      float64(max),
		window:   int64(window),
		perShard: (clients + limiterShards - 1) / limiterShards,
		seed:     rand.Uint64() | 1,
	}
	for i := range l.shards {
		l.shards[i].clients = make(map[netip.Addr]failures)
	}
	return l
}

// limiter counts refused tokens per client address with a sliding window
// (two fixed buckets, the previous one weighted by how much of it the
// window still covers). Memory is bounded by perShard addresses per shard.
type limiter struct {
	max      float64
	window   int64 // nanoseconds
	perShard int
	seed     uint64

	// horizon is 0 when no client is blocked, else a time (Unix
	// nanoseconds) before which some client may be: the request path
	// reads only this while nobody is blocked, not even the clock.
	horizon atomic.Int64

	shards [limiterShards]limiterShard
}

type limiterShard struct {
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

// blocked reports whether the client of r is blocked, and for how many
// more whole seconds (at least 1).
func (l *limiter) blocked(r *http.Request) (retryAfter int, ok bool) {
	h := l.horizon.Load()
	if h == 0 {
		return 0, false
	}
	t := now().UnixNano()
	if t >= h {
		// Nobody is blocked any more; a failure that raised the horizon
		// meanwhile makes this CAS fail and is kept.
		l.horizon.CompareAndSwap(h, 0)
		return 0, false
	}
	key, ok := clientKey(r)
	if !ok {
		return 0, false
	}
	s := l.shard(key)
	s.mu.Lock()
	c, found := s.clients[key]
	s.mu.Unlock()
	if !found || t >= c.until {
		return 0, false
	}
	return retrySeconds(c.until - t), true
}

// fail counts a refused token from the client of r.
func (l *limiter) fail(r *http.Request) {
	key, ok := clientKey(r)
	if !ok {
		return
	}
	l.failKey(key, now().UnixNano())
}

func (l *limiter) failKey(key netip.Addr, t int64) {
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
		// A blocked client is refused before any lookup, so this can
		// only be a refusal that raced with its own block.
		return
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
}

// estimate is the number of refusals in the window that ends at t.
func (l *limiter) estimate(c failures, t int64) float64 {
	frac := float64(t-c.bucket*l.window) / float64(l.window)
	return float64(c.prev)*(1-frac) + float64(c.cur)
}

// release is the first time at which the estimate falls under max again if
// no further refusal comes.
func (l *limiter) release(c failures) int64 {
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
func (l *limiter) sweep(s *limiterShard, t int64) {
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
func (l *limiter) evict(s *limiterShard) {
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

func (l *limiter) shard(key netip.Addr) *limiterShard {
	b := key.As16()
	x := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])*0x9e3779b97f4a7c15) * l.seed
	return &l.shards[x>>(64-6)]
}

// clientKey returns the address the limiter counts r under: Caddy's client
// IP (which honours trusted_proxies), else the connection's peer; IPv6
// addresses are reduced to their /64, since one client usually holds a
// whole /64.
func clientKey(r *http.Request) (netip.Addr, bool) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s = r.RemoteAddr
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a, true
}

// retrySeconds rounds d nanoseconds up to whole seconds, at least 1.
func retrySeconds(d int64) int {
	return max(1, int((d+int64(time.Second)-1)/int64(time.Second)))
}
