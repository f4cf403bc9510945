package tests

// End-to-end tests of the admin endpoint (see the README's admin API section): credentials,
// users, token creation, bad input and routing. The token lifecycle, limits,
// audit, introspection and the show-once rule are in
// admin_lifecycle_test.go. TestAdmin runs them all against one gateway.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

const (
	adminRealm     = `Bearer realm="armgate admin"`
	adminForbidden = `Bearer realm="armgate admin", error="insufficient_scope", scope="admin"`
)

// adminApp is the armgate option of TestAdmin's gateway. Its token
// lifetimes are not the defaults, so that the test sees that the
// configuration is used. Its invalidation listener can never connect (port 1
// refuses), so that a change seen on the very next request can only have
// been applied by the admin handler itself, before it answered, as the
// cache rules require (with a listener, a fast NOTIFY could hide a missing
// local invalidation).
const adminApp = "token_lifetime 48h\n\t\tmax_token_lifetime 720h\n\t\t" +
	`listen_database "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"`

// TestAdmin checks the admin API through one running Caddy (a start costs
// about a second under -race): each subtest uses its own user ids; they run
// in order, users listing first (it expects an empty database), and last the
// show-once check, which looks for every token that any of them created in
// every table and log line (and in the responses it collects itself). The
// gateway logs at DEBUG to files.
func TestAdmin(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, gatewayConfig{LogDir: dir, ExtraApp: adminApp})
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *gateway)
	}{
		{"ListUsers", adminListUsers},
		{"Credentials", adminCredentials},
		{"PutUser", adminPutUser},
		{"CreateToken", adminCreateToken},
		{"TokenLimit", adminTokenLimit},
		{"ChangesThroughGateway", adminChangesThroughGateway},
		{"ReapproveRevoke", adminReapproveRevoke},
		{"TokenLifetimes", adminTokenLifetimes},
		{"BadInput", adminBadInput},
		{"Audit", adminAudit},
		{"Introspection", adminIntrospection},
		{"Routing", adminRouting},
		{"ShowOnce", func(t *testing.T, g *gateway) { adminShowOnce(t, g, dir) }},
	} {
		t.Run(st.name, func(t *testing.T) { st.fn(t, g.on(t)) })
	}
}

// issued records the plaintext of every token a test created, per database,
// for the show-once check.
var issued = struct {
	sync.Mutex
	m map[string][]string
}{m: map[string][]string{}}

func (g *gateway) remember(plain string) {
	issued.Lock()
	defer issued.Unlock()
	issued.m[g.DSN] = append(issued.m[g.DSN], plain)
}

func (g *gateway) issuedTokens() []string {
	issued.Lock()
	defer issued.Unlock()
	return slices.Clone(issued.m[g.DSN])
}

// mint creates a token straight in the database (as the CLI does) and
// remembers it.
func (g *gateway) mint(user, name string, scopes []string) (storage.Token, string) {
	g.t.Helper()
	tok, plain := g.createToken(user, name, scopes, time.Hour)
	g.remember(plain)
	return tok, plain
}

// created decodes a create response and remembers its token.
func (g *gateway) created(r response) createdToken {
	g.t.Helper()
	want(g.t, r, http.StatusCreated, "")
	c := decode[createdToken](g.t, r)
	g.remember(c.Plain)
	return c
}

// on returns g reporting to t, for subtests.
func (g *gateway) on(t testing.TB) *gateway {
	c := *g
	c.t = t
	return &c
}

// bearer is an Authorization header with credential cred (none when empty),
// and Content-Type ct when not empty.
func bearer(cred, ct string) http.Header {
	h := http.Header{}
	if cred != "" {
		h.Set("Authorization", "Bearer "+cred)
	}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	return h
}

// adminRaw calls the admin endpoint with the admin key and a raw body.
func (g *gateway) adminRaw(method, path string, body []byte) response {
	g.t.Helper()
	return g.do(method, "/admin"+path, body, bearer(testAdminKey, "application/json"))
}

// adminAs calls the admin endpoint with cred as the bearer credential.
func (g *gateway) adminAs(cred, method, path string, body any) response {
	g.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			g.t.Fatal(err)
		}
	}
	return g.do(method, "/admin"+path, b, bearer(cred, "application/json"))
}

// send is do without a testing.TB, for use from many goroutines.
func (g *gateway) send(method, path string, h http.Header, body []byte) (response, error) {
	req, err := http.NewRequest(method, g.URL+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header = h
	resp, err := g.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// want checks an admin response: its status, Cache-Control: no-store, a
// JSON body and, when code is set, the error code and a non-empty message.
// It returns the decoded body (nil for 204).
func want(t testing.TB, r response, status int, code string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store (status %d)", cc, r.Status)
	}
	if status == http.StatusNoContent {
		if len(r.Body) != 0 {
			t.Errorf("204 with a body: %q", r.Body)
		}
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	m := r.json(t)
	if code != "" {
		if m["error"] != code {
			t.Errorf("error = %v, want %q; body %s", m["error"], code, r.Body)
		}
		if msg, _ := m["message"].(string); strings.TrimSpace(msg) == "" {
			t.Errorf("no message in %s", r.Body)
		}
	}
	return m
}

// createdToken is the create response: token JSON plus the plaintext.
type createdToken struct {
	adminapi.Token
	Plain string `json:"token"`
}

func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
	return v
}

// putUser creates (or updates) a user through the admin API.
func (g *gateway) putUser(id string) {
	g.t.Helper()
	if r := g.admin(http.MethodPut, "/users/"+id, map[string]any{}); r.Status != 201 && r.Status != 200 {
		g.t.Fatalf("PUT /users/%s: %d %s", id, r.Status, r.Body)
	}
}

// newToken creates a token through the admin API; body is the create body.
func (g *gateway) newToken(user string, body map[string]any) createdToken {
	g.t.Helper()
	return g.created(g.admin(http.MethodPost, "/users/"+user+"/tokens", body))
}

// getToken reads a token through the admin API.
func (g *gateway) getToken(id string) adminapi.Token {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/tokens/"+id, nil)
	want(g.t, r, http.StatusOK, "")
	return decode[adminapi.Token](g.t, r)
}

// getUser reads a user through the admin API.
func (g *gateway) getUser(id string) adminapi.User {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/users/"+id, nil)
	want(g.t, r, http.StatusOK, "")
	return decode[adminapi.User](g.t, r)
}

// rowCounts counts the rows of users, tokens and audit.
func (g *gateway) rowCounts() [3]int {
	g.t.Helper()
	var n [3]int
	for i, table := range []string{"users", "tokens", "audit"} {
		if err := g.Pool.QueryRow(context.Background(), "SELECT count(*) FROM armgate."+table).Scan(&n[i]); err != nil {
			g.t.Fatal(err)
		}
	}
	return n
}

// expireToken moves a token's expiry into the past in the database.
func (g *gateway) expireToken(id string) {
	g.t.Helper()
	if _, err := g.Pool.Exec(context.Background(),
		`UPDATE armgate.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		g.t.Fatal(err)
	}
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

var tokenJSONFields = []string{"allowed_ips", "created_at", "expires_at", "hint", "id", "last_used_at", "leak_url",
	"leaked_at", "name", "rate_limit", "revoked_at", "revoked_by", "revoked_reason", "rotated_to", "scopes", "status", "user_id"}

// adminCredentials: only the admin key or a live admin-scope token opens
// the admin API; everything else is 401 (or 403 for a live token without
// the scope) with the exact challenge, whatever the path.
func adminCredentials(t *testing.T, g *gateway) {
	ctx := context.Background()
	_, apiTok := g.mint("cred-api", "api", nil)
	_, adminTok := g.mint("cred-admin", "admin", []string{token.ScopeAdmin})
	revokedRow, revokedAdmin := g.mint("cred-admin", "revoked", []string{token.ScopeAdmin})
	if _, _, err := g.Store.RevokeToken(ctx, "test", revokedRow.ID, ""); err != nil {
		t.Fatal(err)
	}
	before := g.rowCounts()

	unauthorized := map[string][]string{
		"no header":            nil,
		"basic scheme":         {"Basic " + testAdminKey},
		"wrong key":            {"Bearer not-the-admin-key"},
		"key with suffix":      {"Bearer " + testAdminKey + "x"},
		"key prefix":           {"Bearer " + testAdminKey[:len(testAdminKey)-1]},
		"unknown token":        {"Bearer " + wellFormedUnknown(t)},
		"bad checksum":         {"Bearer " + badChecksum(adminTok)},
		"revoked admin token":  {"Bearer " + revokedAdmin},
		"empty bearer":         {"Bearer "},
		"two admin keys":       {"Bearer " + testAdminKey, "Bearer " + testAdminKey},
		"key and extra part":   {"Bearer " + testAdminKey + " x"},
		"key as basic payload": {"Basic " + testAdminKey},
	}
	for name, auth := range unauthorized {
		t.Run(name, func(t *testing.T) {
			g := g.on(t)
			// The same answer on a real route, a write route and no route at all.
			for _, rq := range []struct{ method, path string }{
				{http.MethodGet, "/admin/users"},
				{http.MethodPost, "/admin/users/cred-new/tokens"},
				{http.MethodGet, "/admin/no/such/route"},
			} {
				r := g.do(rq.method, rq.path, []byte(`{"name":"x"}`), http.Header{"Authorization": auth})
				want(t, r, http.StatusUnauthorized, "unauthorized")
				if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != adminRealm {
					t.Errorf("%s %s: WWW-Authenticate = %q, want exactly %q", rq.method, rq.path, got, adminRealm)
				}
				for _, secret := range []string{testAdminKey, adminTok, revokedAdmin} {
					if strings.Contains(string(r.Body), secret) {
						t.Errorf("the 401 body echoes a credential: %s", r.Body)
					}
				}
			}
		})
	}

	r := g.adminAs(apiTok, http.MethodGet, "/users", nil)
	want(t, r, http.StatusForbidden, "forbidden")
	if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != adminForbidden {
		t.Errorf("api-only token: WWW-Authenticate = %q, want %q", got, adminForbidden)
	}
	want(t, g.adminAs(apiTok, http.MethodPost, "/users/cred-new/tokens", map[string]any{"name": "x"}), http.StatusForbidden, "forbidden")
	// An api-only token is not an admin credential for logout's neighbours either.
	want(t, g.adminAs(apiTok, http.MethodPost, "/introspect", nil), http.StatusForbidden, "forbidden")

	if after := g.rowCounts(); after != before {
		t.Errorf("refused calls wrote rows: %v -> %v", before, after)
	}

	for name, cred := range map[string]string{"admin key": testAdminKey, "admin-scope token": adminTok} {
		r := g.adminAs(cred, http.MethodGet, "/users?limit=500", nil)
		want(t, r, http.StatusOK, "")
		if ids := userIDs(decode[usersPage](t, r).Users); !slices.Contains(ids, "cred-admin") || !slices.Contains(ids, "cred-api") {
			t.Errorf("%s: users = %v", name, ids)
		}
		if r.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: a 200 with a challenge", name)
		}
	}
	// A token with both scopes is an admin credential too.
	_, both := g.mint("cred-both", "both", []string{token.ScopeAPI, token.ScopeAdmin})
	want(t, g.adminAs(both, http.MethodGet, "/users/cred-api", nil), http.StatusOK, "")
}

// TestAdminWithoutAdminKey: with no admin_key configured, only admin-scope
// tokens are admin credentials (the bootstrap the README describes).
func TestAdminWithoutAdminKey(t *testing.T) {
	g := startGateway(t, gatewayConfig{NoAdminKey: true})
	_, apiTok := g.createToken("boot-api", "api", nil, time.Hour)
	_, adminTok := g.createToken("boot-admin", "root", []string{token.ScopeAdmin}, time.Hour)

	for _, cred := range []string{testAdminKey, "", " "} {
		r := g.adminAs(cred, http.MethodGet, "/users", nil)
		want(t, r, http.StatusUnauthorized, "unauthorized")
		if got := r.Header.Get("WWW-Authenticate"); got != adminRealm {
			t.Errorf("credential %q: WWW-Authenticate = %q", cred, got)
		}
	}
	want(t, g.adminAs(apiTok, http.MethodGet, "/users", nil), http.StatusForbidden, "forbidden")

	r := g.adminAs(adminTok, http.MethodPut, "/users/boot-new", map[string]any{"email": "new@example.com"})
	want(t, r, http.StatusCreated, "")
	created := g.newTokenAs(adminTok, "boot-new", map[string]any{"name": "first"})
	if err := token.Check(created.Plain); err != nil {
		t.Errorf("created token: %v", err)
	}
	if r := g.get("/v1/x", created.Plain); r.Status != 200 {
		t.Errorf("the token created with an admin token: %d %s", r.Status, r.Body)
	}
}

// newTokenAs creates a token through the admin API with cred.
func (g *gateway) newTokenAs(cred, user string, body map[string]any) createdToken {
	g.t.Helper()
	return g.created(g.adminAs(cred, http.MethodPost, "/users/"+user+"/tokens", body))
}

type usersPage struct {
	Users      []adminapi.User `json:"users"`
	NextCursor *string         `json:"next_cursor"`
}

func userIDs(us []adminapi.User) []string {
	ids := make([]string, 0, len(us))
	for _, u := range us {
		ids = append(ids, u.ID)
	}
	return ids
}

// adminPutUser: upsert status codes, merge semantics, one 201 under
// concurrency, and 400 for bad values with nothing written.
func adminPutUser(t *testing.T, g *gateway) {

	t0 := time.Now()
	r := g.admin(http.MethodPut, "/users/user.42@arm", map[string]any{"email": "alice@example.com", "display_name": "  Alice  "})
	m := want(t, r, http.StatusCreated, "")
	// The documented user JSON plus the handler's max_tokens_per_user (the
	// configured limit, for "3 of 10 tokens").
	if got, want := keys(m), []string{"created_at", "display_name", "email", "id", "max_tokens_per_user", "rate_limit", "status", "token_count"}; !slices.Equal(got, want) {
		t.Errorf("user JSON fields = %v, want %v", got, want)
	}
	if m["max_tokens_per_user"] != 10.0 {
		t.Errorf("max_tokens_per_user = %v, want the default 10", m["max_tokens_per_user"])
	}
	u := decode[adminapi.User](t, r)
	if u.ID != "user.42@arm" || *u.Email != "alice@example.com" || *u.DisplayName != "  Alice  " ||
		u.Status != "active" || u.TokenCount != 0 {
		t.Errorf("created user = %+v", u)
	}
	if s := m["created_at"].(string); !strings.HasSuffix(s, "Z") || u.CreatedAt.Before(t0.Add(-time.Second)) {
		t.Errorf("created_at = %s (want RFC 3339 UTC, about now)", s)
	}

	// Again: 200, and omitted or null fields are left as they are.
	r = g.admin(http.MethodPut, "/users/user.42@arm", map[string]any{"display_name": "Alice B", "email": nil})
	want(t, r, http.StatusOK, "")
	if u := decode[adminapi.User](t, r); *u.Email != "alice@example.com" || *u.DisplayName != "Alice B" {
		t.Errorf("updated user = %+v", u)
	}
	want(t, g.adminRaw(http.MethodPut, "/users/user.42@arm", nil), http.StatusOK, "")
	if u := g.getUser("user.42@arm"); *u.Email != "alice@example.com" || *u.DisplayName != "Alice B" {
		t.Errorf("after an empty PUT: %+v", u)
	}
	// Boundary values are accepted.
	long := strings.Repeat("x", 128)
	want(t, g.admin(http.MethodPut, "/users/"+long, map[string]any{"display_name": strings.Repeat("é", 200)}), http.StatusCreated, "")

	// 20 concurrent PUTs of a new id: exactly one 201.
	rs := g.concurrently(20, http.MethodPut, "/admin/users/race", func(i int) []byte {
		return fmt.Appendf(nil, `{"display_name":"racer %d"}`, i)
	})
	statuses := make([]int, len(rs))
	for i, r := range rs {
		statuses[i] = r.Status
	}
	if n201, n200 := count(statuses, 201), count(statuses, 200); n201 != 1 || n200 != 19 {
		t.Errorf("20 concurrent PUTs: %d×201, %d×200 (%v), want 1 and 19", n201, n200, statuses)
	}
	var creates int
	if err := g.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM armgate.audit WHERE target = 'race' AND action = 'user.create'`).Scan(&creates); err != nil {
		t.Fatal(err)
	}
	if creates != 1 {
		t.Errorf("user.create events for the raced id: %d", creates)
	}

	before := g.rowCounts()
	snapshot := g.admin(http.MethodGet, "/users/user.42@arm", nil).Body
	bad := []struct {
		name, path, body string
	}{
		{"not an email", "/users/bad1", `{"email":"not-an-email"}`},
		{"email with a display name", "/users/bad1", `{"email":"Alice <alice@example.com>"}`},
		{"empty email", "/users/bad1", `{"email":""}`},
		{"display name of 201 characters", "/users/bad1", `{"display_name":"` + strings.Repeat("a", 201) + `"}`},
		{"display name with a newline", "/users/bad1", `{"display_name":"a\nb"}`},
		{"display name with BEL", "/users/bad1", `{"display_name":"a\u0007b"}`},
		{"display name with C1 control", "/users/bad1", `{"display_name":"a\u0085b"}`},
		{"bad email on an existing user", "/users/user.42@arm", `{"email":"nope"}`},
		{"long name on an existing user", "/users/user.42@arm", `{"display_name":"` + strings.Repeat("a", 201) + `"}`},
		{"id with a space", "/users/bad%20id", `{}`},
		{"id with !", "/users/bad!id", `{}`},
		{"id with a slash", "/users/a%2Fb", `{}`},
		{"id of 129 characters", "/users/" + strings.Repeat("x", 129), `{}`},
		{"non-ASCII id", "/users/%C3%A9", `{}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			want(t, g.on(t).adminRaw(http.MethodPut, tt.path, []byte(tt.body)), http.StatusBadRequest, "invalid_request")
		})
	}
	// "." and ".." cannot be named in a path: Caddy resolves the dot
	// segments before the handler sees them. Either way nothing is created.
	for _, p := range []string{"/users/%2E%2E", "/users/%2E", "/users/.", "/users/.."} {
		if r := g.adminRaw(http.MethodPut, p, []byte(`{}`)); r.Status < 400 {
			t.Errorf("PUT %s: %d %s", p, r.Status, r.Body)
		}
	}
	want(t, g.admin(http.MethodGet, "/users/bad1", nil), http.StatusNotFound, "not_found")
	if after := g.rowCounts(); after != before {
		t.Errorf("refused PUTs wrote rows: %v -> %v", before, after)
	}
	if now := g.admin(http.MethodGet, "/users/user.42@arm", nil).Body; !bytes.Equal(now, snapshot) {
		t.Errorf("a refused PUT changed the user: %s -> %s", snapshot, now)
	}
}

func count[T comparable](s []T, v T) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// adminListUsers: pagination ordered by id, next_cursor null on the last
// page, the status filter, and 400 for bad parameters. It expects to see
// only its own users, so TestAdmin runs it first.
func adminListUsers(t *testing.T, g *gateway) {
	all := []string{"u01", "u02", "u03", "u04", "u05", "u06", "u07"}
	for _, id := range []string{"u05", "u01", "u07", "u03", "u02", "u06", "u04"} { // not in order
		g.putUser(id)
	}
	for _, id := range []string{"u02", "u05"} {
		want(t, g.admin(http.MethodPost, "/users/"+id+"/deactivate", nil), http.StatusOK, "")
	}

	// pages walks the list from the first page and returns the ids per page.
	pages := func(query string) [][]string {
		t.Helper()
		var out [][]string
		cursor := ""
		for range 10 {
			q := query
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			r := g.admin(http.MethodGet, "/users?"+strings.TrimPrefix(q, "&"), nil)
			m := want(t, r, http.StatusOK, "")
			if _, ok := m["next_cursor"]; !ok {
				t.Fatalf("no next_cursor key in %s", r.Body)
			}
			p := decode[usersPage](t, r)
			out = append(out, userIDs(p.Users))
			if p.NextCursor == nil {
				return out
			}
			cursor = *p.NextCursor
		}
		t.Fatalf("more than 10 pages for %q", query)
		return nil
	}
	for _, tt := range []struct {
		query string
		want  [][]string
	}{
		{"", [][]string{all}},
		{"limit=3", [][]string{{"u01", "u02", "u03"}, {"u04", "u05", "u06"}, {"u07"}}},
		{"limit=7", [][]string{all}}, // exactly full: no further (empty) page
		{"limit=1", [][]string{{"u01"}, {"u02"}, {"u03"}, {"u04"}, {"u05"}, {"u06"}, {"u07"}}},
		{"limit=500", [][]string{all}},
		{"status=active&limit=2", [][]string{{"u01", "u03"}, {"u04", "u06"}, {"u07"}}},
		{"status=active&limit=5", [][]string{{"u01", "u03", "u04", "u06", "u07"}}},
		{"status=deactivated", [][]string{{"u02", "u05"}}},
	} {
		if got := pages(tt.query); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("GET /users?%s: pages %v, want %v", tt.query, got, tt.want)
		}
	}
	r := g.admin(http.MethodGet, "/users?status=deactivated", nil)
	for _, u := range decode[usersPage](t, r).Users {
		if u.Status != "deactivated" {
			t.Errorf("status filter returned %+v", u)
		}
	}

	for _, q := range []string{"limit=0", "limit=501", "limit=-1", "limit=abc", "status=bogus",
		"status=Active", "cursor=%21%21%21", "cursor=" + "Li4", "foo=1", "limit=2&limit=3", "state=active"} {
		t.Run(q, func(t *testing.T) {
			want(t, g.on(t).admin(http.MethodGet, "/users?"+q, nil), http.StatusBadRequest, "invalid_request")
		})
	}
}

// adminCreateToken: the create response, what get and list show, name
// collisions, deactivated and unknown users.
func adminCreateToken(t *testing.T, g *gateway) {
	g.putUser("tk")

	r := g.admin(http.MethodPost, "/users/tk/tokens", map[string]any{"name": "  ci pipeline  ", "scopes": []string{"api", "admin", "api"}})
	m := want(t, r, http.StatusCreated, "")
	c := g.created(r)
	if got, want := keys(m), append(slices.Clone(tokenJSONFields), "token"); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("create response fields = %v", got)
	}
	if err := token.Check(c.Plain); err != nil {
		t.Errorf("plaintext %q: %v", c.Plain, err)
	}
	if c.Name != "ci pipeline" || c.UserID != "tk" || c.Status != token.Active || c.Hint != c.Plain[:8]+"…" ||
		!slices.Equal(c.Scopes, []string{"api", "admin"}) || c.RevokedAt != nil || c.RevokedReason != nil || c.LastUsedAt != nil {
		t.Errorf("created token = %+v", c.Token)
	}
	for _, f := range []string{"created_at", "expires_at"} {
		if s, _ := m[f].(string); !strings.HasSuffix(s, "Z") {
			t.Errorf("%s = %v, want RFC 3339 in UTC", f, m[f])
		}
	}
	if len(c.ID) != 36 || strings.Count(c.ID, "-") != 4 {
		t.Errorf("id %q is not a UUID", c.ID)
	}
	// The token works through the gateway at once.
	if r := g.get("/v1/x", c.Plain); r.Status != 200 {
		t.Errorf("new token through the gateway: %d %s", r.Status, r.Body)
	}

	// GET and list show the same token JSON, without the plaintext.
	r = g.admin(http.MethodGet, "/tokens/"+c.ID, nil)
	if got := keys(want(t, r, http.StatusOK, "")); !slices.Equal(got, tokenJSONFields) {
		t.Errorf("GET /tokens fields = %v, want %v", got, tokenJSONFields)
	}
	if got := decode[adminapi.Token](t, r); got.ID != c.ID || got.Name != c.Name || !got.ExpiresAt.Equal(c.ExpiresAt) || got.Hint != c.Hint {
		t.Errorf("GET /tokens = %+v, created %+v", got, c.Token)
	}
	// Upper-case ids are accepted and answered in canonical form.
	if got := g.getToken(strings.ToUpper(c.ID)); got.ID != c.ID {
		t.Errorf("GET with an upper-case id: %+v", got)
	}
	r = g.admin(http.MethodGet, "/users/tk/tokens", nil)
	want(t, r, http.StatusOK, "")
	list := decode[map[string][]map[string]any](t, r)["tokens"]
	if len(list) != 1 || !slices.Equal(keys(list[0]), tokenJSONFields) || list[0]["id"] != c.ID {
		t.Errorf("GET /users/tk/tokens = %s", r.Body)
	}

	// Names are trimmed before the uniqueness check, and free again after a delete.
	a := g.newToken("tk", map[string]any{"name": " a "})
	if a.Name != "a" {
		t.Errorf("name stored as %q", a.Name)
	}
	want(t, g.admin(http.MethodPost, "/users/tk/tokens", map[string]any{"name": "a"}), http.StatusConflict, "name_taken")
	want(t, g.admin(http.MethodPost, "/users/tk/tokens", map[string]any{"name": "\ta\n"}), http.StatusConflict, "name_taken")
	// Another user may use the same name.
	g.putUser("tk2")
	g.newToken("tk2", map[string]any{"name": "a"})
	want(t, g.admin(http.MethodDelete, "/tokens/"+a.ID, nil), http.StatusNoContent, "")
	want(t, g.admin(http.MethodGet, "/tokens/"+a.ID, nil), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodDelete, "/tokens/"+a.ID, nil), http.StatusNotFound, "not_found")
	again := g.newToken("tk", map[string]any{"name": "a"})
	if again.ID == a.ID {
		t.Errorf("the re-created token reuses the deleted id")
	}

	before := g.rowCounts()
	want(t, g.admin(http.MethodPost, "/users/tk/deactivate", nil), http.StatusOK, "")
	before[2]++ // the deactivation event
	want(t, g.admin(http.MethodPost, "/users/tk/tokens", map[string]any{"name": "while deactivated"}), http.StatusConflict, "user_deactivated")
	want(t, g.admin(http.MethodPost, "/users/nobody/tokens", map[string]any{"name": "x"}), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodGet, "/users/nobody/tokens", nil), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodGet, "/users/nobody", nil), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodGet, "/tokens/00000000-0000-4000-8000-000000000000", nil), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodPost, "/users/nobody/deactivate", nil), http.StatusNotFound, "not_found")
	want(t, g.admin(http.MethodPost, "/users/nobody/reactivate", nil), http.StatusNotFound, "not_found")
	for _, p := range []string{"/tokens/00000000-0000-4000-8000-000000000000/revoke", "/tokens/00000000-0000-4000-8000-000000000000/reapprove"} {
		want(t, g.admin(http.MethodPost, p, nil), http.StatusNotFound, "not_found")
	}
	if after := g.rowCounts(); after != before {
		t.Errorf("refused creates wrote rows: %v -> %v", before, after)
	}
}

// adminBadInput: malformed bodies, ids and values are 400
// invalid_request with a message, oversized bodies 413, and none of them
// writes a row.
func adminBadInput(t *testing.T, g *gateway) {
	g.putUser("bad")
	tok := g.newToken("bad", map[string]any{"name": "existing"})
	before := g.rowCounts()

	tokens := "/users/bad/tokens"
	revoke := "/tokens/" + tok.ID + "/revoke"
	cases := []struct {
		name, method, path, body string
	}{
		{"unknown field", "POST", tokens, `{"name":"x","nmae":"y"}`},
		{"unknown field in user", "PUT", "/users/bad", `{"mail":"a@example.com"}`},
		{"unknown field in revoke", "POST", revoke, `{"reason":"x","why":"y"}`},
		{"body on reapprove", "POST", "/tokens/" + tok.ID + "/reapprove", `{"reason":"x"}`},
		{"body on deactivate", "POST", "/users/bad/deactivate", `{"now":true}`},
		{"name wrong type", "POST", tokens, `{"name":5}`},
		{"scopes wrong type", "POST", tokens, `{"name":"x","scopes":"api"}`},
		{"scope wrong type", "POST", tokens, `{"name":"x","scopes":[1]}`},
		{"expires_in a number", "POST", tokens, `{"name":"x","expires_in":3600}`},
		{"email wrong type", "PUT", "/users/bad", `{"email":5}`},
		{"reason wrong type", "POST", revoke, `{"reason":true}`},
		{"trailing object", "POST", tokens, `{"name":"x"} {}`},
		{"trailing garbage", "POST", tokens, `{"name":"x"}x`},
		{"trailing bracket", "PUT", "/users/bad", `{}]`},
		{"truncated", "POST", tokens, `{"name":"x"`},
		{"not JSON", "POST", tokens, `name=x`},
		{"array", "POST", tokens, `[]`},
		{"null", "POST", tokens, `null`},
		{"string", "PUT", "/users/bad", `"x"`},
		{"unknown scope", "POST", tokens, `{"name":"x","scopes":["api","root"]}`},
		{"empty scopes", "POST", tokens, `{"name":"x","scopes":[]}`},
		{"no name", "POST", tokens, `{}`},
		{"empty name", "POST", tokens, `{"name":""}`},
		{"blank name", "POST", tokens, `{"name":"   "}`},
		{"name of 101 characters", "POST", tokens, `{"name":"` + strings.Repeat("n", 101) + `"}`},
		{"name with a control character", "POST", tokens, `{"name":"a\u0000b"}`},
		{"name with a tab inside", "POST", tokens, `{"name":"a\tb"}`},
		{"malformed user id", "POST", "/users/bad%20user/tokens", `{"name":"x"}`},
		{"revoke reason of 501 characters", "POST", revoke, `{"reason":"` + strings.Repeat("r", 501) + `"}`},
		{"revoke reason with a control character", "POST", revoke, `{"reason":"a\u0001b"}`},
		{"malformed uuid get", "GET", "/tokens/not-a-uuid", ``},
		{"uuid without dashes", "GET", "/tokens/" + strings.ReplaceAll(tok.ID, "-", ""), ``},
		{"uuid in braces", "GET", "/tokens/%7B" + tok.ID + "%7D", ``},
		{"uuid urn", "GET", "/tokens/urn:uuid:" + tok.ID, ``},
		{"malformed uuid revoke", "POST", "/tokens/1234/revoke", `{}`},
		{"malformed uuid reapprove", "POST", "/tokens/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/reapprove", ``},
		{"malformed uuid delete", "DELETE", "/tokens/" + tok.ID + "0", ``},
		{"audit bad user_id", "GET", "/audit?user_id=a%20b", ``},
		{"audit limit", "GET", "/audit?limit=0", ``},
		{"audit unknown param", "GET", "/audit?user=bad", ``},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			want(t, g.on(t).adminRaw(tt.method, tt.path, []byte(tt.body)), http.StatusBadRequest, "invalid_request")
		})
	}
	// The message says what is wrong.
	for _, tt := range []struct{ body, part string }{
		{`{"name":"x","nmae":"y"}`, "nmae"},
		{`{"name":"x","scopes":["root"]}`, "root"},
		{`{"name":5}`, "name"},
	} {
		m := want(t, g.adminRaw(http.MethodPost, tokens, []byte(tt.body)), http.StatusBadRequest, "invalid_request")
		if msg, _ := m["message"].(string); !strings.Contains(msg, tt.part) {
			t.Errorf("%s: message %q does not mention %q", tt.body, msg, tt.part)
		}
	}

	// Over 64 KiB: 413, even when the content is bad too (size first).
	big := `{"name":"x","scopes":["api"]}` + strings.Repeat(" ", 64<<10)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", tokens, big},
		{"PUT", "/users/bad", `{"display_name":"` + strings.Repeat("a", 64<<10) + `"}`},
		{"POST", revoke, `{"reason":"x"}` + strings.Repeat(" ", 64<<10)},
		{"POST", tokens, "}" + strings.Repeat("x", 64<<10)},
	} {
		want(t, g.adminRaw(tt.method, tt.path, []byte(tt.body)), http.StatusRequestEntityTooLarge, "request_too_large")
	}
	// Also without a Content-Length (chunked).
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(big))
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, g.URL+"/admin"+tokens, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = bearer(testAdminKey, "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want(t, response{resp.StatusCode, resp.Header, b}, http.StatusRequestEntityTooLarge, "request_too_large")
	// Exactly 64 KiB is accepted.
	exact := `{"name":"exact"}`
	exact += strings.Repeat(" ", 64<<10-len(exact))
	g.created(g.adminRaw(http.MethodPost, tokens, []byte(exact)))
	before[1]++
	before[2]++

	if after := g.rowCounts(); after != before {
		t.Errorf("refused requests wrote rows: %v -> %v", before, after)
	}
	if got := g.getToken(tok.ID); got.Status != token.Active || got.RevokedAt != nil {
		t.Errorf("a refused revoke changed the token: %+v", got)
	}
}

// adminRouting: unknown routes 404, wrong methods 405 with Allow, and
// Cache-Control: no-store on every answer.
func adminRouting(t *testing.T, g *gateway) {
	g.putUser("rt")
	tok := g.newToken("rt", map[string]any{"name": "t"})

	for _, p := range []string{"/nope", "/users/rt/nope", "/tokens", "/users/", "/users/rt/", "/users/rt/tokens/",
		"/tokens/" + tok.ID + "/", "/users//tokens", "/v2/users"} { // "/" leads to the screen (TestMountRootLeadsToScreen)
		t.Run("404 "+p, func(t *testing.T) {
			r := g.on(t).admin(http.MethodGet, p, nil)
			want(t, r, http.StatusNotFound, "not_found")
		})
	}
	for _, tt := range []struct {
		method, path string
		allow        []string // must be in Allow
	}{
		{"DELETE", "/users/rt", []string{"GET", "PUT"}},
		{"POST", "/users", []string{"GET"}},
		{"GET", "/users/rt/deactivate", []string{"POST"}},
		{"PUT", "/users/rt/tokens", []string{"GET", "POST"}},
		{"POST", "/tokens/" + tok.ID, []string{"GET", "DELETE"}},
		{"GET", "/tokens/" + tok.ID + "/revoke", []string{"POST"}},
		{"GET", "/introspect", []string{"POST"}},
		{"DELETE", "/audit", []string{"GET"}},
		{"GET", "/logout", []string{"POST"}},
		{"PATCH", "/users/rt", []string{"GET", "PUT"}},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := g.on(t).admin(tt.method, tt.path, nil)
			want(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			allow := strings.Split(r.Header.Get("Allow"), ", ")
			for _, m := range tt.allow {
				if !slices.Contains(allow, m) {
					t.Errorf("Allow = %q, missing %s", r.Header.Get("Allow"), m)
				}
			}
			if slices.Contains(allow, tt.method) {
				t.Errorf("Allow = %q includes the refused method", r.Header.Get("Allow"))
			}
		})
	}
	// The token is untouched by all of that.
	if got := g.getToken(tok.ID); got.Status != token.Active {
		t.Errorf("token after routing errors: %+v", got)
	}
	// no-store on the successes too (want checks it on every response).
	want(t, g.admin(http.MethodGet, "/users", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodGet, "/audit", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPut, "/users/rt", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPost, "/tokens/"+tok.ID+"/revoke", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodDelete, "/tokens/"+tok.ID, nil), http.StatusNoContent, "")
}

// concurrently sends n admin calls at once, the i-th with body(i), and
// returns the responses in order (Status 0 where the exchange failed).
func (g *gateway) concurrently(n int, method, path string, body func(i int) []byte) []response {
	rs := make([]response, n)
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() {
			r, err := g.send(method, path, bearer(testAdminKey, "application/json"), body(i))
			if err != nil {
				g.t.Error(err)
				return
			}
			rs[i] = r
		})
	}
	wg.Wait()
	return rs
}
