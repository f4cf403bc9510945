package storage_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func (e *env) rotate(t *testing.T, id string, grace time.Duration) (storage.Token, string, storage.Invalidation) {
	t.Helper()
	tk, plain, inv, err := e.store.RotateToken(t.Context(), admin, id, grace, expiry().Add(time.Hour))
	if err != nil {
		t.Fatalf("RotateToken(%s): %v", id, err)
	}
	return tk, plain, inv
}

// live counts what the per-user limit counts, straight from the table.
func (e *env) live(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.tokens
		WHERE user_id = $1 AND expires_at > now() AND (rotated_at IS NULL OR rotated_to IS NULL)`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRotateToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	const max = 10
	var old storage.Token
	var oldPlain string
	for i := range max {
		tk, plain := e.mustCreate(t, "u", fmt.Sprintf("t%d", i))
		if i == 0 {
			old, oldPlain = tk, plain
		}
	}
	l := listen(t, e.dsn) // after the creates: the next notification is the rotation's
	before := e.auditCount(t)
	const grace = time.Hour
	newExp := expiry().Add(time.Hour)
	start := time.Now()
	nt, plain, inv, err := e.store.RotateToken(ctx, admin, old.ID, grace, newExp)
	end := time.Now()
	if err != nil {
		t.Fatalf("rotation at %d of %d: %v", max, max, err)
	}

	t.Run("new token", func(t *testing.T) {
		if err := token.Check(plain); err != nil || nt.Hint != token.Hint(plain) {
			t.Errorf("plaintext %v, hint %q", err, nt.Hint)
		}
		if nt.ID == old.ID || nt.UserID != "u" || nt.Name != old.Name || !slices.Equal(nt.Scopes, old.Scopes) ||
			!nt.ExpiresAt.Equal(newExp) || nt.Status != token.Active || nt.RotatedTo != nil {
			t.Errorf("new token %+v, old %+v", nt, old)
		}
		if c := e.lookup(t, plain); c.TokenID != nt.ID {
			t.Errorf("credential of the new token %+v", c)
		}
	})
	t.Run("old token", func(t *testing.T) {
		got := e.get(t, old.ID)
		if got.RotatedTo == nil || *got.RotatedTo != nt.ID || got.Status != token.Active || got.RevokedAt != nil {
			t.Errorf("old token after rotation %+v", got)
		}
		// min(own expiry, now + grace): here now + grace, the earlier.
		lo, hi := start.Add(grace).Add(-time.Millisecond), end.Add(grace).Add(time.Millisecond)
		if got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
			t.Errorf("old token expires %v, want between %v and %v", got.ExpiresAt, lo, hi)
		}
		if c := e.lookup(t, oldPlain); c.Revoked || !c.ExpiresAt.Equal(got.ExpiresAt) {
			t.Errorf("credential of the old token %+v", c)
		}
		if nt.RotatedTo != nil {
			t.Errorf("new token rotated to %s", *nt.RotatedTo)
		}
	})
	t.Run("invalidation", func(t *testing.T) {
		want := [][]byte{hashOf(oldPlain)}
		if !sameHashes(inv.Hashes, want) || inv.All {
			t.Errorf("returned invalidation %+v", inv)
		}
		if got := l.next(t); !sameHashes(got.Hashes, want) || got.All {
			t.Errorf("notified invalidation has %d hashes (all=%v), want the old token's", len(got.Hashes), got.All)
		}
	})
	t.Run("audit", func(t *testing.T) {
		if got := e.auditCount(t) - before; got != 1 {
			t.Fatalf("rotation wrote %d audit rows, want 1", got)
		}
		ev := e.audit(t, "u", 1)[0]
		if ev.Action != storage.ActionTokenRotate || ev.Actor != admin || ev.Target != old.ID || ev.Detail["new_token_id"] != nt.ID {
			t.Errorf("audit event %+v", ev)
		}
	})
	t.Run("limit and name", func(t *testing.T) {
		if n := e.live(t, "u"); n != max {
			t.Errorf("%d tokens count after the rotation, want %d", n, max)
		}
		if u, err := e.store.GetUser(ctx, "u"); err != nil || u.TokenCount != max {
			t.Errorf("token_count %d %v, want %d", u.TokenCount, err, max)
		}
		if _, _, err := e.create(t, "u", "eleventh", max); !errors.Is(err, storage.ErrTokenLimit) {
			t.Errorf("create after rotating at the limit = %v, want ErrTokenLimit", err)
		}
		if _, _, err := e.create(t, "u", old.Name, max+1); !errors.Is(err, storage.ErrNameTaken) {
			t.Errorf("create with the rotated name = %v, want ErrNameTaken (the new token holds it)", err)
		}
	})
	t.Run("a rotated token does not rotate again", func(t *testing.T) {
		n := e.auditCount(t)
		_, _, _, err := e.store.RotateToken(ctx, admin, old.ID, grace, newExp)
		if !errors.Is(err, storage.ErrTokenNotActive) {
			t.Errorf("second rotation = %v, want ErrTokenNotActive", err)
		}
		if ar, ok := errors.AsType[*storage.AlreadyRotatedError](err); !ok || ar.To == "" || err.Error() != "this token was already rotated to "+ar.To {
			t.Errorf("second rotation = %v, want \"this token was already rotated to <id>\"", err)
		}
		if e.auditCount(t) != n {
			t.Error("a refused rotation wrote an audit row")
		}
	})
	t.Run("the new token rotates in turn", func(t *testing.T) {
		// Not while its predecessor is within its grace.
		if _, _, _, err := e.store.RotateToken(ctx, admin, nt.ID, 0, newExp); !errors.Is(err, storage.ErrRotationPending) {
			t.Errorf("rotation during the predecessor's grace = %v, want ErrRotationPending", err)
		}
		e.expire(t, old.ID)
		third, _, _ := e.rotate(t, nt.ID, 0)
		if third.Name != old.Name {
			t.Errorf("third token's name %q", third.Name)
		}
		// Grace 0: the second token expires at once.
		if got := e.get(t, nt.ID); got.Status != token.Expired || got.RotatedTo == nil || *got.RotatedTo != third.ID {
			t.Errorf("token rotated with no grace: %+v", got)
		}
		// Deleting a successor clears rotated_to but keeps the old token
		// out of the limit and the names.
		e.del(t, third.ID)
		got := e.get(t, nt.ID)
		if got.RotatedTo != nil {
			t.Errorf("rotated_to %v after its token was deleted", *got.RotatedTo)
		}
		if _, _, _, err := e.store.RotateToken(ctx, admin, nt.ID, time.Hour, newExp); !errors.Is(err, storage.ErrTokenNotActive) {
			t.Errorf("rotation of a token whose successor was deleted = %v", err)
		}
		if _, _, err := e.create(t, "u", old.Name, max); err != nil {
			t.Errorf("the name is free after its holder's deletion: %v", err)
		}
		if n := e.live(t, "u"); n != max {
			t.Errorf("%d tokens count, want %d", n, max)
		}
	})
}

func TestRotateTokenGraceLongerThanLife(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	old, _ := e.mustCreate(t, "u", "t")
	e.rotate(t, old.ID, 48*time.Hour) // longer than the 24h left
	if got := e.get(t, old.ID); !got.ExpiresAt.Equal(old.ExpiresAt) {
		t.Errorf("old token expires %v, want its own %v (the earlier)", got.ExpiresAt, old.ExpiresAt)
	}
}

func TestRotateTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	e.user(t, "gone")
	revoked, _ := e.mustCreate(t, "u", "revoked")
	e.revoke(t, revoked.ID, "")
	expired, _ := e.mustCreate(t, "u", "expired")
	e.expire(t, expired.ID)
	deact, _ := e.mustCreate(t, "gone", "t")
	e.setActive(t, "gone", false)
	active, _ := e.mustCreate(t, "u", "active")
	before := e.auditCount(t)
	for _, tc := range []struct {
		name, id string
		exp      time.Time
		want     error
	}{
		{"revoked", revoked.ID, expiry(), storage.ErrTokenNotActive},
		{"expired", expired.ID, expiry(), storage.ErrTokenNotActive},
		{"deactivated user", deact.ID, expiry(), storage.ErrTokenNotActive},
		{"unknown", "00000000-0000-0000-0000-000000000000", expiry(), storage.ErrNotFound},
		{"new expiry passed", active.ID, time.Now().Add(-time.Second), storage.ErrExpiryPassed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := e.store.RotateToken(ctx, admin, tc.id, time.Hour, tc.exp); !errors.Is(err, tc.want) {
				t.Errorf("RotateToken = %v, want %v", err, tc.want)
			}
		})
	}
	if got := e.auditCount(t); got != before {
		t.Errorf("refused rotations wrote %d audit rows", got-before)
	}
	if got := e.get(t, active.ID); got.RotatedTo != nil || !got.ExpiresAt.Equal(active.ExpiresAt) {
		t.Errorf("a refused rotation changed the token: %+v", got)
	}
}

// TestRotateCreateConcurrent: rotations and creates racing on one user never
// take it over the limit.
func TestRotateCreateConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	const max, have, rotations, creates = 10, 8, 6, 6
	var ids []string
	for i := range have {
		tk, _ := e.mustCreate(t, "u", fmt.Sprintf("t%d", i))
		ids = append(ids, tk.ID)
	}
	rotErrs := make([]error, rotations)
	createErrs := make([]error, creates)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range rotations {
		wg.Go(func() {
			<-start
			_, _, _, rotErrs[i] = e.store.RotateToken(t.Context(), admin, ids[i], time.Hour, expiry())
		})
	}
	for i := range creates {
		wg.Go(func() {
			<-start
			_, _, createErrs[i] = e.create(t, "u", fmt.Sprintf("new%d", i), max)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range rotErrs {
		if err != nil {
			t.Errorf("rotation %d: %v", i, err)
		}
	}
	var ok int
	for _, err := range createErrs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrTokenLimit):
			t.Errorf("create: %v", err)
		}
	}
	if ok != max-have {
		t.Errorf("%d creates succeeded, want %d", ok, max-have)
	}
	if n := e.live(t, "u"); n != max {
		t.Errorf("%d tokens count toward the limit, want %d", n, max)
	}
}

func TestRevokeAllTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	e.user(t, "other")
	e.user(t, "empty")
	active, activePlain := e.mustCreate(t, "u", "active")
	revoked, _ := e.mustCreate(t, "u", "revoked")
	first := e.revoke(t, revoked.ID, "earlier")
	expired, expiredPlain := e.mustCreate(t, "u", "expired")
	e.expire(t, expired.ID)
	bystander, _ := e.mustCreate(t, "other", "x")
	l := listen(t, e.dsn)
	before := e.auditCount(t)

	n, inv, err := e.store.RevokeAllTokens(ctx, admin, "u", "signed out everywhere")
	if err != nil || n != 2 {
		t.Fatalf("RevokeAllTokens = %d, %v; want 2", n, err)
	}
	want := [][]byte{hashOf(activePlain), hashOf(expiredPlain)}
	if !sameHashes(inv.Hashes, want) || inv.All {
		t.Errorf("returned invalidation has %d hashes, want 2", len(inv.Hashes))
	}
	if got := l.next(t); !sameHashes(got.Hashes, want) || got.All {
		t.Errorf("notified invalidation has %d hashes (all=%v), want 2", len(got.Hashes), got.All)
	}
	for id, st := range map[string]token.Status{active.ID: token.Revoked, expired.ID: token.Expired} {
		got := e.get(t, id)
		if got.Status != st || got.RevokedAt == nil || got.RevokedReason == nil || *got.RevokedReason != "signed out everywhere" {
			t.Errorf("token %s after revoke-all: %+v", id, got)
		}
	}
	if got := e.get(t, revoked.ID); !got.RevokedAt.Equal(*first.RevokedAt) || *got.RevokedReason != "earlier" {
		t.Errorf("an earlier revocation was overwritten: %+v", got)
	}
	if got := e.get(t, bystander.ID); got.Status != token.Active {
		t.Errorf("another user's token: %+v", got)
	}
	if got := e.auditCount(t) - before; got != 2 {
		t.Errorf("%d audit rows, want 2", got)
	}
	var targets []string
	for _, ev := range e.audit(t, "u", 2) {
		if ev.Action != storage.ActionTokenRevoke || ev.Actor != admin || ev.Detail["reason"] != "signed out everywhere" {
			t.Errorf("audit event %+v", ev)
		}
		targets = append(targets, ev.Target)
	}
	if !sameStrings(targets, []string{active.ID, expired.ID}) {
		t.Errorf("audit targets %v", targets)
	}

	// Again: nothing left to revoke, nothing written or sent.
	before = e.auditCount(t)
	if n, inv, err := e.store.RevokeAllTokens(ctx, admin, "u", ""); err != nil || n != 0 || len(inv.Hashes) != 0 || inv.All {
		t.Errorf("second RevokeAllTokens = %d %+v %v", n, inv, err)
	}
	if n, _, err := e.store.RevokeAllTokens(ctx, admin, "empty", ""); err != nil || n != 0 {
		t.Errorf("RevokeAllTokens(no tokens) = %d %v", n, err)
	}
	if _, _, err := e.store.RevokeAllTokens(ctx, admin, "nobody", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeAllTokens(unknown) = %v, want ErrNotFound", err)
	}
	if got := e.auditCount(t); got != before {
		t.Errorf("no-op revoke-alls wrote %d audit rows", got-before)
	}
	marker := e.revoke(t, bystander.ID, "")
	if got := l.next(t); len(got.Hashes) != 1 {
		t.Errorf("the notification after no-ops is not the marker's (%s): %+v", marker.ID, got)
	}
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRevokeAllTokensMany: more hashes than one notification may carry
// become "drop everything".
func TestRevokeAllTokensMany(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	const n = 150
	e.exec(t, `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at)
		SELECT 'u', 't' || i, sha256(i::text::bytea), 'x', '{api}', now() + interval '1 day'
		FROM generate_series(1, $1::int) AS i`, n)
	l := listen(t, e.dsn)
	got, inv, err := e.store.RevokeAllTokens(t.Context(), admin, "u", "")
	if err != nil || got != n || len(inv.Hashes) != n {
		t.Fatalf("RevokeAllTokens = %d (%d hashes), %v; want %d", got, len(inv.Hashes), err, n)
	}
	if note := l.next(t); !note.All || len(note.Hashes) != 0 {
		t.Errorf("notification for %d tokens: all=%v, %d hashes; want all", n, note.All, len(note.Hashes))
	}
	if c := e.auditCount(t); c != n+1 { // + user.create
		t.Errorf("%d audit rows, want %d", c, n+1)
	}
}

// TestLogoutAnyState: logout succeeds for a token in any state that exists.
func TestLogoutAnyState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	e.user(t, "gone")

	t.Run("revoked stays revoked", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "u", "revoked")
		first := e.revoke(t, tk.ID, "lost")
		before := e.auditCount(t)
		got, inv, err := e.store.Logout(ctx, tk.ID)
		if err != nil || got.Status != token.Revoked || !got.RevokedAt.Equal(*first.RevokedAt) || *got.RevokedReason != "lost" {
			t.Errorf("logout = %+v %v", got, err)
		}
		if len(inv.Hashes) != 0 || e.auditCount(t) != before {
			t.Errorf("a no-op logout invalidated %+v or wrote audit", inv)
		}
	})
	t.Run("expired records revoked_at", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "u", "expired")
		e.expire(t, tk.ID)
		got, _, err := e.store.Logout(ctx, tk.ID)
		if err != nil || got.Status != token.Expired || got.RevokedAt == nil || got.RevokedReason == nil || *got.RevokedReason != "logout" {
			t.Errorf("logout = %+v %v", got, err)
		}
	})
	t.Run("deactivated user's token stays revoked after reactivation", func(t *testing.T) {
		tk, plain := e.mustCreate(t, "gone", "t")
		e.setActive(t, "gone", false)
		got, inv, err := e.store.Logout(ctx, tk.ID)
		if err != nil || got.RevokedAt == nil || *got.RevokedReason != "logout" || !sameHashes(inv.Hashes, [][]byte{hashOf(plain)}) {
			t.Errorf("logout = %+v %+v %v", got, inv, err)
		}
		e.setActive(t, "gone", true)
		if got := e.get(t, tk.ID); got.Status != token.Revoked {
			t.Errorf("after reactivation: %s, want revoked", got.Status)
		}
		if c := e.lookup(t, plain); !c.Revoked {
			t.Error("credential not revoked after reactivation")
		}
	})
	t.Run("rotated token in its grace", func(t *testing.T) {
		tk, _ := e.mustCreate(t, "u", "rotated")
		e.rotate(t, tk.ID, time.Hour)
		if got, _, err := e.store.Logout(ctx, tk.ID); err != nil || got.Status != token.Revoked {
			t.Errorf("logout = %+v %v", got, err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if _, _, err := e.store.Logout(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("logout of an unknown id = %v", err)
		}
	})
}

// TestLookupCredentialReadOnly: the lookup behind verification and
// introspection never writes last_used_at (only RecordLastUse does).
func TestLookupCredentialReadOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	tk, plain := e.mustCreate(t, "u", "t")
	for range 3 {
		e.lookup(t, plain)
	}
	if got := e.get(t, tk.ID); got.LastUsedAt != nil {
		t.Errorf("last_used_at %v after lookups", got.LastUsedAt)
	}
}

func TestActorUser(t *testing.T) {
	t.Parallel()
	if got := storage.ActorUser("alice"); got != "user:alice" {
		t.Errorf("ActorUser = %q", got)
	}
}

// TestRevokeAllTokensConcurrent: racing revoke-alls of one user revoke each
// token once between them, without deadlocking.
func TestRevokeAllTokensConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	const tokens, calls = 10, 4
	for i := range tokens {
		e.mustCreate(t, "u", fmt.Sprintf("t%d", i))
	}
	counts := make([]int, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			counts[i], _, errs[i] = e.store.RevokeAllTokens(t.Context(), admin, "u", "")
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range calls {
		if errs[i] != nil {
			t.Errorf("revoke-all %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != tokens {
		t.Errorf("racing revoke-alls revoked %d tokens between them, want %d", total, tokens)
	}
	if n := len(e.audit(t, "u", 100)); n != tokens+tokens+1 { // creates, revokes, user.create
		t.Errorf("%d audit events, want %d", n, 2*tokens+1)
	}
}
