package storage_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
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

// TestPurgeUsage: retention deletes the usage of UTC days before the day of
// the cutoff, for every token, in batches, and keeps that day and every
// later one; the usage of an expired token that retention deletes goes with
// it; while another instance holds the purge lock it does nothing.
func TestPurgeUsage(t *testing.T) {
	e := newEnv(t)
	e.user(t, "u")
	live, _ := e.mustCreate(t, "u", "live")
	other, _ := e.mustCreate(t, "u", "other")
	gone, _ := e.mustCreate(t, "u", "gone")
	// Usage for the last 120 days of each, from the UTC day before the
	// cutoff's back; the cutoff is 90 days ago at noon UTC.
	now := time.Now().UTC()
	cutoff := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC).AddDate(0, 0, -90)
	for _, id := range []string{live.ID, other.ID, gone.ID} {
		e.exec(t, `INSERT INTO armgate.token_usage (token_id, day, allowed)
			SELECT $1, $2::date - i, 1 FROM generate_series(-90, 29) AS i`, id, cutoff.Format(time.DateOnly))
	}
	days := func(id string) (n int, oldest string) {
		t.Helper()
		var d *time.Time
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*), min(day) FROM armgate.token_usage WHERE token_id = $1`, id).Scan(&n, &d); err != nil {
			t.Fatal(err)
		}
		if d != nil {
			oldest = d.Format(time.DateOnly)
		}
		return n, oldest
	}

	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1)`, int64(0x61726d6761746570)); err != nil {
		t.Fatal(err)
	}
	if n, busy, err := e.store.PurgeUsage(t.Context(), cutoff); err != nil || !busy || n != 0 {
		t.Fatalf("with the lock held elsewhere: %d, busy %v, %v; want 0, busy", n, busy, err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}

	// 3 tokens × 29 days before the cutoff's day.
	n, busy, err := e.store.PurgeUsage(t.Context(), cutoff)
	if err != nil || busy || n != 3*29 {
		t.Fatalf("PurgeUsage: %d, busy %v, %v; want %d", n, busy, err, 3*29)
	}
	for _, id := range []string{live.ID, other.ID, gone.ID} {
		if got, oldest := days(id); got != 91 || oldest != cutoff.Format(time.DateOnly) {
			t.Errorf("token %s: %d days left from %s, want 91 from %s", id, got, oldest, cutoff.Format(time.DateOnly))
		}
	}
	if n, _, err := e.store.PurgeUsage(t.Context(), cutoff); err != nil || n != 0 {
		t.Errorf("second run: %d, %v; want 0", n, err)
	}

	// A token that retention deletes takes its usage with it.
	e.exec(t, `UPDATE armgate.tokens SET expires_at = $2 WHERE id = $1`, gone.ID, cutoff.Add(-time.Hour))
	if n, _, _, err := e.store.PurgeExpired(t.Context(), cutoff); err != nil || n != 1 {
		t.Fatalf("PurgeExpired: %d, %v; want 1", n, err)
	}
	if got, _ := days(gone.ID); got != 0 {
		t.Errorf("the deleted token keeps %d usage rows", got)
	}
	if got, _ := days(live.ID); got != 91 {
		t.Errorf("a live token has %d usage rows after another's purge, want 91", got)
	}

	// Batches: more old rows than one call deletes.
	e.exec(t, `INSERT INTO armgate.token_usage (token_id, day, allowed)
		SELECT t.id, '1990-01-01'::date + i, 1 FROM armgate.tokens t, generate_series(0, $1) AS i`, storage.PurgeUsageBatch/2)
	want := 2 * (storage.PurgeUsageBatch/2 + 1)
	n1, _, err := e.store.PurgeUsage(t.Context(), cutoff)
	if err != nil || n1 != storage.PurgeUsageBatch {
		t.Fatalf("first batch: %d, %v; want %d", n1, err, storage.PurgeUsageBatch)
	}
	n2, _, err := e.store.PurgeUsage(t.Context(), cutoff)
	if err != nil || n1+n2 != want {
		t.Fatalf("second batch: %d, %v; want %d", n2, err, want-n1)
	}
}

// TestPurgeUsageUsesDayIndex: the purge's selection of old usage rows can
// use an index on day; the primary key (token_id, day) cannot serve a
// condition on day alone, so without it each batch reads the whole table.
func TestPurgeUsageUsesDayIndex(t *testing.T) {
	e := newEnv(t)
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	// On an empty table the planner would rightly prefer reading it all.
	if _, err := tx.Exec(t.Context(), `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(t.Context(), `EXPLAIN SELECT token_id, day FROM armgate.token_usage WHERE day < $1::date LIMIT 1000`, "2026-01-01")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "token_usage_day") {
		t.Errorf("the purge's selection does not use the day index:\n%s", p)
	}
}
