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

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// newStoreAdmin returns the admin API on a real store on a fresh, migrated
// database, with a verifier without cache, so that every check reads the
// database as the gateway would on a miss.
func newStoreAdmin(t *testing.T) http.Handler {
	t.Helper()
	store := newStoreEnv(t).store
	v, err := verifier.New(verifier.Config{}, func(ctx context.Context, h token.Hash) (token.Credential, error) {
		c, err := store.LookupCredential(ctx, h)
		if errors.Is(err, storage.ErrNotFound) {
			return c, verifier.ErrNotFound
		}
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{
		Store:     store,
		Verifier:  v,
		AdminKeys: []string{testAdminKey},
		Leaks:     LeakOptions{Store: store},
		Limits:    testLimits,
	})
}

// do sends one call and decodes the JSON answer into out, if given.
func do(t *testing.T, h http.Handler, method, target, cred, body string, out any) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	if strings.HasPrefix(body, "token=") {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return serveJSON(t, h, r, out)
}

// serveJSON serves r and decodes the JSON answer into out, if given.
func serveJSON(t *testing.T, h http.Handler, r *http.Request, out any) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if out != nil && rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v in %s", r.Method, r.URL, err, rec.Body)
		}
	}
	return rec
}

// TestAdminOnStore drives a token's life through the API on a real
// database: the token administers while it is live and not after logout,
// and the audit log names it as the actor.
func TestAdminOnStore(t *testing.T) {
	t.Parallel()
	h := newStoreAdmin(t)

	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"email":"alice@example.com"}`, nil); rec.Code != 201 {
		t.Fatalf("create user: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"email":"alice@example.com"}`, nil); rec.Code != 200 {
		t.Fatalf("repeat user: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		ID     string   `json:"id"`
		Token  string   `json:"token"`
		Scopes []string `json:"scopes"`
	}
	rec := do(t, h, "POST", "/users/alice/tokens", testAdminKey, `{"name":"ops","scopes":["api","admin"]}`, &created)
	if rec.Code != 201 || created.Token == "" || created.ID == "" {
		t.Fatalf("create token: %d %s", rec.Code, rec.Body)
	}
	var e ErrorBody
	if rec := do(t, h, "POST", "/users/alice/tokens", testAdminKey, `{"name":"ops"}`, &e); rec.Code != 409 || e.Error != "name_taken" {
		t.Errorf("duplicate name: %d %s, want 409 name_taken", rec.Code, rec.Body)
	}

	// The new token administers.
	var u User
	if rec := do(t, h, "GET", "/users/alice", created.Token, "", &u); rec.Code != 200 || u.ID != "alice" || u.MaxTokensPerUser != 10 {
		t.Fatalf("get user with the admin token: %d %s", rec.Code, rec.Body)
	}
	var in introspection
	if rec := do(t, h, "POST", "/introspect", testAdminKey, url.Values{"token": {created.Token}}.Encode(), &in); rec.Code != 200 ||
		!in.Active || in.Sub != "alice" || in.TokenID != created.ID || in.Scope != "api admin" {
		t.Errorf("introspect: %d %s", rec.Code, rec.Body)
	}
	var tok Token
	if rec := do(t, h, "GET", "/tokens/"+created.ID, created.Token, "", &tok); rec.Code != 200 || tok.Name != "ops" {
		t.Errorf("get token: %d %s", rec.Code, rec.Body)
	}
	e = ErrorBody{}
	if rec := do(t, h, "GET", "/tokens/"+testTokenID, testAdminKey, "", &e); rec.Code != 404 || e.Error != "not_found" ||
		e.Message != "no token with id "+testTokenID {
		t.Errorf("unknown token: %d %s", rec.Code, rec.Body)
	}

	// Logout revokes it: it administers no more.
	if rec := do(t, h, "POST", "/logout", created.Token, "", nil); rec.Code != 204 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	e = ErrorBody{}
	if rec := do(t, h, "GET", "/users/alice", created.Token, "", &e); rec.Code != 401 || e.Message != token.Revoked.Description() ||
		rec.Header().Get("WWW-Authenticate") != Challenge {
		t.Errorf("after logout: %d %s", rec.Code, rec.Body)
	}
	in = introspection{}
	if rec := do(t, h, "POST", "/introspect", testAdminKey, url.Values{"token": {created.Token}}.Encode(), &in); rec.Code != 200 || in.Active {
		t.Errorf("introspect after logout: %d %s", rec.Code, rec.Body)
	}

	var audit auditList
	if rec := do(t, h, "GET", "/audit?user_id=alice", testAdminKey, "", &audit); rec.Code != 200 {
		t.Fatalf("audit: %d %s", rec.Code, rec.Body)
	}
	actors := map[string]bool{}
	for _, ev := range audit.Events {
		actors[ev.Actor] = true
	}
	if !actors[storage.ActorAdminKey] || !actors[storage.ActorToken(created.ID)] {
		t.Errorf("audit lacks the admin key's or the token's events: %+v", audit.Events)
	}
	var list TokenList
	if rec := do(t, h, "GET", "/users/alice/tokens", testAdminKey, "", &list); rec.Code != 200 || len(list.Tokens) != 1 ||
		list.Tokens[0].Status != token.Revoked {
		t.Errorf("list tokens after logout: %d %s", rec.Code, rec.Body)
	}
}
