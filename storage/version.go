package storage

import "context"

// SchemaVersion returns the version of the armgate schema: the number of
// migrations applied to it.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	return schemaVersion(ctx, s.pool)
}

// schemaVersion reads the number of migrations applied.
func schemaVersion(ctx context.Context, q rowQuerier) (int, error) {
	var v int32
	err := q.QueryRow(ctx, `SELECT version FROM armgate.schema_version`).Scan(&v)
	return int(v), err
}
