package storage

import (
	"context"
	"io/fs"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFile is how tern names a migration (its FindMigrations).
var migrationFile = regexp.MustCompile(`^\d+_.+\.sql$`)

// schemaCurrent reports whether the schema already has every embedded
// migration, or a later one (migrations are additive, so this binary works on
// a schema a newer one migrated: old instances keep running through a rolling
// upgrade). It reads one row and takes no lock, so the gateway may run as a
// role that can create nothing, and through PgBouncer in transaction mode,
// where a session advisory lock could outlive its transaction on a pooled
// server connection. Any error (no schema yet, no privilege) means "not
// known to be current": Migrate then takes the full path and reports its own
// error.
func schemaCurrent(ctx context.Context, pool *pgxpool.Pool) bool {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return false
	}
	want := 0
	for _, e := range entries {
		if migrationFile.MatchString(e.Name()) {
			want++
		}
	}
	have, err := schemaVersion(ctx, pool)
	if err != nil {
		return false
	}
	return have >= want
}
