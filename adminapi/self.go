package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// SelfStore is the part of storage.Store the self-service API uses.
type SelfStore interface {
	GetUser(ctx context.Context, id string) (storage.User, error)
	CreateToken(ctx context.Context, actor string, n storage.NewToken) (storage.Token, string, error)
	GetToken(ctx context.Context, id string) (storage.Token, error)
	ListTokens(ctx context.Context, userID string) ([]storage.Token, error)
	RevokeToken(ctx context.Context, actor, id, reason string) (storage.Token, storage.Invalidation, error)
	ReapproveToken(ctx context.Context, actor, id string) (storage.Token, storage.Invalidation, error)
	RotateToken(ctx context.Context, actor, id string, grace time.Duration, expiresAt time.Time) (storage.Token, string, storage.Invalidation, error)
	DeleteToken(ctx context.Context, actor, id string) (storage.Invalidation, error)
}

// SelfOptions are the self-service API's dependencies and settings.
type SelfOptions struct {
	// Store holds users and tokens.
	Store SelfStore
	// User returns the signed-in user of a request, as the sign-in in
	// front of the handler established it; "" means nobody is signed in.
	User func(r *http.Request) string
	// Invalidate, Limits, Timeout, Now and Logger are as in Options.
	Invalidate func(storage.Invalidation)
	Limits     TokenLimits
	Timeout    time.Duration
	Now        func() time.Time
	Logger     *zap.Logger
}

// selfOpenAPI serves the description of the self-service calls.
var selfOpenAPI = ServeOpenAPI(SelfOpenAPI())

// selfHandler serves a signed-in user's own tokens. It reuses the admin
// API's token endpoints, with the user fixed and the audit actor
// user:<id>.
type selfHandler struct {
	admin *handler
	store SelfStore
	user  func(*http.Request) string
	mux   *http.ServeMux
}

// NewSelf returns the self-service API as an http.Handler: the signed-in
// user lists, creates, revokes, re-approves, rotates and deletes their own
// tokens. Paths are relative to the mount. Who is signed in comes from
// o.User; the handler trusts it, so it must sit behind the site's sign-in.
// Calls that change state refuse cross-site requests (Sec-Fetch-Site,
// Origin) and bodies that are not application/json, since the mount may be
// behind cookie sign-in.
func NewSelf(o SelfOptions) http.Handler {
	s := &selfHandler{
		admin: New(Options{
			Store:      selfAsStore{o.Store},
			Invalidate: o.Invalidate,
			Limits:     o.Limits,
			Timeout:    o.Timeout,
			Now:        o.Now,
			Logger:     o.Logger,
		}).(*handler),
		store: o.Store,
		user:  o.User,
	}
	m := http.NewServeMux()
	m.Handle("GET /tokens", s.call(s.listTokens))
	m.Handle("POST /tokens", s.call(s.createToken))
	m.Handle("GET /tokens/{token_id}", s.call(s.own(s.admin.getToken)))
	m.Handle("POST /tokens/{token_id}/revoke", s.call(s.own(s.admin.revokeToken)))
	m.Handle("POST /tokens/{token_id}/reapprove", s.call(s.own(s.admin.reapproveToken)))
	m.Handle("POST /tokens/{token_id}/rotate", s.call(s.own(s.admin.rotateToken)))
	m.Handle("DELETE /tokens/{token_id}", s.call(s.own(s.admin.deleteToken)))
	s.mux = m
	return s
}

// selfAsStore lets the admin endpoints run on a SelfStore; the self routes
// call none of the other methods.
type selfAsStore struct{ SelfStore }

func (selfAsStore) UpsertUser(context.Context, string, string, storage.UserPatch) (storage.User, bool, error) {
	panic("not a self-service call")
}

func (selfAsStore) ListUsers(context.Context, string, string, int) ([]storage.User, bool, error) {
	panic("not a self-service call")
}

func (selfAsStore) SetUserActive(context.Context, string, string, bool) (storage.User, storage.Invalidation, error) {
	panic("not a self-service call")
}

func (selfAsStore) Logout(context.Context, string) (storage.Token, storage.Invalidation, error) {
	panic("not a self-service call")
}

func (selfAsStore) Audit(context.Context, string, int) ([]storage.AuditEvent, error) {
	panic("not a self-service call")
}

func (selfAsStore) RevokeAllTokens(context.Context, string, string, string) (int, storage.Invalidation, error) {
	panic("not a self-service call")
}

func (selfAsStore) LookupCredential(context.Context, token.Hash) (token.Credential, error) {
	panic("not a self-service call")
}

func (selfAsStore) SetTokenControls(context.Context, string, string, storage.TokenControls, func(storage.Controls) error) (storage.Token, storage.Invalidation, error) {
	panic("not a self-service call")
}

func (selfAsStore) SetUserRateLimit(context.Context, string, string, quota.Limit) (storage.Invalidation, error) {
	panic("not a self-service call")
}

func (selfAsStore) TokenUsage(context.Context, string, int) ([]storage.DayUsage, netip.Addr, error) {
	panic("not a self-service call")
}

func (s *selfHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/openapi.json" {
		// The description of these calls, public like the admin API's.
		selfOpenAPI.ServeHTTP(w, r)
		return
	}
	user := s.user(r)
	if user == "" {
		WriteError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "Sign in first: no signed-in user reached armgate_self"})
		return
	}
	if changesState(r.Method) {
		if err := sameOrigin(r); err != nil {
			WriteError(w, err)
			return
		}
	}
	p := r.URL.EscapedPath()
	pattern := ""
	if p != "" && path.Clean(p) == p {
		_, pattern = s.mux.Handler(r)
	}
	if pattern == "" {
		s.notRouted(w, r, p)
		return
	}
	if changesState(r.Method) {
		if err := jsonBody(r); err != nil {
			WriteError(w, err)
			return
		}
	}
	if r.ContentLength > MaxBodyBytes {
		WriteError(w, ErrTooLarge)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	ctx := context.WithValue(r.Context(), actorKey{}, storage.ActorUser(user))
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(ctx, selfUserKey{}, user)))
}

// notRouted is the admin API's 404/405, on the self-service routes.
func (s *selfHandler) notRouted(w http.ResponseWriter, r *http.Request, p string) {
	probe := &handler{mux: s.mux}
	probe.notRouted(w, r, p)
}

type selfUserKey struct{}

// selfUser is the signed-in user of a routed request.
func selfUser(r *http.Request) string {
	u, _ := r.Context().Value(selfUserKey{}).(string)
	return u
}

// changesState reports whether a method may change state: everything but
// the safe methods.
func changesState(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// sameOrigin refuses a cross-site request: a browser on another site could
// otherwise make the signed-in user's browser change their tokens with the
// user's cookies or cached credentials.
func sameOrigin(r *http.Request) *Error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "cross-site requests may not change tokens"}
	}
	origin := r.Header.Values("Origin")
	if len(origin) == 0 {
		return nil // not a browser, or a same-origin GET-like request
	}
	if len(origin) > 1 || !sameHost(origin[0], r) {
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "requests from another origin may not change tokens"}
	}
	return nil
}

// sameHost reports whether the origin names the host (and port) the request
// was sent to. An opaque origin ("null") never does.
func sameHost(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	oPort := u.Port()
	if oPort == "" {
		oPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
		if r.TLS != nil {
			port = "443"
		}
	}
	return strings.EqualFold(strings.Trim(u.Hostname(), "[]"), strings.Trim(host, "[]")) && oPort == port
}

// jsonBody refuses a body that is not declared application/json. HTML
// forms can post only form encodings and text/plain across sites without
// asking, so requiring JSON closes that path; a request without a
// Content-Type must then carry no body.
func jsonBody(r *http.Request) *Error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return nil
		}
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "a request body must be sent with Content-Type: application/json"}
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "the request body must be application/json, not " + ct}
	}
	return nil
}

// call is the admin call wrapper plus the user check: a user armgate does
// not know, or a deactivated one, may not manage tokens.
func (s *selfHandler) call(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.admin.call(func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.signedIn(r)
		if err != nil {
			return err
		}
		r = r.WithContext(context.WithValue(r.Context(), selfAccountKey{}, u))
		return fn(w, r)
	})
}

type selfAccountKey struct{}

// errNoAccount is the refusal of a signed-in user who may not manage
// tokens here.
var errNoAccount = &Error{Status: http.StatusForbidden, Code: "forbidden",
	Message: "Your account cannot manage API tokens here; ask an administrator"}

// signedIn returns the signed-in user's account, or 403 when there is none
// or it is deactivated.
func (s *selfHandler) signedIn(r *http.Request) (storage.User, error) {
	id := selfUser(r)
	if ValidateUserID(id) != nil {
		return storage.User{}, errNoAccount // no such id can exist
	}
	u, err := s.store.GetUser(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return u, errNoAccount
	} else if err != nil {
		return u, err
	}
	if u.Status != storage.UserActive {
		return u, errNoAccount
	}
	return u, nil
}

// own runs fn only on a token of the signed-in user; any other token id is
// 404 like an unknown one, so that ids of other users' tokens do not leak.
// A token's user never changes, so checking before the change suffices.
func (s *selfHandler) own(fn func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := PathTokenID(r)
		if err != nil {
			return err
		}
		t, err := s.store.GetToken(r.Context(), id)
		if err != nil {
			return err
		}
		if t.UserID != selfUser(r) {
			return storage.ErrNotFound
		}
		return fn(w, r)
	}
}

// SelfTokenList is the answer of the self-service GET /tokens: the user,
// the limit, for "3 of 10 tokens", and the tokens.
type SelfTokenList struct {
	User      User            `json:"user"`
	MaxTokens int             `json:"max_tokens"`
	Tokens    []storage.Token `json:"tokens"`
}

func (s *selfHandler) listTokens(w http.ResponseWriter, r *http.Request) error {
	u, _ := r.Context().Value(selfAccountKey{}).(storage.User)
	tokens, err := s.store.ListTokens(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if tokens == nil {
		tokens = []storage.Token{}
	}
	WriteJSON(w, http.StatusOK, SelfTokenList{User: s.admin.userJSON(u), MaxTokens: s.admin.limits.MaxPerUser, Tokens: tokens})
	return nil
}

// SelfCreateRequest is the body of the self-service POST /tokens: a name
// and a lifetime. Scopes are not the user's to choose; the field exists
// only to refuse it with a clear message.
type SelfCreateRequest struct {
	Name      string          `json:"name"`
	ExpiresIn *string         `json:"expires_in"`
	ExpiresAt *string         `json:"expires_at"`
	Scopes    json.RawMessage `json:"scopes"`
}

// NewToken validates the body and returns what to store: like the admin
// create, with the scope always api.
func (b SelfCreateRequest) NewToken(userID string, now time.Time, l TokenLimits) (storage.NewToken, error) {
	if b.Scopes != nil {
		return storage.NewToken{}, BadRequest("scopes cannot be chosen here: self-service tokens always have the scope %q", token.ScopeAPI)
	}
	return CreateTokenRequest{Name: b.Name, ExpiresIn: b.ExpiresIn, ExpiresAt: b.ExpiresAt,
		Scopes: []string{token.ScopeAPI}}.NewToken(userID, now, l)
}

func (s *selfHandler) createToken(w http.ResponseWriter, r *http.Request) error {
	var body SelfCreateRequest
	if err := DecodeJSON(r.Body, &body); err != nil {
		return err
	}
	n, err := body.NewToken(selfUser(r), s.admin.now(), s.admin.limits)
	if err != nil {
		return err
	}
	t, plain, err := s.store.CreateToken(r.Context(), actor(r), n)
	if err != nil {
		return err
	}
	return s.admin.created(w, t, plain)
}
