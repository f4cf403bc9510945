package admincli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/admincli"
	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// env is a fresh database with the schema and a runner on it.
type env struct {
	dsn  string
	pool *pgxpool.Pool
	out  bytes.Buffer
	r    *admincli.Runner
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dsn: testpg.NewDatabase(t)}
	pool, err := pgxpool.New(t.Context(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e.pool = pool
	e.r = &admincli.Runner{
		Store:   storage.New(pool),
		Limits:  request.TokenLimits{MaxPerUser: 2, Lifetime: 24 * time.Hour, MaxLifetime: 48 * time.Hour},
		Out:     &e.out,
		Migrate: func(ctx context.Context) error { return storage.Migrate(ctx, pool) },
	}
	if err := e.r.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs a call and returns what it printed; it fails the test on error.
func (e *env) run(t *testing.T, asJSON bool, call func(context.Context, *admincli.Runner) error) string {
	t.Helper()
	e.out.Reset()
	e.r.JSON = asJSON
	if err := call(t.Context(), e.r); err != nil {
		t.Fatalf("call failed: %v", err)
	}
	return e.out.String()
}

func (e *env) scalar(t *testing.T, sql string, args ...any) any {
	t.Helper()
	var v any
	if err := e.pool.QueryRow(t.Context(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// counts is the number of users, tokens and audit events.
func (e *env) counts(t *testing.T) [3]int64 {
	t.Helper()
	var c [3]int64
	for i, tbl := range []string{"users", "tokens", "audit"} {
		c[i] = e.scalar(t, "SELECT count(*) FROM armgate."+tbl).(int64)
	}
	return c
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not the expected JSON: %v: %s", err, s)
	}
	return v
}

func ptr(s string) *string { return &s }

func TestCLIUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.UserPut(ctx, "alice", ptr("alice@example.com"), nil)
	})
	u := decode[adminapi.User](t, out)
	if u.ID != "alice" || *u.Email != "alice@example.com" || u.DisplayName != nil || u.Status != storage.UserActive || u.MaxTokensPerUser != 2 {
		t.Errorf("user put: %+v", u)
	}
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.UserPut(ctx, "alice", nil, ptr("Alice A."))
	})
	if got := e.scalar(t, "SELECT email || '/' || display_name FROM armgate.users WHERE id = 'alice'"); got != "alice@example.com/Alice A." {
		t.Errorf("after update: %v", got)
	}
	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.UserGet(ctx, "alice") })
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "Alice A.") || !strings.Contains(lines[1], "0 of 2") {
		t.Errorf("user get table:\n%s", out)
	}
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.UserPut(ctx, "bob", nil, nil) })

	// Pages of one, followed by their cursor.
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.UserList(ctx, "", ptr("1"), "") })
	page := decode[adminapi.UsersPage](t, out)
	if len(page.Users) != 1 || page.Users[0].ID != "alice" || page.NextCursor == nil {
		t.Fatalf("first page: %s", out)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.UserList(ctx, "", ptr("1"), *page.NextCursor)
	})
	page = decode[adminapi.UsersPage](t, out)
	if len(page.Users) != 1 || page.Users[0].ID != "bob" {
		t.Fatalf("second page: %s", out)
	}

	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.UserSetActive(ctx, "bob", false) })
	if e.scalar(t, "SELECT deactivated_at IS NOT NULL FROM armgate.users WHERE id = 'bob'") != true {
		t.Error("bob is not deactivated")
	}
	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.UserList(ctx, "deactivated", nil, "") })
	if !strings.Contains(out, "bob") || strings.Contains(out, "alice") {
		t.Errorf("deactivated users:\n%s", out)
	}
	e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.UserSetActive(ctx, "bob", true) })
	if e.scalar(t, "SELECT deactivated_at IS NULL FROM armgate.users WHERE id = 'bob'") != true {
		t.Error("bob is not reactivated")
	}
	if n := e.scalar(t, "SELECT count(*) FROM armgate.audit WHERE actor <> 'cli'"); n != int64(0) {
		t.Errorf("%v audit events not by cli", n)
	}
	if n := e.scalar(t, "SELECT count(*) FROM armgate.audit WHERE actor = 'cli'"); n != int64(5) {
		t.Errorf("%v audit events by cli, want 5", n)
	}
}

func TestCLITokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Create makes the missing user and prints only the token.
	out := e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "carol", request.CreateToken{Name: " ci ", Scopes: []string{"api", "admin"}})
	})
	plain := strings.TrimSpace(out)
	if token.Check(plain) != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("create printed %q", out)
	}
	var id string
	if err := e.pool.QueryRow(t.Context(), `SELECT id::text FROM armgate.tokens WHERE user_id = 'carol' AND name = 'ci'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "carol", request.CreateToken{Name: "second", ExpiresIn: ptr("1h")})
	})
	created := decode[adminapi.CreatedToken](t, out)
	if token.Check(created.Plaintext) != nil || created.Name != "second" || len(created.Scopes) != 1 || created.Scopes[0] != "api" {
		t.Errorf("create --json: %s", out)
	}
	if d := time.Until(created.ExpiresAt); d < 50*time.Minute || d > time.Hour {
		t.Errorf("expires in %v, want 1h", d)
	}

	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.TokenList(ctx, "carol") })
	if l := decode[adminapi.TokenList](t, out); len(l.Tokens) != 2 || l.Tokens[0].ID != id {
		t.Errorf("token list: %s", out)
	}
	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.TokenGet(ctx, strings.ToUpper(id)) })
	if !strings.Contains(out, id) || !strings.Contains(out, "api,admin") || strings.Contains(out, plain) {
		t.Errorf("token get table:\n%s", out)
	}

	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.TokenRevoke(ctx, id, " lost laptop ") })
	if tk := decode[adminapi.Token](t, out); tk.Status != token.Revoked || *tk.RevokedReason != "lost laptop" {
		t.Errorf("revoke: %s", out)
	}
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.TokenReapprove(ctx, id) })
	if e.scalar(t, "SELECT revoked_at IS NULL FROM armgate.tokens WHERE id = $1", id) != true {
		t.Error("reapprove left the token revoked")
	}

	// Rotate at the limit (2 of 2): the new plaintext only.
	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenRotate(ctx, id, request.Rotate{Grace: ptr("0s")})
	})
	newPlain := strings.TrimSpace(out)
	if token.Check(newPlain) != nil || newPlain == plain {
		t.Fatalf("rotate printed %q", out)
	}
	var newID string
	if err := e.pool.QueryRow(t.Context(), `SELECT rotated_to::text FROM armgate.tokens WHERE id = $1`, id).Scan(&newID); err != nil {
		t.Fatalf("rotated_to: %v", err)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenRotate(ctx, newID, request.Rotate{ExpiresIn: ptr("2h")})
	})
	rot := decode[adminapi.RotatedToken](t, out)
	if rot.RotatedFrom != newID || token.Check(rot.Plaintext) != nil || rot.Name != "ci" {
		t.Errorf("rotate --json: %s", out)
	}

	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenRevokeAll(ctx, "carol", "signed out")
	})
	// The once-rotated token expired at once (grace 0s) but is not revoked:
	// all four tokens are revoked now.
	if strings.TrimSpace(out) != "4" {
		t.Errorf("revoke-all printed %q, want 4", out)
	}
	if n := e.scalar(t, "SELECT count(*) FROM armgate.tokens WHERE user_id = 'carol' AND revoked_at IS NULL"); n != int64(0) {
		t.Errorf("%v tokens left unrevoked", n)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.TokenRevokeAll(ctx, "carol", "") })
	if strings.TrimSpace(out) != `{"revoked":0}` {
		t.Errorf("revoke-all again: %q", out)
	}

	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.TokenDelete(ctx, id) })
	if out != "" {
		t.Errorf("delete --json printed %q (the API answers 204)", out)
	}
	if n := e.scalar(t, "SELECT count(*) FROM armgate.tokens WHERE id = $1", id); n != int64(0) {
		t.Error("delete left the token")
	}
	if n := e.scalar(t, "SELECT count(*) FROM armgate.audit WHERE actor <> 'cli'"); n != int64(0) {
		t.Errorf("%v audit events not by cli", n)
	}
}

func TestCLIMigrate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.MigrateSchema(ctx) })
	v := e.scalar(t, "SELECT version FROM armgate.schema_version")
	if want := fmt.Sprintf("schema version %d\n", v); out != want {
		t.Errorf("migrate printed %q, want %q", out, want)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.MigrateSchema(ctx) })
	if got := decode[struct {
		SchemaVersion int `json:"schema_version"`
	}](t, out); int64(got.SchemaVersion) != int64(v.(int32)) || got.SchemaVersion < 2 {
		t.Errorf("migrate --json: %s", out)
	}
}

// TestCLIBadInput: every call refuses bad input as a usage error (exit 2)
// and unknown or refused objects as a failure (exit 1), with a one-line
// message, and writes nothing.
func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "dave", request.CreateToken{Name: "one"})
	})
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "dave", request.CreateToken{Name: "two"})
	})
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "gina", request.CreateToken{Name: "solo"})
	})
	var id string
	if err := e.pool.QueryRow(t.Context(), `SELECT id::text FROM armgate.tokens WHERE name = 'one'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	const missing = "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"
	long := strings.Repeat("x", 600)
	cases := []struct {
		name string
		call func(context.Context, *admincli.Runner) error
		code int
		msg  string
	}{
		{"user put no user", func(c context.Context, r *admincli.Runner) error { return r.UserPut(c, "", nil, nil) }, 2, "--user is required"},
		{"user put bad id", func(c context.Context, r *admincli.Runner) error { return r.UserPut(c, "a/b", nil, nil) }, 2, "invalid user id"},
		{"user put bad email", func(c context.Context, r *admincli.Runner) error { return r.UserPut(c, "eve", ptr("nope"), nil) }, 2, "is not an email address"},
		{"user put control", func(c context.Context, r *admincli.Runner) error { return r.UserPut(c, "eve", nil, ptr("a\x01")) }, 2, "control characters"},
		{"user get unknown", func(c context.Context, r *admincli.Runner) error { return r.UserGet(c, "nobody") }, 1, `user "nobody" not found`},
		{"user list status", func(c context.Context, r *admincli.Runner) error { return r.UserList(c, "gone", nil, "") }, 2, "status must be"},
		{"user list limit", func(c context.Context, r *admincli.Runner) error { return r.UserList(c, "", ptr("501"), "") }, 2, "limit must be an integer from 1 to 500"},
		{"user list cursor", func(c context.Context, r *admincli.Runner) error { return r.UserList(c, "", nil, "!!") }, 2, "invalid cursor"},
		{"deactivate unknown", func(c context.Context, r *admincli.Runner) error { return r.UserSetActive(c, "nobody", false) }, 1, "not found"},
		{"reactivate no user", func(c context.Context, r *admincli.Runner) error { return r.UserSetActive(c, "", true) }, 2, "--user is required"},
		{"create no name", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{})
		}, 2, "--name is required"},
		{"create blank name", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{Name: "   "})
		}, 2, "name"},
		{"create bad duration", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{Name: "x", ExpiresIn: ptr("soon")})
		}, 2, `--expires-in: "soon" is not a duration`},
		{"create over max lifetime", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{Name: "x", ExpiresIn: ptr("49h")})
		}, 2, "exceeds the maximum token lifetime"},
		{"create both expiries", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{Name: "x", ExpiresIn: ptr("1h"), ExpiresAt: ptr("2030-01-01T00:00:00Z")})
		}, 2, "not both"},
		{"create bad scope", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "eve", request.CreateToken{Name: "x", Scopes: []string{"root"}})
		}, 2, "scope"},
		{"create limit", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "dave", request.CreateToken{Name: "three"})
		}, 1, "maximum number of tokens"},
		{"create name taken", func(c context.Context, r *admincli.Runner) error {
			return r.TokenCreate(c, "gina", request.CreateToken{Name: " solo "})
		}, 1, "already exists"},
		{"token list unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenList(c, "nobody") }, 1, "not found"},
		{"token list no user", func(c context.Context, r *admincli.Runner) error { return r.TokenList(c, "") }, 2, "--user is required"},
		{"get no id", func(c context.Context, r *admincli.Runner) error { return r.TokenGet(c, "") }, 2, "--id is required"},
		{"get bad id", func(c context.Context, r *admincli.Runner) error { return r.TokenGet(c, "42") }, 2, "must be a UUID"},
		{"get unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenGet(c, missing) }, 1, "token " + missing + " not found"},
		{"revoke long reason", func(c context.Context, r *admincli.Runner) error { return r.TokenRevoke(c, id, long) }, 2, "reason is longer than 500"},
		{"revoke unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenRevoke(c, missing, "") }, 1, "not found"},
		{"revoke-all unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenRevokeAll(c, "nobody", "") }, 1, "not found"},
		{"revoke-all reason", func(c context.Context, r *admincli.Runner) error { return r.TokenRevokeAll(c, "dave", "a\nb") }, 2, "control characters"},
		{"reapprove bad id", func(c context.Context, r *admincli.Runner) error { return r.TokenReapprove(c, "x") }, 2, "must be a UUID"},
		{"reapprove unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenReapprove(c, missing) }, 1, "not found"},
		{"rotate bad grace", func(c context.Context, r *admincli.Runner) error {
			return r.TokenRotate(c, id, request.Rotate{Grace: ptr("200h")})
		}, 2, `--grace must be from 0s to 168h, got "200h"`},
		{"rotate bad duration", func(c context.Context, r *admincli.Runner) error {
			return r.TokenRotate(c, id, request.Rotate{ExpiresIn: ptr("-1h")})
		}, 2, "--expires-in must be positive"},
		{"rotate unknown", func(c context.Context, r *admincli.Runner) error {
			return r.TokenRotate(c, missing, request.Rotate{})
		}, 1, "not found"},
		{"delete no id", func(c context.Context, r *admincli.Runner) error { return r.TokenDelete(c, "") }, 2, "--id is required"},
		{"delete unknown", func(c context.Context, r *admincli.Runner) error { return r.TokenDelete(c, missing) }, 1, "not found"},
	}
	before := e.counts(t)
	for _, c := range cases {
		e.out.Reset()
		err := c.call(t.Context(), e.r)
		if code := admincli.ExitCode(err); code != c.code {
			t.Errorf("%s: exit %d (%v), want %d", c.name, code, err, c.code)
			continue
		}
		if msg := admincli.Message(err); !strings.Contains(msg, c.msg) || strings.Contains(msg, "\n") {
			t.Errorf("%s: message %q, want one line with %q", c.name, msg, c.msg)
		}
		if e.out.Len() != 0 {
			t.Errorf("%s: printed %q", c.name, e.out.String())
		}
	}
	if after := e.counts(t); after != before {
		t.Errorf("users, tokens, audit events: %v before, %v after the refused calls", before, after)
	}
}

// TestCLINotifies: a change from the command line is announced on the
// invalidation channel, which is how running gateways learn of it.
func TestCLINotifies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "frank", request.CreateToken{Name: "t"})
	})
	var id string
	var hash []byte
	if err := e.pool.QueryRow(t.Context(), `SELECT id::text, hash FROM armgate.tokens WHERE user_id = 'frank'`).Scan(&id, &hash); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "LISTEN "+storage.Channel); err != nil {
		t.Fatal(err)
	}
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.TokenRevoke(ctx, id, "") })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no notification after token revoke: %v", err)
	}
	var inv struct {
		Hashes [][]byte `json:"h"` // the payload's name; storage pins it
	}
	if err := json.Unmarshal([]byte(n.Payload), &inv); err != nil {
		t.Fatalf("payload %q: %v", n.Payload, err)
	}
	if len(inv.Hashes) != 1 || !bytes.Equal(inv.Hashes[0], hash) {
		t.Errorf("notification %q does not name the revoked token", n.Payload)
	}
}
