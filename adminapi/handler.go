package adminapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/gateway"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

const (
	// MinTimeout is the least time one admin call's database work gets.
	// Admin calls are transactions that may queue on a user's row lock
	// (concurrent creates), so they get more than the request path's
	// query timeout.
	MinTimeout = 10 * time.Second
	// retryAfter is the Retry-After of a 503, in seconds.
	retryAfter = 5
)

// Store is the part of storage.Store the admin API uses.
type Store interface {
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
	RotateToken(ctx context.Context, actor, id string, grace time.Duration, expiresAt time.Time) (storage.Token, string, storage.Invalidation, error)
	RevokeAllTokens(ctx context.Context, actor, userID, reason string) (int, storage.Invalidation, error)
	LookupCredential(ctx context.Context, h token.Hash) (token.Credential, error)
	Audit(ctx context.Context, userID string, limit int) ([]storage.AuditEvent, error)
	SetTokenControls(ctx context.Context, actor, id string, c storage.TokenControls, check func(storage.Controls) error) (storage.Token, storage.Invalidation, error)
	SetUserRateLimit(ctx context.Context, actor, id string, l quota.Limit) (storage.Invalidation, error)
	TokenUsage(ctx context.Context, tokenID string, days int) ([]storage.DayUsage, netip.Addr, error)
}

// Verifier checks a presented token the way the gateway does, so that a
// token administers exactly while it would pass the gateway.
type Verifier interface {
	Verify(ctx context.Context, tok string) (token.Credential, token.Status, error)
}

// Options are the admin API's dependencies and settings.
type Options struct {
	// Store holds users, tokens and the audit log.
	Store Store
	// Verifier checks admin-scope tokens. POST /introspect reads the store
	// instead, so that looking at a token never counts as using it, and so
	// does POST /logout, which takes a token in any state.
	Verifier Verifier
	// Invalidate applies a state change to the local cache; the handler
	// calls it before it answers, so the very next request on this
	// instance already sees the change.
	Invalidate func(storage.Invalidation)
	// AdminKeys are the static admin credentials; any one of them is
	// accepted (several at once allow a rotation without a gap). Empty
	// keys are ignored; with none, only admin-scope tokens administer.
	AdminKeys []string
	// Limits bound what a token may be created with.
	Limits request.TokenLimits
	// Limiter, if set, counts every refused credential (401, 403) against
	// the client's address; a blocked address then gets 429
	// too_many_requests with Retry-After instead of the refusal. A valid
	// credential is never refused, so never answered 429.
	Limiter FailureLimiter
	// ClientAddr returns the address a request is counted under; nil
	// means the connection's peer (r.RemoteAddr). Behind a proxy, pass
	// the address the proxy vouches for.
	ClientAddr func(r *http.Request) (netip.Addr, bool)
	// Timeout bounds one call's database work; it is raised to MinTimeout.
	Timeout time.Duration
	// Authenticated, if set, is called once a live admin-scope token was
	// accepted, e.g. to show its holder in the access log.
	Authenticated func(r *http.Request, c token.Credential)
	// Now is the clock for token expiries; nil means time.Now.
	Now func() time.Time
	// Logger logs failures of the database; nil means none. It never
	// receives a credential.
	Logger *zap.Logger
	// Health reports the instance's state for GET /healthz; it must be
	// cheap (cached), as the endpoint is public. Nil reports all up.
	Health func(context.Context) gateway.Health
	// Leaks configures the leak report routes; the zero value turns them
	// off.
	Leaks LeakOptions
}

// handler serves the admin API. Its fields are fixed at construction.
type handler struct {
	store      Store
	verifier   Verifier
	invalidate func(storage.Invalidation)
	// adminKeys are the SHA-256 of the admin keys, so that the
	// constant-time comparison does not leak a key's length either.
	adminKeys     [][sha256.Size]byte
	limits        request.TokenLimits
	limiter       FailureLimiter
	clientAddr    func(*http.Request) (netip.Addr, bool)
	timeout       time.Duration
	authenticated func(*http.Request, token.Credential)
	now           func() time.Time
	logger        *zap.Logger
	health        healthFunc
	leaks         LeakOptions
	mux           *http.ServeMux
	// patterns are the mux's route patterns, in the order registered.
	patterns []string
	// open are the route patterns that authenticate themselves instead of
	// needing an admin credential.
	open map[string]bool
}

// New returns the admin API as an http.Handler: users, tokens,
// introspection, audit and logout, as JSON. Paths are relative to where it
// is mounted (the mount prefix stripped). Every call needs
// `Authorization: Bearer <credential>`, an admin key or a live token with
// the admin scope; POST /logout needs only the caller's own token, in any
// state, which it revokes.
func New(o Options) http.Handler {
	h := &handler{
		store:         o.Store,
		verifier:      o.Verifier,
		invalidate:    o.Invalidate,
		limits:        o.Limits,
		limiter:       o.Limiter,
		clientAddr:    o.ClientAddr,
		timeout:       max(o.Timeout, MinTimeout),
		authenticated: o.Authenticated,
		now:           o.Now,
		logger:        o.Logger,
		health:        o.Health,
		leaks:         o.Leaks,
	}
	for _, k := range o.AdminKeys {
		if k != "" {
			h.adminKeys = append(h.adminKeys, sha256.Sum256([]byte(k)))
		}
	}
	if h.invalidate == nil {
		h.invalidate = func(storage.Invalidation) {}
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.clientAddr == nil {
		h.clientAddr = peerAddr
	}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	h.routes()
	return h
}

const logoutPattern = "POST /logout"

// routes builds the mux once.
func (h *handler) routes() {
	m := &patternMux{ServeMux: http.NewServeMux()}
	m.Handle("PUT /users/{user_id}", h.call(h.putUser))
	m.Handle("GET /users/{user_id}", h.call(h.getUser))
	m.Handle("GET /users", h.call(h.listUsers, "status", "limit", "cursor"))
	m.Handle("POST /users/{user_id}/deactivate", h.call(h.deactivateUser))
	m.Handle("POST /users/{user_id}/reactivate", h.call(h.reactivateUser))
	m.Handle("POST /users/{user_id}/tokens", h.call(h.createToken))
	m.Handle("GET /users/{user_id}/tokens", h.call(h.listTokens))
	m.Handle("POST /users/{user_id}/tokens/revoke", h.call(h.revokeAllTokens))
	m.Handle("GET /tokens/{token_id}", h.call(h.getToken))
	m.Handle("POST /tokens/{token_id}/revoke", h.call(h.revokeToken))
	m.Handle("POST /tokens/{token_id}/reapprove", h.call(h.reapproveToken))
	m.Handle("DELETE /tokens/{token_id}", h.call(h.deleteToken))
	m.Handle("POST /tokens/{token_id}/rotate", h.call(h.rotateToken))
	m.Handle("PATCH /tokens/{token_id}", h.call(h.patchToken))
	m.Handle("GET /tokens/{token_id}/usage", h.call(h.tokenUsage, "days"))
	m.Handle("POST /introspect", h.call(h.introspect))
	m.Handle("GET /audit", h.call(h.audit, "user_id", "limit"))
	m.Handle("GET /events", h.call(h.listEvents, "status", "limit", "cursor"))
	m.Handle("POST /events/{event_id}/retry", h.call(h.retryEvent))
	// Logout is the one call for a token holder without admin rights; it
	// authenticates the token itself.
	m.Handle(logoutPattern, h.call(h.logout))
	// Load balancers and API clients read these without a credential.
	m.Handle(healthzPattern, http.HandlerFunc(h.healthz))
	m.Handle(openAPIPattern, serveOpenAPI(openAPI))
	h.open = map[string]bool{logoutPattern: true, healthzPattern: true, openAPIPattern: true}
	for _, p := range h.leakRoutes(m) {
		h.open[p] = true
	}
	h.mux = m.ServeMux
	h.patterns = m.patterns
}

// patternMux records the patterns it is given, for routes.
type patternMux struct {
	*http.ServeMux
	patterns []string
}

func (m *patternMux) Handle(pattern string, hd http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, hd)
}

// routes returns the route patterns the admin API serves ("METHOD /path",
// with {name} wildcards), as its mux registers them; the OpenAPI
// description documents exactly these.
func routes() []string {
	return New(Options{}).(*handler).patterns
}

// probeMethods are tried to tell 405 from 404; the mux's own answers are
// plain text and, for unclean paths, redirects that would lose the mount
// prefix, so the handler answers those cases itself.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	pattern := ""
	if p != "" && path.Clean(p) == p {
		_, pattern = h.mux.Handler(r)
	}
	if h.open[pattern] {
		h.mux.ServeHTTP(w, r)
		return
	}
	// Authenticate before routing, so that without a credential every path
	// looks the same.
	actor, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	if pattern == "" {
		h.notRouted(w, r, p)
		return
	}
	if r.ContentLength > request.MaxBodyBytes {
		WriteError(w, request.ErrTooLarge)
		return
	}
	r.Body = capBody(w, r.Body)
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
}

// notRouted answers 405 with Allow when the path exists for other methods,
// else 404.
func (h *handler) notRouted(w http.ResponseWriter, r *http.Request, p string) {
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
		WriteError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint: " + r.Method + " " + p})
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	WriteError(w, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
		Message: r.Method + " is not allowed here; allowed: " + strings.Join(allow, ", ")})
}

// peerAddr is the address of the connection's peer.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

type actorKey struct{}

// actor is the audit actor of an authenticated request.
func actor(r *http.Request) string {
	a, _ := r.Context().Value(actorKey{}).(string)
	return a
}

// call adapts an endpoint to the mux, as endpoint does.
func (h *handler) call(fn func(http.ResponseWriter, *http.Request) error, params ...string) http.Handler {
	return endpoint(h.timeout, h.logger, fn, params...)
}

// endpoint adapts an endpoint of the admin or the self-service API to a
// mux: it refuses query parameters other than params (and repeated ones),
// bounds the call's database work by timeout and turns its error into a
// JSON answer.
func endpoint(timeout time.Duration, logger *zap.Logger, fn func(http.ResponseWriter, *http.Request) error, params ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := queryParams(r.URL.Query(), params...); err != nil {
			answerError(w, r, logger, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := fn(w, r.WithContext(ctx)); err != nil {
			answerError(w, r, logger, err)
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
	{storage.ErrTokenNotActive, http.StatusConflict, "token_not_active"},
	{storage.ErrExpiryPassed, http.StatusBadRequest, "invalid_request"},
	{storage.ErrTokenLeaked, http.StatusConflict, "token_leaked"},
	{storage.ErrRotationPending, http.StatusConflict, "rotation_pending"},
	{storage.ErrRevokedByOther, http.StatusForbidden, "forbidden"},
	{storage.ErrNotSelfService, http.StatusForbidden, "forbidden"},
}

// answerError writes err as the API's JSON answer: an *Error as it is, a
// domain error of the store with its status, anything else (the database
// failed) as 503.
func answerError(w http.ResponseWriter, r *http.Request, logger *zap.Logger, err error) {
	if e, ok := errors.AsType[*Error](err); ok {
		WriteError(w, e)
		return
	}
	for _, m := range storageErrors {
		if errors.Is(err, m.err) {
			WriteError(w, &Error{Status: m.status, Code: m.code, Message: notFoundMessage(r, err)})
			return
		}
	}
	answerUnavailable(w, r, logger, err)
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
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	answerUnavailable(w, r, h.logger, err)
}

func answerUnavailable(w http.ResponseWriter, r *http.Request, logger *zap.Logger, err error) {
	// Errors come from pgx or the verifier; neither carries a token.
	logger.Error("admin request failed", zap.String("method", r.Method),
		zap.String("route", r.Pattern), zap.Error(err))
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	WriteError(w, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "The token store is unavailable; retry shortly"})
}

// Interface guards
var _ Store = (*storage.Store)(nil)
