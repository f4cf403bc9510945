// Package testpg gives tests a real PostgreSQL: a fresh database per test on a shared server,
// or a private server that a test may stop and start.
//
// The shared server is the one named by ARMGATE_TEST_DATABASE_URL (scripts/test.sh starts one and
// sets it). When that variable is unset, the first test that asks starts a throwaway server for
// the test process, from the binaries in ARMGATE_PG_BINDIR, /usr/lib/postgresql/*/bin or PATH;
// when there are none, such tests are skipped. Packages that use the package should declare
//
//	func TestMain(m *testing.M) { testpg.Main(m) }
//
// so that this server is stopped as soon as the tests are done. Every server started here is
// also stopped, and its directory removed, by a small watchdog process when the test process
// exits in any way (even on a panic, a -timeout or Ctrl-C).
//
// PostgreSQL refuses to run as root: as root, the servers run as the "postgres" user (via
// runuser). Servers listen on 127.0.0.1 only, with trust authentication, no Unix socket and
// fsync off; they are for tests only.
package testpg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by this package.
const (
	// EnvURL names a DSN of an existing server on which tests may create and drop databases.
	EnvURL = "ARMGATE_TEST_DATABASE_URL"
	// EnvBinDir names the directory holding initdb, pg_ctl and postgres.
	EnvBinDir = "ARMGATE_PG_BINDIR"
)

// errNoBinaries means that no PostgreSQL server binaries were found: tests skip.
var errNoBinaries = errors.New("testpg: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in $" +
	EnvBinDir + ", /usr/lib/postgresql/*/bin or PATH, and $" + EnvURL +
	" is unset; run scripts/test.sh, or install PostgreSQL")

var (
	sharedOnce   sync.Once
	sharedMu     sync.Mutex
	sharedServer *Server
	sharedErr    error
)

// Main runs the tests and then stops the server that URL may have started. Use it as
//
//	func TestMain(m *testing.M) { testpg.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	s := sharedServer
	sharedMu.Unlock()
	if s != nil {
		if err := s.close(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg: stopping the shared server:", err)
		}
	}
	os.Exit(code)
}

// URL returns the DSN of the shared server: $ARMGATE_TEST_DATABASE_URL if set, else the DSN of
// the "postgres" database of a server started once per test process. Tests should not change
// that database; use NewDatabase.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	sharedOnce.Do(func() {
		s, err := startServer()
		sharedMu.Lock()
		sharedServer, sharedErr = s, err
		sharedMu.Unlock()
	})
	sharedMu.Lock()
	s, err := sharedServer, sharedErr
	sharedMu.Unlock()
	if errors.Is(err, errNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.DSN("postgres")
}

// NewDatabase creates an empty database with a unique name on the shared server, returns its
// DSN, and drops it when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := URL(t)
	name, err := createDatabase(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execOn(ctx, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testpg: dropping database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(base, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Server is a private PostgreSQL server with its own data directory and port.
type Server struct {
	binDir  string
	base    string // temporary directory holding data; removed when the server is closed
	dataDir string
	port    int
	runAs   []string // command prefix that runs a program as the server user; empty if not root

	mu        sync.Mutex // serialises Start and Stop
	closeOnce sync.Once
	closeErr  error
	watchW    *os.File  // closing it makes the watchdog stop the server and remove base
	watchdog  *exec.Cmd // the watchdog process
}

// StartPrivate starts a server of the test's own, which the test may Stop and Start. It is
// stopped and removed when the test ends. The test is skipped if no PostgreSQL binaries exist.
func StartPrivate(t testing.TB) *Server {
	t.Helper()
	s, err := startServer()
	if errors.Is(err, errNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	return s
}

// DSN returns the DSN of database db on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, url.PathEscape(db))
}

// Port returns the TCP port the server listens on (on 127.0.0.1); it stays the same across
// Stop and Start.
func (s *Server) Port() int { return s.port }

// Stop stops the server (fast shutdown: open sessions are ended).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.command(context.Background(), "pg_ctl", "stop", "-D", s.dataDir, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_ctl stop: %v\n%s%s", err, out, s.logTail())
	}
}

// Start starts the server again with the same data directory and port.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// CreateDatabase creates an empty database with a unique name on the server and returns its
// DSN. It is not dropped: it goes away with the server.
func (s *Server) CreateDatabase(t testing.TB) string {
	t.Helper()
	name, err := createDatabase(s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	return s.DSN(name)
}

// startServer initialises and starts a server in a new temporary directory.
func startServer() (*Server, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{binDir: binDir}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("testpg: running as root, but PostgreSQL refuses to run as root and there is no user \"postgres\" to run it (create one with useradd --system postgres): %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		runuser, err := findRunuser()
		if err != nil {
			return nil, err
		}
		s.runAs = []string{runuser, "-u", "postgres", "--"}
	}

	tmp := os.TempDir()
	if uid >= 0 && !traversable(tmp) {
		tmp = "/tmp" // the server user could not reach a directory under $TMPDIR
	}
	if s.base, err = os.MkdirTemp(tmp, "armgate-testpg-"); err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	if uid >= 0 {
		if err := os.Chown(s.base, uid, gid); err != nil {
			os.RemoveAll(s.base)
			return nil, fmt.Errorf("testpg: %w", err)
		}
	}
	s.dataDir = filepath.Join(s.base, "data")
	if err := s.startWatchdog(); err != nil {
		os.RemoveAll(s.base)
		return nil, err
	}
	if err := s.initAndStart(); err != nil {
		if cerr := s.close(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) initAndStart() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.command(ctx, "initdb", "-D", s.dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testpg: initdb %s: %v\n%s", s.dataDir, err, out)
	}
	// Our settings live in armgate.conf, rewritten before each start (the port may change).
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testpg: %w", err)
	}
	_, err = f.WriteString("\ninclude_if_exists = 'armgate.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("testpg: %w", err)
	}
	// The port is picked by binding :0 and closing; another process may take it before the
	// server binds it, so retry a few times with a new port.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return err
		}
		if err = s.writeConf(); err != nil {
			return err
		}
		err = s.start()
		if err == nil || attempt == 4 || !strings.Contains(s.logTail(), "already in use") {
			return err
		}
	}
}

func (s *Server) writeConf() error {
	conf := fmt.Sprintf(`# Written by internal/testpg; throwaway settings.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
`, s.port)
	if err := os.WriteFile(filepath.Join(s.dataDir, "armgate.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("testpg: %w", err)
	}
	return nil
}

// start runs pg_ctl start and waits until the server accepts connections.
func (s *Server) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := s.command(ctx, "pg_ctl", "start", "-D", s.dataDir, "-l", s.logFile(), "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testpg: starting PostgreSQL (%s, port %d): %v\n%s%s", s.dataDir, s.port, err, out, s.logTail())
	}
	for {
		err := execOn(ctx, s.DSN("postgres"), "SELECT 1")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testpg: PostgreSQL (%s, port %d) started but does not accept connections: %v%s", s.dataDir, s.port, err, s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startWatchdog starts a shell that waits for EOF on a pipe whose write end only this process
// holds. EOF comes when close is called or when this process exits in any way; the shell then
// stops the server and removes its directory. It ignores SIGINT and SIGHUP, which a terminal
// sends to the whole process group.
func (s *Server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("testpg: %w", err)
	}
	const script = `trap '' INT HUP
read -r _ || :
base=$1; shift
"$@" >/dev/null 2>&1
rm -rf -- "$base"
`
	args := append([]string{"-c", script, "testpg-watchdog", s.base}, s.runAs...)
	args = append(args, filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", s.dataDir, "-m", "fast", "-w", "-t", "60")
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdin = r
	cmd.Dir = "/"
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("testpg: starting watchdog: %w", err)
	}
	s.watchW, s.watchdog = w, cmd
	return nil
}

// close stops the server and removes its directory (through the watchdog); safe to call twice.
func (s *Server) close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.watchW.Close()
		if err := s.watchdog.Wait(); err != nil {
			s.closeErr = fmt.Errorf("stopping PostgreSQL in %s: %w", s.base, err)
		}
	})
	return s.closeErr
}

// command returns a command running the PostgreSQL program name as the server user.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string(nil), s.runAs...), filepath.Join(s.binDir, name)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"               // the server user may not be able to enter the current directory
	cmd.WaitDelay = time.Second // never hang on output pipes inherited by the server
	return cmd
}

func (s *Server) logFile() string { return filepath.Join(s.dataDir, "log") }

// logTail returns the last lines of the server log, formatted for an error message.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile())
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "\nlast lines of " + s.logFile() + ":\n" + strings.Join(lines, "\n")
}

// findBinDir returns the directory of the newest PostgreSQL server binaries.
func findBinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		if !hasServerBinaries(d) {
			return "", fmt.Errorf("testpg: $%s=%s does not hold initdb, pg_ctl and postgres", EnvBinDir, d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", []int(nil)
	for _, d := range dirs {
		v := parseVersion(filepath.Base(filepath.Dir(d)))
		if hasServerBinaries(d) && (best == "" || versionLess(bestVersion, v)) {
			best, bestVersion = d, v
		}
	}
	if best != "" {
		return best, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	return "", errNoBinaries
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

func parseVersion(s string) []int {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func findRunuser() (string, error) {
	if p, err := exec.LookPath("runuser"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("testpg: running as root needs runuser (util-linux) to run PostgreSQL as user \"postgres\"")
}

// traversable reports whether every directory from dir up to / can be searched by any user.
func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testpg: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// createDatabase creates a uniquely named database through the server at dsn and returns its name.
func createDatabase(dsn string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := "armgate_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := execOn(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testpg: creating database %s: %w", name, err)
	}
	return name, nil
}

// execOn runs one statement on a new connection to dsn.
func execOn(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn with its database replaced by db. dsn is a URL
// (postgres://, postgresql://) or a keyword/value string.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("testpg: parsing $%s: %w", EnvURL, err)
		}
		u.Path, u.RawPath = "/"+db, ""
		return u.String(), nil
	}
	// In a keyword/value string a later keyword overrides an earlier one.
	var b bytes.Buffer
	b.WriteString(strings.TrimSpace(dsn))
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString("dbname=" + db)
	return b.String(), nil
}
