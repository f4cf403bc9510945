package tests

// End-to-end tests of armgate_self: a real Caddy with the site's sign-in
// (basic_auth, or forward_auth to a stand-in sign-in service) in front of
// it, on a real PostgreSQL.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
)

// selfPasswords are the basic_auth passwords of the self-service tests.
var selfPasswords = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "dave": "dave-pw", "erin": "erin-pw"}

// basicAuthSite mounts armgate_self at /me/ behind basic_auth with the
// users of selfPasswords (bcrypt at the lowest cost, to keep tests fast).
func basicAuthSite(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("handle_path /me/* {\n\t\tbasic_auth {\n")
	for _, u := range []string{"alice", "bob", "dave", "erin"} {
		h, err := bcrypt.GenerateFromPassword([]byte(selfPasswords[u]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\t\t\t%s %s\n", u, h)
	}
	b.WriteString("\t\t}\n\t\tarmgate_self\n\t}")
	return b.String()
}

// self calls the self-service API as user with basic auth, a JSON body
// when body is not empty, and the extra headers.
func (g *gateway) self(user, method, path, body string, extra http.Header) response {
	g.t.Helper()
	h := http.Header{}
	if user != "" {
		h.Set("Authorization", "Basic "+basic(user, selfPasswords[user]))
	}
	if body != "" {
		h.Set("Content-Type", "application/json")
	}
	for k, v := range extra {
		h[k] = v
	}
	return g.do(method, "/me"+path, []byte(body), h)
}

func basic(user, pw string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(user, pw)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// rowCounts returns the number of token and audit rows.
func rowCounts(t testing.TB, g *gateway) (tokens, audit int) {
	t.Helper()
	ctx := context.Background()
	if err := g.Pool.QueryRow(ctx, `SELECT count(*) FROM armgate.tokens`).Scan(&tokens); err != nil {
		t.Fatal(err)
	}
	if err := g.Pool.QueryRow(ctx, `SELECT count(*) FROM armgate.audit`).Scan(&audit); err != nil {
		t.Fatal(err)
	}
	return tokens, audit
}

func putUsers(t testing.TB, s *storage.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, _, err := s.UpsertUser(context.Background(), "test", id, storage.UserPatch{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSelfServiceBasicAuth(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: basicAuthSite(t)})
	putUsers(t, g.Store, "alice", "bob", "dave")
	if _, _, err := g.Store.SetUserActive(context.Background(), "test", "dave", false); err != nil {
		t.Fatal(err)
	}
	bobs, _ := g.createToken("bob", "bobs", nil, time.Hour)
	var secrets []string

	// Without the sign-in, basic_auth answers; with it, alice sees her list.
	if r := g.self("", http.MethodGet, "/tokens", "", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("no sign-in: %d %s", r.Status, r.Body)
	}
	m := want(t, g.self("alice", http.MethodGet, "/tokens", "", nil), 200, "")
	if u, _ := m["user"].(map[string]any); u["id"] != "alice" || m["max_tokens"] != 10.0 || len(m["tokens"].([]any)) != 0 {
		t.Fatalf("empty list: %v", m)
	}

	// Create: the token works through armgate_auth.
	c := want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"laptop","expires_in":"24h"}`, nil), 201, "")
	laptop, plain := c["id"].(string), c["token"].(string)
	secrets = append(secrets, plain)
	if r := g.get("/api/x", plain); r.Status != 200 || r.json(t)["user_id"] != "alice" {
		t.Fatalf("alice's token through armgate_auth: %d %s", r.Status, r.Body)
	}
	if s := c["scopes"].([]any); len(s) != 1 || s[0] != "api" {
		t.Errorf("scopes = %v", s)
	}
	if r := g.self("alice", http.MethodGet, "/tokens", "", nil); strings.Contains(string(r.Body), plain) {
		t.Error("the list shows the plaintext")
	}

	tokens, audits := rowCounts(t, g)
	// Refusals that change nothing.
	want(t, g.self("alice", http.MethodGet, "/tokens/"+bobs.ID, "", nil), 404, "not_found")
	want(t, g.self("alice", http.MethodDelete, "/tokens/"+bobs.ID, "", nil), 404, "not_found")
	want(t, g.self("alice", http.MethodPatch, "/tokens/"+bobs.ID, `{"rate_limit":{"requests":1,"window":"1h"}}`, nil), 404, "not_found")
	want(t, g.self("alice", http.MethodGet, "/tokens/"+bobs.ID+"/usage", "", nil), 404, "not_found")
	want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"root","scopes":["admin"]}`, nil), 400, "invalid_request")
	want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"x"}`, http.Header{"Sec-Fetch-Site": {"cross-site"}}), 403, "forbidden")
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/revoke", "", http.Header{"Origin": {"https://evil.example"}}), 403, "forbidden")
	want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"x"}`, http.Header{"Content-Type": {"text/plain"}}), 415, "unsupported_media_type")
	m = want(t, g.self("dave", http.MethodPost, "/tokens", `{"name":"x"}`, nil), 403, "forbidden")
	if !strings.Contains(m["message"].(string), "administrator") {
		t.Errorf("deactivated user: %v", m)
	}
	want(t, g.self("dave", http.MethodGet, "/tokens", "", nil), 403, "forbidden")
	if tk, au := rowCounts(t, g); tk != tokens || au != audits {
		t.Fatalf("refused calls changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	if r := g.get("/api/x", plain); r.Status != 200 {
		t.Fatalf("alice's token after the refused revoke: %d", r.Status)
	}

	// Revoke, re-approve, both seen at once by armgate_auth.
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/revoke", `{"reason":"left on a train"}`, nil), 200, "")
	if r := g.get("/api/x", plain); r.Status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", r.Status)
	}
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/reapprove", "", nil), 200, "")
	if r := g.get("/api/x", plain); r.Status != 200 {
		t.Errorf("re-approved token: %d", r.Status)
	}

	// Fill up to 10; the 11th is refused; rotation at 10 of 10 works.
	for i := 2; i <= 10; i++ {
		want(t, g.self("alice", http.MethodPost, "/tokens", fmt.Sprintf(`{"name":"t%d"}`, i), nil), 201, "")
	}
	tokens, _ = rowCounts(t, g)
	want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"eleventh"}`, nil), 409, "token_limit_reached")
	if tk, _ := rowCounts(t, g); tk != tokens {
		t.Fatal("the 11th create stored a token")
	}
	rot := want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/rotate", `{"grace":"2s"}`, nil), 201, "")
	newPlain, newID := rot["token"].(string), rot["id"].(string)
	secrets = append(secrets, newPlain)
	if rot["rotated_from"] != laptop || rot["name"] != "laptop" {
		t.Errorf("rotate: %v", rot)
	}
	if r := g.get("/api/x", newPlain); r.Status != 200 {
		t.Errorf("new token: %d", r.Status)
	}
	// The old token passes during the grace (the request right after the
	// rotation is well inside 2 s) and is refused after it.
	if r := g.get("/api/x", plain); r.Status != 200 {
		t.Errorf("old token during the grace: %d", r.Status)
	}
	if !wait.Until(15*time.Second, func() bool { return g.get("/api/x", plain).Status == http.StatusUnauthorized }) {
		t.Error("the old token still passes after its grace")
	}
	old := want(t, g.self("alice", http.MethodGet, "/tokens/"+laptop, "", nil), 200, "")
	if old["rotated_to"] != newID {
		t.Errorf("old token's rotated_to = %v", old["rotated_to"])
	}

	// Delete frees the slot.
	want(t, g.self("alice", http.MethodDelete, "/tokens/"+newID, "", nil), 204, "")
	if r := g.get("/api/x", newPlain); r.Status != http.StatusUnauthorized {
		t.Errorf("deleted token: %d", r.Status)
	}
	want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"again"}`, nil), 201, "")

	// Every change is audited with actor user:alice, none with a secret.
	events, err := g.Store.Audit(context.Background(), "alice", 100)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range events {
		if e.Action == storage.ActionUserCreate {
			continue
		}
		actions[e.Action]++
		if e.Actor != "user:alice" {
			t.Errorf("%s by %q", e.Action, e.Actor)
		}
		b, _ := json.Marshal(e)
		for _, s := range secrets {
			if strings.Contains(string(b), s) || strings.Contains(string(b), s[:12]) {
				t.Errorf("audit event carries a secret: %s", b)
			}
		}
	}
	for a, n := range map[string]int{storage.ActionTokenCreate: 11, storage.ActionTokenRevoke: 1,
		storage.ActionTokenReapprove: 1, storage.ActionTokenRotate: 1, storage.ActionTokenDelete: 1} {
		if actions[a] != n {
			t.Errorf("%d %s events, want %d", actions[a], a, n)
		}
	}
}

// signIn is a stand-in for a company sign-in service behind forward_auth:
// /check answers 200 with X-User-Id for a session cookie it knows, 200
// without a user for the "anonymous" session, else 401.
func signIn(t testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		switch {
		case r.URL.Path != "/check" || err != nil:
			w.WriteHeader(http.StatusUnauthorized)
		case c.Value == "alice-session":
			w.Header().Set("X-User-Id", "alice")
		case c.Value == "anonymous-session":
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestSelfServiceForwardAuth(t *testing.T) {
	site := fmt.Sprintf(`handle_path /me/* {
		forward_auth %s {
			uri /check
			copy_headers X-User-Id
		}
		armgate_self {
			user {http.request.header.X-User-Id}
		}
	}`, signIn(t))
	g := startGateway(t, gatewayConfig{ExtraSite: site})
	putUsers(t, g.Store, "alice", "bob")
	call := func(method, path, body string, h http.Header) response {
		if body != "" {
			h.Set("Content-Type", "application/json")
		}
		return g.do(method, "/me"+path, []byte(body), h)
	}
	cookie := func(v string) http.Header { return http.Header{"Cookie": {"session=" + v}} }

	m := want(t, call(http.MethodGet, "/tokens", "", cookie("alice-session")), 200, "")
	if m["user"].(map[string]any)["id"] != "alice" {
		t.Fatalf("list: %v", m)
	}
	c := want(t, call(http.MethodPost, "/tokens", `{"name":"ci"}`, cookie("alice-session")), 201, "")
	if r := g.get("/api/x", c["token"].(string)); r.Status != 200 || r.json(t)["user_id"] != "alice" {
		t.Fatalf("token through armgate_auth: %d %s", r.Status, r.Body)
	}

	tokens, audits := rowCounts(t, g)
	// A client-sent X-User-Id without the sign-in: forward_auth answers 401.
	h := http.Header{"X-User-Id": {"bob"}}
	if r := call(http.MethodPost, "/tokens", `{"name":"forged"}`, h); r.Status != http.StatusUnauthorized {
		t.Errorf("forged header without sign-in: %d %s", r.Status, r.Body)
	}
	// Signed in, but the sign-in names no user: copy_headers removes the
	// client's header, so armgate_self sees nobody.
	h = cookie("anonymous-session")
	h.Set("X-User-Id", "bob")
	want(t, call(http.MethodPost, "/tokens", `{"name":"forged"}`, h), 401, "unauthorized")
	// Signed in as alice with a header naming bob: the sign-in's value wins.
	h = cookie("alice-session")
	h.Set("X-User-Id", "bob")
	if m := want(t, call(http.MethodGet, "/tokens", "", h), 200, ""); m["user"].(map[string]any)["id"] != "alice" {
		t.Errorf("client header overrode the sign-in: %v", m["user"])
	}
	if tk, au := rowCounts(t, g); tk != tokens || au != audits {
		t.Errorf("forged calls changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	if list, err := g.Store.ListTokens(context.Background(), "bob"); err != nil || len(list) != 0 {
		t.Errorf("bob has tokens: %v %v", list, err)
	}
}
