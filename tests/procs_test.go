package tests

// A harness for tests that need Caddy as separate processes: several
// gateway instances on one database, `caddy reload`, SIGTERM. The binary is
// internal/caddybin, built once per test process.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
)

// envCaddyBin names a prebuilt caddybin to use instead of building one.
const envCaddyBin = "ARMGATE_CADDY_BIN"

var caddyBin struct {
	once sync.Once
	path string
	err  error
}

// caddyBinary returns the path of a Caddy with armgate's modules, building
// ./internal/caddybin on first use. Builds go to a directory named for the
// test process under $TMPDIR/armgate-caddybin; directories of processes that
// are gone are removed first, since a test binary has no exit hook here.
func caddyBinary(t testing.TB) string {
	t.Helper()
	caddyBin.once.Do(buildCaddyBinary)
	if caddyBin.err != nil {
		t.Fatal(caddyBin.err)
	}
	return caddyBin.path
}

// buildCaddyBinary sets caddyBin; TestMain starts it in the background, so
// that the build overlaps the tests that run Caddy in process.
func buildCaddyBinary() {
	if p := os.Getenv(envCaddyBin); p != "" {
		caddyBin.path = p
		return
	}
	base := filepath.Join(os.TempDir(), "armgate-caddybin")
	if err := os.MkdirAll(base, 0o755); err != nil {
		caddyBin.err = err
		return
	}
	sweepCaddyBins(base)
	dir, err := os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		caddyBin.err = err
		return
	}
	path := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", append(append([]string{"build"}, raceFlags...), "-o", path, "./internal/caddybin")...)
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		caddyBin.err = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		return
	}
	caddyBin.path = path
}

// sweepCaddyBins removes the build directories ("<pid>-<random>") of test
// processes that no longer run.
func sweepCaddyBins(base string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
}

// procConfig is what a test may vary in an instance's Caddyfile.
type procConfig struct {
	DSN       string
	Realm     string // default "ARM API"
	ExtraApp  string // more lines inside the armgate global option
	ExtraSite string // more lines inside the site block, before the catch-all
	// ExtraGlobal is more lines in the global options (e.g. servers).
	ExtraGlobal string
}

// caddyProc is a Caddy process serving armgate on loopback: the site at
// URL answers with "ok <user id>" behind armgate_auth, /admin/* is the
// armgate admin API, and AdminAddr is Caddy's own admin endpoint (for
// `caddy reload` and /metrics).
type caddyProc struct {
	// t is the test that uses the process now (a subtest may set it);
	// owner is the test that started it.
	t         testing.TB
	owner     testing.TB
	Name      string
	URL       string
	AdminAddr string
	httpPort  int
	dir       string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
	client    *http.Client
}

// caddyfile renders the instance's Caddyfile for pc.
func (p *caddyProc) caddyfile(pc procConfig) string {
	if pc.Realm == "" {
		pc.Realm = "ARM API"
	}
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	grace_period 10s
	%s
	armgate {
		database "%s"
		admin_key "%s"
		%s
	}
}
http://127.0.0.1:%d {
	handle_path /admin/* {
		armgate_admin
	}
	%s
	handle {
		armgate_auth {
			realm "%s"
			# The tests refuse many tokens from one address on purpose.
			failure_limit off
		}
		respond "ok {http.auth.user.id}" 200
	}
}
`, p.AdminAddr, pc.ExtraGlobal, pc.DSN, testAdminKey, pc.ExtraApp, p.httpPort, pc.ExtraSite, pc.Realm)
}

// writeConfig writes the Caddyfile for pc and returns its path.
func (p *caddyProc) writeConfig(pc procConfig) string {
	p.t.Helper()
	f, err := os.CreateTemp(p.dir, "Caddyfile-*")
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(p.caddyfile(pc)); err != nil {
		p.t.Fatal(err)
	}
	return f.Name()
}

// use makes t (a subtest) the user of p until it ends.
func (p *caddyProc) use(t *testing.T) {
	prev := p.t
	p.t = t
	t.Cleanup(func() { p.t = prev })
}

// startCaddy starts a Caddy process and waits until it answers on its site
// and its invalidation listener is connected. It is stopped with SIGTERM
// when the test ends; its log is shown if the test failed. Ports come from
// freePort, which another process may take before Caddy binds them; a
// start that fails so is retried on new ports.
func startCaddy(t testing.TB, name string, pc procConfig) *caddyProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := launchCaddy(t, name, pc)
		err := p.waitReady()
		if err == nil {
			return p
		}
		if attempt < 3 && strings.Contains(p.logTail(20), "address already in use") {
			t.Logf("caddy %s: a port was taken before it could bind; retrying", name)
			continue
		}
		t.Fatal(err)
	}
}

// launchCaddy starts the process on new ports.
func launchCaddy(t testing.TB, name string, pc procConfig) *caddyProc {
	t.Helper()
	bin := caddyBinary(t)
	dir := t.TempDir()
	p := &caddyProc{
		t: t, owner: t, Name: name, dir: dir, httpPort: freePort(t),
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		logPath:   filepath.Join(dir, "caddy.log"),
		exited:    make(chan struct{}),
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}},
	}
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", p.httpPort)
	cfg := p.writeConfig(pc)
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Keep Caddy's data and config directories inside the test's.
	p.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		p.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("log of caddy %s (%s):\n%s", p.Name, p.logPath, p.logTail(150))
		}
	})
	return p
}

// waitReady polls until the site answers (401 without a token) and the
// listener is connected.
func (p *caddyProc) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("caddy %s exited during start-up:\n%s", p.Name, p.logTail(20))
		default:
		}
		r, err := p.try(http.MethodGet, "/", "")
		if err == nil && r.Status == http.StatusUnauthorized {
			if m, err := p.scrape(); err == nil && m.Value("caddy_armgate_listener_connected") == 1 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy %s not ready after 30s (last: %v %v)", p.Name, r.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after
// 20 s). It may be called more than once.
func (p *caddyProc) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.owner.Errorf("caddy %s did not exit 20s after SIGTERM; killing it", p.Name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// logTail returns the last n lines of the process's log.
func (p *caddyProc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// countLog counts the log lines that contain s.
func (p *caddyProc) countLog(s string) int {
	f, err := os.Open(p.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// reload runs `caddy reload` against the process's admin endpoint with the
// Caddyfile for pc.
func (p *caddyProc) reload(pc procConfig) {
	p.t.Helper()
	cfg := p.writeConfig(pc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, caddyBinary(p.t), "reload", "--config", cfg,
		"--adapter", "caddyfile", "--address", p.AdminAddr).CombinedOutput()
	if err != nil {
		p.t.Fatalf("caddy reload %s: %v\n%s", p.Name, err, out)
	}
}

// try sends a request with Authorization: Bearer tok (none when tok is
// empty); unlike get it reports errors instead of failing the test, so load
// goroutines can use it.
func (p *caddyProc) try(method, path, tok string) (response, error) {
	req, err := http.NewRequest(method, p.URL+path, nil)
	if err != nil {
		return response{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return p.send(req)
}

func (p *caddyProc) send(req *http.Request) (response, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
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
	req, err := http.NewRequest(method, p.URL+"/admin"+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("Content-Type", "application/json")
	r, err := p.send(req)
	if err != nil {
		p.t.Fatalf("caddy %s: %s /admin%s: %v", p.Name, method, path, err)
	}
	return r
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

// scrape reads Caddy's /metrics from the admin endpoint.
func (p *caddyProc) scrape() (metricSet, error) {
	resp, err := p.client.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return promtext.Parse(bytes.NewReader(b))
}

// metrics is scrape that fails the test on error.
func (p *caddyProc) metrics() metricSet {
	p.t.Helper()
	m, err := p.scrape()
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
		m, err := p.scrape()
		return err == nil && ok(m.Value(series))
	})
}

// ensureCached requests every token through p until a whole pass is served
// from p's cache (no database lookup during it): the premise of every
// propagation test. ristretto stores asynchronously, so one pass may not be
// enough.
func (p *caddyProc) ensureCached(toks ...string) {
	p.t.Helper()
	wait.For(p.t, "caddy "+p.Name+" to serve the tokens from its cache", func() bool {
		before := p.metrics().Value("caddy_armgate_db_lookups_total")
		for _, tok := range toks {
			if r := p.get("/", tok); r.Status != http.StatusOK {
				p.t.Fatalf("caddy %s: a live token got %d %s", p.Name, r.Status, r.Body)
			}
		}
		return p.metrics().Value("caddy_armgate_db_lookups_total") == before
	})
}

// openStore opens a pool on dsn for the test's own reads and writes, with
// the schema in place.
func openStore(t testing.TB, dsn string) (*pgxpool.Pool, *storage.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "test" // not counted as armgate's
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := storage.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool, storage.New(pool)
}

// metricSet maps a series as written in the exposition format
// (`name{label="value",...}`, labels sorted) to its sample.
type metricSet = promtext.Samples
