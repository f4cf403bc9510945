// Package caddymodule is armgate's Caddy glue: the armgate app (which keeps
// the process's gateway runtime across config reloads), the armgate_auth and
// armgate_admin handlers, Caddyfile parsing, the command line and metrics.
package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"

	"github.com/armgate/armgate/gateway"
	"github.com/armgate/armgate/knownset"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/verifier"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults, as documented in the README.
const (
	defaultMaxTokensPerUser = 10
	defaultTokenLifetime    = 90 * 24 * time.Hour
	defaultMaxTokenLifetime = 365 * 24 * time.Hour
	defaultLastUsedFlush    = 60 * time.Second
	defaultCacheTTL         = 60 * time.Second
	defaultNegativeTTL      = 10 * time.Second
	defaultMaxEntries       = 200_000
	defaultQueryTimeout     = 3 * time.Second
	defaultRetention        = 90 * 24 * time.Hour
	// minHeartbeat keeps the listener's self-notifications from turning
	// into load.
	minHeartbeat = 100 * time.Millisecond
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
	// AdminKeys are the static admin credentials for armgate_admin; any
	// one of them is accepted, so that a key can be rotated without a gap
	// (add the new key, move the clients, drop the old key). Each must be
	// at least 32 characters once its placeholders ({env.*}, {file.*}) are
	// resolved. When there are none, only tokens with the admin scope are
	// accepted there.
	AdminKeys []string `json:"admin_keys,omitempty"`
	// AdminKey is one more admin key, kept so that configs written for
	// a single key still load; it counts as the first of AdminKeys.
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
	// KnownTokens configures the set of existing tokens that refuses
	// unknown tokens without a database query.
	KnownTokens *KnownTokensConfig `json:"known_tokens,omitempty"`
	// Retention is how long after its expiry a token is deleted (with an
	// audit event token.purge by actor system), by one instance at a time,
	// at start and hourly. Default 90d (2160h).
	Retention caddy.Duration `json:"retention,omitempty"`
	// RetentionOff keeps expired tokens for ever.
	RetentionOff bool `json:"retention_off,omitempty"`
	// ListenerHeartbeat is how often the invalidation listener sends
	// itself a notification; one not back within the interval counts as
	// a lost connection, so a hung connection is noticed within twice the
	// interval. Default 5s.
	ListenerHeartbeat caddy.Duration `json:"listener_heartbeat,omitempty"`
	// Quota sets the default quotas of tokens and users and the interval
	// at which instances reconcile their counts.
	Quota *QuotaConfig `json:"quota,omitempty"`
	// Events sends lifecycle events as signed webhooks; none when unset.
	Events *EventsConfig `json:"events,omitempty"`
	// Leaks turns on the leak report endpoints (GitHub secret scanning,
	// GitLab token revocation) of armgate_admin.
	Leaks *LeaksConfig `json:"leaks,omitempty"`

	adminKeys []string
	leaks     resolvedLeaks
	runtime   *gateway.Runtime
	poolKey   string
	ctx       caddy.Context
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

// KnownTokensConfig configures the set of the tokens that exist, which
// every instance loads at start and after every reconnect of its
// invalidation listener. While the set is current, a well-formed token
// absent from it is refused 401 without a query, except for a small budget
// of lookups that lets a token created on another instance a moment ago
// pass before its notification arrives.
type KnownTokensConfig struct {
	// LookupsPerSecond is the rate of database lookups allowed for tokens
	// absent from the set, per instance. Default 5.
	LookupsPerSecond float64 `json:"lookups_per_second,omitempty"`
	// Burst is how many such lookups may run at once after a quiet
	// period. Default 20.
	Burst int `json:"burst,omitempty"`
	// ReloadJitter bounds the random delay before a reload after the
	// listener reconnects, so that instances that lost the same server do
	// not all scan the token table in the same second. The first load at
	// start runs at once. Default 10s.
	ReloadJitter caddy.Duration `json:"reload_jitter,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "armgate",
		New: func() caddy.Module { return new(App) },
	}
}

// resources holds the process's gateway runtimes, kept across config
// reloads while a config uses them.
var resources = caddy.NewUsagePool()

// Provision resolves secrets, applies defaults and loads (or reuses) the
// process's runtime: pool, cache and listener. It does not dial the database.
func (a *App) Provision(ctx caddy.Context) (err error) {
	a.ctx = ctx
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
	if a.adminKeys, err = resolveAdminKeys(repl, a.AdminKey, a.AdminKeys); err != nil {
		return err
	}
	if a.leaks, err = a.Leaks.provision(repl); err != nil {
		return err
	}

	vcfg := verifier.Config{
		TTL:          time.Duration(a.Cache.TTL),
		NegativeTTL:  time.Duration(a.Cache.NegativeTTL),
		MaxEntries:   a.Cache.MaxEntries,
		QueryTimeout: time.Duration(a.QueryTimeout),
	}
	if a.Cache.Disabled {
		vcfg.TTL = 0
	}
	initProcessMetrics()
	gcfg := gateway.Config{
		DSN:               dsn,
		ListenDSN:         listenDSN,
		Verifier:          vcfg,
		LastUsedFlush:     time.Duration(a.LastUsedFlush),
		Retention:         a.retention(),
		ListenerHeartbeat: time.Duration(a.ListenerHeartbeat),
		QuotaSync:         a.quotaSync(),
		KnownTokens: gateway.KnownTokens{
			LookupsPerSecond: a.KnownTokens.LookupsPerSecond,
			Burst:            a.KnownTokens.Burst,
			ReloadJitter:     time.Duration(a.KnownTokens.ReloadJitter),
		},
		// The runtime outlives this config: it logs through the
		// process's logger, not this config's.
		Logger: caddy.Log().Named("armgate"),
		Hooks: gateway.Hooks{
			LookupDone:   func(d time.Duration) { processMetrics.queryDuration.Observe(d.Seconds()) },
			Invalidation: func() { processMetrics.invalidations.Inc() },
		},
	}
	if gcfg.Events, err = a.Events.gatewayConfig(repl); err != nil {
		return err
	}
	key, err := resourceKey(gcfg)
	if err != nil {
		return err
	}
	val, _, err := resources.LoadOrNew(key, func() (caddy.Destructor, error) {
		rt, err := gateway.Open(gcfg)
		if err != nil {
			return nil, err
		}
		return pooledRuntime{rt}, nil
	})
	if err != nil {
		return fmt.Errorf("armgate: %w", err)
	}
	a.poolKey = key
	a.runtime = val.(pooledRuntime).Runtime
	if err := registerLeakMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	return a.registerMetrics(ctx.GetMetricsRegistry())
}

// minAdminKeyLen is the least number of characters of an admin key: 32
// random characters are beyond guessing even without the failure limit.
const minAdminKeyLen = 32

// resolveAdminKeys resolves the admin keys' placeholders and checks their
// length. The error names a key by its position and length, never by its
// value: the value is a secret, and a resolved {env.*} or {file.*} one
// must not end up in a log.
func resolveAdminKeys(repl *caddy.Replacer, single string, list []string) ([]string, error) {
	keys := list
	if single != "" {
		keys = append([]string{single}, list...)
	}
	resolved := make([]string, 0, len(keys))
	for i, k := range keys {
		v := repl.ReplaceAll(k, "")
		if n := utf8.RuneCountInString(v); n < minAdminKeyLen {
			return nil, fmt.Errorf("armgate: admin_key #%d is %d characters; at least %d are required (generate one with: openssl rand -base64 33)",
				i+1, n, minAdminKeyLen)
		}
		resolved = append(resolved, v)
	}
	return resolved, nil
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
	if a.Retention == 0 {
		a.Retention = caddy.Duration(defaultRetention)
	}
	if a.ListenerHeartbeat == 0 {
		a.ListenerHeartbeat = caddy.Duration(storage.DefaultHeartbeat)
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
	if a.KnownTokens == nil {
		a.KnownTokens = new(KnownTokensConfig)
	}
	if a.KnownTokens.LookupsPerSecond == 0 {
		a.KnownTokens.LookupsPerSecond = knownset.DefaultRate
	}
	if a.KnownTokens.Burst == 0 {
		a.KnownTokens.Burst = knownset.DefaultBurst
	}
	if a.KnownTokens.ReloadJitter == 0 {
		a.KnownTokens.ReloadJitter = caddy.Duration(knownset.DefaultJitter)
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
	case a.KnownTokens.LookupsPerSecond < 0 || a.KnownTokens.Burst < 0 || a.KnownTokens.ReloadJitter < 0:
		return errors.New("armgate: known_tokens lookups_per_second, burst and reload_jitter must be positive")
	case a.Retention < 0:
		return errors.New("armgate: retention must be positive, or off")
	case time.Duration(a.ListenerHeartbeat) < minHeartbeat:
		return fmt.Errorf("armgate: listener_heartbeat must be at least %s, got %s", minHeartbeat, time.Duration(a.ListenerHeartbeat))
	}
	if err := a.Quota.validate(); err != nil {
		return err
	}
	return a.Leaks.validate()
}

// Start applies migrations (once per process) and starts background work.
// It does not fail when the database is down: requests that need the
// database get 503 until it is back, and migrations are retried.
func (a *App) Start() error {
	warnLaxTrustedProxies(a.ctx, caddy.Log().Named("armgate"))
	a.runtime.Start()
	return nil
}

// Stop does nothing: the runtime's pool must outlive a reload, and the old
// http app may still drain requests. Cleanup releases the runtime.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's reference to the runtime; the last
// reference closes it.
func (a *App) Cleanup() error {
	if a.poolKey != "" {
		_, err := resources.Delete(a.poolKey)
		a.poolKey = ""
		return err
	}
	return nil
}

// retention is the configured retention, zero when off.
func (a *App) retention() time.Duration {
	if a.RetentionOff {
		return 0
	}
	return time.Duration(a.Retention)
}

// resourceKey identifies the runtime by everything that defines it: the
// hash of the whole gateway config's JSON encoding (the logger and the
// hooks are no part of it), so that a setting added to gateway.Config
// changes the key without being listed here. The DSNs and the webhook
// secret are hashed, never kept.
func resourceKey(c gateway.Config) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("armgate: the runtime's key: %w", err)
	}
	h := sha256.Sum256(b)
	return "armgate:" + hex.EncodeToString(h[:]), nil
}

// pooledRuntime lets the usage pool close the gateway runtime when the last
// config using it is cleaned up.
type pooledRuntime struct{ *gateway.Runtime }

// Destruct closes the runtime.
func (r pooledRuntime) Destruct() error {
	r.Close()
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = pooledRuntime{}
)
