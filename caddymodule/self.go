package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
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
	// Origins are origins, besides the site's own, whose pages may make
	// state-changing calls: scheme://host or scheme://host:port, scheme
	// http or https. The site's own origin needs no entry, behind a load
	// balancer that terminates TLS either, when the balancer is in
	// trusted_proxies and sends X-Forwarded-Proto.
	Origins []string `json:"origins,omitempty"`
	// WriteLimit limits state-changing calls per signed-in user; default
	// 60 per 1h. The handlers of a process with the same settings share
	// one budget per user, kept across config reloads.
	WriteLimit *WriteLimit `json:"write_limit,omitempty"`

	mount
	// writeKey is the key of the handler's write limiter in the limiters
	// pool, set while the handler holds a reference to it.
	writeKey *writeLimiterKey
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
	origins, err := parseOrigins(h.Origins)
	if err != nil {
		return err
	}
	writes, err := h.provisionWriteLimit()
	if err != nil {
		return err
	}
	h.api = adminapi.NewSelf(adminapi.SelfOptions{
		Store:      app.runtime.Store(),
		User:       h.user,
		Invalidate: app.runtime.Invalidate,
		Limits: request.TokenLimits{
			MaxPerUser:  app.MaxTokensPerUser,
			Lifetime:    time.Duration(app.TokenLifetime),
			MaxLifetime: time.Duration(app.MaxTokenLifetime),
		},
		Timeout:      time.Duration(app.QueryTimeout),
		Logger:       ctx.Logger(),
		Origin:       adminapi.OriginPolicy{Scheme: externalScheme, Origins: origins},
		WriteLimit:   writes,
		DefaultQuota: app.defaultTokenQuota(),
	})
	h.screen = ui.Self()
	return nil
}

// Validate checks the write limit (Provision has checked the origins).
func (h *SelfHandler) Validate() error {
	return h.WriteLimit.validate()
}

// Cleanup releases the handler's reference to its write limiter.
func (h *SelfHandler) Cleanup() error {
	if h.writeKey == nil {
		return nil
	}
	_, err := limiters.Delete(*h.writeKey)
	h.writeKey = nil
	return err
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

// ServeHTTP serves the screen or the API, but to no request whose user
// was identified by an API token: a token never mints tokens.
func (h *SelfHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if identifiedByToken(r) {
		adminapi.WriteError(w, errTokenOnSelf)
		return nil
	}
	h.serve(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SelfHandler)(nil)
	_ caddy.Validator             = (*SelfHandler)(nil)
	_ caddy.CleanerUpper          = (*SelfHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*SelfHandler)(nil)
	_ caddyfile.Unmarshaler       = (*SelfHandler)(nil)
)
