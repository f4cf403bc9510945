package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/token"
)

// tokenAuthVar is the request variable with which armgate_auth marks a
// request it let through: the request's user was identified by a bearer
// token. Its value has a type of this package, which no configuration (the
// vars directive) can produce, and armgate_self refuses a request on which
// the variable is set at all, whatever its value, so a directive that
// overwrote it would only refuse more.
const tokenAuthVar = "armgate.auth.token"

// tokenAuthMark is the value of tokenAuthVar. It has no size, so setting
// it allocates nothing.
type tokenAuthMark struct{}

// markTokenAuth records on r that armgate_auth identified its user by a
// token. Caddy gives every request a table of variables in its context, so
// this needs no copy of the request.
func markTokenAuth(r *http.Request) {
	caddyhttp.SetVar(r.Context(), tokenAuthVar, tokenAuthMark{})
}

// identifiedByToken reports whether r's user was identified by an armgate
// token: armgate_auth let it through earlier in the route, or it carries an
// armgate token as its bearer credential (a route that forwarded a token's
// user to this mount another way, say through a proxy hop).
func identifiedByToken(r *http.Request) bool {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if _, ok := vars[tokenAuthVar]; ok {
		return true
	}
	tok, parsed := token.ParseAuthorization(r.Header.Values("Authorization"))
	return parsed == token.HeaderOK && token.Check(tok) == nil
}

// errTokenOnSelf is armgate_self's answer to a request identified by a
// token.
var errTokenOnSelf = &adminapi.Error{Status: http.StatusForbidden, Code: "forbidden",
	Message: "This page is for people signed in to the site, not for API tokens: a token cannot create, rotate or re-approve tokens"}

// externalScheme is the scheme with which the client reached the site:
// https on a TLS connection; behind a proxy that terminates TLS, the
// X-Forwarded-Proto of the connection's peer when Caddy trusts it
// (trusted_proxies), else http. Only the last value counts: it is what the
// trusted peer itself saw; values to its left may come from the client.
func externalScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return "http"
	}
	values := r.Header.Values("X-Forwarded-Proto")
	if len(values) == 0 {
		return "http"
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if strings.EqualFold(strings.TrimSpace(last), "https") {
		return "https"
	}
	return "http"
}

// WriteLimit limits the state-changing self-service calls (every method
// but GET, HEAD and OPTIONS) per signed-in user: over Max within Window,
// 429 too_many_requests with Retry-After. A call refused as cross-site is
// not counted.
type WriteLimit struct {
	// Off turns the limit off.
	Off bool `json:"off,omitempty"`
	// Max is the number of calls allowed per Window. Default 60.
	Max int `json:"max,omitempty"`
	// Window is the period over which calls are counted (a sliding
	// window). Default 1h.
	Window caddy.Duration `json:"window,omitempty"`
}

// Defaults of the write limit: a person creating, rotating and revoking
// tokens by hand stays far below 60 changes an hour; a stolen session
// cannot churn tokens (each a database write, an audit row and a message
// to every instance) faster than one a minute.
const (
	defaultWriteMax    = 60
	defaultWriteWindow = time.Hour
)

func (l *WriteLimit) validate() error {
	if l == nil || l.Off {
		return nil
	}
	if l.Max < 0 || l.Window < 0 {
		return errors.New("armgate_self: write_limit values must be positive")
	}
	if l.Window != 0 && time.Duration(l.Window) < time.Second {
		return fmt.Errorf("armgate_self: write_limit window must be at least 1s, got %s", time.Duration(l.Window))
	}
	return nil
}

// config returns the limiter settings, defaults filled in, and false when
// the limit is off.
func (l *WriteLimit) config() (limiter.Config, bool) {
	cfg := limiter.Config{Max: defaultWriteMax, Window: defaultWriteWindow}
	if l != nil {
		if l.Off {
			return limiter.Config{}, false
		}
		if l.Max != 0 {
			cfg.Max = l.Max
		}
		if l.Window != 0 {
			cfg.Window = time.Duration(l.Window)
		}
	}
	return cfg.WithDefaults(), true
}

// writeLimiterKey keys the write limiters in the limiters pool apart from
// the failure limiters: the armgate_self handlers of a process with the
// same settings share one budget per user, kept across config reloads.
type writeLimiterKey struct{ limiter.Config }

// pooledNames is a write limiter as the usage pool holds it.
type pooledNames struct{ *limiter.Names }

// Destruct has nothing to release: the limiter is plain memory.
func (pooledNames) Destruct() error { return nil }

// provisionWriteLimit takes the shared write limiter for the handler's
// settings; nil when the limit is off.
func (h *SelfHandler) provisionWriteLimit() (adminapi.WriteLimiter, error) {
	if err := h.WriteLimit.validate(); err != nil {
		return nil, err
	}
	cfg, on := h.WriteLimit.config()
	if !on {
		return nil, nil
	}
	key := writeLimiterKey{cfg}
	l, err := loadWriteLimiter(key)
	if err != nil {
		return nil, err
	}
	h.writeKey = &key
	return l, nil
}

// loadWriteLimiter returns the shared write limiter for key, counting one
// more user of it.
func loadWriteLimiter(key writeLimiterKey) (*limiter.Names, error) {
	v, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledNames{limiter.NewNames(key.Config, nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooledNames).Names, nil
}

// parseOrigins validates the origins option.
func parseOrigins(list []string) ([]adminapi.Origin, error) {
	out := make([]adminapi.Origin, 0, len(list))
	for _, s := range list {
		o, err := adminapi.ParseOrigin(s)
		if err != nil {
			return nil, fmt.Errorf("armgate_self: origins: %w", err)
		}
		out = append(out, o)
	}
	return out, nil
}
