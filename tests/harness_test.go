// Package tests holds armgate's end-to-end tests: a real Caddy (in process,
// with the standard modules and armgate's) against a real PostgreSQL and a
// stand-in upstream, over real HTTP.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/jackc/pgx/v5/pgxpool"

	_ "github.com/armgate/armgate/caddymodule"
	"github.com/armgate/armgate/internal/freeport"
	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// When the whole package runs, build the Caddy of the process tests
	// while the in-process tests run (those run first: the process tests
	// are parallel).
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
		go buildCaddy()
	}
	testpg.Main(m)
}

// upstream is the stand-in API behind the gateway: it records what reached
// it and echoes the interesting headers back.
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path":          r.URL.Path,
			"user_id":       r.Header.Get("X-ARM-User-ID"),
			"token_id":      r.Header.Get("X-ARM-Token-ID"),
			"token_name":    r.Header.Get("X-ARM-Token-Name"),
			"authorization": r.Header.Get("Authorization"),
		})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// gatewayConfig is what a test may vary in the Caddyfile.
type gatewayConfig struct {
	DSN        string // default: a fresh database
	AdminKey   string // default: testAdminKey
	NoAdminKey bool   // configure no admin_key: only admin-scope tokens administer
	Scope      string // armgate_auth scope; default api
	AuthExtra  string // more lines inside the armgate_auth block
	AdminExtra string // lines inside the armgate_admin block
	// AdminFailureLimit keeps armgate_admin's default failure limit; else,
	// unless AdminExtra sets one, the harness turns it off, since tests
	// refuse many credentials from one address on purpose.
	AdminFailureLimit bool
	ExtraApp          string // more lines inside the armgate global option
	ExtraSite         string // more lines inside the site block
	ExtraGlobal       string // more lines in the global options block
	// LogDir, when set, gets Caddy's log (level DEBUG) in caddy.log and the
	// site's access log in access.log.
	LogDir string
}

const testAdminKey = "test-admin-key-0123456789abcdefghijklmn"

// gateway is a running Caddy with armgate in front of an upstream.
type gateway struct {
	t        testing.TB
	URL      string
	DSN      string
	Caddy    string // the Caddyfile it runs
	Upstream *upstream
	Store    *storage.Store
	Pool     *pgxpool.Pool
	client   *http.Client
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	p, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startGateway loads a config into the in-process Caddy (a reload when one
// is running) and returns a client for it.
func startGateway(t testing.TB, gc gatewayConfig) *gateway {
	t.Helper()
	if gc.DSN == "" {
		gc.DSN = testpg.NewDatabase(t)
	}
	if gc.AdminKey == "" {
		gc.AdminKey = testAdminKey
	}
	if gc.Scope == "" {
		gc.Scope = "api"
	}
	if gc.AdminExtra == "" && !gc.AdminFailureLimit {
		gc.AdminExtra = "failure_limit off"
	}
	up := newUpstream(t)
	adminKey := ""
	if !gc.NoAdminKey {
		adminKey = fmt.Sprintf("admin_key %q", gc.AdminKey)
	}
	var globalLog, siteLog string
	if gc.LogDir != "" {
		globalLog = fmt.Sprintf("log {\n\t\toutput file %q\n\t\tlevel DEBUG\n\t}", filepath.Join(gc.LogDir, "caddy.log"))
		siteLog = fmt.Sprintf("log {\n\t\toutput file %q\n\t}", filepath.Join(gc.LogDir, "access.log"))
	}
	caddyfile, port := loadOnFreePort(t, func(port int) string {
		return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	grace_period 1ns
	%s
	%s
	armgate {
		database %q
		%s
		%s
	}
}
http://127.0.0.1:%d {
	%s
	handle_path /admin/* {
		armgate_admin {
			%s
		}
	}
	%s
	handle {
		armgate_auth {
			realm "ARM API"
			scope %s
			%s
		}
		reverse_proxy %s {
			header_up -Authorization
			header_up X-ARM-User-ID {http.auth.user.id}
			header_up X-ARM-Token-ID {http.auth.user.token_id}
			header_up X-ARM-Token-Name {http.auth.user.token_name}
		}
	}
}
`, globalLog, gc.ExtraGlobal, gc.DSN, adminKey, gc.ExtraApp, port, siteLog, gc.AdminExtra, gc.ExtraSite, gc.Scope, gc.AuthExtra,
			strings.TrimPrefix(up.srv.URL, "http://"))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, gc.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// The gateway migrates in the background; do it here too (it is
	// advisory-locked and idempotent) so the test can write at once.
	if err := storage.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return &gateway{
		t: t, URL: fmt.Sprintf("http://127.0.0.1:%d", port), DSN: gc.DSN, Caddy: caddyfile,
		Upstream: up, Store: storage.New(pool), Pool: pool,
		client: &http.Client{Timeout: 15 * time.Second},
	}
}

// loadCaddyfile adapts and loads a Caddyfile into the process's Caddy, and
// stops it when the test ends.
func loadCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	if err := tryLoadCaddyfile(t, caddyfile); err != nil {
		t.Fatalf("loading config: %v\n%s", err, caddyfile)
	}
}

// loadOnFreePort loads the Caddyfile that build makes for a free port, and
// tries another port when the chosen one was taken in the meantime (other
// processes on the machine pick ports too).
func loadOnFreePort(t testing.TB, build func(port int) string) (string, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		caddyfile := build(port)
		err := tryLoadCaddyfile(t, caddyfile)
		if err == nil {
			return caddyfile, port
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("loading config: %v\n%s", err, caddyfile)
		}
	}
}

// tryLoadCaddyfile is loadCaddyfile that returns the load error.
func tryLoadCaddyfile(t testing.TB, caddyfile string) error {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return nil
}

// createToken makes a token straight in the database, as the CLI does.
func (g *gateway) createToken(user, name string, scopes []string, lifetime time.Duration) (storage.Token, string) {
	g.t.Helper()
	if scopes == nil {
		scopes = []string{token.ScopeAPI}
	}
	tok, plain, err := g.Store.CreateToken(context.Background(), "test", storage.NewToken{
		UserID: user, Name: name, Scopes: scopes, ExpiresAt: time.Now().Add(lifetime),
		MaxPerUser: 10, CreateUser: true,
	})
	if err != nil {
		g.t.Fatalf("creating token: %v", err)
	}
	return tok, plain
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// json decodes the body into a map.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, r.Body)
	}
	return m
}

// do sends a request with the given Authorization header values (none when
// empty) and reads the whole response.
func (g *gateway) do(method, path string, body []byte, header http.Header) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.URL+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// get sends GET path with Authorization: Bearer tok (no header when tok is
// empty).
func (g *gateway) get(path, tok string) response {
	g.t.Helper()
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return g.do(http.MethodGet, path, nil, h)
}

// admin calls the admin endpoint with the admin key.
func (g *gateway) admin(method, path string, body any) response {
	g.t.Helper()
	return g.adminAs(testAdminKey, method, path, body)
}
