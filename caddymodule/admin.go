package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
}

const (
	adminChallenge = `Bearer realm="armgate admin"`
	logoutPattern  = "POST /logout"
	// minAdminTimeout bounds one admin call's database work. Admin calls
	// are transactions that may queue on a user's row lock (concurrent
	// creates), so they get more than the request path's query_timeout.
	minAdminTimeout = 10 * time.Second
	// adminRetryAfter is the Retry-After of a 503, in seconds.
	adminRetryAfter   = 5
	invalidCredential = "The credential is not a valid admin key or token"
)

// tokenRefusals say why a presented token is not live; the caller holds the
// token, so this reveals nothing. Unknown tokens get invalidCredential.
var tokenRefusals = map[token.Status]string{
	token.Expired:     "The token expired",
	token.Revoked:     "The token was revoked",
	token.Deactivated: "The token's user is deactivated",
}

// adminStore is the part of storage.Store the admin handler uses.
type adminStore interface {
	UpsertUser(ctx context.Context, actor, id string, p storage.UserPatch) (storage.User, bool, error)
	GetUser(ctx context.Context, id string) (storage.User, error)
	ListUsers(ctx context.Context, status, after string, limit int) ([]storage.User, bool, error)
	SetUserActive(ctx context.Context, actor, id string, active bool) (storage.User, storage.Invalidation, error)
	CreateToken(ctx context.Context, actor string, n storage.NewToken) (storage.Token, string, error)
	GetToken(ctx context.Context, id string) (storage.Token, error)
	ListTokens(ctx context.Context, userID string) ([]storage.Token, error)
	RevokeToken(ctx context.Context, actor, id, reason string) (storage.Token, storage.Invalidation, error)
	Logout(ctx context.Context, id string) (storage.Token, storage.Invalidation, error)
	ReapproveToken(ctx context.Context, actor, id string) (storage.Token, storage.Invalidation, error)
	DeleteToken(ctx context.Context, actor, id string) (storage.Invalidation, error)
	Audit(ctx context.Context, userID string, limit int) ([]storage.AuditEvent, error)
}

// AdminHandler serves armgate's admin API (DESIGN.md §5): users, tokens,
// introspection, audit and logout, as JSON. It is terminal: it never calls
// the next handler. Mount it under a path prefix with handle_path, e.g.
//
//	handle_path /admin/* {
//		armgate_admin
//	}
//
// Every call needs `Authorization: Bearer <credential>`: the app's
// admin_key or a live token with the admin scope. POST /logout needs only
// the caller's own live token, which it revokes.
type AdminHandler struct {
	store      adminStore
	verifier   tokenVerifier
	invalidate func(storage.Invalidation)
	// adminKey is the SHA-256 of the admin key, so the constant-time
	// comparison does not leak the key's length either.
	adminKey    [sha256.Size]byte
	hasAdminKey bool
	limits      adminapi.TokenLimits
	timeout     time.Duration
	now         func() time.Time
	logger      *zap.Logger
	mux         *http.ServeMux
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.armgate_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision gets the armgate app and builds the routes.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := armgateApp(ctx)
	if err != nil {
		return err
	}
	h.store = app.runtime.Store()
	h.verifier = app.runtime.Verifier()
	h.invalidate = app.runtime.Invalidate
	if app.adminKey != "" {
		h.adminKey, h.hasAdminKey = sha256.Sum256([]byte(app.adminKey)), true
	}
	h.limits = adminapi.TokenLimits{
		MaxPerUser:  app.MaxTokensPerUser,
		Lifetime:    time.Duration(app.TokenLifetime),
		MaxLifetime: time.Duration(app.MaxTokenLifetime),
	}
	h.timeout = max(time.Duration(app.QueryTimeout), minAdminTimeout)
	h.now = time.Now
	h.routes()
	return nil
}

// routes builds the mux. Paths arrive with the mount prefix stripped.
func (h *AdminHandler) routes() {
	m := http.NewServeMux()
	m.Handle("PUT /users/{user_id}", h.call(h.putUser))
	m.Handle("GET /users/{user_id}", h.call(h.getUser))
	m.Handle("GET /users", h.call(h.listUsers, "status", "limit", "cursor"))
	m.Handle("POST /users/{user_id}/deactivate", h.call(h.deactivateUser))
	m.Handle("POST /users/{user_id}/reactivate", h.call(h.reactivateUser))
	m.Handle("POST /users/{user_id}/tokens", h.call(h.createToken))
	m.Handle("GET /users/{user_id}/tokens", h.call(h.listTokens))
	m.Handle("GET /tokens/{token_id}", h.call(h.getToken))
	m.Handle("POST /tokens/{token_id}/revoke", h.call(h.revokeToken))
	m.Handle("POST /tokens/{token_id}/reapprove", h.call(h.reapproveToken))
	m.Handle("DELETE /tokens/{token_id}", h.call(h.deleteToken))
	m.Handle("POST /introspect", h.call(h.introspect))
	m.Handle("GET /audit", h.call(h.audit, "user_id", "limit"))
	m.Handle(logoutPattern, h.call(h.logout))
	h.mux = m
}

// probeMethods are tried to tell 405 from 404; the mux's own answers are
// plain text and, for unclean paths, redirects that would lose the mount
// prefix, so the handler answers those cases itself.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// The screen's static files load without a credential, so that the page
	// can ask for one; every API call it makes carries it.
	if serveUI(w, r) {
		return nil
	}
	p := r.URL.EscapedPath()
	pattern := ""
	if p != "" && path.Clean(p) == p {
		_, pattern = h.mux.Handler(r)
	}
	// Logout is the one call for a token holder without admin rights; it
	// authenticates the token itself.
	if pattern == logoutPattern {
		h.mux.ServeHTTP(w, r)
		return nil
	}
	// Authenticate before routing, so that without a credential every path
	// looks the same.
	actor, ok := h.authenticate(w, r)
	if !ok {
		return nil
	}
	if pattern == "" {
		h.notRouted(w, r, p)
		return nil
	}
	if r.ContentLength > adminapi.MaxBodyBytes {
		adminapi.WriteError(w, adminapi.ErrTooLarge)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, adminapi.MaxBodyBytes)
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	return nil
}

// notRouted answers 405 with Allow when the path exists for other methods,
// else 404.
func (h *AdminHandler) notRouted(w http.ResponseWriter, r *http.Request, p string) {
	var allow []string
	if p != "" && path.Clean(p) == p {
		probe := r.Clone(r.Context())
		for _, m := range probeMethods {
			probe.Method = m
			if _, pat := h.mux.Handler(probe); pat != "" {
				allow = append(allow, m)
			}
		}
	}
	if len(allow) == 0 {
		adminapi.WriteError(w, &adminapi.Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such admin endpoint: " + r.Method + " " + p})
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	adminapi.WriteError(w, &adminapi.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
		Message: r.Method + " is not allowed here; allowed: " + strings.Join(allow, ", ")})
}

type actorKey struct{}

// actor is the audit actor of an authenticated admin request.
func actor(r *http.Request) string {
	a, _ := r.Context().Value(actorKey{}).(string)
	return a
}

// authenticate checks the admin credential and returns the audit actor, or
// writes the refusal.
func (h *AdminHandler) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok, parsed := token.ParseAuthorization(r.Header.Values("Authorization"))
	if parsed != token.HeaderOK {
		writeAuthError(w, http.StatusUnauthorized, adminChallenge, "unauthorized",
			"An admin credential is required: send Authorization: Bearer with the admin key or a token with the admin scope")
		return "", false
	}
	if h.hasAdminKey {
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], h.adminKey[:]) == 1 {
			return storage.ActorAdminKey, true
		}
	}
	cred, ok := h.liveToken(w, r, tok)
	if !ok {
		return "", false
	}
	if !cred.HasScope(token.ScopeAdmin) {
		writeAuthError(w, http.StatusForbidden,
			adminChallenge+`, error="insufficient_scope", scope="admin"`,
			"forbidden", "The token lacks the admin scope")
		return "", false
	}
	// Let the access log show who made the call, as armgate_auth does.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", cred.UserID)
		repl.Set("http.auth.user.token_id", cred.TokenID)
	}
	return storage.ActorToken(cred.TokenID), true
}

// liveToken verifies tok like the gateway does, or writes 401 or 503.
func (h *AdminHandler) liveToken(w http.ResponseWriter, r *http.Request, tok string) (token.Credential, bool) {
	cred, result, err := h.verifier.Verify(r.Context(), tok)
	if err != nil {
		h.unavailable(w, r, err)
		return cred, false
	}
	if result != token.Active {
		msg, ok := tokenRefusals[result]
		if !ok {
			msg = invalidCredential
		}
		writeAuthError(w, http.StatusUnauthorized, adminChallenge, "unauthorized", msg)
		return cred, false
	}
	return cred, true
}

// call adapts an endpoint that returns an error to an http.Handler, bounds
// its database work, and maps the error to a response in one place.
// call adapts an API function to the mux: it refuses query parameters other
// than params (and repeated ones), bounds the call's database work and turns
// its error into a JSON answer.
func (h *AdminHandler) call(fn func(http.ResponseWriter, *http.Request) error, params ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := adminapi.QueryParams(r.URL.Query(), params...); err != nil {
			h.writeError(w, r, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
		defer cancel()
		if err := fn(w, r.WithContext(ctx)); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// storageErrors maps domain errors to responses.
var storageErrors = []struct {
	err    error
	status int
	code   string
}{
	{storage.ErrNotFound, http.StatusNotFound, "not_found"},
	{storage.ErrTokenLimit, http.StatusConflict, "token_limit_reached"},
	{storage.ErrNameTaken, http.StatusConflict, "name_taken"},
	{storage.ErrUserDeactivated, http.StatusConflict, "user_deactivated"},
	{storage.ErrTokenExpired, http.StatusConflict, "token_expired"},
	{storage.ErrExpiryPassed, http.StatusBadRequest, "invalid_request"},
}

func (h *AdminHandler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := errors.AsType[*adminapi.Error](err); ok {
		adminapi.WriteError(w, e)
		return
	}
	for _, m := range storageErrors {
		if errors.Is(err, m.err) {
			adminapi.WriteError(w, &adminapi.Error{Status: m.status, Code: m.code, Message: notFoundMessage(r, err)})
			return
		}
	}
	h.unavailable(w, r, err)
}

// notFoundMessage names what was not found; other errors speak for
// themselves.
func notFoundMessage(r *http.Request, err error) string {
	if !errors.Is(err, storage.ErrNotFound) {
		return err.Error()
	}
	if id := r.PathValue("token_id"); id != "" {
		return "no token with id " + id
	}
	return "no user with id " + r.PathValue("user_id")
}

// unavailable answers 503: the database failed, and the outcome is unknown.
func (h *AdminHandler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	// Errors come from pgx or the verifier; neither carries a token.
	h.logger.Error("admin request failed", zap.String("method", r.Method),
		zap.String("route", r.Pattern), zap.Error(err))
	w.Header().Set("Retry-After", strconv.Itoa(adminRetryAfter))
	adminapi.WriteError(w, &adminapi.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "The token store is unavailable; retry shortly"})
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
	_ adminStore                  = (*storage.Store)(nil)
)
