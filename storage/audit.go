package storage

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// audit records one event in tx.
func audit(ctx context.Context, tx pgx.Tx, actor, action, target, userID string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	_, err := tx.Exec(ctx,
		`INSERT INTO armgate.audit (actor, action, target, user_id, detail) VALUES ($1, $2, $3, $4, $5)`,
		actor, action, target, userID, detail)
	return err
}

// Audit returns up to limit events, newest first; userID filters to events
// on that user and on that user's tokens when not empty.
func (s *Store) Audit(ctx context.Context, userID string, limit int) ([]AuditEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, actor, action, target, detail FROM armgate.audit
		WHERE $1 = '' OR user_id = $1 ORDER BY id DESC LIMIT $2`, userID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEvent, error) {
		var e AuditEvent
		err := r.Scan(&e.At, &e.Actor, &e.Action, &e.Target, &e.Detail)
		e.At = e.At.UTC()
		return e, err
	})
}
