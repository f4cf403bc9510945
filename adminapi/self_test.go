package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// self returns the self-service API on the store; the signed-in user is
// the X-Test-User header, as a sign-in in front would set it.
func (e *storeEnv) self() http.Handler {
	return NewSelf(SelfOptions{Store: e.store, Invalidate: e.invalidate, Limits: testLimits,
		User: func(r *http.Request) string { return r.Header.Get("X-Test-User") }})
}

// selfDo sends one self-service call as user with the given headers
// (Content-Type application/json for a body unless given).
func selfDo(t *testing.T, h http.Handler, user, method, target, body string, hdr map[string]string, out any) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	return serveJSON(t, h, r, out)
}

func TestSelfFlow(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.self()
	e.user(t, "alice")

	var created CreatedToken
	if rec := selfDo(t, h, "alice", "POST", "/tokens", `{"name":" laptop ","expires_in":"2h"}`, nil, &created); rec.Code != 201 ||
		created.Plaintext == "" || created.Name != "laptop" || created.UserID != "alice" ||
		strings.Join(created.Scopes, ",") != token.ScopeAPI {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	// This instance learns of the new token before answering, so its
	// known-token set cannot refuse the token's first request.
	if invs := e.invalidations(); len(invs) != 1 || len(invs[0].Created) != 1 ||
		string(invs[0].Created[0]) != string(func() []byte { s := token.Sum(created.Plaintext); return s[:] }()) {
		t.Errorf("invalidations after a self-service create = %+v, want the new token's hash in Created", invs)
	}
	var list selfTokenList
	if rec := selfDo(t, h, "alice", "GET", "/tokens", "", nil, &list); rec.Code != 200 || list.User.ID != "alice" ||
		list.MaxTokens != 10 || len(list.Tokens) != 1 || list.Tokens[0].ID != created.ID || list.User.TokenCount != 1 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(selfDo(t, h, "alice", "GET", "/tokens", "", nil, nil).Body.String(), created.Plaintext) {
		t.Error("the list shows the plaintext")
	}
	var tk Token
	if rec := selfDo(t, h, "alice", "GET", "/tokens/"+created.ID, "", nil, &tk); rec.Code != 200 || tk.ID != created.ID {
		t.Errorf("get: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+created.ID+"/revoke", `{"reason":"lost laptop"}`, nil, &tk); rec.Code != 200 ||
		tk.Status != token.Revoked {
		t.Errorf("revoke: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+created.ID+"/reapprove", "", nil, &tk); rec.Code != 200 ||
		tk.Status != token.Active {
		t.Errorf("reapprove: %d %s", rec.Code, rec.Body)
	}
	var rot RotatedToken
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+created.ID+"/rotate", `{"grace":"0s"}`, nil, &rot); rec.Code != 201 ||
		rot.RotatedFrom != created.ID || rot.Plaintext == "" || rot.Name != "laptop" {
		t.Errorf("rotate: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "DELETE", "/tokens/"+rot.ID, "", nil, nil); rec.Code != 204 {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
	if got := len(e.invalidations()); got != 5 { // create, revoke, reapprove, rotate, delete
		t.Errorf("%d invalidations applied, want 5", got)
	}
	var audit []storage.AuditEvent
	audit, err := e.store.Audit(t.Context(), "alice", 50)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]bool{}
	for _, ev := range audit {
		if ev.Action == storage.ActionUserCreate {
			continue
		}
		actions[ev.Action] = true
		if ev.Actor != storage.ActorUser("alice") {
			t.Errorf("%s by %q, want user:alice", ev.Action, ev.Actor)
		}
		if b, _ := json.Marshal(ev.Detail); strings.Contains(string(b), created.Plaintext) || strings.Contains(string(b), rot.Plaintext) {
			t.Errorf("audit detail carries a secret: %s", b)
		}
	}
	for _, a := range []string{storage.ActionTokenCreate, storage.ActionTokenRevoke, storage.ActionTokenReapprove,
		storage.ActionTokenRotate, storage.ActionTokenDelete} {
		if !actions[a] {
			t.Errorf("no %s event", a)
		}
	}
}

// TestSelfRefusals: every bad call is a clear 4xx and changes no row.
func TestSelfRefusals(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.self()
	e.user(t, "alice")
	e.user(t, "bob")
	e.user(t, "dave")
	if _, _, err := e.store.SetUserActive(t.Context(), "test", "dave", false); err != nil {
		t.Fatal(err)
	}
	mine, _ := e.token(t, "alice", "mine")
	bobs, _ := e.token(t, "bob", "bobs")
	tokens, audits := e.rows(t)
	n0 := len(e.invalidations())
	json := map[string]string(nil)
	for _, tt := range []struct {
		name, user, method, target, body string
		hdr                              map[string]string
		status                           int
		code, msg                        string
	}{
		{"nobody signed in", "", "GET", "/tokens", "", json, 401, "unauthorized", "Sign in"},
		{"nobody signed in, create", "", "POST", "/tokens", `{"name":"x"}`, json, 401, "unauthorized", ""},
		{"unknown user", "carol", "GET", "/tokens", "", json, 403, "forbidden", "ask an administrator"},
		{"unknown user, create", "carol", "POST", "/tokens", `{"name":"x"}`, json, 403, "forbidden", "ask an administrator"},
		{"impossible user id", "a/b", "GET", "/tokens", "", json, 403, "forbidden", "ask an administrator"},
		{"deactivated user", "dave", "GET", "/tokens", "", json, 403, "forbidden", "ask an administrator"},
		{"deactivated user, create", "dave", "POST", "/tokens", `{"name":"x"}`, json, 403, "forbidden", "ask an administrator"},
		{"scopes", "alice", "POST", "/tokens", `{"name":"x","scopes":["api"]}`, json, 400, "invalid_request", "scopes cannot be chosen"},
		{"scopes null", "alice", "POST", "/tokens", `{"name":"x","scopes":null}`, json, 400, "invalid_request", "scopes"},
		{"no name", "alice", "POST", "/tokens", `{}`, json, 400, "invalid_request", "name"},
		{"unknown field", "alice", "POST", "/tokens", `{"name":"x","user_id":"bob"}`, json, 400, "invalid_request", "unknown field"},
		{"lifetime over the max", "alice", "POST", "/tokens", `{"name":"x","expires_in":"25h"}`, json, 400, "invalid_request", ""},
		{"name taken", "alice", "POST", "/tokens", `{"name":"mine"}`, json, 409, "name_taken", ""},
		{"text/plain", "alice", "POST", "/tokens", `{"name":"x"}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type", "application/json"},
		{"form", "alice", "POST", "/tokens/" + mine.ID + "/revoke", `reason=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", ""},
		{"body without type", "alice", "POST", "/tokens", `{"name":"x"}`, map[string]string{"Content-Type": ""}, 415, "unsupported_media_type", ""},
		{"cross-site", "alice", "POST", "/tokens", `{"name":"x"}`, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "forbidden", "cross-site"},
		{"cross-site delete", "alice", "DELETE", "/tokens/" + mine.ID, "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "forbidden", ""},
		{"foreign origin", "alice", "POST", "/tokens/" + mine.ID + "/revoke", "", map[string]string{"Origin": "https://evil.example"}, 403, "forbidden", "origin"},
		{"foreign origin port", "alice", "DELETE", "/tokens/" + mine.ID, "", map[string]string{"Origin": "http://example.com:8080"}, 403, "forbidden", ""},
		{"null origin", "alice", "POST", "/tokens/" + mine.ID + "/revoke", "", map[string]string{"Origin": "null"}, 403, "forbidden", ""},
		{"other user's token", "alice", "GET", "/tokens/" + bobs.ID, "", json, 404, "not_found", "no token with id " + bobs.ID},
		{"other user's revoke", "alice", "POST", "/tokens/" + bobs.ID + "/revoke", "", json, 404, "not_found", ""},
		{"other user's reapprove", "alice", "POST", "/tokens/" + bobs.ID + "/reapprove", "", json, 404, "not_found", ""},
		{"other user's rotate", "alice", "POST", "/tokens/" + bobs.ID + "/rotate", "", json, 404, "not_found", ""},
		{"other user's delete", "alice", "DELETE", "/tokens/" + bobs.ID, "", json, 404, "not_found", ""},
		{"unknown token", "alice", "GET", "/tokens/" + testTokenID, "", json, 404, "not_found", "no token with id " + testTokenID},
		{"malformed token id", "alice", "GET", "/tokens/42", "", json, 400, "invalid_request", "UUID"},
		{"bad grace", "alice", "POST", "/tokens/" + mine.ID + "/rotate", `{"grace":"200h"}`, json, 400, "invalid_request", "grace"},
		{"reapprove with a field", "alice", "POST", "/tokens/" + mine.ID + "/reapprove", `{"x":1}`, json, 400, "invalid_request", ""},
		{"admin route", "alice", "GET", "/users/alice", "", json, 404, "not_found", ""},
		{"revoke-all is admin only", "alice", "POST", "/users/alice/tokens/revoke", "", json, 404, "not_found", ""},
		{"wrong method", "alice", "PUT", "/tokens", "", json, 405, "method_not_allowed", ""},
		{"query parameter", "alice", "GET", "/tokens?user=bob", "", json, 400, "invalid_request", "unknown query parameter"},
		{"too large", "alice", "POST", "/tokens", `{"name":"` + strings.Repeat("x", request.MaxBodyBytes) + `"}`, json, 413, "request_too_large", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var eb ErrorBody
			rec := selfDo(t, h, tt.user, tt.method, tt.target, tt.body, tt.hdr, &eb)
			if rec.Code != tt.status || eb.Error != tt.code || !strings.Contains(eb.Message, tt.msg) || eb.Message == "" {
				t.Errorf("%d %s, want %d %s with %q", rec.Code, rec.Body, tt.status, tt.code, tt.msg)
			}
		})
	}
	if tk, au := e.rows(t); tk != tokens || au != audits || len(e.invalidations()) != n0 {
		t.Errorf("refused calls changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	if b, _ := e.store.GetToken(t.Context(), bobs.ID); b.Status != token.Active {
		t.Errorf("bob's token is %s", b.Status)
	}
}

// TestSelfSameOriginAllowed: a same-origin browser call and a call without
// a body or Content-Type pass the cross-site rules.
func TestSelfSameOriginAllowed(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.self()
	e.user(t, "alice")
	tk, _ := e.token(t, "alice", "t")
	for _, hdr := range []map[string]string{
		{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"},
		{"Origin": "http://EXAMPLE.com:80"},
		{"Sec-Fetch-Site": "none"},
		{"Content-Type": "application/json; charset=utf-8"},
	} {
		if rec := selfDo(t, h, "alice", "POST", "/tokens/"+tk.ID+"/revoke", "", hdr, nil); rec.Code != 200 {
			t.Errorf("%v: %d %s", hdr, rec.Code, rec.Body)
		}
	}
}

// TestSelfLimitAndRotation: the 11th token is refused, and a user at the
// limit can still rotate.
func TestSelfLimitAndRotation(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.self()
	e.user(t, "alice")
	var first CreatedToken
	for i := range 10 {
		var c CreatedToken
		if rec := selfDo(t, h, "alice", "POST", "/tokens", `{"name":"t`+string(rune('a'+i))+`"}`, nil, &c); rec.Code != 201 {
			t.Fatalf("create %d: %d %s", i, rec.Code, rec.Body)
		}
		if i == 0 {
			first = c
		}
	}
	tokens, _ := e.rows(t)
	var eb ErrorBody
	if rec := selfDo(t, h, "alice", "POST", "/tokens", `{"name":"eleventh"}`, nil, &eb); rec.Code != 409 || eb.Error != "token_limit_reached" {
		t.Errorf("11th: %d %s", rec.Code, rec.Body)
	}
	if tk, _ := e.rows(t); tk != tokens {
		t.Errorf("the refused create stored a token")
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+first.ID+"/rotate", "", nil, nil); rec.Code != 201 {
		t.Errorf("rotation at 10 of 10: %d %s", rec.Code, rec.Body)
	}
	var list selfTokenList
	selfDo(t, h, "alice", "GET", "/tokens", "", nil, &list)
	if list.User.TokenCount != 10 || len(list.Tokens) != 11 {
		t.Errorf("after rotation: count %d, %d listed", list.User.TokenCount, len(list.Tokens))
	}
}

// TestSelfOpenAPI: the mount serves the description of its own calls,
// without a signed-in user (the site's sign-in in front decides who may read
// it), and it is the self-service document, not the admin one.
func TestSelfOpenAPI(t *testing.T) {
	h := NewSelf(SelfOptions{User: func(*http.Request) string { return "" }})
	rec := selfDo(t, h, "", http.MethodGet, "/openapi.json", "", nil, nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(selfOpenAPI()) {
		t.Error("GET /openapi.json is not the self-service description")
	}
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") || doc.Paths["/tokens"] == nil || doc.Paths["/users/{user_id}"] != nil {
		t.Errorf("self description: openapi %q, paths %d", doc.OpenAPI, len(doc.Paths))
	}
	// Any other path still needs a signed-in user.
	if rec := selfDo(t, h, "", http.MethodGet, "/tokens", "", nil, nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /tokens without a user = %d, want 401", rec.Code)
	}
}
