package storage_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/storage"
)

// insertExpired inserts n tokens of user that expired age ago.
func (e *env) insertExpired(t *testing.T, user, prefix string, n int, age time.Duration) {
	t.Helper()
	hashes := make([][]byte, n)
	names := make([]string, n)
	for i := range hashes {
		hashes[i] = make([]byte, 32)
		rand.Read(hashes[i])
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	e.exec(t, `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at, created_at)
		SELECT $1, n, h, 'arm_xxxx', '{api}', now() - $4::bigint * interval '1 microsecond', now() - interval '400 days'
		FROM unnest($2::text[], $3::bytea[]) AS v(n, h)`, user, names, hashes, age.Microseconds())
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurgeExpired: retention deletes exactly the tokens that expired before
// the cutoff, in batches, with one token.purge event (actor system) each
// and delete notifications that fit PostgreSQL's payload limit; while
// another instance holds the purge lock it does nothing.
func TestPurgeExpired(t *testing.T) {
	e := newEnv(t)
	e.user(t, "u")
	live, _ := e.mustCreate(t, "u", "live")
	recent, _ := e.mustCreate(t, "u", "recent")
	e.expire(t, recent.ID) // expired a second ago: kept
	const old = storage.PurgeBatch + 100
	e.insertExpired(t, "u", "old", old, 48*time.Hour)
	cutoff := time.Now().Add(-24 * time.Hour)

	// Another instance purging: nothing happens here.
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1)`, int64(0x61726d6761746570)); err != nil {
		t.Fatal(err)
	}
	n, _, busy, err := e.store.PurgeExpired(t.Context(), cutoff)
	if err != nil || !busy || n != 0 {
		t.Fatalf("with the lock held elsewhere: %d, busy %v, %v; want 0, busy", n, busy, err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Listen for the notifications of the purge.
	conn, err := pgx.Connect(t.Context(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `LISTEN `+storage.Channel); err != nil {
		t.Fatal(err)
	}

	n1, inv1, busy, err := e.store.PurgeExpired(t.Context(), cutoff)
	if err != nil || busy || n1 != storage.PurgeBatch || len(inv1.Deleted) != n1 || len(inv1.Hashes) != n1 {
		t.Fatalf("first batch: %d, busy %v, %d deleted hashes, %v", n1, busy, len(inv1.Deleted), err)
	}
	n2, _, _, err := e.store.PurgeExpired(t.Context(), cutoff)
	if err != nil || n2 != 100 {
		t.Fatalf("second batch: %d, %v; want 100", n2, err)
	}
	if n3, _, _, err := e.store.PurgeExpired(t.Context(), cutoff); err != nil || n3 != 0 {
		t.Fatalf("third batch: %d, %v; want 0", n3, err)
	}
	if got := e.count(t, `SELECT count(*) FROM armgate.tokens`); got != 2 {
		t.Errorf("%d tokens left, want 2 (live and recently expired)", got)
	}
	if e.status(t, live.ID) != "active" || e.status(t, recent.ID) != "expired" {
		t.Error("a token within the retention was touched")
	}
	if got := e.count(t, `SELECT count(*) FROM armgate.audit WHERE action = 'token.purge' AND actor = 'system'
		AND user_id = 'u' AND detail ? 'name' AND detail ? 'expires_at'`); got != old {
		t.Errorf("%d token.purge events by system, want %d", got, old)
	}

	deleted := 0
	for deleted < old {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		nt, err := conn.WaitForNotification(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d of %d deletions notified: %v", deleted, old, err)
		}
		inv, err := storage.DecodeInvalidation([]byte(nt.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if inv.All || inv.Rescan || len(inv.Deleted) != len(inv.Hashes) || len(nt.Payload) >= 8000 {
			t.Fatalf("notification of %d bytes: all %v rescan %v, %d deleted, %d hashes",
				len(nt.Payload), inv.All, inv.Rescan, len(inv.Deleted), len(inv.Hashes))
		}
		deleted += len(inv.Deleted)
	}
	if deleted != old {
		t.Errorf("%d deletions notified, want %d", deleted, old)
	}
}
