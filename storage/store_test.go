package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func TestMain(m *testing.M) { testpg.Main(m) }

const admin = storage.ActorAdminKey

type env struct {
	dsn   string
	pool  *pgxpool.Pool
	store *storage.Store
}

func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newEnv returns a store on a fresh, migrated database.
func newEnv(t *testing.T) *env {
	t.Helper()
	dsn := testpg.NewDatabase(t)
	pool := newPool(t, dsn)
	if err := storage.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, pool: pool, store: storage.New(pool)}
}

func (e *env) user(t *testing.T, id string) storage.User {
	t.Helper()
	u, created, err := e.store.UpsertUser(t.Context(), admin, id, storage.UserPatch{})
	if err != nil || !created {
		t.Fatalf("UpsertUser(%q) = %v, created %v", id, err, created)
	}
	return u
}

func expiry() time.Time { return time.Now().Add(24 * time.Hour).Truncate(time.Second) }

func (e *env) create(t *testing.T, userID, name string, max int) (storage.Token, string, error) {
	t.Helper()
	return e.store.CreateToken(t.Context(), admin, storage.NewToken{
		UserID: userID, Name: name, Scopes: []string{token.ScopeAPI}, ExpiresAt: expiry(), MaxPerUser: max,
	})
}

func (e *env) mustCreate(t *testing.T, userID, name string) (storage.Token, string) {
	t.Helper()
	tk, plain, err := e.create(t, userID, name, 10)
	if err != nil {
		t.Fatalf("CreateToken(%q, %q): %v", userID, name, err)
	}
	return tk, plain
}

func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) expire(t *testing.T, id string) {
	t.Helper()
	e.exec(t, `UPDATE armgate.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, id)
}

func (e *env) get(t *testing.T, id string) storage.Token {
	t.Helper()
	tk, err := e.store.GetToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetToken(%s): %v", id, err)
	}
	return tk
}

func (e *env) status(t *testing.T, id string) string {
	t.Helper()
	return e.get(t, id).Status.String()
}

func (e *env) revoke(t *testing.T, id, reason string) storage.Token {
	t.Helper()
	tk, _, err := e.store.RevokeToken(t.Context(), admin, id, reason)
	if err != nil {
		t.Fatalf("RevokeToken(%s): %v", id, err)
	}
	return tk
}

func (e *env) setActive(t *testing.T, userID string, active bool) {
	t.Helper()
	if _, _, err := e.store.SetUserActive(t.Context(), admin, userID, active); err != nil {
		t.Fatalf("SetUserActive(%q, %v): %v", userID, active, err)
	}
}

func (e *env) del(t *testing.T, id string) {
	t.Helper()
	if _, err := e.store.DeleteToken(t.Context(), admin, id); err != nil {
		t.Fatalf("DeleteToken(%s): %v", id, err)
	}
}

func (e *env) audit(t *testing.T, userID string, limit int) []storage.AuditEvent {
	t.Helper()
	ev, err := e.store.Audit(t.Context(), userID, limit)
	if err != nil {
		t.Fatalf("Audit(%q): %v", userID, err)
	}
	return ev
}

func (e *env) lookup(t *testing.T, plain string) token.Credential {
	t.Helper()
	c, err := e.store.LookupCredential(t.Context(), token.Sum(plain))
	if err != nil {
		t.Fatalf("LookupCredential: %v", err)
	}
	return c
}

func (e *env) auditCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.audit`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func hashOf(plain string) []byte {
	h := token.Sum(plain)
	return h[:]
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "keep")
	for range 2 {
		if err := storage.Migrate(t.Context(), e.pool); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	var version int
	if err := e.pool.QueryRow(t.Context(), `SELECT version FROM armgate.schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if version != len(files) {
		t.Errorf("schema version %d, want %d (one per migration)", version, len(files))
	}
	if _, err := e.store.GetUser(t.Context(), "keep"); err != nil {
		t.Errorf("data lost by a second Migrate: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	const n = 5
	pools := make([]*pgxpool.Pool, n)
	for i := range pools {
		pools[i] = newPool(t, dsn) // one pool per "instance"
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = storage.Migrate(t.Context(), pools[i])
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	s := storage.New(pools[0])
	if _, _, err := s.UpsertUser(t.Context(), admin, "u", storage.UserPatch{}); err != nil {
		t.Fatalf("schema unusable after concurrent migrations: %v", err)
	}
}

func TestCreateTokenStoresOnlyHashAndHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice")
	exp := expiry()
	tk, plain, err := e.store.CreateToken(t.Context(), admin, storage.NewToken{
		UserID: "alice", Name: "laptop", Scopes: []string{"api", "admin"}, ExpiresAt: exp, MaxPerUser: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := token.Check(plain); err != nil {
		t.Fatalf("plaintext %q: %v", plain, err)
	}
	if tk.Hint != token.Hint(plain) || tk.Hint != plain[:8]+"…" {
		t.Errorf("hint %q for %q", tk.Hint, plain)
	}
	if tk.UserID != "alice" || tk.Name != "laptop" || !slices.Equal(tk.Scopes, []string{"api", "admin"}) ||
		!tk.ExpiresAt.Equal(exp) || tk.Status != token.Active || tk.RevokedAt != nil || tk.LastUsedAt != nil {
		t.Errorf("created token %+v", tk)
	}
	if tk.ExpiresAt.Location() != time.UTC || tk.CreatedAt.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v", tk.CreatedAt, tk.ExpiresAt)
	}

	// The row holds the hash and the hint, nothing else of the secret.
	var hash []byte
	var row, audit, users string
	if err := e.pool.QueryRow(t.Context(), `SELECT hash, t::text FROM armgate.tokens t WHERE id = $1`, tk.ID).Scan(&hash, &row); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash, hashOf(plain)) {
		t.Errorf("stored hash %x, want sha256 %x", hash, hashOf(plain))
	}
	if err := e.pool.QueryRow(t.Context(), `SELECT coalesce(string_agg(a::text, ' '), '') FROM armgate.audit a`).Scan(&audit); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRow(t.Context(), `SELECT coalesce(string_agg(u::text, ' '), '') FROM armgate.users u`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"tokens row": row, "audit": audit, "users": users} {
		if strings.Contains(text, plain[4:36]) || strings.Contains(text, plain[8:]) || strings.Contains(text, plain[36:]) {
			t.Errorf("%s contains part of the plaintext beyond the hint: %s", what, text)
		}
	}

	c, err := e.store.LookupCredential(t.Context(), token.Sum(plain))
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenID != tk.ID || c.UserID != "alice" || c.Name != "laptop" || !slices.Equal(c.Scopes, []string{"api", "admin"}) ||
		!c.ExpiresAt.Equal(exp) || c.Revoked || c.UserDeactivated {
		t.Errorf("LookupCredential = %+v", c)
	}
	if _, err := e.store.LookupCredential(t.Context(), token.Sum(plain+"x")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LookupCredential(unknown) = %v, want ErrNotFound", err)
	}
	got, err := e.store.GetToken(t.Context(), tk.ID)
	if err != nil || got.ID != tk.ID || got.Hint != tk.Hint {
		t.Errorf("GetToken = %+v, %v", got, err)
	}
	if _, err := e.store.GetToken(t.Context(), "00000000-0000-0000-0000-000000000000"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetToken(unknown) = %v", err)
	}
}

func TestTokenLimitConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "bob")
	const n, max = 50, 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, _, errs[i] = e.create(t, "bob", fmt.Sprintf("t%02d", i), max)
		})
	}
	close(start)
	wg.Wait()
	var ok, limited int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, storage.ErrTokenLimit):
			limited++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != max || limited != n-max {
		t.Errorf("%d parallel creates: %d succeeded, %d hit the limit; want %d and %d", n, ok, limited, max, n-max)
	}
	var rows int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.tokens WHERE user_id = 'bob'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != max {
		t.Errorf("%d token rows, want %d", rows, max)
	}
}

func TestTokenLimitCounting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "carol")
	const max = 3
	ids := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		tk, _, err := e.create(t, "carol", name, max)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = tk.ID
	}
	step := func(what, name string, want error) {
		t.Helper()
		tk, _, err := e.create(t, "carol", name, max)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("%s: create %q = %v, want %v", what, name, err, want)
		}
		if err == nil {
			ids[name] = tk.ID
		}
	}
	count := func(want int) {
		t.Helper()
		u, err := e.store.GetUser(t.Context(), "carol")
		if err != nil || u.TokenCount != want {
			t.Fatalf("token_count = %d (%v), want %d", u.TokenCount, err, want)
		}
	}
	count(3)
	step("full", "d", storage.ErrTokenLimit)

	e.expire(t, ids["a"])
	count(2)
	step("an expired token frees its slot", "d", nil)
	count(3)
	step("full again", "e", storage.ErrTokenLimit)

	if _, _, err := e.store.RevokeToken(t.Context(), admin, ids["b"], ""); err != nil {
		t.Fatal(err)
	}
	count(3)
	step("a revoked token still counts", "e", storage.ErrTokenLimit)

	if _, _, err := e.store.SetUserActive(t.Context(), admin, "carol", false); err != nil {
		t.Fatal(err)
	}
	count(3) // deactivated tokens count too
	if _, _, err := e.store.SetUserActive(t.Context(), admin, "carol", true); err != nil {
		t.Fatal(err)
	}

	if _, err := e.store.DeleteToken(t.Context(), admin, ids["b"]); err != nil {
		t.Fatal(err)
	}
	count(2)
	step("delete frees the slot and the name", "b", nil)
	step("full after reuse", "e", storage.ErrTokenLimit)
	if _, err := e.store.DeleteToken(t.Context(), admin, ids["a"]); err != nil { // the expired one
		t.Fatal(err)
	}
	step("limit unchanged by deleting an expired token", "e", storage.ErrTokenLimit)
	if _, err := e.store.DeleteToken(t.Context(), admin, ids["d"]); err != nil {
		t.Fatal(err)
	}
	step("the deleted expired token's name is free", "a", nil)
	count(3)
}

func TestCreateTokenErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "dave")
	e.user(t, "erin")
	e.mustCreate(t, "dave", "laptop")
	old, _ := e.mustCreate(t, "dave", "old")
	e.expire(t, old.ID)
	for _, tc := range []struct {
		name, user, tname string
		want              error
	}{
		{"name taken", "dave", "laptop", storage.ErrNameTaken},
		{"name of an expired token taken", "dave", "old", storage.ErrNameTaken},
		{"same name, other user", "erin", "laptop", nil},
		{"names are case-sensitive", "dave", "Laptop", nil},
		{"missing user", "nobody", "x", storage.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.create(t, tc.user, tc.tname, 10)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("CreateToken = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("deactivated user", func(t *testing.T) {
		if _, _, err := e.store.SetUserActive(t.Context(), admin, "erin", false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.create(t, "erin", "new", 10); !errors.Is(err, storage.ErrUserDeactivated) {
			t.Errorf("CreateToken for a deactivated user = %v", err)
		}
	})
	t.Run("create user", func(t *testing.T) {
		before := e.auditCount(t)
		_, _, err := e.store.CreateToken(t.Context(), admin, storage.NewToken{
			UserID: "frank", Name: "boot", Scopes: []string{"admin"}, ExpiresAt: expiry(), MaxPerUser: 10, CreateUser: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.GetUser(t.Context(), "frank"); err != nil {
			t.Fatal(err)
		}
		ev := e.audit(t, "frank", 10)
		if got := e.auditCount(t) - before; got != 2 || len(ev) != 2 || ev[0].Action != storage.ActionTokenCreate || ev[1].Action != storage.ActionUserCreate {
			t.Errorf("audit after create-with-user: %d rows, %+v", got, ev)
		}
	})
	t.Run("failed creates write no audit", func(t *testing.T) {
		before := e.auditCount(t)
		for _, c := range []struct {
			user, name string
			max        int
			want       error
		}{
			{"dave", "laptop", 10, storage.ErrNameTaken},
			{"nobody", "x", 10, storage.ErrNotFound},
			{"dave", "z", 1, storage.ErrTokenLimit},
		} {
			if _, _, err := e.create(t, c.user, c.name, c.max); !errors.Is(err, c.want) {
				t.Fatalf("CreateToken(%q, %q) = %v, want %v", c.user, c.name, err, c.want)
			}
		}
		if got := e.auditCount(t); got != before {
			t.Errorf("failed creates wrote %d audit rows", got-before)
		}
	})
}

func TestRevokeIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	tk, plain := e.mustCreate(t, "u", "t")
	r1, inv, err := e.store.RevokeToken(t.Context(), admin, tk.ID, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != token.Revoked || r1.RevokedAt == nil || r1.RevokedReason == nil || *r1.RevokedReason != "lost" {
		t.Fatalf("revoked token %+v", r1)
	}
	if len(inv.Hashes) != 1 || !bytes.Equal(inv.Hashes[0], hashOf(plain)) || inv.All {
		t.Errorf("invalidation %+v, want the token's hash", inv)
	}
	if c := e.lookup(t, plain); !c.Revoked {
		t.Error("credential not revoked")
	}
	before := e.auditCount(t)
	r2, inv2, err := e.store.RevokeToken(t.Context(), admin, tk.ID, "again")
	if err != nil {
		t.Fatal(err)
	}
	if !r2.RevokedAt.Equal(*r1.RevokedAt) || *r2.RevokedReason != "lost" || r2.Status != token.Revoked {
		t.Errorf("second revoke changed the token: %+v", r2)
	}
	if len(inv2.Hashes) != 0 || inv2.All {
		t.Errorf("second revoke invalidated %+v", inv2)
	}
	if got := e.auditCount(t); got != before {
		t.Errorf("second revoke wrote %d audit rows", got-before)
	}
	// Logout of a revoked token is a no-op as well.
	r3, _, err := e.store.Logout(t.Context(), tk.ID)
	if err != nil || *r3.RevokedReason != "lost" {
		t.Errorf("logout of a revoked token: %+v %v", r3, err)
	}
	if _, _, err := e.store.RevokeToken(t.Context(), admin, "00000000-0000-0000-0000-000000000000", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoke of an unknown id = %v", err)
	}

	// Revoking an expired token records revoked_at; the status stays expired.
	ex, _ := e.mustCreate(t, "u", "old")
	e.expire(t, ex.ID)
	r4, inv4, err := e.store.RevokeToken(t.Context(), admin, ex.ID, "")
	if err != nil || r4.RevokedAt == nil || r4.RevokedReason != nil || r4.Status != token.Expired {
		t.Errorf("revoke of an expired token: %+v %v", r4, err)
	}
	if len(inv4.Hashes) != 1 {
		t.Errorf("invalidation %+v", inv4)
	}
}

func TestReapprove(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	e.user(t, "gone")
	ctx := t.Context()

	t.Run("revoked becomes active", func(t *testing.T) {
		tk, plain := e.mustCreate(t, "u", "revoked")
		e.revoke(t, tk.ID, "oops")
		got, inv, err := e.store.ReapproveToken(ctx, admin, tk.ID)
		if err != nil || got.Status != token.Active || got.RevokedAt != nil || got.RevokedReason != nil {
			t.Fatalf("reapprove = %+v %v", got, err)
		}
		if len(inv.Hashes) != 1 || !bytes.Equal(inv.Hashes[0], hashOf(plain)) {
			t.Errorf("invalidation %+v", inv)
		}
		if c := e.lookup(t, plain); c.Revoked {
			t.Error("credential still revoked")
		}
	})
	t.Run("active is a no-op", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "u", "active")
		before := e.auditCount(t)
		got, inv, err := e.store.ReapproveToken(ctx, admin, tk.ID)
		if err != nil || got.Status != token.Active || len(inv.Hashes) != 0 || inv.All {
			t.Errorf("reapprove of an active token = %+v %+v %v", got, inv, err)
		}
		if e.auditCount(t) != before {
			t.Error("no-op reapprove wrote an audit row")
		}
	})
	t.Run("expired", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "u", "expired")
		e.revoke(t, tk.ID, "")
		e.expire(t, tk.ID)
		if _, _, err := e.store.ReapproveToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrTokenExpired) {
			t.Errorf("reapprove of an expired token = %v, want ErrTokenExpired", err)
		}
		if e.get(t, tk.ID).RevokedAt == nil {
			t.Error("a refused reapprove changed the token")
		}
	})
	t.Run("expired wins over deactivated", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "gone", "expired")
		tk2, _ := e.mustCreate(t, "gone", "expired-not-revoked")
		e.revoke(t, tk.ID, "")
		e.expire(t, tk.ID)
		e.expire(t, tk2.ID)
		e.setActive(t, "gone", false)
		defer e.setActive(t, "gone", true)
		for _, id := range []string{tk.ID, tk2.ID} {
			if _, _, err := e.store.ReapproveToken(ctx, admin, id); !errors.Is(err, storage.ErrTokenExpired) {
				t.Errorf("reapprove of an expired token of a deactivated user = %v, want ErrTokenExpired", err)
			}
		}
	})
	t.Run("deactivated user", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "gone", "live")
		e.setActive(t, "gone", false)
		defer e.setActive(t, "gone", true)
		if _, _, err := e.store.ReapproveToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrUserDeactivated) {
			t.Errorf("reapprove of a deactivated user's token = %v, want ErrUserDeactivated", err)
		}
	})
	t.Run("revoked token of deactivated user", func(t *testing.T) {
		// The rule: re-approving "a token of a deactivated user" is 409
		// user_deactivated, whether or not the token is also revoked.
		tk, _ := e.mustCreate(t, "gone", "revoked-live")
		e.revoke(t, tk.ID, "")
		e.setActive(t, "gone", false)
		defer e.setActive(t, "gone", true)
		if _, _, err := e.store.ReapproveToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrUserDeactivated) {
			t.Errorf("reapprove of a revoked token of a deactivated user = %v, want ErrUserDeactivated", err)
		}
		if e.get(t, tk.ID).RevokedAt == nil {
			t.Error("the revocation was lifted while the user is deactivated")
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if _, _, err := e.store.ReapproveToken(ctx, admin, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("reapprove of an unknown id = %v", err)
		}
	})
}

func TestSetUserActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	live, livePlain := e.mustCreate(t, "u", "live")
	rev, revPlain := e.mustCreate(t, "u", "revoked")
	exp, _ := e.mustCreate(t, "u", "expired")
	late, _ := e.mustCreate(t, "u", "revoked-while-deactivated")
	e.revoke(t, rev.ID, "")
	e.expire(t, exp.ID)

	u, inv, err := e.store.SetUserActive(ctx, admin, "u", false)
	if err != nil || u.Status != storage.UserDeactivated {
		t.Fatalf("deactivate = %+v %v", u, err)
	}
	for _, p := range []string{livePlain, revPlain} {
		if !slices.ContainsFunc(inv.Hashes, func(h []byte) bool { return bytes.Equal(h, hashOf(p)) }) {
			t.Errorf("deactivation invalidation %d hashes lacks a live token's hash", len(inv.Hashes))
		}
	}
	want := map[string]string{live.ID: "deactivated", rev.ID: "revoked", exp.ID: "expired", late.ID: "deactivated"}
	for id, st := range want {
		if got := e.status(t, id); got != st {
			t.Errorf("after deactivation token %s: %s, want %s", id, got, st)
		}
	}
	if c := e.lookup(t, livePlain); !c.UserDeactivated {
		t.Error("credential does not show the deactivation")
	}

	// Idempotent: no event, no invalidation.
	before := e.auditCount(t)
	u, inv, err = e.store.SetUserActive(ctx, admin, "u", false)
	if err != nil || u.Status != storage.UserDeactivated || len(inv.Hashes) != 0 || inv.All || e.auditCount(t) != before {
		t.Errorf("second deactivate: %+v %+v %v, audit +%d", u, inv, err, e.auditCount(t)-before)
	}

	// Revoking a deactivated user's token is allowed and sticks.
	if _, _, err := e.store.RevokeToken(ctx, admin, late.ID, "left"); err != nil {
		t.Fatal(err)
	}

	u, inv, err = e.store.SetUserActive(ctx, admin, "u", true)
	if err != nil || u.Status != storage.UserActive || len(inv.Hashes) == 0 {
		t.Fatalf("reactivate = %+v %+v %v", u, inv, err)
	}
	want = map[string]string{live.ID: "active", rev.ID: "revoked", exp.ID: "expired", late.ID: "revoked"}
	for id, st := range want {
		if got := e.status(t, id); got != st {
			t.Errorf("after reactivation token %s: %s, want %s", id, got, st)
		}
	}
	before = e.auditCount(t)
	if u, _, err := e.store.SetUserActive(ctx, admin, "u", true); err != nil || u.Status != storage.UserActive || e.auditCount(t) != before {
		t.Errorf("second reactivate: %+v %v", u, err)
	}
	if _, _, err := e.store.SetUserActive(ctx, admin, "nobody", false); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deactivate unknown = %v", err)
	}
}

func TestDeleteToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	tk, plain := e.mustCreate(t, "u", "t")
	inv, err := e.store.DeleteToken(ctx, admin, tk.ID)
	if err != nil || len(inv.Hashes) != 1 || !bytes.Equal(inv.Hashes[0], hashOf(plain)) {
		t.Fatalf("delete = %+v %v", inv, err)
	}
	if _, err := e.store.GetToken(ctx, tk.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetToken after delete = %v", err)
	}
	if _, err := e.store.LookupCredential(ctx, token.Sum(plain)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LookupCredential after delete = %v", err)
	}
	if _, err := e.store.DeleteToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete = %v", err)
	}
}

func TestListTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	e.user(t, "other")
	a, _ := e.mustCreate(t, "u", "a")
	b, _ := e.mustCreate(t, "u", "b")
	c, _ := e.mustCreate(t, "u", "c")
	e.mustCreate(t, "other", "x")
	e.expire(t, b.ID)
	e.del(t, c.ID)
	list, err := e.store.ListTokens(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range list {
		got = append(got, tk.ID+"/"+tk.Status.String())
	}
	if want := []string{a.ID + "/active", b.ID + "/expired"}; !slices.Equal(got, want) {
		t.Errorf("ListTokens = %v, want %v", got, want)
	}
	if list, err := e.store.ListTokens(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) || list != nil {
		t.Errorf("ListTokens(missing user) = %v %v", list, err)
	}
	e.user(t, "empty")
	if list, err := e.store.ListTokens(ctx, "empty"); err != nil || len(list) != 0 {
		t.Errorf("ListTokens(no tokens) = %v %v", list, err)
	}
}

// TestAuditTrail: every change writes exactly one audit row with the right
// action, actor and target; Audit(user) returns the user's and its tokens'
// events, newest first.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "bystander")
	type ev struct{ actor, action, target string }
	var want []ev
	step := func(what string, w ev, fn func() error) {
		t.Helper()
		before := e.auditCount(t)
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := e.auditCount(t) - before; got != 1 {
			t.Fatalf("%s wrote %d audit rows, want 1", what, got)
		}
		want = append(want, w)
	}
	email := "a@example.com"
	name := "Alice"
	step("create user", ev{admin, storage.ActionUserCreate, "alice"}, func() error {
		_, created, err := e.store.UpsertUser(ctx, admin, "alice", storage.UserPatch{Email: &email})
		if !created {
			return errors.New("not created")
		}
		return err
	})
	step("update user", ev{"token:x", storage.ActionUserUpdate, "alice"}, func() error {
		u, created, err := e.store.UpsertUser(ctx, "token:x", "alice", storage.UserPatch{DisplayName: &name})
		if created || u.Email == nil || *u.Email != email || u.DisplayName == nil || *u.DisplayName != name {
			return fmt.Errorf("update: %+v created=%v", u, created)
		}
		return err
	})
	var tk storage.Token
	step("create token", ev{admin, storage.ActionTokenCreate, ""}, func() (err error) {
		tk, _, err = e.create(t, "alice", "t", 10)
		return err
	})
	want[len(want)-1].target = tk.ID
	step("revoke", ev{admin, storage.ActionTokenRevoke, tk.ID}, func() error {
		_, _, err := e.store.RevokeToken(ctx, admin, tk.ID, "r")
		return err
	})
	step("reapprove", ev{admin, storage.ActionTokenReapprove, tk.ID}, func() error {
		_, _, err := e.store.ReapproveToken(ctx, admin, tk.ID)
		return err
	})
	step("logout", ev{storage.ActorToken(tk.ID), storage.ActionTokenLogout, tk.ID}, func() error {
		got, _, err := e.store.Logout(ctx, tk.ID)
		if err == nil && (got.RevokedReason == nil || *got.RevokedReason != "logout") {
			return fmt.Errorf("logout reason %v", got.RevokedReason)
		}
		return err
	})
	step("deactivate", ev{admin, storage.ActionUserDeactivate, "alice"}, func() error {
		_, _, err := e.store.SetUserActive(ctx, admin, "alice", false)
		return err
	})
	step("reactivate", ev{admin, storage.ActionUserReactivate, "alice"}, func() error {
		_, _, err := e.store.SetUserActive(ctx, admin, "alice", true)
		return err
	})
	step("delete", ev{admin, storage.ActionTokenDelete, tk.ID}, func() error {
		_, err := e.store.DeleteToken(ctx, admin, tk.ID)
		return err
	})
	// Noise on another user.
	e.mustCreate(t, "bystander", "b")

	events, err := e.store.Audit(ctx, "alice", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(want) {
		t.Fatalf("Audit(alice) has %d events, want %d: %+v", len(events), len(want), events)
	}
	for i, got := range events {
		w := want[len(want)-1-i] // newest first
		if got.Actor != w.actor || got.Action != w.action || got.Target != w.target {
			t.Errorf("event %d = %s %s %s, want %s %s %s", i, got.Actor, got.Action, got.Target, w.actor, w.action, w.target)
		}
		if got.Detail == nil || got.At.IsZero() || got.At.Location() != time.UTC {
			t.Errorf("event %d: detail %v at %v", i, got.Detail, got.At)
		}
		if i > 0 && got.At.After(events[i-1].At) {
			t.Errorf("event %d is newer than event %d", i, i-1)
		}
	}
	if d := events[len(events)-3].Detail; d["name"] != "t" { // token.create
		t.Errorf("token.create detail %v", d)
	}
	if d := events[len(events)-4].Detail; d["reason"] != "r" { // token.revoke
		t.Errorf("token.revoke detail %v", d)
	}
	limited := e.audit(t, "alice", 2)
	if len(limited) != 2 || limited[0].Action != storage.ActionTokenDelete {
		t.Errorf("Audit(alice, 2) = %+v", limited)
	}
	all := e.audit(t, "", 100)
	if len(all) != len(want)+2 || all[0].Action != storage.ActionTokenCreate || all[0].Target == tk.ID {
		t.Errorf("Audit(all) has %d events (want %d), newest %+v", len(all), len(want)+2, all[0])
	}
	if none, err := e.store.Audit(ctx, "nobody", 10); err != nil || len(none) != 0 {
		t.Errorf("Audit(nobody) = %v %v", none, err)
	}
}

// listener receives notifications on storage.Channel on a connection of its own.
type listener struct {
	conn *pgx.Conn
}

func listen(t *testing.T, dsn string) *listener {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), "LISTEN "+pgx.Identifier{storage.Channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return &listener{conn}
}

// next returns the next invalidation; the timeout only guards against hangs.
func (l *listener) next(t *testing.T) storage.Invalidation {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if n.Channel != storage.Channel {
		t.Fatalf("notification on %q", n.Channel)
	}
	inv, err := storage.DecodeInvalidation([]byte(n.Payload))
	if err != nil {
		t.Fatalf("payload %q: %v", n.Payload, err)
	}
	return inv
}

func sameHashes(a, b [][]byte) bool {
	sort := func(x [][]byte) [][]byte {
		x = slices.Clone(x)
		slices.SortFunc(x, bytes.Compare)
		return x
	}
	return slices.EqualFunc(sort(a), sort(b), bytes.Equal)
}

func TestNotifications(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	tk, plain := e.mustCreate(t, "u", "t")
	tk2, plain2 := e.mustCreate(t, "u", "t2")
	marker, markerPlain := e.mustCreate(t, "u", "marker")
	l := listen(t, e.dsn) // after the creations, which notify too
	h, h2 := hashOf(plain), hashOf(plain2)

	for _, tc := range []struct {
		name   string
		change func() (storage.Invalidation, error)
		want   [][]byte
	}{
		{"revoke", func() (storage.Invalidation, error) {
			_, inv, err := e.store.RevokeToken(ctx, admin, tk.ID, "")
			return inv, err
		}, [][]byte{h}},
		{"reapprove", func() (storage.Invalidation, error) {
			_, inv, err := e.store.ReapproveToken(ctx, admin, tk.ID)
			return inv, err
		}, [][]byte{h}},
		{"logout", func() (storage.Invalidation, error) {
			_, inv, err := e.store.Logout(ctx, tk.ID)
			return inv, err
		}, [][]byte{h}},
		{"deactivate", func() (storage.Invalidation, error) {
			_, inv, err := e.store.SetUserActive(ctx, admin, "u", false)
			return inv, err
		}, [][]byte{h, h2, hashOf(markerPlain)}},
		{"reactivate", func() (storage.Invalidation, error) {
			_, inv, err := e.store.SetUserActive(ctx, admin, "u", true)
			return inv, err
		}, [][]byte{h, h2, hashOf(markerPlain)}},
		{"delete", func() (storage.Invalidation, error) {
			return e.store.DeleteToken(ctx, admin, tk2.ID)
		}, [][]byte{h2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := tc.change()
			if err != nil {
				t.Fatal(err)
			}
			if !sameHashes(inv.Hashes, tc.want) || inv.All {
				t.Errorf("returned invalidation has %d hashes, want %d", len(inv.Hashes), len(tc.want))
			}
			got := l.next(t)
			if !sameHashes(got.Hashes, tc.want) || got.All {
				t.Errorf("notified invalidation has %d hashes (all=%v), want %d", len(got.Hashes), got.All, len(tc.want))
			}
		})
	}

	// Changes that do nothing or fail send nothing: the next notification
	// is the marker's.
	t.Run("no-ops and failures are silent", func(t *testing.T) {
		e.revoke(t, tk.ID, "")                                                      // already revoked
		if _, _, err := e.store.ReapproveToken(ctx, admin, marker.ID); err != nil { // active: no-op
			t.Fatal(err)
		}
		e.setActive(t, "u", true)                                                                    // already active
		if _, err := e.store.DeleteToken(ctx, admin, tk2.ID); !errors.Is(err, storage.ErrNotFound) { // already deleted
			t.Fatalf("delete again = %v", err)
		}
		e.expire(t, tk.ID)
		if _, _, err := e.store.ReapproveToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrTokenExpired) {
			t.Fatalf("reapprove expired = %v", err)
		}
		if _, _, err := e.create(t, "u", "too-many", 1); !errors.Is(err, storage.ErrTokenLimit) {
			t.Fatalf("create over the limit = %v", err)
		}
		e.revoke(t, marker.ID, "")
		if got := l.next(t); !sameHashes(got.Hashes, [][]byte{hashOf(markerPlain)}) {
			t.Errorf("first notification after no-ops has %d hashes, not the marker's", len(got.Hashes))
		}
	})
}

func TestUpsertUserConcurrentCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 20
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, created[i], errs[i] = e.store.UpsertUser(t.Context(), admin, "new-user", storage.UserPatch{})
		})
	}
	close(start)
	wg.Wait()
	var c int
	for i := range n {
		if errs[i] != nil {
			t.Errorf("upsert %d: %v", i, errs[i])
		}
		if created[i] {
			c++
		}
	}
	if c != 1 {
		t.Errorf("%d concurrent upserts of a new id: %d created, want 1", n, c)
	}
	events := e.audit(t, "new-user", 100)
	var creates int
	for _, ev := range events {
		if ev.Action == storage.ActionUserCreate {
			creates++
		}
	}
	// The other upserts change nothing (empty patch), so they write nothing.
	if creates != 1 || len(events) != 1 {
		t.Errorf("audit: %d user.create of %d events, want exactly one event, the create", creates, len(events))
	}
}

func TestUpsertUserFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	email, email2, name := "a@example.com", "b@example.com", "A"
	u, created, err := e.store.UpsertUser(ctx, admin, "a", storage.UserPatch{Email: &email})
	if err != nil || !created || u.ID != "a" || *u.Email != email || u.DisplayName != nil || u.Status != storage.UserActive || u.TokenCount != 0 {
		t.Fatalf("create: %+v %v %v", u, created, err)
	}
	u, created, err = e.store.UpsertUser(ctx, admin, "a", storage.UserPatch{DisplayName: &name})
	if err != nil || created || *u.Email != email || *u.DisplayName != name {
		t.Fatalf("patch name: %+v %v %v", u, created, err)
	}
	u, _, err = e.store.UpsertUser(ctx, admin, "a", storage.UserPatch{Email: &email2})
	if err != nil || *u.Email != email2 || *u.DisplayName != name {
		t.Fatalf("patch email: %+v", u)
	}
	got, err := e.store.GetUser(ctx, "a")
	if err != nil || *got.Email != email2 || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("GetUser = %+v %v", got, err)
	}
	if _, err := e.store.GetUser(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetUser(missing) = %v", err)
	}
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for _, id := range []string{"u07", "u01", "u03", "u02", "u05", "u04", "u06"} {
		e.user(t, id)
	}
	for _, id := range []string{"u03", "u05"} {
		if _, _, err := e.store.SetUserActive(ctx, admin, id, false); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(us []storage.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.ID)
		}
		return out
	}
	for _, tc := range []struct {
		status, after string
		limit         int
		want          []string
		more          bool
	}{
		{"", "", 3, []string{"u01", "u02", "u03"}, true},
		{"", "u03", 3, []string{"u04", "u05", "u06"}, true},
		{"", "u06", 3, []string{"u07"}, false},
		{"", "", 7, []string{"u01", "u02", "u03", "u04", "u05", "u06", "u07"}, false},
		{"", "", 6, []string{"u01", "u02", "u03", "u04", "u05", "u06"}, true},
		{"", "u07", 3, nil, false},
		{"", "u025", 2, []string{"u03", "u04"}, true}, // cursor need not exist
		{"active", "", 10, []string{"u01", "u02", "u04", "u06", "u07"}, false},
		{"active", "", 2, []string{"u01", "u02"}, true},
		{"active", "u02", 2, []string{"u04", "u06"}, true},
		{"active", "u06", 2, []string{"u07"}, false},
		{"deactivated", "", 10, []string{"u03", "u05"}, false},
		{"deactivated", "", 1, []string{"u03"}, true},
		{"deactivated", "u03", 1, []string{"u05"}, false},
	} {
		got, more, err := e.store.ListUsers(ctx, tc.status, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), tc.want) || more != tc.more {
			t.Errorf("ListUsers(%q, %q, %d) = %v more=%v; want %v more=%v", tc.status, tc.after, tc.limit, ids(got), more, tc.want, tc.more)
		}
		for _, u := range got {
			if want := map[bool]storage.UserStatus{true: storage.UserDeactivated, false: storage.UserActive}[u.ID == "u03" || u.ID == "u05"]; u.Status != want {
				t.Errorf("%s status %q, want %q", u.ID, u.Status, want)
			}
		}
	}
}

func TestRecordLastUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	a, _ := e.mustCreate(t, "u", "a")
	b, _ := e.mustCreate(t, "u", "b")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	lastUsed := func(id string) *time.Time {
		t.Helper()
		return e.get(t, id).LastUsedAt
	}
	if err := e.store.RecordLastUse(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if lastUsed(a.ID) != nil {
		t.Fatal("new token has last_used_at")
	}
	for _, tc := range []struct {
		name     string
		used     map[string]time.Time
		wantA    time.Time
		wantB    time.Time
		wantNilB bool
	}{
		{"first use", map[string]time.Time{a.ID: t0}, t0, time.Time{}, true},
		{"moves forward", map[string]time.Time{a.ID: t0.Add(time.Minute), b.ID: t0}, t0.Add(time.Minute), t0, false},
		{"never backwards", map[string]time.Time{a.ID: t0, b.ID: t0.Add(-time.Hour)}, t0.Add(time.Minute), t0, false},
		{"equal is a no-op", map[string]time.Time{a.ID: t0.Add(time.Minute)}, t0.Add(time.Minute), t0, false},
		{"unknown ids ignored", map[string]time.Time{"00000000-0000-0000-0000-000000000000": t0.Add(time.Hour), b.ID: t0.Add(2 * time.Minute)}, t0.Add(time.Minute), t0.Add(2 * time.Minute), false},
	} {
		if err := e.store.RecordLastUse(ctx, tc.used, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := lastUsed(a.ID); got == nil || !got.Equal(tc.wantA) {
			t.Errorf("%s: a last used %v, want %v", tc.name, got, tc.wantA)
		}
		got := lastUsed(b.ID)
		if tc.wantNilB != (got == nil) || (got != nil && !got.Equal(tc.wantB)) {
			t.Errorf("%s: b last used %v, want %v", tc.name, got, tc.wantB)
		}
	}
	// A deleted token's queued use does not fail the batch.
	e.del(t, b.ID)
	if err := e.store.RecordLastUse(ctx, map[string]time.Time{b.ID: t0.Add(time.Hour), a.ID: t0.Add(time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(a.ID); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("a last used %v", got)
	}
}
