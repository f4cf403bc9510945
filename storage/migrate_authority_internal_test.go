package storage

import (
	"io/fs"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/armgate/armgate/internal/testpg"
)

// TestMigrationRevokedByBackfill: migration 3 gives every token revoked
// before it the actor of its latest revoke or logout event, 'unknown' when
// there is none, and leaves the others NULL.
func TestMigrationRevokedByBackfill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA armgate"); err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "armgate.schema_version")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	const (
		byAdmin   = "00000000-0000-0000-0000-000000000001"
		byLogout  = "00000000-0000-0000-0000-000000000002"
		reRevoked = "00000000-0000-0000-0000-000000000003"
		noEvent   = "00000000-0000-0000-0000-000000000004"
		live      = "00000000-0000-0000-0000-000000000005"
	)
	for _, q := range []string{
		`INSERT INTO armgate.users (id) VALUES ('u')`,
		`INSERT INTO armgate.tokens (id, user_id, name, hash, hint, scopes, expires_at, revoked_at)
		 SELECT id::uuid, 'u', 'n' || i, decode(lpad(i::text, 64, '0'), 'hex'), 'arm_…', '{api}', now() + interval '1 day',
		        CASE WHEN i < 5 THEN now() END
		 FROM unnest(ARRAY['` + byAdmin + `','` + byLogout + `','` + reRevoked + `','` + noEvent + `','` + live + `']) WITH ORDINALITY AS x(id, i)`,
		`INSERT INTO armgate.audit (actor, action, target, user_id) VALUES
		 ('admin_key', 'token.revoke', '` + byAdmin + `', 'u'),
		 ('token:` + byLogout + `', 'token.logout', '` + byLogout + `', 'u'),
		 ('user:u', 'token.revoke', '` + reRevoked + `', 'u'),
		 ('admin_key', 'token.reapprove', '` + reRevoked + `', 'u'),
		 ('cli', 'token.revoke', '` + reRevoked + `', 'u'),
		 ('admin_key', 'token.create', '` + noEvent + `', 'u')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := m.MigrateTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]*string{
		byAdmin: ptr("admin_key"), byLogout: ptr("token:" + byLogout), reRevoked: ptr("cli"), noEvent: ptr("unknown"), live: nil,
	} {
		var got *string
		if err := conn.QueryRow(ctx, `SELECT revoked_by FROM armgate.tokens WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Errorf("token %s: revoked_by %v, want %v", id, deref(got), deref(want))
		}
	}
}

func ptr(s string) *string { return &s }
