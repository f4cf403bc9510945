package storage

import (
	"context"
	"time"
)

// RecordLastUsed stores last-use times collected in memory, in one statement.
func (s *Store) RecordLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return s.RecordLastUse(ctx, used, nil)
}
