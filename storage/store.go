package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/token"
)

// Channel is the LISTEN/NOTIFY channel that carries cache invalidations.
const Channel = "armgate"

// maxNotifyHashes bounds the hashes in one notification (payloads must stay
// under 8000 bytes); beyond it the notification says "drop everything".
const maxNotifyHashes = 100

// Invalidation names the cache entries a change made stale. It is sent with
// pg_notify in the changing transaction and applied by every instance.
type Invalidation struct {
	Hashes [][]byte
	All    bool
	// Created and Deleted are the hashes of tokens created and deleted, for
	// the set of known tokens (deleted ones are in Hashes too).
	Created [][]byte
	Deleted [][]byte
	// Rescan: more tokens were created or deleted than a notification
	// lists; the set of known tokens must be reloaded.
	Rescan bool
}

// Store runs armgate's queries on a pgx pool.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
	// txOpts begin every change's transaction (see EnableEvents).
	txOpts pgx.TxOptions
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, now: time.Now}
}

// querier is what the read helpers need: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// tx runs fn in a transaction.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, s.txOpts, fn)
}

func isUniqueViolation(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == pgerrcode.UniqueViolation
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// nullIfEmpty is s for a nullable text column: NULL when empty.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// newPlaintext generates a token and its hash.
func newPlaintext() (string, token.Hash, error) {
	plain, err := token.Generate()
	if err != nil {
		return "", token.Hash{}, err
	}
	return plain, token.Sum(plain), nil
}
