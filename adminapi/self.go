package adminapi

import (
	"context"
	"mime"
	"net/http"
	"net/netip"
	"path"
	"time"

	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// selfStore is the part of storage.Store the self-service API uses. Every
// change is passed the actor user:<id>, and the store checks on the locked
// row what that user may do: their own tokens only, scopes api only, no
// lifting of another actor's revocation.
type selfStore interface {
	GetUser(ctx context.Context, id string) (storage.User, error)
	CreateToken(ctx context.Context, actor string, n storage.NewToken) (storage.Token, string, error)
	GetToken(ctx context.Context, id string) (storage.Token, error)
	ListTokens(ctx context.Context, userID string) ([]storage.Token, error)
	RevokeToken(ctx context.Context, actor, id, reason string) (storage.Token, storage.Invalidation, error)
	ReapproveToken(ctx context.Context, actor, id string) (storage.Token, storage.Invalidation, error)
	RotateToken(ctx context.Context, actor, id string, grace time.Duration, expiresAt time.Time) (storage.Token, string, storage.Invalidation, error)
	DeleteToken(ctx context.Context, actor, id string) (storage.Invalidation, error)
	SetTokenControls(ctx context.Context, actor, id string, c storage.TokenControls, check func(storage.Controls) error) (storage.Token, storage.Invalidation, error)
	TokenUsage(ctx context.Context, tokenID string, days int) ([]storage.DayUsage, netip.Addr, error)
}

// SelfOptions are the self-service API's dependencies and settings.
type SelfOptions struct {
	// Store holds users and tokens.
	Store selfStore
	// User returns the signed-in user of a request, as the sign-in in
	// front of the handler established it; "" means nobody is signed in.
	User func(r *http.Request) string
	// Invalidate, Limits, Timeout, Now and Logger are as in Options.
	Invalidate func(storage.Invalidation)
	Limits     request.TokenLimits
	Timeout    time.Duration
	Now        func() time.Time
	Logger     *zap.Logger
	// Origin decides which pages may make state-changing calls (the
	// site's own; see OriginPolicy).
	Origin OriginPolicy
	// WriteLimit, when not nil, limits each user's state-changing calls.
	WriteLimit WriteLimiter
	// DefaultQuota is the configured default quota of a token (zero:
	// none): what a user lowers from when their token has none of its own.
	DefaultQuota quota.Limit
}

// selfOpenAPIHandler serves the description of the self-service calls.
var selfOpenAPIHandler = serveOpenAPI(selfOpenAPI())

// selfHandler serves a signed-in user's own tokens with its own endpoints
// (self_tokens.go), the actor always user:<id>.
type selfHandler struct {
	store      selfStore
	user       func(*http.Request) string
	invalidate func(storage.Invalidation)
	limits     request.TokenLimits
	timeout    time.Duration
	now        func() time.Time
	logger     *zap.Logger
	mux        *http.ServeMux
	writes     writeGuard
	// defaultQuota is SelfOptions.DefaultQuota.
	defaultQuota quota.Limit
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
		store:        o.Store,
		user:         o.User,
		invalidate:   o.Invalidate,
		limits:       o.Limits,
		timeout:      max(o.Timeout, MinTimeout),
		now:          o.Now,
		logger:       o.Logger,
		writes:       newWriteGuard(o),
		defaultQuota: o.DefaultQuota,
	}
	if s.invalidate == nil {
		s.invalidate = func(storage.Invalidation) {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	s.mux = s.routes()
	return s
}

func (s *selfHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/openapi.json" {
		// The description of these calls, public like the admin API's.
		selfOpenAPIHandler.ServeHTTP(w, r)
		return
	}
	user := s.user(r)
	if user == "" {
		WriteError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "Sign in first: no signed-in user reached armgate_self"})
		return
	}
	if changesState(r.Method) {
		if err := s.writes.admit(w, r, user); err != nil {
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
	if r.ContentLength > request.MaxBodyBytes {
		WriteError(w, request.ErrTooLarge)
		return
	}
	r.Body = capBody(w, r.Body)
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
