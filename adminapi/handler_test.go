package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// Handler tests with fakes: they are about HTTP (routing, credentials,
// status codes, headers), so they need no database.

const (
	testAdminKey = "admin-key-for-tests-0123456789"
	tokAdmin     = "tok-admin"
	tokAPI       = "tok-api"
	tokRevoked   = "tok-revoked"
	tokBroken    = "tok-db-down"
	testTokenID  = "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"
)

type verdict struct {
	cred   token.Credential
	result token.Status
	err    error
}

type fakeVerifier map[string]verdict

func (f fakeVerifier) Verify(_ context.Context, tok string) (token.Credential, token.Status, error) {
	v, ok := f[tok]
	if !ok {
		return token.Credential{}, token.Unknown, nil
	}
	return v.cred, v.result, v.err
}

// fakeStore implements the calls a test needs; any other call panics on
// the nil embedded interface.
type fakeStore struct {
	Store
	calls      []string
	revokeErr  error
	createErr  error
	logoutErr  error
	lastActor  string
	lastRevoke string
}

func (s *fakeStore) RevokeToken(_ context.Context, actor, id, reason string) (storage.Token, storage.Invalidation, error) {
	s.calls = append(s.calls, "revoke "+id)
	s.lastActor, s.lastRevoke = actor, reason
	if s.revokeErr != nil {
		return storage.Token{}, storage.Invalidation{}, s.revokeErr
	}
	return storage.Token{ID: id, Status: token.Revoked}, storage.Invalidation{Hashes: [][]byte{[]byte("h")}}, nil
}

func (s *fakeStore) Logout(_ context.Context, id string) (storage.Token, storage.Invalidation, error) {
	s.calls = append(s.calls, "logout "+id)
	if s.logoutErr != nil {
		return storage.Token{}, storage.Invalidation{}, s.logoutErr
	}
	return storage.Token{ID: id}, storage.Invalidation{Hashes: [][]byte{[]byte("h")}}, nil
}

func (s *fakeStore) CreateToken(_ context.Context, actor string, n storage.NewToken) (storage.Token, string, error) {
	s.calls = append(s.calls, "create "+n.Name)
	s.lastActor = actor
	if s.createErr != nil {
		return storage.Token{}, "", s.createErr
	}
	return storage.Token{ID: testTokenID, UserID: n.UserID, Name: n.Name, Scopes: n.Scopes}, "arm_plain", nil
}

func (s *fakeStore) GetUser(_ context.Context, id string) (storage.User, error) {
	s.calls = append(s.calls, "get user "+id)
	return storage.User{ID: id, Status: "active"}, nil
}

// orderedWriter records when the response starts, to check that the cache
// is invalidated before.
type orderedWriter struct {
	*httptest.ResponseRecorder
	events *[]string
}

func (o orderedWriter) WriteHeader(code int) {
	*o.events = append(*o.events, "respond")
	o.ResponseRecorder.WriteHeader(code)
}

func newTestAdmin(store *fakeStore, events *[]string) http.Handler {
	return New(Options{
		Store: store,
		Verifier: fakeVerifier{
			tokAdmin:   {cred: token.Credential{TokenID: "id-admin", Scopes: []string{"api", "admin"}}, result: token.Active},
			tokAPI:     {cred: token.Credential{TokenID: "id-api", Scopes: []string{"api"}}, result: token.Active},
			tokRevoked: {cred: token.Credential{TokenID: "id-rev", Scopes: []string{"admin"}}, result: token.Revoked},
			tokBroken:  {err: errors.New("connection refused")},
		},
		Invalidate: func(storage.Invalidation) { *events = append(*events, "invalidate") },
		AdminKeys:  []string{testAdminKey},
		Limits:     request.TokenLimits{MaxPerUser: 10, Lifetime: time.Hour, MaxLifetime: 2 * time.Hour},
		Logger:     zap.NewNop(),
	})
}

func TestAdminServeHTTP(t *testing.T) {
	tests := []struct {
		name, method, target, auth, body string
		status                           int
		code                             string
		header                           map[string]string
		calls                            string // store calls, joined by ";"
	}{
		{name: "no credential", method: "GET", target: "/users/u1", status: 401, code: "unauthorized",
			header: map[string]string{"WWW-Authenticate": `Bearer realm="armgate admin"`}},
		{name: "other scheme", method: "GET", target: "/users/u1", auth: "Basic YTpi", status: 401, code: "unauthorized"},
		{name: "wrong key", method: "GET", target: "/users/u1", auth: "Bearer nope", status: 401, code: "unauthorized",
			header: map[string]string{"WWW-Authenticate": `Bearer realm="armgate admin"`}},
		{name: "key prefix", method: "GET", target: "/users/u1", auth: "Bearer " + testAdminKey[:10], status: 401, code: "unauthorized"},
		{name: "revoked admin token", method: "GET", target: "/users/u1", auth: "Bearer " + tokRevoked, status: 401, code: "unauthorized"},
		{name: "token without admin scope", method: "GET", target: "/users/u1", auth: "Bearer " + tokAPI, status: 403, code: "forbidden"},
		{name: "database down during auth", method: "GET", target: "/users/u1", auth: "Bearer " + tokBroken, status: 503, code: "unavailable",
			header: map[string]string{"Retry-After": "5"}},
		{name: "unknown route needs auth first", method: "GET", target: "/nope", status: 401, code: "unauthorized"},
		{name: "admin key", method: "GET", target: "/users/u1", auth: "Bearer " + testAdminKey, status: 200,
			header: map[string]string{"Cache-Control": "no-store", "Content-Type": "application/json"}, calls: "get user u1"},
		{name: "admin key, lower-case scheme", method: "GET", target: "/users/u1", auth: "bearer  " + testAdminKey, status: 200, calls: "get user u1"},
		{name: "admin token", method: "GET", target: "/users/u1", auth: "Bearer " + tokAdmin, status: 200, calls: "get user u1"},
		{name: "bad user id", method: "GET", target: "/users/a%20b", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "unknown route", method: "GET", target: "/nope", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "root", method: "GET", target: "/", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "trailing slash", method: "GET", target: "/users/", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "unclean path", method: "GET", target: "/tokens/../users/u1", auth: "Bearer " + testAdminKey, status: 404, code: "not_found"},
		{name: "wrong method", method: "PATCH", target: "/users/u1", auth: "Bearer " + testAdminKey, status: 405,
			code: "method_not_allowed", header: map[string]string{"Allow": "GET, HEAD, PUT"}},
		{name: "wrong method on tokens", method: "PUT", target: "/tokens/" + testTokenID, auth: "Bearer " + testAdminKey, status: 405,
			header: map[string]string{"Allow": "GET, HEAD, PATCH, DELETE"}},
		{name: "malformed token id", method: "POST", target: "/tokens/123/revoke", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "revoke", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"reason":"leaked"}`, status: 200, calls: "revoke " + testTokenID},
		{name: "revoke without body", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + tokAdmin,
			status: 200, calls: "revoke " + testTokenID},
		{name: "revoke unknown field", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"why":"x"}`, status: 400, code: "invalid_request"},
		{name: "revoke too large", method: "POST", target: "/tokens/" + testTokenID + "/revoke", auth: "Bearer " + testAdminKey,
			body: `{"reason":"` + strings.Repeat("x", request.MaxBodyBytes) + `"}`, status: 413, code: "request_too_large"},
		{name: "create", method: "POST", target: "/users/u1/tokens", auth: "Bearer " + testAdminKey,
			body: `{"name":" ci ","scopes":["api"]}`, status: 201, calls: "create ci"},
		{name: "create over the max lifetime", method: "POST", target: "/users/u1/tokens", auth: "Bearer " + testAdminKey,
			body: `{"name":"ci","expires_in":"3h"}`, status: 400, code: "invalid_request"},
		{name: "logout", method: "POST", target: "/logout", auth: "Bearer " + tokStoreLive, status: 204, calls: "lookup;logout id-live"},
		{name: "logout with revoked token", method: "POST", target: "/logout", auth: "Bearer " + tokStoreRevoked, status: 204, calls: "lookup;logout id-revoked"},
		{name: "logout with unknown token", method: "POST", target: "/logout", auth: "Bearer " + mustGenerate(), status: 401, code: "unauthorized", calls: "lookup"},
		{name: "logout with malformed token", method: "POST", target: "/logout", auth: "Bearer " + tokAPI, status: 401, code: "unauthorized"},
		{name: "logout with admin key", method: "POST", target: "/logout", auth: "Bearer " + testAdminKey, status: 401, code: "unauthorized"},
		{name: "logout without credential", method: "POST", target: "/logout", status: 401, code: "unauthorized"},
		{name: "logout database down", method: "POST", target: "/logout", auth: "Bearer " + tokDBDown, status: 503, code: "unavailable", calls: "lookup"},
		{name: "logout wrong method", method: "GET", target: "/logout", auth: "Bearer " + testAdminKey, status: 405,
			header: map[string]string{"Allow": "POST"}},
		{name: "introspect active", method: "POST", target: "/introspect", auth: "Bearer " + testAdminKey, body: "token=" + tokAPI, status: 200},
		{name: "introspect needs admin", method: "POST", target: "/introspect", auth: "Bearer " + tokAPI, body: "token=" + tokAPI, status: 403},
		{name: "introspect database down", method: "POST", target: "/introspect", auth: "Bearer " + testAdminKey, body: "token=" + tokDBDown, status: 503, calls: "lookup"},
		{name: "list users bad limit", method: "GET", target: "/users?limit=0", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
		{name: "audit bad user", method: "GET", target: "/audit?user_id=a%2Fb", auth: "Bearer " + testAdminKey, status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			store := &fakeStore{}
			h := newTestAdmin(store, &events)
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if strings.HasPrefix(tt.body, "token=") {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(orderedWriter{rec, &events}, r)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				var e ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.code || e.Message == "" {
					t.Fatalf("body = %s, want error %q with a message", rec.Body, tt.code)
				}
			}
			for k, v := range tt.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := strings.Join(store.calls, ";"); got != tt.calls {
				t.Errorf("store calls = %q, want %q", got, tt.calls)
			}
			if rec.Code >= 400 && len(events) > 1 {
				t.Errorf("a refused request invalidated the cache: %v", events)
			}
		})
	}
}

func TestAdminInvalidatesBeforeAnswering(t *testing.T) {
	for _, tt := range []struct{ target, auth, actor string }{
		{"/tokens/" + testTokenID + "/revoke", testAdminKey, storage.ActorAdminKey},
		{"/tokens/" + testTokenID + "/revoke", tokAdmin, storage.ActorToken("id-admin")},
		{"/logout", tokStoreLive, ""},
	} {
		var events []string
		store := &fakeStore{}
		h := newTestAdmin(store, &events)
		r := httptest.NewRequest("POST", tt.target, nil)
		r.Header.Set("Authorization", "Bearer "+tt.auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(orderedWriter{rec, &events}, r)
		if strings.Join(events, ",") != "invalidate,respond" {
			t.Errorf("%s: events = %v, want invalidate before respond", tt.target, events)
		}
		if store.lastActor != tt.actor {
			t.Errorf("%s: actor = %q, want %q", tt.target, store.lastActor, tt.actor)
		}
	}
}

func TestAdminStorageErrors(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{storage.ErrNotFound, 404, "not_found"},
		{storage.ErrTokenLimit, 409, "token_limit_reached"},
		{storage.ErrNameTaken, 409, "name_taken"},
		{storage.ErrUserDeactivated, 409, "user_deactivated"},
		{storage.ErrTokenExpired, 409, "token_expired"},
		{storage.ErrTokenLeaked, 409, "token_leaked"},
		{storage.ErrRotationPending, 409, "rotation_pending"},
		{storage.ErrRevokedByOther, 403, "forbidden"},
		{storage.ErrNotSelfService, 403, "forbidden"},
		{errors.New("dial tcp: connection refused"), 503, "unavailable"},
		{context.DeadlineExceeded, 503, "unavailable"},
	} {
		var events []string
		h := newTestAdmin(&fakeStore{createErr: tt.err}, &events)
		r := httptest.NewRequest("POST", "/users/u1/tokens", strings.NewReader(`{"name":"ci"}`))
		r.Header.Set("Authorization", "Bearer "+testAdminKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var e ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != tt.status || e.Error != tt.code {
			t.Errorf("%v: %d %s, want %d %s", tt.err, rec.Code, rec.Body, tt.status, tt.code)
		}
		if tt.status == 503 && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: 503 without Retry-After", tt.err)
		}
		if len(events) != 0 {
			t.Errorf("%v: failed change invalidated the cache", tt.err)
		}
	}
}

func TestAdminCreateShowsPlaintextOnce(t *testing.T) {
	var events []string
	h := newTestAdmin(&fakeStore{}, &events)
	r := httptest.NewRequest("POST", "/users/u1/tokens", strings.NewReader(`{"name":"ci"}`))
	r.Header.Set("Authorization", "Bearer "+testAdminKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 201 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got["token"] != "arm_plain" || got["id"] != testTokenID {
		t.Errorf("create response = %s", rec.Body)
	}
}

func TestAdminIntrospectInactive(t *testing.T) {
	for _, tok := range []string{tokRevoked, "unknown", "arm_" + strings.Repeat("0", 38)} {
		var events []string
		h := newTestAdmin(&fakeStore{}, &events)
		r := httptest.NewRequest("POST", "/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		r.Header.Set("Authorization", "Bearer "+testAdminKey)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":false}` {
			t.Errorf("%s: %d %s", tok, rec.Code, rec.Body)
		}
	}
}

// TestAdminKeysAndHook checks that any of several admin keys is accepted,
// that empty keys never are, and that the Authenticated hook sees the
// holder of an admin token but not an admin key.
func TestAdminKeysAndHook(t *testing.T) {
	var seen []string
	h := New(Options{
		Store: &fakeStore{},
		Verifier: fakeVerifier{
			tokAdmin: {cred: token.Credential{TokenID: "id-admin", UserID: "root", Scopes: []string{"admin"}}, result: token.Active},
		},
		AdminKeys:     []string{"", "old-key-0123456789", "new-key-0123456789"},
		Authenticated: func(_ *http.Request, c token.Credential) { seen = append(seen, c.UserID+"/"+c.TokenID) },
	})
	for _, tt := range []struct {
		cred   string
		status int
	}{
		{"old-key-0123456789", 200},
		{"new-key-0123456789", 200},
		{"new-key-012345678", 401},
		{tokAdmin, 200},
	} {
		r := httptest.NewRequest("GET", "/users/u1", nil)
		r.Header.Set("Authorization", "Bearer "+tt.cred)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.status {
			t.Errorf("%q: status %d, want %d", tt.cred, rec.Code, tt.status)
		}
	}
	// An empty key in the list must not let an empty credential in (the
	// header parser refuses it first, but the key list must not rely on it).
	if New(Options{AdminKeys: []string{""}}).(*handler).isAdminKey("") {
		t.Error("an empty admin key matched an empty credential")
	}
	if got := strings.Join(seen, ","); got != "root/id-admin" {
		t.Errorf("Authenticated saw %q, want only the token holder", got)
	}
}
