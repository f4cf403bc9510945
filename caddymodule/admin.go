package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
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
	// hold is the handler's reference to its limiter in the limiters pool.
	hold limiterHold
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
		Limits: request.TokenLimits{
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
	l, err := h.hold.take(h.FailureLimit, defaultAdminFailureMax,
		func(c limiter.Config) any { return adminLimiterKey{c} })
	if l == nil {
		return nil, err // no typed nil in the interface
	}
	return l, nil
}

// Validate checks the failure limit.
func (h *AdminHandler) Validate() error { return h.FailureLimit.validate("armgate_admin") }

// Cleanup releases the handler's reference to its failure limiter.
func (h *AdminHandler) Cleanup() error { return h.hold.release() }

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

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddy.Validator             = (*AdminHandler)(nil)
	_ caddy.CleanerUpper          = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AdminHandler)(nil)
)
