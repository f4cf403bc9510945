package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/storage"
)

// Names under which armgate's connections show in pg_stat_activity, unless
// the DSN sets application_name itself (the listener's name is always set,
// so that its one long-lived backend can be told apart).
const (
	applicationName       = "armgate"
	listenApplicationName = "armgate-listen"
)

// Database is a pool and the store on it, opened with the settings every
// armgate connection uses. It has no cache and runs nothing in the
// background: one-off work such as the token command uses it alone, a
// Runtime builds on it.
type Database struct {
	pool  *pgxpool.Pool
	store *storage.Store
}

// OpenDatabase prepares a pool on dsn. It does not dial: connection errors
// show at the first query.
func OpenDatabase(dsn string) (*Database, error) {
	cfg, err := poolConfig(dsn)
	if err != nil {
		return nil, err
	}
	return newDatabase(cfg, dsn)
}

func newDatabase(cfg *pgxpool.Config, dsn string) (*Database, error) {
	preferWritable(cfg, dsn)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return &Database{pool: pool, store: storage.New(pool)}, nil
}

// Store returns the store on the pool.
func (d *Database) Store() *storage.Store { return d.store }

// Migrate creates or updates the armgate schema.
func (d *Database) Migrate(ctx context.Context) error { return storage.Migrate(ctx, d.pool) }

// PoolStat returns the pool's statistics.
func (d *Database) PoolStat() *pgxpool.Stat { return d.pool.Stat() }

// Close closes the pool, waiting for connections in use to be released.
func (d *Database) Close() { d.pool.Close() }

// poolConfig parses dsn into the pool configuration.
func poolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included.
		return nil, errors.New("database: invalid connection string")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	return cfg, nil
}

// preferWritable makes the pool connect only to servers that accept
// writes, unless the connection string or the environment says which kind
// of server to use. A hot standby lags: a lookup there could find a token
// that was just revoked on the primary and cache it again for a whole
// cache ttl. With a multi-host DSN, pgx then skips such servers.
func preferWritable(cfg *pgxpool.Config, dsn string) {
	if !choosesServer(cfg.ConnConfig, dsn) {
		cfg.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	}
}

// choosesServer reports whether the connection string or the environment
// says which kind of server to use (target_session_attrs, or
// PGTARGETSESSIONATTRS). pgx turns every value but "any" into cfg's
// ValidateConnect; "any" is found by looking for the key itself. A DSN that
// merely contains the word (in a password, say) counts as choosing "any",
// which is pgx's own default.
func choosesServer(cfg *pgx.ConnConfig, dsn string) bool {
	return cfg.ValidateConnect != nil ||
		os.Getenv("PGTARGETSESSIONATTRS") != "" ||
		strings.Contains(dsn, "target_session_attrs")
}

// listenConfig returns the configuration of the LISTEN connection: a copy
// of pool's when listenDSN is empty or the same as dsn, else listenDSN's.
// Take it before preferWritable changes pool: unless the DSN says
// otherwise, storage.Listen picks a primary, where notifications are
// delivered.
func listenConfig(pool *pgxpool.Config, dsn, listenDSN string) (*pgx.ConnConfig, error) {
	cfg := pool.ConnConfig.Copy()
	if listenDSN != "" && listenDSN != dsn {
		var err error
		if cfg, err = pgx.ParseConfig(listenDSN); err != nil {
			return nil, errors.New("listen_database: invalid connection string")
		}
	}
	cfg.RuntimeParams["application_name"] = listenApplicationName
	return cfg, nil
}

// HidePassword returns msg with dsn's password replaced by "xxxxx", and
// whether it held the password: should a driver error ever quote the
// connection string, what is printed or logged does not.
func HidePassword(msg, dsn string) (string, bool) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil || cfg.Password == "" || !strings.Contains(msg, cfg.Password) {
		return msg, false
	}
	return strings.ReplaceAll(msg, cfg.Password, "xxxxx"), true
}
