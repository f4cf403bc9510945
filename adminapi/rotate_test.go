package adminapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// tokDBDown is a well-formed token whose lookup fails: the fake store's
// database is down for introspection.
var tokDBDown = func() string {
	t, err := token.Generate()
	if err != nil {
		panic(err)
	}
	return t
}()

// Well-formed tokens the fake store knows, for logout, which reads the
// store: one live, one revoked (logout takes both).
var tokStoreLive, tokStoreRevoked = mustGenerate(), mustGenerate()

func mustGenerate() string {
	t, err := token.Generate()
	if err != nil {
		panic(err)
	}
	return t
}

func (s *fakeStore) LookupCredential(_ context.Context, h token.Hash) (token.Credential, error) {
	s.calls = append(s.calls, "lookup")
	switch h {
	case token.Sum(tokStoreLive):
		return token.Credential{TokenID: "id-live", Scopes: []string{"api"}, ExpiresAt: time.Now().Add(time.Hour)}, nil
	case token.Sum(tokStoreRevoked):
		return token.Credential{TokenID: "id-revoked", Scopes: []string{"api"}, ExpiresAt: time.Now().Add(time.Hour), Revoked: true}, nil
	case token.Sum(tokDBDown):
		return token.Credential{}, errors.New("connection refused")
	}
	return token.Credential{}, storage.ErrNotFound
}

// storeEnv is a real store on a fresh database, with the invalidations the
// handlers applied.
type storeEnv struct {
	pool  *pgxpool.Pool
	store *storage.Store
	mu    sync.Mutex
	invs  []storage.Invalidation
}

func newStoreEnv(t *testing.T) *storeEnv {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := storage.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	return &storeEnv{pool: pool, store: storage.New(pool)}
}

func (e *storeEnv) invalidate(inv storage.Invalidation) {
	e.mu.Lock()
	e.invs = append(e.invs, inv)
	e.mu.Unlock()
}

func (e *storeEnv) invalidations() []storage.Invalidation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]storage.Invalidation(nil), e.invs...)
}

var testLimits = request.TokenLimits{MaxPerUser: 10, Lifetime: time.Hour, MaxLifetime: 24 * time.Hour}

// admin returns the admin API on the store; verifier counts every Verify.
func (e *storeEnv) admin(v Verifier) http.Handler {
	return New(Options{Store: e.store, Verifier: v, Invalidate: e.invalidate,
		AdminKeys: []string{testAdminKey}, Limits: testLimits})
}

// count returns a count(*) query's result.
func (e *storeEnv) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *storeEnv) rows(t *testing.T) (tokens, audit int) {
	t.Helper()
	return e.count(t, `SELECT count(*) FROM armgate.tokens`), e.count(t, `SELECT count(*) FROM armgate.audit`)
}

func (e *storeEnv) user(t *testing.T, id string) {
	t.Helper()
	if _, _, err := e.store.UpsertUser(t.Context(), "test", id, storage.UserPatch{}); err != nil {
		t.Fatal(err)
	}
}

func (e *storeEnv) token(t *testing.T, user, name string) (storage.Token, string) {
	t.Helper()
	tok, plain, err := e.store.CreateToken(t.Context(), "test", storage.NewToken{UserID: user, Name: name,
		Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10})
	if err != nil {
		t.Fatal(err)
	}
	return tok, plain
}

// countingVerifier refuses everything and counts its calls.
type countingVerifier struct{ calls int }

func (v *countingVerifier) Verify(context.Context, string) (token.Credential, token.Status, error) {
	v.calls++
	return token.Credential{}, token.Unknown, nil
}

func TestAdminRotate(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.admin(&countingVerifier{})
	e.user(t, "alice")
	old, oldPlain := e.token(t, "alice", "ci")
	tokens, audits := e.rows(t)

	bad := []struct{ name, body, msg string }{
		{"negative grace", `{"grace":"-1s"}`, "grace must be from 0s to 168h"},
		{"grace over a week", `{"grace":"168h1s"}`, "grace must be from 0s to 168h"},
		{"grace not a duration", `{"grace":"1 day"}`, "grace must be a Go duration"},
		{"grace empty", `{"grace":""}`, "grace must be a Go duration"},
		{"grace a number", `{"grace":3600}`, "grace must be a string"},
		{"unknown field", `{"grace":"1h","scopes":["admin"]}`, `unknown field "scopes"`},
		{"both lifetimes", `{"expires_in":"1h","expires_at":"2099-01-01T00:00:00Z"}`, "not both"},
		{"lifetime over the max", `{"expires_in":"25h"}`, "max"},
		{"empty expires_in", `{"expires_in":""}`, "expires_in may not be empty"},
		{"not an object", `[]`, "JSON object"},
	}
	for _, tt := range bad {
		var eb ErrorBody
		rec := do(t, h, "POST", "/tokens/"+old.ID+"/rotate", testAdminKey, tt.body, &eb)
		if rec.Code != 400 || eb.Error != "invalid_request" || !strings.Contains(eb.Message, tt.msg) {
			t.Errorf("%s: %d %s, want 400 with %q", tt.name, rec.Code, rec.Body, tt.msg)
		}
	}
	var eb ErrorBody
	if rec := do(t, h, "POST", "/tokens/"+testTokenID+"/rotate", testAdminKey, "", &eb); rec.Code != 404 || eb.Error != "not_found" {
		t.Errorf("unknown token: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "POST", "/tokens/nope/rotate", testAdminKey, "", nil); rec.Code != 400 {
		t.Errorf("malformed id: %d %s", rec.Code, rec.Body)
	}
	if tk, au := e.rows(t); tk != tokens || au != audits || len(e.invalidations()) != 0 {
		t.Fatalf("refused rotations changed rows: tokens %d→%d, audit %d→%d, %d invalidations", tokens, tk, audits, au, len(e.invalidations()))
	}

	before := time.Now()
	var got struct {
		RotatedToken
		RotatedTo *string `json:"rotated_to"`
	}
	rec := do(t, h, "POST", "/tokens/"+old.ID+"/rotate", testAdminKey, `{"grace":"1h","expires_in":"2h"}`, &got)
	if rec.Code != 201 || got.Plaintext == "" || got.Plaintext == oldPlain || got.RotatedFrom != old.ID ||
		got.Name != "ci" || got.ID == old.ID || got.RotatedTo != nil || got.Status != token.Active {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	if d := got.ExpiresAt.Sub(before); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Errorf("new token expires in %s, want 2h", d)
	}
	if strings.Contains(rec.Body.String(), `"hash"`) {
		t.Errorf("rotate response shows a hash: %s", rec.Body)
	}
	var oldNow Token
	do(t, h, "GET", "/tokens/"+old.ID, testAdminKey, "", &oldNow)
	if oldNow.RotatedTo == nil || *oldNow.RotatedTo != got.ID || oldNow.ExpiresAt.After(time.Now().Add(time.Hour)) ||
		oldNow.Status != token.Active {
		t.Errorf("old token after rotation: %+v", oldNow)
	}
	invs := e.invalidations()
	if len(invs) != 1 || len(invs[0].Hashes) != 1 || len(invs[0].Created) != 1 {
		t.Errorf("rotation applied %+v locally, want the old hash and the created one", invs)
	}
	var audit auditList
	do(t, h, "GET", "/audit?user_id=alice&limit=1", testAdminKey, "", &audit)
	if len(audit.Events) != 1 || audit.Events[0].Action != storage.ActionTokenRotate || audit.Events[0].Target != old.ID ||
		audit.Events[0].Detail["new_token_id"] != got.ID || audit.Events[0].Actor != storage.ActorAdminKey {
		t.Errorf("audit: %+v", audit.Events)
	}

	// Only once, and only an active token.
	eb = ErrorBody{}
	if rec := do(t, h, "POST", "/tokens/"+old.ID+"/rotate", testAdminKey, "", &eb); rec.Code != 409 || eb.Error != "token_not_active" {
		t.Errorf("second rotation: %d %s", rec.Code, rec.Body)
	}
	do(t, h, "POST", "/tokens/"+got.ID+"/revoke", testAdminKey, "", nil)
	eb = ErrorBody{}
	if rec := do(t, h, "POST", "/tokens/"+got.ID+"/rotate", testAdminKey, `{"grace":"0s"}`, &eb); rec.Code != 409 || eb.Error != "token_not_active" {
		t.Errorf("revoked rotation: %d %s", rec.Code, rec.Body)
	}

	// Default grace: 24h, capped by the token's own expiry (1h here).
	fresh, _ := e.token(t, "alice", "nightly")
	var r2 RotatedToken
	if rec := do(t, h, "POST", "/tokens/"+fresh.ID+"/rotate", testAdminKey, "", &r2); rec.Code != 201 {
		t.Fatalf("rotate without body: %d %s", rec.Code, rec.Body)
	}
	if d := r2.ExpiresAt.Sub(time.Now()); d < testLimits.Lifetime-time.Minute || d > testLimits.Lifetime+time.Minute {
		t.Errorf("default lifetime: %s", d)
	}
}

func TestAdminRevokeAll(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.admin(&countingVerifier{})
	e.user(t, "alice")
	e.user(t, "bob")
	a1, _ := e.token(t, "alice", "a1")
	e.token(t, "alice", "a2")
	e.token(t, "alice", "a3")
	b1, _ := e.token(t, "bob", "b1")
	if rec := do(t, h, "POST", "/tokens/"+a1.ID+"/revoke", testAdminKey, `{"reason":"first"}`, nil); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	tokens, audits := e.rows(t)
	n0 := len(e.invalidations())

	for _, tt := range []struct {
		name, target, body string
		status             int
	}{
		{"unknown user", "/users/carol/tokens/revoke", "", 404},
		{"bad user id", "/users/a%20b/tokens/revoke", "", 400},
		{"unknown field", "/users/alice/tokens/revoke", `{"why":"x"}`, 400},
		{"reason not a string", "/users/alice/tokens/revoke", `{"reason":1}`, 400},
		{"control character", "/users/alice/tokens/revoke", `{"reason":"a\u0007"}`, 400},
		{"trailing data", "/users/alice/tokens/revoke", `{}{}`, 400},
	} {
		if rec := do(t, h, "POST", tt.target, testAdminKey, tt.body, nil); rec.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
		}
	}
	if tk, au := e.rows(t); tk != tokens || au != audits || len(e.invalidations()) != n0 {
		t.Fatalf("refused revoke-alls changed rows")
	}
	if rec := do(t, h, "GET", "/users/alice/tokens/revoke", testAdminKey, "", nil); rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET revoke-all: %d %v", rec.Code, rec.Header())
	}

	var got RevokedCount
	if rec := do(t, h, "POST", "/users/alice/tokens/revoke", testAdminKey, `{"reason":"signed out everywhere"}`, &got); rec.Code != 200 || got.Revoked != 2 {
		t.Fatalf("revoke-all: %d %s", rec.Code, rec.Body)
	}
	invs := e.invalidations()
	if len(invs) != n0+1 || len(invs[n0].Hashes) != 2 {
		t.Errorf("revoke-all applied %+v locally, want the two hashes", invs[n0:])
	}
	if _, au := e.rows(t); au != audits+2 {
		t.Errorf("revoke-all wrote %d audit events, want 2", au-audits)
	}
	var list TokenList
	do(t, h, "GET", "/users/alice/tokens", testAdminKey, "", &list)
	for _, tk := range list.Tokens {
		if tk.Status != token.Revoked {
			t.Errorf("%s: %s after revoke-all", tk.Name, tk.Status)
		}
		if want := "signed out everywhere"; tk.ID != a1.ID && (tk.RevokedReason == nil || *tk.RevokedReason != want) {
			t.Errorf("%s: reason %v", tk.Name, tk.RevokedReason)
		}
	}
	if b, _ := e.store.GetToken(t.Context(), b1.ID); b.Status != token.Active {
		t.Errorf("bob's token: %s", b.Status)
	}
	got = RevokedCount{Revoked: -1}
	if rec := do(t, h, "POST", "/users/alice/tokens/revoke", testAdminKey, "", &got); rec.Code != 200 || got.Revoked != 0 {
		t.Errorf("second revoke-all: %d %s", rec.Code, rec.Body)
	}
}

// TestIntrospectDoesNotMarkUse: introspection reads the store, never the
// verifier, whose checks count as uses of the token.
func TestIntrospectDoesNotMarkUse(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	v := &countingVerifier{}
	h := e.admin(v)
	e.user(t, "alice")
	tk, plain := e.token(t, "alice", "ci")
	var in introspection
	if rec := do(t, h, "POST", "/introspect", testAdminKey, url.Values{"token": {plain}}.Encode(), &in); rec.Code != 200 ||
		!in.Active || in.TokenID != tk.ID || in.Sub != "alice" || in.Scope != "api" {
		t.Fatalf("introspect: %d %s", rec.Code, rec.Body)
	}
	if v.calls != 0 {
		t.Errorf("introspection called the verifier %d times", v.calls)
	}
	if got, _ := e.store.GetToken(t.Context(), tk.ID); got.LastUsedAt != nil {
		t.Errorf("last_used_at = %v after introspection", got.LastUsedAt)
	}
	// Inactive answers: revoked, malformed, unknown.
	do(t, h, "POST", "/tokens/"+tk.ID+"/revoke", testAdminKey, "", nil)
	unknown, _ := token.Generate()
	for _, tok := range []string{plain, "arm_short", unknown} {
		rec := do(t, h, "POST", "/introspect", testAdminKey, url.Values{"token": {tok}}.Encode(), nil)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":false}` {
			t.Errorf("introspect %s: %d %s", token.Hint(tok), rec.Code, rec.Body)
		}
	}
}

func (s *fakeStore) RotateToken(_ context.Context, actor, id string, grace time.Duration, _ time.Time) (storage.Token, string, storage.Invalidation, error) {
	s.calls = append(s.calls, "rotate "+id+" "+grace.String())
	s.lastActor = actor
	return storage.Token{ID: "new"}, "arm_plain", storage.Invalidation{Hashes: [][]byte{[]byte("old")}, Created: [][]byte{[]byte("new")}}, nil
}

func (s *fakeStore) RevokeAllTokens(_ context.Context, actor, userID, reason string) (int, storage.Invalidation, error) {
	s.calls = append(s.calls, "revoke all "+userID)
	s.lastActor, s.lastRevoke = actor, reason
	return 2, storage.Invalidation{Hashes: [][]byte{[]byte("a"), []byte("b")}}, nil
}

// TestRotateAndRevokeAllInvalidateFirst: both changes reach the local cache
// before the answer, the rotation's with the created token too.
func TestRotateAndRevokeAllInvalidateFirst(t *testing.T) {
	for _, tt := range []struct{ target, body, call string }{
		{"/tokens/" + testTokenID + "/rotate", `{"grace":"90m"}`, "rotate " + testTokenID + " 1h30m0s"},
		{"/users/u1/tokens/revoke", `{"reason":"everywhere"}`, "revoke all u1"},
	} {
		var events []string
		store := &fakeStore{}
		var got []storage.Invalidation
		h := New(Options{Store: store, AdminKeys: []string{testAdminKey}, Limits: testLimits,
			Invalidate: func(inv storage.Invalidation) { events = append(events, "invalidate"); got = append(got, inv) }})
		r := httptest.NewRequest("POST", tt.target, strings.NewReader(tt.body))
		r.Header.Set("Authorization", "Bearer "+testAdminKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(orderedWriter{rec, &events}, r)
		if strings.Join(events, ",") != "invalidate,respond" {
			t.Errorf("%s: events = %v, want invalidate before respond", tt.target, events)
		}
		if strings.Join(store.calls, ";") != tt.call || store.lastActor != storage.ActorAdminKey {
			t.Errorf("%s: calls %v by %q", tt.target, store.calls, store.lastActor)
		}
		if strings.HasSuffix(tt.target, "/rotate") && (len(got) != 1 || len(got[0].Created) != 1 || len(got[0].Hashes) != 1) {
			t.Errorf("rotation invalidation = %+v", got)
		}
	}
}
