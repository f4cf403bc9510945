package storage_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// leakedEvents returns the token.leaked audit events, newest first.
func (e *env) leakedEvents(t *testing.T) []storage.AuditEvent {
	t.Helper()
	events, err := e.store.Audit(t.Context(), "", 5000)
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.AuditEvent
	for _, ev := range events {
		if ev.Action == storage.ActionTokenLeaked {
			out = append(out, ev)
		}
	}
	return out
}

func TestRevokeLeaked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	active, activePlain := e.mustCreate(t, "u", "active")
	byAdmin, byAdminPlain := e.mustCreate(t, "u", "revoked by admin")
	revokedAt := e.revoke(t, byAdmin.ID, "laptop lost").RevokedAt
	expired, expiredPlain := e.mustCreate(t, "u", "expired")
	e.expire(t, expired.ID)
	marker, _ := e.mustCreate(t, "u", "marker")
	l := listen(t, e.dsn)
	unknown := token.Sum("arm_never_issued")

	leaks := []storage.Leak{
		{Hash: token.Sum(activePlain), URL: "https://github.com/o/r/blob/1/.env", FoundIn: "content"},
		{Hash: token.Sum(byAdminPlain), URL: "https://github.com/o/r/blob/1/b"},
		{Hash: token.Sum(expiredPlain)},
		{Hash: unknown, URL: "https://x"},
		{Hash: token.Sum(activePlain), URL: "https://second.mention/ignored"},
	}
	out, inv, err := e.store.RevokeLeaked(ctx, storage.ActorLeakGitHub, leaks)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 {
		t.Fatalf("%d outcomes, want 3 (the unknown hash has none): %v", len(out), out)
	}
	for _, tk := range []storage.Token{active, byAdmin, expired} {
		o, ok := out[token.Sum(map[string]string{active.ID: activePlain, byAdmin.ID: byAdminPlain, expired.ID: expiredPlain}[tk.ID])]
		if !ok || !o.Revoked || o.TokenID != tk.ID {
			t.Errorf("outcome of %q = %+v, %v", tk.Name, o, ok)
		}
	}
	if _, ok := out[unknown]; ok {
		t.Error("an unknown hash has an outcome")
	}
	want := [][]byte{hashOf(activePlain), hashOf(byAdminPlain), hashOf(expiredPlain)}
	if !sameHashes(inv.Hashes, want) {
		t.Errorf("invalidation has %d hashes, want 3", len(inv.Hashes))
	}
	if got := l.next(t); !sameHashes(got.Hashes, want) {
		t.Errorf("notification has %d hashes, want the 3 tokens'", len(got.Hashes))
	}

	a := e.get(t, active.ID)
	if a.Status != token.Revoked || deref(a.RevokedReason) != storage.ReasonLeaked || deref(a.RevokedBy) != storage.ActorLeakGitHub ||
		deref(a.LeakURL) != "https://github.com/o/r/blob/1/.env" || a.LeakedAt == nil || a.RevokedAt == nil {
		t.Errorf("leaked active token = %+v", a)
	}
	b := e.get(t, byAdmin.ID)
	if deref(b.RevokedBy) != storage.ActorLeakGitHub || deref(b.RevokedReason) != storage.ReasonLeaked || !b.RevokedAt.Equal(*revokedAt) {
		t.Errorf("token revoked before: by %v reason %v at %v (was %v), want leak:github, leaked, the first revocation's time",
			deref(b.RevokedBy), deref(b.RevokedReason), b.RevokedAt, revokedAt)
	}
	if x := e.get(t, expired.ID); x.Status != token.Expired || deref(x.RevokedBy) != storage.ActorLeakGitHub || x.LeakURL != nil {
		t.Errorf("expired token = status %s by %v url %v", x.Status, deref(x.RevokedBy), x.LeakURL)
	}
	if m := e.get(t, marker.ID); m.Status != token.Active || m.RevokedBy != nil {
		t.Errorf("an unreported token changed: %+v", m)
	}

	events := e.leakedEvents(t)
	if len(events) != 3 {
		t.Fatalf("%d token.leaked events, want 3", len(events))
	}
	for _, ev := range events {
		if ev.Actor != storage.ActorLeakGitHub || ev.Detail["reason"] != storage.ReasonLeaked || ev.Detail["source"] != "github" {
			t.Errorf("event %+v", ev)
		}
		switch ev.Target {
		case active.ID:
			if ev.Detail["url"] != "https://github.com/o/r/blob/1/.env" || ev.Detail["found_in"] != "content" {
				t.Errorf("event of the active token: %v", ev.Detail)
			}
		case byAdmin.ID:
			if ev.Detail["previous_reason"] != "laptop lost" {
				t.Errorf("event of the token revoked before: %v", ev.Detail)
			}
		}
	}

	// Reported again, by another source too: nothing more changes.
	for _, actor := range []string{storage.ActorLeakGitHub, storage.ActorLeakGitLab} {
		out, inv, err = e.store.RevokeLeaked(ctx, actor, leaks)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 3 || len(inv.Hashes) != 0 {
			t.Fatalf("repeated report: %d outcomes, %d invalidated", len(out), len(inv.Hashes))
		}
		for h, o := range out {
			if o.Revoked {
				t.Errorf("repeated report revoked %x again", h[:4])
			}
		}
	}
	if n := len(e.leakedEvents(t)); n != 3 {
		t.Errorf("%d token.leaked events after repeated reports, want 3", n)
	}
	if a2 := e.get(t, active.ID); deref(a2.RevokedBy) != storage.ActorLeakGitHub || !a2.LeakedAt.Equal(*a.LeakedAt) {
		t.Errorf("a repeated report changed the token: %+v", a2)
	}
	// The repeated reports notified nothing: the next notification is the
	// marker's.
	e.revoke(t, marker.ID, "")
	if got := l.next(t); len(got.Hashes) != 1 {
		t.Errorf("first notification after the repeated reports has %d hashes, want the marker's", len(got.Hashes))
	}
	// A report of nothing known changes nothing and fails nothing.
	if out, _, err := e.store.RevokeLeaked(ctx, storage.ActorLeakAdmin, []storage.Leak{{Hash: unknown}}); err != nil || len(out) != 0 {
		t.Errorf("unknown only = %v, %v", out, err)
	}
	if out, _, err := e.store.RevokeLeaked(ctx, storage.ActorLeakAdmin, nil); err != nil || len(out) != 0 {
		t.Errorf("empty = %v, %v", out, err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestRevokeLeakedThousand: a report of 1 000 tokens is one transaction
// (every row carries the same xmin), with one notification and one audit
// event per token.
func TestRevokeLeakedThousand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const n = 1000
	// The tokens are inserted directly: 1 000 creates would test nothing
	// more and take long.
	e.exec(t, `INSERT INTO armgate.users (id) SELECT 'u' || i FROM generate_series(1, 10) AS i`)
	leaks := make([]storage.Leak, n)
	hashes := make([][]byte, n)
	users := make([]string, n)
	for i := range n {
		plain, err := token.Generate()
		if err != nil {
			t.Fatal(err)
		}
		h := token.Sum(plain)
		leaks[i] = storage.Leak{Hash: h, URL: fmt.Sprintf("https://github.com/o/r/blob/1/f%d", i)}
		hashes[i] = h[:]
		users[i] = fmt.Sprint("u", i%10+1)
	}
	e.exec(t, `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at)
		SELECT v.u, 'leak ' || v.i, v.h, 'arm_xxxx…', '{api}', now() + interval '1 day'
		FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS v(u, h, i)`, users, hashes)
	e.user(t, "m")
	marker, _ := e.mustCreate(t, "m", "marker")
	l := listen(t, e.dsn)

	out, inv, err := e.store.RevokeLeaked(ctx, storage.ActorLeakGitHub, leaks)
	if err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, o := range out {
		if o.Revoked {
			revoked++
		}
	}
	if len(out) != n || revoked != n || len(inv.Hashes) != n {
		t.Fatalf("%d outcomes, %d revoked, %d invalidated; want %d each", len(out), revoked, len(inv.Hashes), n)
	}
	var xmins, leaked int
	if err := e.pool.QueryRow(ctx, `SELECT count(DISTINCT xmin::text), count(*) FROM armgate.tokens
		WHERE revoked_by = $1 AND revoked_reason = 'leaked' AND leak_url LIKE 'https://github.com/o/r/blob/1/f%'`,
		storage.ActorLeakGitHub).Scan(&xmins, &leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != n || xmins != 1 {
		t.Errorf("%d tokens revoked as leaked by %d transactions, want %d by 1", leaked, xmins, n)
	}
	if got := len(e.leakedEvents(t)); got != n {
		t.Errorf("%d token.leaked events, want %d", got, n)
	}
	// One notification: more hashes than one may carry, so "drop all".
	if got := l.next(t); !got.All {
		t.Errorf("notification of %d hashes without all", len(got.Hashes))
	}
	e.revoke(t, marker.ID, "")
	if got := l.next(t); got.All || len(got.Hashes) != 1 {
		t.Errorf("second notification is not the marker's: %d hashes, all %v", len(got.Hashes), got.All)
	}
}

// TestRevokeLeakedConcurrent: reports of overlapping tokens at once, and a
// revoke-all of the same user, neither deadlock nor revoke a token twice.
func TestRevokeLeakedConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.user(t, "u")
	var leaks []storage.Leak
	for i := range 8 {
		_, plain := e.mustCreate(t, "u", fmt.Sprint("t", i))
		leaks = append(leaks, storage.Leak{Hash: token.Sum(plain)})
	}
	reversed := make([]storage.Leak, len(leaks))
	for i, l := range leaks {
		reversed[len(leaks)-1-i] = l
	}
	errs := make(chan error, 3)
	revokedBy := make(chan int, 2)
	for _, ls := range [][]storage.Leak{leaks, reversed} {
		go func() {
			out, _, err := e.store.RevokeLeaked(ctx, storage.ActorLeakGitHub, ls)
			n := 0
			for _, o := range out {
				if o.Revoked {
					n++
				}
			}
			revokedBy <- n
			errs <- err
		}()
	}
	go func() {
		_, _, err := e.store.RevokeAllTokens(ctx, admin, "u", "offboarding")
		errs <- err
	}()
	deadline := time.After(30 * time.Second)
	for range 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("deadlock")
		}
	}
	if a, b := <-revokedBy, <-revokedBy; a+b != len(leaks) {
		t.Errorf("the two reports revoked %d and %d, want %d together", a, b, len(leaks))
	}
	if got := len(e.leakedEvents(t)); got != len(leaks) {
		t.Errorf("%d token.leaked events, want %d", got, len(leaks))
	}
	tokens, err := e.store.ListTokens(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokens {
		if !strings.HasPrefix(deref(tk.RevokedBy), storage.LeakActorPrefix) {
			t.Errorf("token %s revoked by %s, want a leak actor", tk.Name, deref(tk.RevokedBy))
		}
	}
}
