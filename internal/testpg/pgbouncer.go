package testpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/internal/freeport"
)

// PgBouncer is a PgBouncer process in front of a Server, in transaction pooling mode.
type PgBouncer struct {
	port    int
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// PgBouncerBinary returns the path of the pgbouncer program, or "" when it is not installed.
func PgBouncerBinary() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// StartPgBouncer starts PgBouncer on 127.0.0.1 in front of every database of s, with
// pool_mode transaction and trust authentication. The test is skipped when pgbouncer is not
// installed. PgBouncer refuses to run as root, so as root it runs as the server user
// ("postgres"). It is stopped when the test ends, and also when the test process dies (the
// kernel sends it SIGTERM).
func (s *Server) StartPgBouncer(t testing.TB) *PgBouncer {
	t.Helper()
	bin := PgBouncerBinary()
	if bin == "" {
		t.Skip("testpg: pgbouncer is not installed (Debian: apt-get install pgbouncer; scripts/test.sh installs it when run as root)")
	}
	uid, gid, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	tmp := os.TempDir()
	if os.Geteuid() == 0 && !traversable(tmp) {
		tmp = "/tmp"
	}
	dir, err := os.MkdirTemp(tmp, "armgate-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// With auth_type trust the user name must still be listed in auth_file.
	authFile := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(authFile, []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		b := &PgBouncer{logPath: filepath.Join(dir, fmt.Sprintf("pgbouncer-%d.log", attempt)), exited: make(chan struct{})}
		if b.port, err = freeport.Loopback(); err != nil {
			t.Fatal(err)
		}
		ini := fmt.Sprintf(`; Written by internal/testpg; throwaway settings.
[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_check_delay = 0
`, s.port, b.port, authFile)
		iniPath := filepath.Join(dir, fmt.Sprintf("pgbouncer-%d.ini", attempt))
		if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		err = b.start(bin, iniPath, uid, gid)
		if err == nil {
			t.Cleanup(b.stop)
			return b
		}
		if attempt == 4 || !strings.Contains(b.logTail(), "in use") {
			t.Fatal(err)
		}
	}
}

// start runs pgbouncer in the foreground as uid:gid and waits until it accepts connections.
func (b *PgBouncer) start(bin, ini string, uid, gid int) error {
	logFile, err := os.Create(b.logPath)
	if err != nil {
		return err
	}
	b.cmd = exec.Command(bin, ini)
	b.cmd.Dir = "/"
	b.cmd.Stdout, b.cmd.Stderr = logFile, logFile
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if os.Geteuid() == 0 {
		b.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	if err := b.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("testpg: starting pgbouncer: %w", err)
	}
	go func() {
		_ = b.cmd.Wait()
		logFile.Close()
		close(b.exited)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("testpg: pgbouncer exited during start-up:\n%s", b.logTail())
		default:
		}
		err := execOn(ctx, b.DSN("postgres"), "SELECT 1")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			b.stop()
			return fmt.Errorf("testpg: pgbouncer does not accept connections: %v\n%s", err, b.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGINT (PgBouncer's immediate shutdown) and waits; SIGKILL after 10 s.
func (b *PgBouncer) stop() {
	select {
	case <-b.exited:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// Port returns the port PgBouncer listens on (on 127.0.0.1).
func (b *PgBouncer) Port() int { return b.port }

// DSN returns the DSN of database db through PgBouncer. pgx's default mode prepares named
// statements, which PgBouncer before 1.21 (Debian 12 ships 1.18) cannot follow across the
// server connections of a transaction-mode pool, so the DSN sets
// default_query_exec_mode=cache_describe: pgx describes a statement once (with the unnamed
// statement, in a round trip of its own) and then executes it with the unnamed statement and
// the known parameter types, each message sequence complete in itself. ("exec" would also
// avoid server-side state, but sends parameters untyped, and pgx cannot encode a map as JSON
// without the type.)
func (b *PgBouncer) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&default_query_exec_mode=cache_describe", b.port, db)
}

// Log returns PgBouncer's log so far.
func (b *PgBouncer) Log() string {
	out, err := os.ReadFile(b.logPath)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

func (b *PgBouncer) logTail() string {
	lines := strings.Split(strings.TrimRight(b.Log(), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Queries returns how many queries PgBouncer has passed to database db (its SHOW STATS), so a
// test can show that traffic went through it.
func (b *PgBouncer) Queries(t testing.TB, db string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The admin console speaks only the simple protocol.
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pgbouncer?sslmode=disable&default_query_exec_mode=simple_protocol", b.port)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("testpg: pgbouncer admin console: %v", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SHOW STATS")
	if err != nil {
		t.Fatalf("testpg: SHOW STATS: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := rows.RawValues() // text: the simple protocol
		var name string
		var queries int64 = -1
		for i, fd := range rows.FieldDescriptions() {
			switch fd.Name {
			case "database":
				name = string(vals[i])
			case "total_query_count":
				var err error
				queries, err = strconv.ParseInt(string(vals[i]), 10, 64)
				if err != nil {
					t.Fatalf("testpg: SHOW STATS total_query_count %q: %v", vals[i], err)
				}
			}
		}
		if name == db {
			return queries
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}

// DatabaseName returns the database name of a DSN made by Server.DSN or CreateDatabase.
func DatabaseName(dsn string) (string, error) {
	i := strings.LastIndexByte(dsn, '/')
	j := strings.IndexByte(dsn, '?')
	if i < 0 || j < i {
		return "", errors.New("testpg: not a DSN made by this package: " + dsn)
	}
	return dsn[i+1 : j], nil
}
