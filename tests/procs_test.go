package tests

// Tests that need Caddy as separate processes (several gateway instances on
// one database, `caddy reload`, SIGTERM) use internal/gatewayproc; the
// binary is internal/caddybin, built once per test process. caddyProc adds
// the test that uses the process, so that its calls fail that test.

import (
	"net/http"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/internal/wait"
)

// buildCaddy builds the Caddy of the process tests (once): with -race when
// the tests run with it, so that it reuses the packages compiled for them.
// TestMain starts it in the background, so that the build overlaps the
// tests that run Caddy in process.
func buildCaddy() (string, error) { return gatewayproc.Binary(raceEnabled) }

// caddyBinary returns the path of the process tests' Caddy.
func caddyBinary(t testing.TB) string {
	t.Helper()
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// procConfig is what a test may vary in an instance's Caddyfile; the admin
// key is testAdminKey.
type procConfig = gatewayproc.Config

// caddyProc is a Caddy process serving armgate on loopback (see
// gatewayproc.Proc); t is the test that uses it now (a subtest may set it).
type caddyProc struct {
	*gatewayproc.Proc
	t testing.TB
}

// startCaddy starts a Caddy process and waits until it serves; it is
// stopped when the test ends, and its log shown if the test failed.
func startCaddy(t testing.TB, name string, pc procConfig) *caddyProc {
	t.Helper()
	if pc.AdminKey == "" {
		pc.AdminKey = testAdminKey
	}
	return &caddyProc{Proc: gatewayproc.Start(t, caddyBinary(t), name, pc), t: t}
}

// use makes t (a subtest) the user of p until it ends.
func (p *caddyProc) use(t *testing.T) {
	prev := p.t
	p.t = t
	t.Cleanup(func() { p.t = prev })
}

// stop stops the process (SIGTERM, then SIGKILL); it may be called more
// than once.
func (p *caddyProc) stop() {
	if err := p.Stop(); err != nil {
		p.t.Error(err)
	}
}

// writeConfig writes the Caddyfile for pc and returns its path.
func (p *caddyProc) writeConfig(pc procConfig) string {
	p.t.Helper()
	path, err := p.WriteConfig(pc)
	if err != nil {
		p.t.Fatal(err)
	}
	return path
}

// reload runs `caddy reload` with the Caddyfile for pc.
func (p *caddyProc) reload(pc procConfig) {
	p.t.Helper()
	if err := p.Reload(pc); err != nil {
		p.t.Fatal(err)
	}
}

// try sends a request with Authorization: Bearer tok (none when tok is
// empty); unlike get it reports errors instead of failing the test, so load
// goroutines can use it.
func (p *caddyProc) try(method, path, tok string) (response, error) {
	r, err := p.Try(method, path, tok)
	return response(r), err
}

func (p *caddyProc) send(req *http.Request) (response, error) {
	r, err := p.Do(req)
	return response(r), err
}

// get is try that fails the test on a transport error.
func (p *caddyProc) get(path, tok string) response {
	p.t.Helper()
	r, err := p.try(http.MethodGet, path, tok)
	if err != nil {
		p.t.Fatalf("caddy %s: GET %s: %v", p.Name, path, err)
	}
	return r
}

// admin calls the armgate admin API of the process with the admin key.
func (p *caddyProc) admin(method, path, body string) response {
	p.t.Helper()
	r, err := p.Admin(method, path, body)
	if err != nil {
		p.t.Fatalf("caddy %s: %s /admin%s: %v", p.Name, method, path, err)
	}
	return response(r)
}

// adminOK calls the admin API and fails the test unless the status is want.
func (p *caddyProc) adminOK(want int, method, path, body string) response {
	p.t.Helper()
	r := p.admin(method, path, body)
	if r.Status != want {
		p.t.Fatalf("caddy %s: %s /admin%s: %d %s, want %d", p.Name, method, path, r.Status, r.Body, want)
	}
	return r
}

// metrics is Scrape that fails the test on error.
func (p *caddyProc) metrics() metricSet {
	p.t.Helper()
	m, err := p.Scrape()
	if err != nil {
		p.t.Fatalf("caddy %s: %v", p.Name, err)
	}
	return m
}

// waitMetric polls the metrics until ok accepts the value of series, for at
// most d; it reports whether it did.
func (p *caddyProc) waitMetric(series string, d time.Duration, ok func(float64) bool) bool {
	p.t.Helper()
	return wait.Until(d, func() bool {
		m, err := p.Scrape()
		return err == nil && ok(m.Value(series))
	})
}

// ensureCached is EnsureCached for the test that uses p.
func (p *caddyProc) ensureCached(toks ...string) {
	p.t.Helper()
	p.EnsureCached(p.t, toks...)
}

// openStore opens a pool on dsn for the test's own reads and writes, with
// the schema in place.
var openStore = gatewayproc.OpenStore

// metricSet maps a series as written in the exposition format
// (`name{label="value",...}`, labels sorted) to its sample.
type metricSet = promtext.Samples
