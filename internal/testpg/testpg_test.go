package testpg

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func queryString(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestTestPGNewDatabase(t *testing.T) {
	t.Parallel()
	dsn := NewDatabase(t)
	if got := queryString(t, dsn, "SELECT (1)::text"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	if db := queryString(t, dsn, "SELECT current_database()"); !strings.HasPrefix(db, "armgate_test_") {
		t.Fatalf("current_database() = %q, want armgate_test_*", db)
	}
}

func TestTestPGNewDatabaseUniqueAndDropped(t *testing.T) {
	t.Parallel()
	var names [2]string
	t.Run("create", func(t *testing.T) {
		for i := range names {
			dsn := NewDatabase(t)
			names[i] = queryString(t, dsn, "SELECT current_database()")
			// Leave an open connection behind: the drop must still succeed (WITH (FORCE)).
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
		}
		if names[0] == names[1] {
			t.Fatalf("two calls gave the same database %q", names[0])
		}
		for _, n := range names {
			if !databaseExists(t, n) {
				t.Fatalf("database %s does not exist", n)
			}
		}
	})
	for _, n := range names {
		if n != "" && databaseExists(t, n) {
			t.Errorf("database %s still exists after its test ended", n)
		}
	}
}

func TestTestPGPrivateStopStart(t *testing.T) {
	t.Parallel()
	s := StartPrivate(t)
	dsn := s.CreateDatabase(t)
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	s.Stop(t)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}

	s.Start(t)
	if got := queryString(t, dsn, "SELECT v FROM kept"); got != "still here" {
		t.Fatalf("after restart: %q", got)
	}
	if !strings.Contains(dsn, ":"+strconv.Itoa(s.Port())+"/") {
		t.Fatalf("DSN %s does not use port %d", dsn, s.Port())
	}
}

func TestTestPGPrivateIsSeparate(t *testing.T) {
	t.Parallel()
	a, b := StartPrivate(t), StartPrivate(t)
	if a.Port() == b.Port() {
		t.Fatalf("two private servers share port %d", a.Port())
	}
	if queryString(t, a.DSN("postgres"), "SELECT 'a'") != "a" || queryString(t, b.DSN("postgres"), "SELECT 'b'") != "b" {
		t.Fatal("unexpected answer")
	}
}

func TestTestPGWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/armgate?sslmode=disable", "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"},
		{"postgresql://u:p%40ss@h1:1,h2:2?connect_timeout=5", "postgresql://u:p%40ss@h1:1,h2:2/x?connect_timeout=5"},
		{"host=127.0.0.1 port=5432 dbname=armgate", "host=127.0.0.1 port=5432 dbname=armgate dbname=x"},
		{"", "dbname=x"},
	} {
		got, err := withDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
