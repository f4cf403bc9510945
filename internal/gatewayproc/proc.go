package gatewayproc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/freeport"
	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
)

// Config is what a caller may vary in an instance's Caddyfile.
type Config struct {
	DSN      string
	AdminKey string // the armgate admin key; default: a random one, in Proc.AdminKey
	Realm    string // default "ARM API"
	ExtraApp string // more lines inside the armgate global option
	// ExtraSite is more lines inside the site block, before the catch-all.
	ExtraSite string
	// ExtraGlobal is more lines in the global options (e.g. servers).
	ExtraGlobal string
}

// Proc is a Caddy process serving armgate on loopback: the site at URL
// answers with "ok <user id>" behind armgate_auth (failure limit off),
// /admin/* is the armgate admin API, and AdminAddr is Caddy's own admin
// endpoint (for `caddy reload` and /metrics).
type Proc struct {
	Name      string
	URL       string
	AdminAddr string
	AdminKey  string
	Cmd       *exec.Cmd
	Exited    <-chan struct{} // closed when the process has exited
	Client    *http.Client

	bin      string
	httpPort int
	dir      string
	logPath  string
	exited   chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Start starts the Caddy at bin (see Binary) and waits until it answers on
// its site and its invalidation listener is connected. It is stopped with
// SIGTERM when tb ends; its log is shown if tb failed. Ports come from
// internal/freeport, which another process may take before Caddy binds
// them; a start that fails so is retried on new ports.
func Start(tb testing.TB, bin, name string, c Config) *Proc {
	tb.Helper()
	if c.AdminKey == "" {
		c.AdminKey = "gatewayproc-" + rand.Text()
	}
	for attempt := 1; ; attempt++ {
		p := launch(tb, bin, name, c)
		err := p.waitReady()
		if err == nil {
			return p
		}
		if attempt < 3 && strings.Contains(p.LogTail(20), "address already in use") {
			tb.Logf("caddy %s: a port was taken before it could bind; retrying", name)
			continue
		}
		tb.Fatal(err)
	}
}

// launch starts the process on new ports.
func launch(tb testing.TB, bin, name string, c Config) *Proc {
	tb.Helper()
	httpPort, err1 := freeport.Loopback()
	adminPort, err2 := freeport.Loopback()
	if err1 != nil || err2 != nil {
		tb.Fatal(err1, err2)
	}
	dir := tb.TempDir()
	exited := make(chan struct{})
	p := &Proc{
		Name: name, URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort), AdminKey: c.AdminKey,
		Exited: exited, exited: exited,
		Client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}},
		bin: bin, httpPort: httpPort, dir: dir, logPath: filepath.Join(dir, "caddy.log"),
	}
	cfg, err := p.WriteConfig(c)
	if err != nil {
		tb.Fatal(err)
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	p.Cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	p.Cmd.Stdout, p.Cmd.Stderr = logFile, logFile
	// Keep Caddy's data and config directories inside the caller's.
	p.Cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := p.Cmd.Start(); err != nil {
		logFile.Close()
		tb.Fatal(err)
	}
	go func() {
		_ = p.Cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
		p.Client.CloseIdleConnections()
		if tb.Failed() {
			tb.Logf("log of caddy %s (%s):\n%s", p.Name, p.logPath, p.LogTail(150))
		}
	})
	return p
}

// caddyfile renders the instance's Caddyfile for c.
func (p *Proc) caddyfile(c Config) string {
	if c.Realm == "" {
		c.Realm = "ARM API"
	}
	if c.AdminKey == "" {
		c.AdminKey = p.AdminKey
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
			# Tests and benchmarks refuse many tokens from one address on purpose.
			failure_limit off
		}
		respond "ok {http.auth.user.id}" 200
	}
}
`, p.AdminAddr, c.ExtraGlobal, c.DSN, c.AdminKey, c.ExtraApp, p.httpPort, c.ExtraSite, c.Realm)
}

// WriteConfig writes the instance's Caddyfile for c (on its ports; the
// admin key is the instance's unless c names one) and returns its path.
func (p *Proc) WriteConfig(c Config) (string, error) {
	f, err := os.CreateTemp(p.dir, "Caddyfile-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteString(p.caddyfile(c)); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// waitReady polls until the site answers (401 without a token), the
// listener is connected and /admin/healthz is up: the schema is migrated in
// the background, and an admin call before that gets 503.
func (p *Proc) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("caddy %s exited during start-up:\n%s", p.Name, p.LogTail(20))
		default:
		}
		r, err := p.Try(http.MethodGet, "/", "")
		if err == nil && r.Status == http.StatusUnauthorized {
			if m, err := p.Scrape(); err == nil && m.Value("caddy_armgate_listener_connected") == 1 {
				if h, err := p.Try(http.MethodGet, "/admin/healthz", ""); err == nil && h.Status == http.StatusOK {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy %s not ready after 30s (last: %v %v)", p.Name, r.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM to the process and waits for it to exit (SIGKILL after
// 20 s, which it reports as an error). It may be called more than once.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.stopErr = fmt.Errorf("caddy %s (pid %d) did not exit 20s after SIGTERM; killed it", p.Name, p.Cmd.Process.Pid)
			_ = p.Cmd.Process.Kill()
			<-p.exited
		}
	})
	return p.stopErr
}

// LogTail returns the last n lines of the process's log.
func (p *Proc) LogTail(n int) string {
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

// CountLog counts the log lines that contain s.
func (p *Proc) CountLog(s string) int {
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

// Reload runs `caddy reload` against the process's admin endpoint with the
// Caddyfile for c.
func (p *Proc) Reload(c Config) error {
	cfg, err := p.WriteConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, "reload", "--config", cfg,
		"--adapter", "caddyfile", "--address", p.AdminAddr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy reload %s: %v\n%s", p.Name, err, out)
	}
	return nil
}

// Try sends a request to the site with Authorization: Bearer tok (none when
// tok is empty).
func (p *Proc) Try(method, path, tok string) (Response, error) {
	req, err := http.NewRequest(method, p.URL+path, nil)
	if err != nil {
		return Response{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return p.Do(req)
}

// Do sends req with the process's client and reads the whole response.
func (p *Proc) Do(req *http.Request) (Response, error) {
	resp, err := p.Client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Admin calls the armgate admin API of the process with its admin key.
func (p *Proc) Admin(method, path, body string) (Response, error) {
	req, err := http.NewRequest(method, p.URL+"/admin"+path, strings.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+p.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	return p.Do(req)
}

// Scrape reads Caddy's /metrics from the admin endpoint.
func (p *Proc) Scrape() (promtext.Samples, error) {
	resp, err := p.Client.Get("http://" + p.AdminAddr + "/metrics")
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

// EnsureCached requests every token through p until a whole pass is served
// from p's cache (no database lookup during it): the premise of every
// propagation test and benchmark. ristretto stores asynchronously, so one
// pass may not be enough. tb fails if a token is refused.
func (p *Proc) EnsureCached(tb testing.TB, toks ...string) {
	tb.Helper()
	lookups := func() float64 {
		m, err := p.Scrape()
		if err != nil {
			tb.Fatalf("caddy %s: %v", p.Name, err)
		}
		return m.Value("caddy_armgate_db_lookups_total")
	}
	wait.For(tb, "caddy "+p.Name+" to serve the tokens from its cache", func() bool {
		before := lookups()
		for _, tok := range toks {
			r, err := p.Try(http.MethodGet, "/", tok)
			if err != nil || r.Status != http.StatusOK {
				tb.Fatalf("caddy %s: a live token got %d %s (%v)", p.Name, r.Status, r.Body, err)
			}
		}
		return lookups() == before
	})
}

// OpenStore opens a pool on dsn for the caller's own reads and writes, with
// the schema in place; its sessions are named "test", not armgate's.
func OpenStore(tb testing.TB, dsn string) (*pgxpool.Pool, *storage.Store) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "test"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if err := storage.Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	return pool, storage.New(pool)
}
