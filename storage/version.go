package storage

import "context"

// SchemaVersion returns the version of the armgate schema: the number of
// migrations applied to it.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int32
	err := s.pool.QueryRow(ctx, `SELECT version FROM armgate.schema_version`).Scan(&v)
	return int(v), err
}
