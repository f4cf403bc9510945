// Package caddymodule is armgate's Caddy glue: the armgate app (one pgx pool,
// one token cache and the invalidation listener per process, kept across
// config reloads), the armgate_auth and armgate_admin handlers, Caddyfile
// parsing, the command line and metrics.
package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults; see DESIGN.md §6.
const (
	defaultMaxTokensPerUser = 10
	defaultTokenLifetime    = 90 * 24 * time.Hour
	defaultMaxTokenLifetime = 365 * 24 * time.Hour
	defaultLastUsedFlush    = 60 * time.Second
	defaultCacheTTL         = 60 * time.Second
	defaultNegativeTTL      = 10 * time.Second
	defaultMaxEntries       = 200_000
	defaultQueryTimeout     = 3 * time.Second
)

// App is the armgate app. It owns the database pool, the token cache and the
// invalidation listener that the armgate_auth and armgate_admin handlers
// share. Configure it with the `armgate` global option.
type App struct {
	// Database is the PostgreSQL connection string (a pgx DSN or URL;
	// multi-host DSNs work). Placeholders such as {env.*} and {file.*}
	// are resolved at provision time. Required.
	Database string `json:"database,omitempty"`
	// ListenDatabase is an optional separate connection string for the
	// LISTEN connection, for when Database goes through a
	// transaction-pooling proxy such as PgBouncer. Defaults to Database.
	ListenDatabase string `json:"listen_database,omitempty"`
	// AdminKey is the static admin credential for armgate_admin. When
	// empty, only tokens with the admin scope are accepted there.
	AdminKey string `json:"admin_key,omitempty"`
	// MaxTokensPerUser limits the tokens of a user that are neither
	// deleted nor expired. Default 10.
	MaxTokensPerUser int `json:"max_tokens_per_user,omitempty"`
	// TokenLifetime is the lifetime of a token created without one.
	// Default 2160h (90 days).
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`
	// MaxTokenLifetime caps the lifetime a create may ask for. Default
	// 8760h (365 days).
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`
	// LastUsedFlush is how often last-use times are written. Default 60s.
	LastUsedFlush caddy.Duration `json:"last_used_flush,omitempty"`
	// QueryTimeout bounds each database lookup on the request path.
	// Default 3s.
	QueryTimeout caddy.Duration `json:"query_timeout,omitempty"`
	// Cache configures the token cache.
	Cache *CacheConfig `json:"cache,omitempty"`

	adminKey string
	shared   *shared
	poolKey  string
	logger   *zap.Logger
}

// CacheConfig configures the token cache.
type CacheConfig struct {
	// TTL is the longest a known token stays cached; never past its
	// expiry. Default 60s. It is also the worst-case staleness when the
	// invalidation listener is disconnected.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// NegativeTTL is how long unknown tokens are remembered. Default 10s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// MaxEntries bounds the number of cached tokens. Default 200000.
	MaxEntries int64 `json:"max_entries,omitempty"`
	// Disabled turns the cache off: every request queries PostgreSQL.
	// Meant for measurements, not production.
	Disabled bool `json:"disabled,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "armgate",
		New: func() caddy.Module { return new(App) },
	}
}

// resources holds the process-wide state shared across config reloads.
var resources = caddy.NewUsagePool()

// Provision resolves secrets, applies defaults and loads (or reuses) the
// shared pool and cache. It does not dial the database.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.setDefaults()
	repl := caddy.NewReplacer()
	dsn := repl.ReplaceAll(a.Database, "")
	if dsn == "" {
		return errors.New("armgate: database is required (e.g. database {env.ARMGATE_DATABASE_URL}); it resolved to an empty string")
	}
	listenDSN := repl.ReplaceAll(a.ListenDatabase, "")
	if listenDSN == "" {
		listenDSN = dsn
	}
	a.adminKey = repl.ReplaceAll(a.AdminKey, "")

	vcfg := verifier.Config{
		TTL:          time.Duration(a.Cache.TTL),
		NegativeTTL:  time.Duration(a.Cache.NegativeTTL),
		MaxEntries:   a.Cache.MaxEntries,
		QueryTimeout: time.Duration(a.QueryTimeout),
	}
	if a.Cache.Disabled {
		vcfg.TTL = 0
	}
	key := resourceKey(dsn, listenDSN, vcfg, a.LastUsedFlush)
	val, _, err := resources.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newShared(dsn, listenDSN, vcfg, time.Duration(a.LastUsedFlush), ctx.Logger())
	})
	if err != nil {
		return fmt.Errorf("armgate: %w", err)
	}
	a.poolKey = key
	a.shared = val.(*shared)
	return a.registerMetrics(ctx.GetMetricsRegistry())
}

func (a *App) setDefaults() {
	if a.MaxTokensPerUser == 0 {
		a.MaxTokensPerUser = defaultMaxTokensPerUser
	}
	if a.TokenLifetime == 0 {
		a.TokenLifetime = caddy.Duration(defaultTokenLifetime)
	}
	if a.MaxTokenLifetime == 0 {
		a.MaxTokenLifetime = caddy.Duration(defaultMaxTokenLifetime)
	}
	if a.LastUsedFlush == 0 {
		a.LastUsedFlush = caddy.Duration(defaultLastUsedFlush)
	}
	if a.QueryTimeout == 0 {
		a.QueryTimeout = caddy.Duration(defaultQueryTimeout)
	}
	if a.Cache == nil {
		a.Cache = new(CacheConfig)
	}
	if a.Cache.TTL == 0 {
		a.Cache.TTL = caddy.Duration(defaultCacheTTL)
	}
	if a.Cache.NegativeTTL == 0 {
		a.Cache.NegativeTTL = caddy.Duration(defaultNegativeTTL)
	}
	if a.Cache.MaxEntries == 0 {
		a.Cache.MaxEntries = defaultMaxEntries
	}
}

// Validate checks the configuration.
func (a *App) Validate() error {
	switch {
	case a.MaxTokensPerUser < 1:
		return fmt.Errorf("armgate: max_tokens_per_user must be at least 1, got %d", a.MaxTokensPerUser)
	case a.TokenLifetime < 0 || a.MaxTokenLifetime < 0 || a.LastUsedFlush < 0 || a.QueryTimeout < 0:
		return errors.New("armgate: durations must be positive")
	case a.TokenLifetime > a.MaxTokenLifetime:
		return fmt.Errorf("armgate: token_lifetime (%s) exceeds max_token_lifetime (%s)",
			time.Duration(a.TokenLifetime), time.Duration(a.MaxTokenLifetime))
	case a.Cache.TTL < 0 || a.Cache.NegativeTTL < 0 || a.Cache.MaxEntries < 0:
		return errors.New("armgate: cache ttl, negative_ttl and max_entries must be positive")
	}
	return nil
}

// Start applies migrations (once per process) and starts background work.
// It does not fail when the database is down: requests that need the
// database get 503 until it is back, and migrations are retried.
func (a *App) Start() error {
	a.shared.start()
	return nil
}

// Stop does nothing: the shared pool must outlive a reload, and the old
// http app may still drain requests. Cleanup releases the shared state.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's reference to the shared state.
func (a *App) Cleanup() error {
	if a.poolKey != "" {
		_, err := resources.Delete(a.poolKey)
		a.poolKey = ""
		return err
	}
	return nil
}

// resourceKey identifies the shared state by everything that defines it.
// The DSN is hashed so that no secret sits in a map key.
func resourceKey(dsn, listenDSN string, c verifier.Config, flush caddy.Duration) string {
	h := sha256.New()
	for _, s := range []string{dsn, listenDSN, c.TTL.String(), c.NegativeTTL.String(),
		strconv.FormatInt(c.MaxEntries, 10), c.QueryTimeout.String(), time.Duration(flush).String()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "armgate:" + hex.EncodeToString(h.Sum(nil))
}

// shared is the process-wide state: one pool, one store, one verifier and
// their background goroutines. Destruct runs when the last config using it
// is cleaned up.
type shared struct {
	pool     *pgxpool.Pool
	store    *storage.Store
	verifier *verifier.Verifier
	logger   *zap.Logger
	flush    time.Duration

	listenCfg *pgx.ConnConfig
	// listening is true while the LISTEN connection is up (a metric).
	listening atomic.Bool

	startOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	migrated  chan struct{}
}

func newShared(dsn, listenDSN string, vcfg verifier.Config, flush time.Duration, logger *zap.Logger) (*shared, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included.
		return nil, errors.New("database: invalid connection string")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "armgate"
	}
	listenCfg := cfg.ConnConfig.Copy()
	if listenDSN != dsn {
		if listenCfg, err = pgx.ParseConfig(listenDSN); err != nil {
			return nil, errors.New("listen_database: invalid connection string")
		}
	}
	listenCfg.RuntimeParams["application_name"] = "armgate-listen"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s := &shared{
		pool:      pool,
		store:     storage.New(pool),
		logger:    logger,
		flush:     flush,
		listenCfg: listenCfg,
		migrated:  make(chan struct{}),
	}
	s.verifier, err = verifier.New(vcfg, s.loadCredential)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func (s *shared) loadCredential(ctx context.Context, h token.Hash) (token.Credential, error) {
	start := time.Now()
	c, err := s.store.LookupCredential(ctx, h)
	processMetrics.queryDuration.Observe(time.Since(start).Seconds())
	if errors.Is(err, storage.ErrNotFound) {
		return c, verifier.ErrNotFound
	}
	return c, err
}

// start launches the background goroutines once per shared state; their
// context is the shared state's own, since a config context ends at the
// next reload.
func (s *shared) start() {
	s.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(3)
		go func() { defer s.wg.Done(); s.migrate(ctx) }()
		go func() { defer s.wg.Done(); s.flushLastUsed(ctx) }()
		go func() { defer s.wg.Done(); s.listen(ctx) }()
	})
}

// migrate applies the schema, retrying while the database is unreachable.
func (s *shared) migrate(ctx context.Context) {
	delay := 500 * time.Millisecond
	for {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := storage.Migrate(mctx, s.pool)
		cancel()
		if err == nil {
			close(s.migrated)
			return
		}
		s.logger.Error("applying database migrations; retrying", zap.Error(err), zap.Duration("retry_in", delay))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// listen applies invalidations from every instance (this one included) and
// clears the cache on every (re)connect, since events may have been missed.
func (s *shared) listen(ctx context.Context) {
	_ = storage.Listen(ctx, s.listenCfg, storage.ListenHooks{
		Invalidate: func(inv storage.Invalidation) {
			processMetrics.invalidations.Inc()
			s.invalidate(inv)
		},
		Connected: func() {
			s.verifier.DropAll()
			s.listening.Store(true)
			s.logger.Info("invalidation listener connected; token cache cleared")
		},
		Disconnected: func() {
			s.listening.Store(false)
			s.logger.Warn("invalidation listener disconnected; reconnecting (cached tokens are served for at most the cache ttl)")
		},
		LogError: func(err error) {
			if ctx.Err() == nil {
				s.logger.Error("invalidation listener", zap.Error(err))
			}
		},
	})
}

// flushLastUsed writes buffered last-use times every s.flush and once more
// when stopping.
func (s *shared) flushLastUsed(ctx context.Context) {
	t := time.NewTicker(s.flush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.writeLastUsed(fctx)
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s.writeLastUsed(fctx)
			cancel()
		}
	}
}

func (s *shared) writeLastUsed(ctx context.Context) {
	used := s.verifier.TakeUsed()
	if used == nil {
		return
	}
	if err := s.store.RecordLastUsed(ctx, used); err != nil {
		s.verifier.PutBackUsed(used)
		s.logger.Warn("recording token last use", zap.Error(err), zap.Int("tokens", len(used)))
	}
}

// invalidate applies a change to the local cache at once, before the admin
// handler answers; other instances learn of it through NOTIFY.
func (s *shared) invalidate(inv storage.Invalidation) {
	if inv.All {
		s.verifier.DropAll()
	} else if len(inv.Hashes) > 0 {
		s.verifier.Drop(inv.Hashes)
	}
}

// Destruct stops the background work, waits for it, then closes the cache
// and the pool, in that order (a Del racing ristretto's Close can panic).
func (s *shared) Destruct() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.verifier.Close()
	s.pool.Close()
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*shared)(nil)
)
