package testpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartStandby makes a streaming hot standby of s with pg_basebackup -R and starts it on its
// own port. It is stopped and removed when the test ends. s must be running.
func (s *Server) StartStandby(t testing.TB) *Server {
	t.Helper()
	st, err := newEmptyServer(s.binDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.close(); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// initdb's pg_hba.conf trusts replication connections from 127.0.0.1, and PostgreSQL's
	// defaults (wal_level replica, max_wal_senders 10) allow a base backup.
	out, err := st.command(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-U", "postgres", "-D", st.dataDir, "-R", "-X", "stream", "--no-sync", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_basebackup: %v\n%s", err, out)
	}
	// The copy carries the primary's armgate.conf and postmaster files; give it its own port.
	_ = os.Remove(filepath.Join(st.dataDir, "postmaster.opts"))
	for attempt := 0; ; attempt++ {
		if st.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = st.writeConf(); err != nil {
			t.Fatal(err)
		}
		if err = st.start(); err == nil {
			return st
		}
		if attempt == 4 || !strings.Contains(st.logTail(), "already in use") {
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
	out, err := s.command(context.Background(), "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_ctl stop -m immediate: %v\n%s%s", err, out, s.logTail())
	}
}

// Promote turns a standby into a primary (pg_ctl promote) and returns once it accepts writes.
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.command(context.Background(), "pg_ctl", "promote", "-D", s.dataDir, "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Fatalf("testpg: pg_ctl promote: %v\n%s%s", err, out, s.logTail())
	}
}

// newEmptyServer prepares a Server with a new temporary directory and its watchdog, but no
// data directory yet.
func newEmptyServer(binDir string) (*Server, error) {
	s := &Server{binDir: binDir}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("testpg: running as root, but there is no user \"postgres\" to run PostgreSQL: %w", err)
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
		tmp = "/tmp"
	}
	var err error
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
	return s, nil
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
