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
	payload, err := encodeInvalidation(inv)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload))
	return err
}

// notification is the NOTIFY payload of an Invalidation. Instances of
// different versions read each other's during a rolling upgrade, so its
// names (short: a payload must stay under 8000 bytes) and its omissions
// are fixed. It has Invalidation's fields in Invalidation's order, so that
// the two convert into each other (the compiler refuses a field added to
// one only).
type notification struct {
	Hashes  [][]byte `json:"h,omitempty"`
	All     bool     `json:"all,omitempty"`
	Created [][]byte `json:"c,omitempty"`
	Deleted [][]byte `json:"d,omitempty"`
	Rescan  bool     `json:"rescan,omitempty"`
}

func encodeInvalidation(inv Invalidation) ([]byte, error) {
	return json.Marshal(notification(inv))
}

func decodeInvalidation(payload []byte) (Invalidation, error) {
	var n notification
	err := json.Unmarshal(payload, &n)
	return Invalidation(n), err
}
