package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/limiter"
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

// validate checks the settings; module names the handler in the error.
func (f *FailureLimit) validate(module string) error {
	if f == nil || f.Off {
		return nil
	}
	if f.Max < 0 || f.Window < 0 || f.MaxClients < 0 {
		return fmt.Errorf("%s: failure_limit values must be positive", module)
	}
	if f.Window != 0 && time.Duration(f.Window) < time.Second {
		return fmt.Errorf("%s: failure_limit window must be at least 1s, got %s", module, time.Duration(f.Window))
	}
	return nil
}

// config returns armgate_auth's limiter settings, defaults filled in, and
// false when the limiter is off.
func (f *FailureLimit) config() (limiter.Config, bool) { return f.configMax(0) }

// configMax is config with defaultMax as the default Max (0: the
// limiter's own default).
func (f *FailureLimit) configMax(defaultMax int) (limiter.Config, bool) {
	var cfg limiter.Config
	if f != nil {
		if f.Off {
			return limiter.Config{}, false
		}
		cfg = limiter.Config{Max: f.Max, Window: time.Duration(f.Window), MaxClients: f.MaxClients}
	}
	if cfg.Max == 0 {
		cfg.Max = defaultMax
	}
	return cfg.WithDefaults(), true
}

// limiterHold is a handler's reference to a shared failure limiter of the
// limiters pool: taken in Provision, released in Cleanup. armgate_auth and
// armgate_admin both hold theirs through it.
type limiterHold struct {
	// key is the limiter's key in the pool while the handler holds it.
	key any
}

// take takes the shared limiter for f's settings (defaultMax as the
// default Max) under the pool key keyOf returns for them; nil when f is
// off.
func (h *limiterHold) take(f *FailureLimit, defaultMax int, keyOf func(limiter.Config) any) (*limiter.Limiter, error) {
	cfg, on := f.configMax(defaultMax)
	if !on {
		return nil, nil
	}
	key := keyOf(cfg)
	v, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledLimiter{limiter.New(cfg, nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	h.key = key
	return v.(pooledLimiter).Limiter, nil
}

// release drops the reference; the limiter goes when its last handler
// does. Releasing twice is harmless.
func (h *limiterHold) release() error {
	if h.key == nil {
		return nil
	}
	_, err := limiters.Delete(h.key)
	h.key = nil
	return err
}

// blocked reports whether the client of r is blocked, and for how many more
// whole seconds. While nobody is blocked it reads one atomic and nothing
// else, not even the client address.
func blocked(l *limiter.Limiter, r *http.Request) (retryAfter int, ok bool) {
	if !l.MayBlock() {
		return 0, false
	}
	a, ok := clientAddr(r)
	if !ok {
		return 0, false
	}
	return l.Blocked(a)
}

// clientAddr returns the address the limiter counts r under: Caddy's client
// IP (which honours trusted_proxies), else the connection's peer.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	a, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}

// clientIP returns Caddy's client IP of r (which honours trusted_proxies),
// else the connection's peer, as text.
func clientIP(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s = r.RemoteAddr
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
	}
	return s
}

// limiters holds the failure limiters of this process, keyed by their
// settings (a limiter.Config with the defaults filled in). Handlers with the
// same settings share one limiter, so one budget per client address; and a
// config reload keeps the counts, since the new config's handlers load the
// limiter before the old config's are cleaned up.
var limiters = caddy.NewUsagePool()

// pooledLimiter is a limiter as the usage pool holds it.
type pooledLimiter struct{ *limiter.Limiter }

// Destruct has nothing to release: the limiter is plain memory.
func (pooledLimiter) Destruct() error { return nil }
