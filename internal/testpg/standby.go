package testpg

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/internal/freeport"
)

// StartStandby makes a streaming hot standby of s with pg_basebackup -R and starts it on its
// own port. It is stopped and removed when the test ends. s must be running.
func (s *Server) StartStandby(t testing.TB) *Server {
	t.Helper()
	st, err := newServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.close(); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	if err := os.Mkdir(st.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if uid, gid, err := serverUser(); err != nil {
		t.Fatal(err)
	} else if err := os.Chown(st.dataDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// initdb's pg_hba.conf trusts replication connections from 127.0.0.1, and PostgreSQL's
	// defaults (wal_level replica, max_wal_senders 10) allow a base backup.
	out, err := st.serverCmd(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-U", "postgres", "-D", st.dataDir, "-R", "-X", "stream", "--no-sync", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_basebackup: %v\n%s", err, out)
	}
	// The copy carries the primary's armgate.conf and postmaster files; pg.sh start rewrites
	// armgate.conf with the standby's own port.
	_ = os.Remove(filepath.Join(st.dataDir, "postmaster.opts"))
	for attempt := 0; ; attempt++ {
		if st.port, err = freeport.Loopback(); err != nil {
			t.Fatal(err)
		}
		out, err := st.start()
		if err == nil {
			return st
		}
		if attempt == 4 || !strings.Contains(out, "already in use") {
			t.Fatal(err)
		}
	}
}

// StopImmediate stops the server the way a crash would: pg_ctl stop -m immediate (no
// checkpoint, sessions cut at once).
func (s *Server) StopImmediate(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.serverCmd(context.Background(), "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_ctl stop -m immediate: %v\n%s%s", err, out, s.logTail())
	}
}

// Promote turns a standby into a primary (pg_ctl promote) and returns once it accepts writes.
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.serverCmd(context.Background(), "pg_ctl", "promote", "-D", s.dataDir, "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_ctl promote: %v\n%s%s", err, out, s.logTail())
	}
}

// serverCmd returns a command running one of the server binaries as the server user (the
// "postgres" user when running as root), from "/".
func (s *Server) serverCmd(ctx context.Context, bin string, args ...string) *exec.Cmd {
	path := filepath.Join(s.binDir, bin)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	cmd.WaitDelay = time.Second
	return cmd
}

// serverUser returns the uid and gid that run servers: the "postgres" user when running as
// root, else the current user.
func serverUser() (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, errors.New("testpg: running as root, but there is no user \"postgres\" to run servers as")
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// WaitReplayed waits until the standby st has replayed every WAL record the primary s had
// written when it was called, so that a crash of s loses nothing the test relies on
// (replication is asynchronous, and the test servers commit asynchronously: the insert position
// counts commits the WAL writer has not flushed yet).
func (s *Server) WaitReplayed(t testing.TB, st *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lsn string
	if err := queryRow(ctx, s.DSN("postgres"), "SELECT pg_current_wal_insert_lsn()::text", &lsn); err != nil {
		t.Fatalf("testpg: reading the primary's WAL position: %v", err)
	}
	for {
		var done bool
		err := queryRow(ctx, st.DSN("postgres"), "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn", &done)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testpg: the standby did not replay up to %s: %v", lsn, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// queryRow runs one query on a new connection to dsn and scans its single row into dest.
func queryRow(ctx context.Context, dsn, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}
