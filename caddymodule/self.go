package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/ui"
)

func init() {
	caddy.RegisterModule(SelfHandler{})
}

// defaultSelfUser is where Caddy's authentication handlers (basic_auth, and
// plugins such as caddy-security) put the signed-in user.
const defaultSelfUser = "{http.auth.user.id}"

// SelfHandler is the Caddy module armgate_self: a signed-in user's own
// tokens (see adminapi.NewSelf) and the screen "My API Tokens" at /ui/,
// mounted behind the site's sign-in, e.g.
//
//	handle_path /me/* {
//		basic_auth { alice $2a$14$... }
//		armgate_self
//	}
//
// It is terminal: it never calls the next handler.
type SelfHandler struct {
	// User is the signed-in user's id, usually a placeholder resolved per
	// request; default {http.auth.user.id}. With forward_auth, use
	// {http.request.header.X-User-Id} after copy_headers X-User-Id.
	User string `json:"user,omitempty"`

	mount
}

// CaddyModule returns the Caddy module information.
func (SelfHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.armgate_self",
		New: func() caddy.Module { return new(SelfHandler) },
	}
}

// Provision gets the armgate app and builds the handlers once.
func (h *SelfHandler) Provision(ctx caddy.Context) error {
	app, err := armgateApp(ctx)
	if err != nil {
		return err
	}
	if h.User == "" {
		h.User = defaultSelfUser
	}
	h.api = adminapi.NewSelf(adminapi.SelfOptions{
		Store:      app.runtime.Store(),
		User:       h.user,
		Invalidate: app.runtime.Invalidate,
		Limits: adminapi.TokenLimits{
			MaxPerUser:  app.MaxTokensPerUser,
			Lifetime:    time.Duration(app.TokenLifetime),
			MaxLifetime: time.Duration(app.MaxTokenLifetime),
		},
		Timeout: time.Duration(app.QueryTimeout),
		Logger:  ctx.Logger(),
	})
	h.screen = ui.Self()
	return nil
}

// user resolves the User option with the request's placeholders; an
// unknown placeholder is empty, which the API answers with 401.
func (h *SelfHandler) user(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	return repl.ReplaceAll(h.User, "")
}

// ServeHTTP serves the screen or the API.
func (h *SelfHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.serve(w, r)
	return nil
}

// parseSelf sets up the self-service handler:
//
//	armgate_self {
//		user <placeholder or id>
//	}
//
// user defaults to {http.auth.user.id}; the token limits come from the
// armgate global option.
func parseSelf(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m SelfHandler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseSelf.
func (h *SelfHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "user":
			if h.User != "" {
				return d.Err("user may appear only once")
			}
			if !d.AllArgs(&h.User) || h.User == "" {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SelfHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*SelfHandler)(nil)
	_ caddyfile.Unmarshaler       = (*SelfHandler)(nil)
)
