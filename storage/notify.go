package storage

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
)

// notify sends inv in tx; PostgreSQL delivers it only if tx commits.
func notify(ctx context.Context, tx pgx.Tx, inv Invalidation) error {
	inv = inv.bounded()
	if inv.empty() {
		return nil
	}
	payload, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload))
	return err
}
