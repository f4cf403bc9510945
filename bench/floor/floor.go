// Package floor is a Caddy handler for the load benchmark only: the least
// any token check that sends the RateLimit and expiry headers could do per
// request. It hashes the bearer token with SHA-256, finds the token in a
// copy-on-write map, counts the request with one atomic add and sets the
// three response headers (two of them built once per token, RateLimit per
// request). It checks nothing else (no format, expiry, revocation, user,
// allow-list, usage or metrics) and learns every token it sees, so it is no
// gateway: it only sets the floor under what armgate_auth costs (the
// benchmark's configuration F). Internal/caddybin links it in only with the
// build tag armgate_benchfloor, which the load benchmark sets.
package floor

import (
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(new(Handler))
	httpcaddyfile.RegisterHandlerDirective("bench_floor", func(httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		return new(Handler), nil
	})
}

// The values the benchmark's quota and expiry would give: as long as the
// headers armgate_auth sends with S-quota's configuration.
const (
	limit   = 1_000_000_000
	policy  = `"token";q=1000000000;w=3600, "user";q=1000000000;w=3600`
	expires = "2026-12-07T18:00:00Z"
)

// Handler is the floor check (Caddyfile: bench_floor).
type Handler struct {
	mu     sync.Mutex // serialises learning a token
	tokens atomic.Pointer[map[[sha256.Size]byte]*tokenState]
}

type tokenState struct {
	used   atomic.Int64
	policy []string
	exp    []string
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bench_floor", New: func() caddy.Module { return new(Handler) }}
}

// ServeHTTP hashes, finds, counts, sets the headers and passes on.
func (f *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	a := r.Header["Authorization"]
	if len(a) != 1 || !strings.HasPrefix(a[0], "Bearer ") {
		w.WriteHeader(http.StatusUnauthorized)
		return nil
	}
	t := f.state(sha256.Sum256([]byte(a[0][len("Bearer "):])))
	left := limit - t.used.Add(1)
	b := make([]byte, 0, 64)
	b = append(b, `"token";r=`...)
	b = strconv.AppendInt(b, left, 10)
	b = append(b, `;t=1800, "user";r=`...)
	b = strconv.AppendInt(b, left, 10)
	b = append(b, `;t=1800`...)
	hdr := w.Header()
	hdr["Ratelimit-Policy"] = t.policy
	hdr["Ratelimit"] = []string{string(b)}
	hdr["Arm-Token-Expires"] = t.exp
	return next.ServeHTTP(w, r)
}

// state returns the state of the token hashed to h, learning it on first
// sight.
func (f *Handler) state(h [sha256.Size]byte) *tokenState {
	if m := f.tokens.Load(); m != nil {
		if t := (*m)[h]; t != nil {
			return t
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[[sha256.Size]byte]*tokenState{}
	if old := f.tokens.Load(); old != nil {
		if t := (*old)[h]; t != nil {
			return t
		}
		for k, v := range *old {
			m[k] = v
		}
	}
	t := &tokenState{policy: []string{policy}, exp: []string{expires}}
	m[h] = t
	f.tokens.Store(&m)
	return t
}

var _ caddyhttp.MiddlewareHandler = (*Handler)(nil)
