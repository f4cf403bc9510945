package storage_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// createScoped makes a token with the given scopes, by the admin.
func (e *env) createScoped(t *testing.T, userID, name string, scopes ...string) storage.Token {
	t.Helper()
	tk, _, err := e.store.CreateToken(t.Context(), admin, storage.NewToken{
		UserID: userID, Name: name, Scopes: scopes, ExpiresAt: expiry(), MaxPerUser: 100,
	})
	if err != nil {
		t.Fatalf("CreateToken(%q): %v", name, err)
	}
	return tk
}

// liveTokens counts the user's tokens that would pass the gateway now.
func (e *env) liveTokens(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.tokens
		WHERE user_id = $1 AND expires_at > now() AND revoked_at IS NULL`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRevokedBy: every revocation records its actor in revoked_by, the token
// JSON and the audit detail; re-approval clears it and names it in its
// audit detail.
func TestRevokedBy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	a := e.createScoped(t, "u", "a", token.ScopeAPI)
	b := e.createScoped(t, "u", "b", token.ScopeAPI)
	c := e.createScoped(t, "u", "c", token.ScopeAPI)
	if a.RevokedBy != nil {
		t.Fatalf("new token revoked_by = %q", *a.RevokedBy)
	}
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorUser("u"), a.ID, "lost"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Logout(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.RevokeAllTokens(ctx, storage.ActorCLI, "u", "everywhere"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, want string }{
		{a.ID, "user:u"}, {b.ID, "token:" + b.ID}, {c.ID, "cli"},
	} {
		if got := e.get(t, tc.id); got.RevokedBy == nil || *got.RevokedBy != tc.want {
			t.Errorf("%s revoked_by = %v, want %q", tc.id, got.RevokedBy, tc.want)
		}
	}
	// A second revocation keeps the first actor.
	if got, _, err := e.store.RevokeToken(ctx, admin, a.ID, "again"); err != nil || *got.RevokedBy != "user:u" {
		t.Errorf("second revoke: %v %v", got.RevokedBy, err)
	}
	for _, ev := range e.audit(t, "u", 3) {
		if ev.Action != storage.ActionTokenRevoke && ev.Action != storage.ActionTokenLogout {
			continue
		}
		if ev.Detail["revoked_by"] != ev.Actor {
			t.Errorf("%s event detail %v, want revoked_by %q", ev.Action, ev.Detail, ev.Actor)
		}
	}
	got, _, err := e.store.ReapproveToken(ctx, admin, c.ID)
	if err != nil || got.RevokedBy != nil || got.RevokedAt != nil {
		t.Fatalf("re-approve: %+v %v", got, err)
	}
	if ev := e.audit(t, "u", 1)[0]; ev.Action != storage.ActionTokenReapprove || ev.Detail["revoked_by"] != "cli" ||
		ev.Detail["revoked_reason"] != "everywhere" {
		t.Errorf("re-approve event %+v, want the lifted revocation's actor", ev)
	}
	// The database refuses a revocation without its actor.
	if _, err := e.pool.Exec(ctx, `UPDATE armgate.tokens SET revoked_at = now() WHERE id = $1`, c.ID); err == nil {
		t.Error("a revocation without revoked_by was stored")
	}
}

// TestReapproveAuthority: a user lifts only their own revocations and
// logouts; nobody lifts a leak revocation; an admin lifts the others.
func TestReapproveAuthority(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "alice")
	e.user(t, "bob")
	adminTok := e.createScoped(t, "bob", "ops", token.ScopeAPI, token.ScopeAdmin)
	alice := storage.ActorUser("alice")
	for _, tc := range []struct {
		name      string
		revokedBy func(id string) string
		actor     string
		want      error
	}{
		{"own revocation", func(string) string { return alice }, alice, nil},
		{"own logout", storage.ActorToken, alice, nil},
		{"admin key's", func(string) string { return admin }, alice, storage.ErrRevokedByOther},
		{"admin token's", func(string) string { return storage.ActorToken(adminTok.ID) }, alice, storage.ErrRevokedByOther},
		{"command line's", func(string) string { return storage.ActorCLI }, alice, storage.ErrRevokedByOther},
		{"unknown actor (before the migration)", func(string) string { return storage.ActorUnknown }, alice, storage.ErrRevokedByOther},
		{"system's", func(string) string { return storage.ActorSystem }, alice, storage.ErrRevokedByOther},
		{"leak, by the user", func(string) string { return storage.ActorLeak("github") }, alice, storage.ErrTokenLeaked},
		{"leak, by the admin", func(string) string { return storage.ActorLeak("admin") }, admin, storage.ErrTokenLeaked},
		{"leak, by the command line", func(string) string { return storage.ActorLeak("gitlab") }, storage.ActorCLI, storage.ErrTokenLeaked},
		{"user's, by the admin", func(string) string { return alice }, admin, nil},
		{"admin's, by an admin token", func(string) string { return admin }, storage.ActorToken(adminTok.ID), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := e.createScoped(t, "alice", tc.name, token.ScopeAPI)
			if _, _, err := e.store.RevokeToken(ctx, tc.revokedBy(tk.ID), tk.ID, "r"); err != nil {
				t.Fatal(err)
			}
			n := e.auditCount(t)
			got, _, err := e.store.ReapproveToken(ctx, tc.actor, tk.ID)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReapproveToken by %s = %v, want %v", tc.actor, err, tc.want)
			}
			if tc.want != nil {
				if s := e.status(t, tk.ID); s != token.StatusRevoked || e.auditCount(t) != n {
					t.Errorf("refused re-approval: status %s, %d audit rows written", s, e.auditCount(t)-n)
				}
				return
			}
			if got.Status != token.Active {
				t.Errorf("status %s after re-approval", got.Status)
			}
		})
	}
	t.Run("another user's token is not found", func(t *testing.T) {
		bobs := e.createScoped(t, "bob", "bobs", token.ScopeAPI)
		e.revoke(t, bobs.ID, "")
		for name, call := range map[string]func() error{
			"reapprove": func() error { _, _, err := e.store.ReapproveToken(ctx, alice, bobs.ID); return err },
			"revoke":    func() error { _, _, err := e.store.RevokeToken(ctx, alice, bobs.ID, ""); return err },
			"delete":    func() error { _, err := e.store.DeleteToken(ctx, alice, bobs.ID); return err },
			"rotate": func() error {
				_, _, _, err := e.store.RotateToken(ctx, alice, bobs.ID, 0, expiry())
				return err
			},
		} {
			if err := call(); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s of bob's token by alice = %v, want ErrNotFound", name, err)
			}
		}
		if got := e.get(t, bobs.ID); got.RevokedBy == nil || *got.RevokedBy != admin {
			t.Errorf("bob's token changed: %+v", got)
		}
	})
	t.Run("leaked and expired", func(t *testing.T) {
		tk := e.createScoped(t, "alice", "leaked expired", token.ScopeAPI)
		if _, _, err := e.store.RevokeToken(ctx, storage.ActorLeak("github"), tk.ID, "leaked"); err != nil {
			t.Fatal(err)
		}
		e.expire(t, tk.ID)
		if _, _, err := e.store.ReapproveToken(ctx, admin, tk.ID); !errors.Is(err, storage.ErrTokenLeaked) {
			t.Errorf("re-approval of an expired leaked token = %v, want ErrTokenLeaked", err)
		}
	})
}

// TestUserCreateAndRotateScopes: a user creates and rotates only tokens
// whose scopes are all self-service scopes; the audit records what each
// change made.
func TestUserCreateAndRotateScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "alice")
	e.user(t, "bob")
	alice := storage.ActorUser("alice")
	_, _, err := e.store.CreateToken(ctx, alice, storage.NewToken{UserID: "alice", Name: "root",
		Scopes: []string{token.ScopeAPI, token.ScopeAdmin}, ExpiresAt: expiry(), MaxPerUser: 10})
	if !errors.Is(err, storage.ErrNotSelfService) {
		t.Errorf("user create with admin scope = %v, want ErrNotSelfService", err)
	}
	if _, _, err := e.store.CreateToken(ctx, alice, storage.NewToken{UserID: "bob", Name: "x",
		Scopes: storage.SelfServiceScopes(), ExpiresAt: expiry(), MaxPerUser: 10}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("user create for another user = %v, want ErrNotFound", err)
	}
	ops := e.createScoped(t, "alice", "ops", token.ScopeAdmin)
	mixed := e.createScoped(t, "alice", "mixed", token.ScopeAPI, token.ScopeAdmin)
	for _, tk := range []storage.Token{ops, mixed} {
		if _, _, _, err := e.store.RotateToken(ctx, alice, tk.ID, 0, expiry()); !errors.Is(err, storage.ErrNotSelfService) {
			t.Errorf("user rotation of a %v token = %v, want ErrNotSelfService", tk.Scopes, err)
		}
		if got := e.get(t, tk.ID); got.RotatedTo != nil {
			t.Errorf("refused rotation rotated %s", tk.Name)
		}
	}
	// The admin rotates them; the audit says what the rotation made.
	exp := expiry().Add(time.Hour)
	nt, _, _, err := e.store.RotateToken(ctx, admin, ops.ID, time.Hour, exp)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.audit(t, "alice", 1)[0]
	if ev.Action != storage.ActionTokenRotate || ev.Detail["new_token_id"] != nt.ID ||
		fmt.Sprint(ev.Detail["scopes"]) != "[admin]" || ev.Detail["expires_at"] != exp.UTC().Format(time.RFC3339) ||
		ev.Detail["old_expires_at"] == nil {
		t.Errorf("rotate event %+v", ev)
	}
	api := e.createScoped(t, "alice", "ci", token.ScopeAPI)
	if _, _, _, err := e.store.RotateToken(ctx, alice, api.ID, 0, exp); err != nil {
		t.Errorf("user rotation of an api token: %v", err)
	}
	if ev := e.audit(t, "alice", 1)[0]; ev.Actor != alice || fmt.Sprint(ev.Detail["scopes"]) != "[api]" {
		t.Errorf("user rotate event %+v", ev)
	}
}

// TestRotationPending: a token whose predecessor is within its grace does
// not rotate, so two rounds of rotation with the longest grace leave at most
// twice the limit live, and the predecessor never outlives its successor.
func TestRotationPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	const max = 10
	var ids []string
	for i := range max {
		tk, _ := e.mustCreate(t, "u", fmt.Sprintf("t%d", i))
		ids = append(ids, tk.ID)
	}
	const grace = 168 * time.Hour
	var next []string
	for _, id := range ids {
		nt, _, _, err := e.store.RotateToken(ctx, admin, id, grace, expiry())
		if err != nil {
			t.Fatalf("first round: %v", err)
		}
		next = append(next, nt.ID)
	}
	n := e.auditCount(t)
	for _, id := range next {
		for _, actor := range []string{admin, storage.ActorUser("u")} {
			if _, _, _, err := e.store.RotateToken(ctx, actor, id, grace, expiry()); !errors.Is(err, storage.ErrRotationPending) {
				t.Fatalf("second round by %s = %v, want ErrRotationPending", actor, err)
			}
		}
	}
	if live := e.liveTokens(t, "u"); live != 2*max {
		t.Errorf("%d live tokens after two rounds, want %d (twice the limit)", live, 2*max)
	}
	if e.auditCount(t) != n {
		t.Error("refused rotations wrote audit rows")
	}
	// The predecessor's grace (168h) was capped at the successor's expiry.
	if old, nt := e.get(t, ids[0]), e.get(t, next[0]); old.ExpiresAt.After(nt.ExpiresAt) {
		t.Errorf("predecessor expires %v, after its successor %v", old.ExpiresAt, nt.ExpiresAt)
	}
	// Once the grace is over, the successor rotates.
	e.expire(t, ids[0])
	if _, _, _, err := e.store.RotateToken(ctx, admin, next[0], 0, expiry()); err != nil {
		t.Errorf("rotation after the grace: %v", err)
	}
	// A revoked predecessor within its grace still blocks: it could be
	// re-approved.
	e.revoke(t, ids[1], "")
	if _, _, _, err := e.store.RotateToken(ctx, admin, next[1], 0, expiry()); !errors.Is(err, storage.ErrRotationPending) {
		t.Errorf("rotation with a revoked predecessor in grace = %v, want ErrRotationPending", err)
	}
}

// TestDeletedSuccessorCounts: a rotated-away token whose successor is
// deleted counts toward the limit again while it lives, so rotating and
// deleting cannot pile up live tokens beyond the limit.
func TestDeletedSuccessorCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	const max = 2
	a, _, err := e.create(t, "u", "a", max)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.create(t, "u", "b", max); err != nil {
		t.Fatal(err)
	}
	nt, _, _, err := e.store.RotateToken(ctx, admin, a.ID, time.Hour, expiry())
	if err != nil {
		t.Fatal(err)
	}
	e.del(t, nt.ID)
	if u, _ := e.store.GetUser(ctx, "u"); u.TokenCount != max {
		t.Errorf("token_count %d after deleting the successor, want %d (its predecessor lives)", u.TokenCount, max)
	}
	if _, _, err := e.create(t, "u", "c", max); !errors.Is(err, storage.ErrTokenLimit) {
		t.Errorf("create beside a live predecessor = %v, want ErrTokenLimit", err)
	}
	e.expire(t, a.ID)
	if _, _, err := e.create(t, "u", "c", max); err != nil {
		t.Errorf("create after the predecessor expired: %v", err)
	}
}

// TestRevokeAllSerialisedWithRotation: revoke-all and rotation of one user
// both lock the user row first. A test transaction holds that lock while
// both calls queue behind it, in either order; when it is released and
// revoke-all has returned, no token of the user is live, a successor minted
// by the rotation included.
func TestRevokeAllSerialisedWithRotation(t *testing.T) {
	t.Parallel()
	for _, rotateFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("rotate first %v", rotateFirst), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := t.Context()
			e.user(t, "u")
			tk, _ := e.mustCreate(t, "u", "ci")
			hold, err := e.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Rollback(ctx) //nolint:errcheck // released below; a second rollback is a no-op
			if _, err := hold.Exec(ctx, `SELECT 1 FROM armgate.users WHERE id = 'u' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			type result struct {
				what  string
				count int
				err   error
			}
			results := make(chan result, 2)
			rotate := func() {
				_, _, _, err := e.store.RotateToken(ctx, admin, tk.ID, 0, expiry())
				results <- result{what: "rotate", err: err}
			}
			revokeAll := func() {
				n, _, err := e.store.RevokeAllTokens(ctx, admin, "u", "signed out")
				results <- result{what: "revoke-all", count: n, err: err}
			}
			first, second := rotate, revokeAll
			if !rotateFirst {
				first, second = revokeAll, rotate
			}
			go first()
			e.waitLockWaiters(t, 1)
			go second()
			e.waitLockWaiters(t, 2)
			if err := hold.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			got := map[string]result{}
			for range 2 {
				r := <-results
				got[r.what] = r
			}
			if rotateFirst {
				if got["rotate"].err != nil || got["revoke-all"].err != nil || got["revoke-all"].count != 2 {
					t.Errorf("rotate %v; revoke-all %d %v; want the rotation, then both tokens revoked",
						got["rotate"].err, got["revoke-all"].count, got["revoke-all"].err)
				}
			} else if !errors.Is(got["rotate"].err, storage.ErrTokenNotActive) || got["revoke-all"].count != 1 {
				t.Errorf("revoke-all %d %v; rotate %v; want 1 revoked, then ErrTokenNotActive",
					got["revoke-all"].count, got["revoke-all"].err, got["rotate"].err)
			}
			if live := e.liveTokens(t, "u"); live != 0 {
				t.Errorf("%d live tokens after revoke-all", live)
			}
		})
	}
}

// waitLockWaiters waits until n sessions of the test's database wait for a
// lock.
func (e *env) waitLockWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock, want %d", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
