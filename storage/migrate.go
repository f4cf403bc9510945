// Package storage is armgate's PostgreSQL layer: embedded migrations, the
// user and token model, queries, the audit log and change notifications. It
// does not import Caddy.
package storage

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the advisory lock key that serialises schema creation when
// several instances start at once (tern takes its own lock for the
// migrations themselves, but only after it created its version table).
const migrateLock = 0x61726d67617465 // "armgate"

// Migrate creates the armgate schema if needed and applies all embedded
// migrations. It is safe to run from several instances at once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if schemaCurrent(ctx, pool) {
		return nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLock)) //nolint:errcheck // released with the session anyway
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS armgate"); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "armgate.schema_version")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
