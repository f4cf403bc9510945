package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"

	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/refusal"
	"github.com/armgate/armgate/token"
)

func init() {
	caddy.RegisterModule(AuthHandler{})
}

const (
	defaultRealm      = "ARM API"
	retryAfterSeconds = 5
	// statusClientClosedRequest is the non-standard status for a request
	// its client abandoned (nginx's 499).
	statusClientClosedRequest = 499
)

// tokenVerifier is the part of the app the auth handler needs.
type tokenVerifier interface {
	Verify(ctx context.Context, tok string) (token.Credential, token.Status, error)
	// NeedsBlindLookup reports whether tok is not cached and the set of
	// known tokens is not current, so that only a query could tell.
	NeedsBlindLookup(tok string) bool
}

// AuthHandler lets a request through only with a live bearer token that
// carries the route's scope. On success it sets the placeholders
// {http.auth.user.id}, {http.auth.user.token_id} and
// {http.auth.user.token_name}. Refusals follow RFC 6750 §3 with a JSON body.
type AuthHandler struct {
	// Realm is the realm of the WWW-Authenticate challenge. Default "ARM API".
	Realm string `json:"realm,omitempty"`
	// Scope is the scope a token must carry. Default "api".
	Scope string `json:"scope,omitempty"`
	// FailureLimit limits refused tokens per client address. Default: on,
	// 50 per minute.
	FailureLimit *FailureLimit `json:"failure_limit,omitempty"`
	// ExpiresHeader names the response header that tells the client when
	// its token expires (RFC 3339, UTC), so that scripts can warn before
	// their token lapses. Default "ARM-Token-Expires"; "off" drops it.
	ExpiresHeader string `json:"expires_header,omitempty"`
	// RateLimitHeaders "off" drops the RateLimit-Policy and RateLimit
	// headers (draft-ietf-httpapi-ratelimit-headers-11) that responses
	// carry when a quota applies to the token. Default on.
	RateLimitHeaders string `json:"ratelimit_headers,omitempty"`

	verifier tokenVerifier
	limiter  *limiter.Limiter
	// hold is the handler's reference to limiter in the limiters pool.
	hold   limiterHold
	logger *zap.Logger
	// challenge is the precomputed `Bearer realm="…"`.
	challenge string
	// expiresKey is ExpiresHeader in canonical form; "" means the default.
	expiresKey string
	// expiresOff drops the expiry header.
	expiresOff bool
	// quota counts requests per token and user; tokenQuota and userQuota
	// are the defaults for tokens and users without a quota of their own.
	quota                 *quota.Counters
	tokenQuota, userQuota quota.Limit
	// rateLimitOff drops the RateLimit headers.
	rateLimitOff bool
}

// defaultExpiresHeader is the default ExpiresHeader, in canonical form.
const defaultExpiresHeader = "Arm-Token-Expires"

// CaddyModule returns the Caddy module information.
func (AuthHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.armgate_auth",
		New: func() caddy.Module { return new(AuthHandler) },
	}
}

// Provision gets the armgate app.
func (h *AuthHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	initProcessMetrics()
	if h.Realm == "" {
		h.Realm = defaultRealm
	}
	if h.Scope == "" {
		h.Scope = "api"
	}
	app, err := armgateApp(ctx)
	if err != nil {
		return err
	}
	h.verifier = app.runtime.Verifier()
	if err := h.provisionLimiter(); err != nil {
		return err
	}
	h.challenge = `Bearer realm="` + h.Realm + `"`
	h.configureExpiresHeader()
	h.quota = app.runtime.Quota()
	if app.Quota != nil {
		h.tokenQuota, h.userQuota = app.Quota.Token.limit(), app.Quota.User.limit()
	}
	h.rateLimitOff = h.RateLimitHeaders == "off"
	return nil
}

// configureExpiresHeader sets the expiry header's key from ExpiresHeader.
func (h *AuthHandler) configureExpiresHeader() {
	switch h.ExpiresHeader {
	case "off":
		h.expiresOff = true
	case "":
		h.expiresKey = defaultExpiresHeader
	default:
		h.expiresKey = http.CanonicalHeaderKey(h.ExpiresHeader)
	}
}

// provisionLimiter takes the shared failure limiter for the handler's
// settings, unless the limiter is off.
func (h *AuthHandler) provisionLimiter() (err error) {
	h.limiter, err = h.hold.take(h.FailureLimit, 0, func(c limiter.Config) any { return c })
	return err
}

// Cleanup releases the handler's reference to its failure limiter; the
// limiter goes when its last handler does.
func (h *AuthHandler) Cleanup() error { return h.hold.release() }

// armgateApp returns the configured armgate app, or a clear error when the
// global option is missing.
func armgateApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.AppIfConfigured("armgate")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errors.New("the armgate app is not configured: add the `armgate { database ... }` global option (or apps.armgate in JSON)")
	} else if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// Validate checks the realm and scope can be quoted in a challenge.
func (h *AuthHandler) Validate() error {
	for _, s := range []string{h.Realm, h.Scope} {
		if strings.ContainsAny(s, "\"\\\r\n") {
			return fmt.Errorf("armgate_auth: realm and scope may not contain quotes, backslashes or newlines: %q", s)
		}
	}
	if h.RateLimitHeaders != "" && h.RateLimitHeaders != "on" && h.RateLimitHeaders != "off" {
		return fmt.Errorf("armgate_auth: ratelimit_headers is on or off, got %q", h.RateLimitHeaders)
	}
	if h.ExpiresHeader != "" && h.ExpiresHeader != "off" && !httpguts.ValidHeaderFieldName(h.ExpiresHeader) {
		return fmt.Errorf("armgate_auth: expires_header %q is not a valid header name", h.ExpiresHeader)
	}
	return h.FailureLimit.validate("armgate_auth")
}

// ServeHTTP decides on the request's bearer token. The failure limiter
// answers 429 only for a malformed header or a token that does not exist:
// a token that exists gets its own answer whatever else came from its
// client's address. The one exception keeps the limiter's protection of the
// database while the set of known tokens cannot vouch for a token: a blocked
// client's cache miss is then refused without a lookup.
func (h *AuthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The key is canonical: indexing skips Header.Values' canonicalisation.
	tok, parsed := token.ParseAuthorization(r.Header["Authorization"])
	switch parsed {
	case token.HeaderMissing:
		countDecision(outcomeMissing, r)
		refusal.Write(w, http.StatusUnauthorized, h.challenge, refusal.CodeUnauthorized, refusal.MsgTokenRequired)
		return nil
	case token.HeaderMalformed:
		if secs, isBlocked := h.blocked(r); isBlocked {
			h.tooMany(w, r, secs)
			return nil
		}
		h.refused(r)
		countDecision(outcomeMalformed, r)
		refusal.Write(w, http.StatusBadRequest, h.challenge+`, error="invalid_request"`,
			refusal.CodeInvalidRequest, refusal.MsgMalformedHeader)
		return nil
	}
	// While nobody is blocked this reads one atomic and nothing else.
	secs, isBlocked := h.blocked(r)
	if isBlocked && h.verifier.NeedsBlindLookup(tok) {
		h.tooMany(w, r, secs)
		return nil
	}
	cred, status, err := h.verifier.Verify(r.Context(), tok)
	if err != nil && (r.Context().Err() != nil || errors.Is(err, context.Canceled)) {
		// The client hung up while waiting (the shared lookup goes on
		// without it): not a database failure, and nobody reads the
		// answer. 499 is what Caddy's reverse_proxy logs for this too.
		countDecision(outcomeCanceled, r)
		if c := h.logger.Check(zapcore.DebugLevel, "client went away during the token lookup"); c != nil {
			c.Write(zap.Error(err))
		}
		refusal.Write(w, statusClientClosedRequest, "", refusal.CodeCanceled, refusal.MsgCanceled)
		return nil
	}
	if err != nil {
		// Fail closed, but never 401: the token may well be valid.
		countDecision(outcomeUnavailable, r)
		if c := h.logger.Check(zapcore.ErrorLevel, "token lookup failed"); c != nil {
			c.Write(zap.Error(err))
		}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		refusal.Write(w, http.StatusServiceUnavailable, "", refusal.CodeUnavailable, refusal.MsgUnavailable)
		return nil
	}
	if status == token.Unknown && isBlocked {
		h.tooMany(w, r, secs)
		return nil
	}
	if status != token.Active {
		h.refused(r)
		desc := status.Description()
		countDecision(refusalOutcome(status), r)
		if c := h.logger.Check(zapcore.DebugLevel, "token refused"); c != nil {
			c.Write(zap.Stringer("status", status), zap.String("token_id", cred.TokenID))
		}
		refusal.Write(w, http.StatusUnauthorized,
			h.challenge+`, error="invalid_token", error_description="`+desc+`"`, refusal.CodeInvalidToken, desc)
		return nil
	}
	// The token is live: from here on nothing counts toward the failure
	// limiter. The allow-list comes first, so that nothing else about the
	// token is told to an address it may not be used from.
	var qs *quota.Token
	var now time.Time
	if h.quota != nil {
		now = h.quota.Now()
		qs = h.quota.Token(cred.TokenID, cred.UserID)
	}
	ip := clientIP(r)
	if !cred.AllowedIPs.Empty() {
		if a, err := netip.ParseAddr(ip); err != nil || !cred.AllowedIPs.Allows(a) {
			if qs != nil {
				qs.RefuseIP(now)
			}
			ipNotAllowed(w, r)
			return nil
		}
	}
	if !cred.HasScope(h.Scope) {
		countDecision(outcomeInsufficientScope, r)
		refusal.Write(w, http.StatusForbidden,
			h.challenge+`, error="insufficient_scope", scope="`+h.Scope+`"`,
			refusal.CodeInsufficientScope, refusal.MsgLacksScope+h.Scope)
		return nil
	}
	var d quota.Decision
	if qs != nil {
		tl, ul := cred.RateLimit, cred.UserRateLimit
		if tl.IsZero() {
			tl = h.tokenQuota
		}
		if ul.IsZero() {
			ul = h.userQuota
		}
		if d = qs.Take(now, tl, ul); !d.Allowed {
			h.quotaExceeded(w, r, &cred, &d)
			return nil
		}
		qs.Seen(ip)
	}
	countDecision(outcomeAllowed, r)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	setUserPlaceholders(repl, cred.UserID, cred.TokenID, cred.Name)
	markTokenAuth(r) // armgate_self refuses it: a token never mints tokens
	h.setPassHeaders(w, &cred, qs, &d)
	return next.ServeHTTP(w, r)
}

// setUserPlaceholders provides {http.auth.user.id}, {http.auth.user.token_id}
// and {http.auth.user.token_name} through a replacer function: one small
// allocation per request. Three Replacer.Set calls would box each value and
// add three entries to the replacer's map, which reverse_proxy's own
// placeholders then grow past its first group. Values set with
// Replacer.Set (the vars directive) still come first.
func setUserPlaceholders(repl *caddy.Replacer, id, tokenID, name string) {
	repl.Map(func(key string) (any, bool) {
		switch key {
		case "http.auth.user.id":
			return id, true
		case "http.auth.user.token_id":
			return tokenID, true
		case "http.auth.user.token_name":
			return name, true
		}
		return nil, false
	})
}

// blocked reports whether the limiter blocks r's client, and for how many
// seconds.
func (h *AuthHandler) blocked(r *http.Request) (retryAfter int, ok bool) {
	if h.limiter == nil {
		return 0, false
	}
	return blocked(h.limiter, r)
}

// tooMany answers 429 to a blocked client.
func (h *AuthHandler) tooMany(w http.ResponseWriter, r *http.Request, secs int) {
	countDecision(outcomeRateLimited, r)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	refusal.Write(w, http.StatusTooManyRequests, "", refusal.CodeTooManyRequests, refusal.MsgTooManyRefused)
}

// refused counts a refused token (401 invalid_token or 400) against the
// client's failure limit.
func (h *AuthHandler) refused(r *http.Request) {
	if h.limiter == nil {
		return
	}
	if a, ok := clientAddr(r); ok {
		h.limiter.Fail(a)
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddy.Validator             = (*AuthHandler)(nil)
	_ caddy.CleanerUpper          = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
)
