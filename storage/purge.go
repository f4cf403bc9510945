package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention: tokens expired for longer than the retention are deleted, so
// that rotation and self-service creation do not grow the token table, every
// instance's known set and the lists without bound.
const (
	// ActionTokenPurge is the audit action of a token deleted by retention.
	ActionTokenPurge = "token.purge"
)

// purgeLock is the advisory lock key that lets one instance at a time purge
// ("armgate" + "p"); taken per transaction, so it works through PgBouncer in
// transaction mode too.
const purgeLock = 0x61726d6761746570

// PurgeBatch is the most tokens one PurgeExpired call deletes.
const PurgeBatch = 500

// notifyChunk is the most tokens named in one purge notification: each is
// in Hashes (cache) and Deleted (known set), within maxNotifyHashes.
const notifyChunk = maxNotifyHashes / 2

// PurgeExpired deletes up to PurgeBatch tokens that expired before cutoff,
// in one transaction, with one token.purge audit event each (actor system)
// and the delete notification that makes every instance drop them from its
// cache and known set. It returns the deleted tokens' invalidation (for the
// local cache) and their number; busy reports that another instance is
// purging (nothing was done). Call it again while it returns PurgeBatch.
func (s *Store) PurgeExpired(ctx context.Context, cutoff time.Time) (n int, inv Invalidation, busy bool, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if busy, err = purgeLocked(ctx, tx); busy || err != nil {
			return err
		}
		// Rows a change holds are skipped: they go in a later run.
		rows, _ := tx.Query(ctx, `DELETE FROM armgate.tokens WHERE id IN (
				SELECT id FROM armgate.tokens WHERE expires_at < $1
				ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING id::text, user_id, name, hash, expires_at`, cutoff, PurgeBatch)
		type purged struct {
			ID, UserID, Name string
			Hash             []byte
			ExpiresAt        time.Time
		}
		done, err := pgx.CollectRows(rows, pgx.RowToStructByPos[purged])
		if err != nil || len(done) == 0 {
			return err
		}
		ids := make([]string, len(done))
		users := make([]string, len(done))
		details := make([]map[string]any, len(done))
		for i, d := range done {
			ids[i], users[i] = d.ID, d.UserID
			details[i] = map[string]any{"name": d.Name, "expires_at": d.ExpiresAt.UTC().Format(time.RFC3339)}
			inv.Hashes = append(inv.Hashes, d.Hash)
			inv.Deleted = append(inv.Deleted, d.Hash)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO armgate.audit (actor, action, target, user_id, detail)
			SELECT $1, $2, e.id, e.user_id, e.detail
			FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS e(id, user_id, detail)`,
			ActorSystem, ActionTokenPurge, ids, users, details); err != nil {
			return err
		}
		for i := 0; i < len(done); i += notifyChunk {
			j := min(i+notifyChunk, len(done))
			if err := notify(ctx, tx, Invalidation{Hashes: inv.Hashes[i:j], Deleted: inv.Deleted[i:j]}); err != nil {
				return err
			}
		}
		n = len(done)
		return nil
	})
	if err != nil {
		return 0, Invalidation{}, false, err
	}
	return n, inv, busy, nil
}

// PurgeUsageBatch is the most usage rows one PurgeUsage call deletes.
const PurgeUsageBatch = 10000

// PurgeUsage deletes up to PurgeUsageBatch rows of per-token daily usage
// for UTC days before the day that holds cutoff (that day is kept whole),
// under the same advisory lock as PurgeExpired, so one instance at a time
// does it. The usage of a deleted token goes with it (the rows reference
// the token ON DELETE CASCADE); this removes the days of live tokens that
// have aged out of the retention. It returns how many rows it deleted;
// busy reports that another instance is purging. Call it again while it
// returns PurgeUsageBatch.
func (s *Store) PurgeUsage(ctx context.Context, cutoff time.Time) (n int, busy bool, err error) {
	day := cutoff.UTC().Format(time.DateOnly)
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if busy, err = purgeLocked(ctx, tx); busy || err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM armgate.token_usage WHERE (token_id, day) IN (
				SELECT token_id, day FROM armgate.token_usage WHERE day < $1::date LIMIT $2)`, day, PurgeUsageBatch)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, busy, nil
}

// purgeLocked takes the purge's advisory lock for tx's transaction; busy
// reports that another instance holds it.
func purgeLocked(ctx context.Context, tx pgx.Tx) (busy bool, err error) {
	var locked bool
	err = tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(purgeLock)).Scan(&locked)
	return !locked, err
}
