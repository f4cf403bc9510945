package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/ui"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
}

// AdminHandler is the Caddy module armgate_admin: it serves the admin API
// (see package adminapi) and the admin screen (see package ui) under
// whatever path the site mounts it, e.g.
//
//	handle_path /admin/* {
//		armgate_admin
//	}
//
// It is terminal: it never calls the next handler. The admin keys and the
// token limits come from the armgate global option.
type AdminHandler struct {
	// FailureLimit limits refused credentials (401, 403) per client
	// address: a blocked address gets 429 too_many_requests with
	// Retry-After for calls without a valid credential; a valid admin key
	// or admin-scope token is never answered 429. Default: on, 20 per
	// minute. The client address is Caddy's client_ip, as for
	// armgate_auth; the admin handlers of a process with the same settings
	// share one budget, separate from armgate_auth's, kept across config
	// reloads.
	FailureLimit *FailureLimit `json:"failure_limit,omitempty"`

	mount
	// limiterKey is the key of the handler's limiter in the limiters
	// pool, set while the handler holds a reference to it.
	limiterKey *adminLimiterKey
}

// defaultAdminFailureMax is the admin API's default failure limit per
// minute: lower than the gateway's, since nobody should mistype the admin
// credential often.
const defaultAdminFailureMax = 20

// adminLimiterKey keys the admin API's limiters in the limiters pool apart
// from armgate_auth's, so that the two never share a budget even with the
// same settings.
type adminLimiterKey struct{ limiter.Config }

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.armgate_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision gets the armgate app and builds the handlers once.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	app, err := armgateApp(ctx)
	if err != nil {
		return err
	}
	lim, err := h.provisionLimiter()
	if err != nil {
		return err
	}
	h.api = adminapi.New(adminapi.Options{
		Store:      app.runtime.Store(),
		Verifier:   app.runtime.Verifier(),
		Invalidate: app.runtime.Invalidate,
		AdminKeys:  app.adminKeys,
		Limiter:    lim,
		ClientAddr: clientAddr,
		Limits: adminapi.TokenLimits{
			MaxPerUser:  app.MaxTokensPerUser,
			Lifetime:    time.Duration(app.TokenLifetime),
			MaxLifetime: time.Duration(app.MaxTokenLifetime),
		},
		Timeout:       time.Duration(app.QueryTimeout),
		Authenticated: logAdminUser,
		Logger:        ctx.Logger(),
		Health:        app.runtime.Health,
		Leaks:         app.leakOptions(),
	})
	h.screen = ui.Admin()
	return nil
}

// provisionLimiter takes the shared failure limiter for the handler's
// settings; nil when the limiter is off.
func (h *AdminHandler) provisionLimiter() (adminapi.FailureLimiter, error) {
	f := h.FailureLimit
	if f != nil && f.Off {
		return nil, nil
	}
	cfg := limiter.Config{Max: defaultAdminFailureMax}
	if f != nil {
		cfg = limiter.Config{Max: f.Max, Window: time.Duration(f.Window), MaxClients: f.MaxClients}
		if cfg.Max == 0 {
			cfg.Max = defaultAdminFailureMax
		}
	}
	key := adminLimiterKey{cfg.WithDefaults()}
	v, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledLimiter{limiter.New(key.Config, nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	h.limiterKey = &key
	return v.(pooledLimiter).Limiter, nil
}

// Validate checks the failure limit.
func (h *AdminHandler) Validate() error {
	f := h.FailureLimit
	if f == nil || f.Off {
		return nil
	}
	if f.Max < 0 || f.Window < 0 || f.MaxClients < 0 {
		return errors.New("armgate_admin: failure_limit values must be positive")
	}
	if f.Window != 0 && time.Duration(f.Window) < time.Second {
		return fmt.Errorf("armgate_admin: failure_limit window must be at least 1s, got %s", time.Duration(f.Window))
	}
	return nil
}

// Cleanup releases the handler's reference to its failure limiter.
func (h *AdminHandler) Cleanup() error {
	if h.limiterKey == nil {
		return nil
	}
	_, err := limiters.Delete(*h.limiterKey)
	h.limiterKey = nil
	return err
}

// logAdminUser lets the access log show who made an admin call with a
// token, as armgate_auth does.
func logAdminUser(r *http.Request, c token.Credential) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", c.UserID)
		repl.Set("http.auth.user.token_id", c.TokenID)
	}
}

// ServeHTTP serves the screen or the API.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.serve(w, r)
	return nil
}

// mount is what armgate_admin and armgate_self serve under their mount
// point: a screen under ui/ and an API for every other path. Paths arrive
// with the mount prefix stripped. The screen's static files load without a
// credential, so that the page can ask for one; every API call it makes
// carries it.
type mount struct {
	api    http.Handler
	screen http.Handler
}

func (m mount) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// The mount's root (/admin/, /me/) leads a browser to its screen.
		// The Location is relative, so that it holds under any mount
		// (net/http's Redirect would resolve it against the stripped path).
		w.Header().Set("Location", "ui/")
		w.WriteHeader(http.StatusFound)
		return
	}
	if ui.Owns(r.URL.Path) {
		m.screen.ServeHTTP(w, r)
		return
	}
	m.api.ServeHTTP(w, r)
}

// parseAdmin sets up the admin handler:
//
//	armgate_admin {
//		failure_limit off
//		failure_limit <max> <window> {
//			max_clients <n>
//		}
//	}
//
// failure_limit defaults to 20 refused credentials per client address per
// 1m. The admin keys and token limits come from the armgate global option.
func parseAdmin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m AdminHandler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseAdmin.
func (h *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "failure_limit":
			if h.FailureLimit != nil {
				return d.Err("failure_limit may appear only once")
			}
			h.FailureLimit = new(FailureLimit)
			if err := h.FailureLimit.unmarshalCaddyfile(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddy.Validator             = (*AdminHandler)(nil)
	_ caddy.CleanerUpper          = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AdminHandler)(nil)
)
