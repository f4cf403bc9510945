// Package testpg gives tests a real PostgreSQL: a fresh database per test on a shared server,
// or a private server that a test may stop and start.
//
// The shared server is the one named by ARMGATE_TEST_DATABASE_URL (scripts/test.sh starts one and
// sets it). When that variable is unset, the first test that asks starts a throwaway server for
// the test process, from the binaries in ARMGATE_PG_BINDIR or /usr/lib/postgresql/*/bin; when
// there are none, such tests are skipped.
//
// Servers are initialised, started and stopped by scripts/pg.sh, the one implementation of the
// project's throwaway PostgreSQL (scripts/test.sh and scripts/run.sh use it too); this package
// picks the directory and port and runs it. Packages that use the package should declare
//
//	func TestMain(m *testing.M) { testpg.Main(m) }
//
// so that this server is stopped as soon as the tests are done. Every server started here is
// also stopped, and its directory removed, by a small watchdog process when the test process
// exits in any way (even on a panic, a -timeout or Ctrl-C).
//
// PostgreSQL refuses to run as root: as root, the servers run as the "postgres" user (pg.sh sees
// to it). Servers listen on 127.0.0.1 only, with trust authentication and fsync off; they are
// for tests only.
package testpg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/internal/freeport"
)

// Environment variables read by this package.
const (
	// EnvURL names a DSN of an existing server on which tests may create and drop databases.
	EnvURL = "ARMGATE_TEST_DATABASE_URL"
	// EnvBinDir names the directory holding initdb, pg_ctl and postgres.
	EnvBinDir = "ARMGATE_PG_BINDIR"
)

// errNoBinaries means that no PostgreSQL server binaries were found: tests skip.
var errNoBinaries = errors.New("testpg: PostgreSQL server binaries not found in $" +
	EnvBinDir + " or /usr/lib/postgresql/*/bin, and $" + EnvURL +
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
	script  string // scripts/pg.sh
	binDir  string
	base    string // temporary directory holding data; removed when the server is closed
	dataDir string
	port    int

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
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := s.pgsh(ctx, "stop", s.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg.sh stop: %v\n%s%s", err, out, s.logTail())
	}
}

// Start starts the server again with the same data directory and port.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.start(); err != nil {
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
	s, err := newServerDir()
	if err != nil {
		return nil, err
	}
	// The port is picked by binding and closing; another process may take it before the
	// server binds it, so retry a few times with a new port.
	for attempt := 0; ; attempt++ {
		if s.port, err = freeport.Loopback(); err != nil {
			break
		}
		var out string
		out, err = s.start()
		if err == nil || attempt == 4 || !strings.Contains(out, "already in use") {
			break
		}
	}
	if err != nil {
		if cerr := s.close(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return nil, err
	}
	return s, nil
}

// newServerDir prepares a Server with a new temporary directory and its watchdog, but no
// data directory yet.
func newServerDir() (*Server, error) {
	script, err := pgScript()
	if err != nil {
		return nil, err
	}
	s := &Server{script: script}
	if s.binDir, err = s.findBinDir(); err != nil {
		return nil, err
	}
	tmp := os.TempDir()
	if os.Geteuid() == 0 && !traversable(tmp) {
		tmp = "/tmp" // the server user could not reach a directory under $TMPDIR
	}
	if s.base, err = os.MkdirTemp(tmp, "armgate-testpg-"); err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	// pg.sh creates the data directory for the server user, who must reach it.
	if err := os.Chmod(s.base, 0o755); err != nil {
		os.RemoveAll(s.base)
		return nil, fmt.Errorf("testpg: %w", err)
	}
	s.dataDir = filepath.Join(s.base, "data")
	if err := s.startWatchdog(); err != nil {
		os.RemoveAll(s.base)
		return nil, err
	}
	return s, nil
}

// pgScript returns the path of scripts/pg.sh, found from this source file.
func pgScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testpg: cannot locate scripts/pg.sh")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "pg.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testpg: %w", err)
	}
	return p, nil
}

// findBinDir asks pg.sh for the server binaries, without installing any.
func (s *Server) findBinDir() (string, error) {
	out, err := s.pgsh(context.Background(), "found-bindir").Output()
	if err != nil {
		return "", errNoBinaries
	}
	return strings.TrimSpace(string(out)), nil
}

// start runs pg.sh start (initialising the data directory the first time) and waits until
// the server accepts connections; it returns pg.sh's messages too.
func (s *Server) start() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.pgsh(ctx, "start", s.dataDir, strconv.Itoa(s.port)).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testpg: starting PostgreSQL (%s, port %d): %v\n%s%s", s.dataDir, s.port, err, out, s.logTail())
	}
	if err := execOn(ctx, s.DSN("postgres"), "SELECT 1"); err != nil {
		return string(out), fmt.Errorf("testpg: PostgreSQL (%s, port %d) started but does not accept connections: %v%s", s.dataDir, s.port, err, s.logTail())
	}
	return string(out), nil
}

// pgsh returns a command running scripts/pg.sh with args.
func (s *Server) pgsh(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", append([]string{s.script}, args...)...)
	if s.binDir != "" {
		cmd.Env = append(os.Environ(), EnvBinDir+"="+s.binDir)
	}
	cmd.WaitDelay = time.Second // never hang on output pipes inherited by the server
	return cmd
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
	cmd := exec.Command("/bin/sh", "-c", script, "testpg-watchdog", s.base, "bash", s.script, "stop", s.dataDir)
	cmd.Env = append(os.Environ(), EnvBinDir+"="+s.binDir)
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

// createDatabase creates a uniquely named database through the server at dsn and returns its name.
func createDatabase(dsn string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := "armgate_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// FILE_COPY copies the template's files instead of writing them all to
	// the WAL (PostgreSQL 15's default): 81 against 134 ms per database here.
	// Servers before 15 know no STRATEGY: they copy files anyway.
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	err := execOn(ctx, dsn, create+" STRATEGY FILE_COPY")
	if err != nil && strings.Contains(err.Error(), "strategy") {
		err = execOn(ctx, dsn, create)
	}
	if err != nil {
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
