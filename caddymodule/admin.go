package caddymodule

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/gateway"
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
// It is terminal: it never calls the next handler. The admin key and the
// token limits come from the armgate global option.
type AdminHandler struct {
	api    http.Handler
	screen http.Handler
}

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
	h.api = adminapi.New(adminapi.Options{
		Store:      app.runtime.Store(),
		Verifier:   app.runtime.Verifier(),
		Invalidate: app.runtime.Invalidate,
		AdminKeys:  []string{app.adminKey},
		Limits: adminapi.TokenLimits{
			MaxPerUser:  app.MaxTokensPerUser,
			Lifetime:    time.Duration(app.TokenLifetime),
			MaxLifetime: time.Duration(app.MaxTokenLifetime),
		},
		Timeout:       time.Duration(app.QueryTimeout),
		Authenticated: logAdminUser,
		Logger:        ctx.Logger(),
		Health:        runtimeHealth(app.runtime),
	})
	h.screen = ui.Admin()
	return nil
}

// logAdminUser lets the access log show who made an admin call with a
// token, as armgate_auth does.
func logAdminUser(r *http.Request, c token.Credential) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", c.UserID)
		repl.Set("http.auth.user.token_id", c.TokenID)
	}
}

// ServeHTTP serves the screen or the API; paths arrive with the mount
// prefix stripped.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// The screen's static files load without a credential, so that the page
	// can ask for one; every API call it makes carries it.
	if ui.Owns(r.URL.Path) {
		h.screen.ServeHTTP(w, r)
		return nil
	}
	h.api.ServeHTTP(w, r)
	return nil
}

// parseAdmin sets up the admin handler:
//
//	armgate_admin
//
// It takes no arguments and no subdirectives; the admin key and token
// limits come from the armgate global option.
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
	if nesting := d.Nesting(); d.NextBlock(nesting) {
		return d.Errf("unrecognized subdirective: %s", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AdminHandler)(nil)
)

// runtimeHealth adapts the runtime's health to the admin API's.
func runtimeHealth(rt *gateway.Runtime) func(context.Context) adminapi.HealthStatus {
	return func(ctx context.Context) adminapi.HealthStatus {
		s := rt.Health(ctx)
		return adminapi.HealthStatus{Database: s.Database, Listener: s.Listener, Migrated: s.Migrated}
	}
}
