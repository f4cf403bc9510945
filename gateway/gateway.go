// Package gateway is armgate's process runtime: one PostgreSQL pool, the
// token store and verifier on it, and their background work (migrations
// retried until the database answers, the invalidation listener, last-use
// flushing). It does not import Caddy; the Caddy app keeps one Runtime per
// process across config reloads.
package gateway

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/armgate/armgate/events"
	"github.com/armgate/armgate/knownset"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

// Config defines a Runtime.
type Config struct {
	// DSN is the PostgreSQL connection string of the pool (a pgx DSN or
	// URL; multi-host DSNs work). Required.
	DSN string
	// ListenDSN is the connection string of the LISTEN connection, for
	// when DSN goes through a transaction-pooling proxy. Empty means DSN.
	ListenDSN string
	// Verifier configures the token cache.
	Verifier verifier.Config
	// LastUsedFlush is how often last-use times are written; zero writes
	// them only at Close.
	LastUsedFlush time.Duration
	// KnownTokens tunes the set of known tokens that refuses unknown
	// tokens without a query.
	KnownTokens KnownTokens
	// ListenerHeartbeat is how often the invalidation listener proves its
	// connection alive; one not back within it counts as a disconnect.
	// Zero means storage.DefaultHeartbeat.
	ListenerHeartbeat time.Duration
	// Retention is how long after their expiry tokens are deleted (in the
	// background, by one instance at a time); zero or less keeps them.
	Retention time.Duration
	// QuotaSync is how often the quota counts are reconciled with the
	// other instances through PostgreSQL (one statement each time); zero
	// means DefaultQuotaSync.
	QuotaSync time.Duration
	// Logger receives the runtime's logs; nil discards them. Like Hooks,
	// it is no part of the config's JSON encoding, which is what defines
	// a runtime (caddymodule shares one runtime per encoding).
	Logger *zap.Logger `json:"-"`
	// Hooks let the caller count what the runtime does.
	Hooks Hooks `json:"-"`
	// Events, when set, queues lifecycle events and delivers them as
	// webhooks.
	Events *events.Config
}

// KnownTokens tunes the set of the tokens that exist. A well-formed token
// absent from it (while it is current) is refused without a query, except
// for a budget of lookups that lets a token created a moment ago on another
// instance pass before its notification arrives.
type KnownTokens struct {
	// LookupsPerSecond and Burst size the budget of lookups for tokens
	// absent from the set. Zero means the defaults (knownset.DefaultRate,
	// knownset.DefaultBurst); negative allows no lookups.
	LookupsPerSecond float64
	Burst            int
	// ReloadJitter bounds the random delay of a reload after the listener
	// reconnects (the first load at start runs at once). Zero means
	// knownset.DefaultJitter; negative means no delay.
	ReloadJitter time.Duration
}

// absentWait is how long a token absent from the known set, with the lookup
// budget spent, waits for a notification of its creation before it is
// refused. Notifications arrive a few milliseconds after the commit; the
// client that got the token from another instance can be as fast.
const absentWait = 20 * time.Millisecond

func (k KnownTokens) withDefaults() KnownTokens {
	if k.LookupsPerSecond == 0 {
		k.LookupsPerSecond = knownset.DefaultRate
	}
	if k.Burst == 0 {
		k.Burst = knownset.DefaultBurst
	}
	if k.ReloadJitter == 0 {
		k.ReloadJitter = knownset.DefaultJitter
	}
	return k
}

// Hooks are called, when set, as things happen; they are the runtime's
// metrics. They run on the request path or the listener's goroutine and
// must be quick.
type Hooks struct {
	// LookupDone receives the duration of every token lookup in PostgreSQL.
	LookupDone func(time.Duration)
	// Invalidation runs for every invalidation notification received.
	Invalidation func()
}

// DefaultQuotaSync is the default QuotaSync.
const DefaultQuotaSync = time.Second

// Runtime is the process-wide state: one pool, one store, one verifier and
// their background goroutines.
type Runtime struct {
	db        *Database
	verifier  *verifier.Verifier
	quota     *quota.Counters
	quotaSync time.Duration
	logger    *zap.Logger
	flush     time.Duration
	hooks     Hooks
	listenCfg *pgx.ConnConfig
	heartbeat time.Duration
	retention time.Duration
	// firstPurge is the delay of the first retention run after start.
	firstPurge func() time.Duration
	// listening is true while the LISTEN connection is up.
	listening atomic.Bool
	// known is the set of existing tokens, kept by loader.
	known  *knownset.Set
	loader *knownset.Loader
	// health caches the database ping of health checks.
	health pingCache
	// lastUsedWrites counts the batched last-use writes that succeeded.
	lastUsedWrites atomic.Int64
	// events delivers lifecycle events; nil when not configured.
	events *events.Sender

	startOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	migrated  chan struct{}
}

// Open builds a Runtime. It does not dial the database: Start does the
// first work that needs it, in the background.
func Open(cfg Config) (*Runtime, error) {
	pcfg, err := poolConfig(cfg.DSN)
	if err != nil {
		return nil, err
	}
	listenCfg, err := listenConfig(pcfg, cfg.DSN, cfg.ListenDSN)
	if err != nil {
		return nil, err
	}
	db, err := newDatabase(pcfg, cfg.DSN)
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		db:         db,
		logger:     cfg.Logger,
		flush:      cfg.LastUsedFlush,
		hooks:      cfg.Hooks,
		listenCfg:  listenCfg,
		heartbeat:  cfg.ListenerHeartbeat,
		retention:  cfg.Retention,
		firstPurge: func() time.Duration { return rand.N(purgeStartDelay) },
		migrated:   make(chan struct{}),
		quotaSync:  cfg.QuotaSync,
	}
	if r.quotaSync <= 0 {
		r.quotaSync = DefaultQuotaSync
	}
	r.quota = quota.New(quota.Config{Store: db.Store()})
	if r.logger == nil {
		r.logger = zap.NewNop()
	}
	if err := r.openEvents(cfg.Events); err != nil {
		db.Close()
		return nil, err
	}
	kt := cfg.KnownTokens.withDefaults()
	r.known = knownset.New()
	r.loader = knownset.NewLoader(r.known, db.Store().ScanTokenHashes, knownset.LoaderOptions{
		Jitter: kt.ReloadJitter,
		Loaded: func(n int, took time.Duration) {
			r.logger.Info("known tokens loaded", zap.Int("tokens", n), zap.Duration("took", took))
		},
		LogError: func(err error) {
			r.logger.Error("loading the known tokens; retrying (unknown tokens are looked up meanwhile)", zap.Error(err))
		},
	})
	vcfg := cfg.Verifier
	vcfg.Known = r.known
	vcfg.Budget = knownset.NewBudget(kt.LookupsPerSecond, kt.Burst)
	vcfg.AbsentWait = absentWait
	r.verifier, err = verifier.New(vcfg, r.loadCredential)
	if err != nil {
		r.loader.Stop()
		db.Close()
		return nil, err
	}
	return r, nil
}

// Store returns the store on the runtime's pool.
func (r *Runtime) Store() *storage.Store { return r.db.Store() }

// Verifier returns the token verifier (the cache in front of the store).
func (r *Runtime) Verifier() *verifier.Verifier { return r.verifier }

// Quota returns the process's quota counters and usage buffer.
func (r *Runtime) Quota() *quota.Counters { return r.quota }

// Database returns the runtime's pool and store.
func (r *Runtime) Database() *Database { return r.db }

// Listening reports whether the invalidation listener is connected.
func (r *Runtime) Listening() bool { return r.listening.Load() }

// KnownTokens returns the number of tokens in the set of known tokens and
// whether the set is current (loaded, and the listener connected since).
func (r *Runtime) KnownTokens() (n int, current bool) {
	return r.known.Len(), r.known.Current()
}

// Migrated is closed once the schema is in place.
func (r *Runtime) Migrated() <-chan struct{} { return r.migrated }

// LastUsedWrites is the number of batched last-use writes that succeeded
// (flushes with nothing buffered write nothing and are not counted).
func (r *Runtime) LastUsedWrites() int64 { return r.lastUsedWrites.Load() }

func (r *Runtime) loadCredential(ctx context.Context, h token.Hash) (token.Credential, error) {
	start := time.Now()
	c, err := r.db.Store().LookupCredential(ctx, h)
	if r.hooks.LookupDone != nil {
		r.hooks.LookupDone(time.Since(start))
	}
	if errors.Is(err, storage.ErrNotFound) {
		return c, verifier.ErrNotFound
	}
	return c, err
}

// Start launches the background work, once per Runtime: migrations
// (retried while the database is unreachable), the invalidation listener,
// last-use flushing and retention. It does not wait for the database. The goroutines
// run until Close.
func (r *Runtime) Start() {
	r.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.wg.Add(6)
		go func() { defer r.wg.Done(); r.migrate(ctx) }()
		go func() { defer r.wg.Done(); r.syncQuota(ctx) }()
		go func() { defer r.wg.Done(); r.runEvents(ctx) }()
		go func() { defer r.wg.Done(); r.flushLastUsed(ctx) }()
		go func() { defer r.wg.Done(); r.listen(ctx) }()
		go func() { defer r.wg.Done(); r.purgeLoop(ctx) }()
	})
}

// migrate applies the schema, retrying while the database is unreachable.
func (r *Runtime) migrate(ctx context.Context) {
	delay := 500 * time.Millisecond
	for {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := r.db.Migrate(mctx)
		cancel()
		if err == nil {
			close(r.migrated)
			return
		}
		r.logger.Error("applying database migrations; retrying", zap.Error(err), zap.Duration("retry_in", delay))
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
// It starts once the schema is in place: a connect loads the known tokens,
// which needs the tokens table.
func (r *Runtime) listen(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-r.migrated:
	}
	_ = storage.Listen(ctx, r.listenCfg, storage.ListenHooks{
		Invalidate: func(inv storage.Invalidation) {
			if r.hooks.Invalidation != nil {
				r.hooks.Invalidation()
			}
			r.loader.Apply(inv.Created, inv.Deleted, inv.Rescan)
			r.dropCached(inv)
			r.wakeEvents()
		},
		Connected: func() {
			r.verifier.DropAll()
			r.loader.Connected()
			r.listening.Store(true)
			r.logger.Info("invalidation listener connected; token cache cleared")
		},
		Disconnected: func() {
			r.loader.Disconnected()
			r.listening.Store(false)
			r.logger.Warn("invalidation listener disconnected; reconnecting (cached tokens are served for at most the cache ttl)")
		},
		LogError: func(err error) {
			if ctx.Err() == nil {
				r.logger.Error("invalidation listener", zap.Error(err))
			}
		},
		Heartbeat: r.heartbeat,
	})
}

// flushLastUsed writes buffered last-use times every r.flush and once more
// when stopping.
func (r *Runtime) flushLastUsed(ctx context.Context) {
	var tick <-chan time.Time // nil: never
	if r.flush > 0 {
		t := time.NewTicker(r.flush)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r.writeLastUsed(fctx)
			cancel()
			return
		case <-tick:
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			r.writeLastUsed(fctx)
			cancel()
		}
	}
}

func (r *Runtime) writeLastUsed(ctx context.Context) {
	usage, addrs := r.quota.TakeUsage()
	if len(usage) > 0 {
		if err := r.db.Store().RecordUsage(ctx, usage); err != nil {
			r.quota.PutBackUsage(usage, nil)
			r.logger.Warn("recording token usage", zap.Error(err), zap.Int("rows", len(usage)))
		}
	}
	// Windows are at most a day long; an hour of slack for clock skew.
	_ = r.db.Store().PruneQuotaCounters(ctx, r.quota.Now().Add(-time.Hour))
	used := r.verifier.TakeUsed()
	if used == nil && addrs == nil {
		return
	}
	// Last use and last client address in one update per token row.
	if err := r.db.Store().RecordLastUse(ctx, used, addrs); err != nil {
		if used != nil {
			r.verifier.PutBackUsed(used)
		}
		r.quota.PutBackUsage(nil, addrs)
		r.logger.Warn("recording token last use", zap.Error(err), zap.Int("tokens", len(used)))
		return
	}
	r.lastUsedWrites.Add(1)
}

// syncQuota reconciles the quota counts with the other instances every
// quotaSync. With the database down every instance counts on its own.
func (r *Runtime) syncQuota(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-r.migrated:
	}
	r.quota.Run(ctx, r.quotaSync,
		func(err error) {
			r.logger.Warn("syncing quota counts; counting locally until the database answers", zap.Error(err))
		},
		func() { r.logger.Info("quota counts synced again") })
}

// Invalidate applies a change made by this instance to the local cache and
// the set of known tokens at once. The admin API calls it before it
// answers, so that this instance's very next request sees the change (a
// token it created is known); other instances learn of it through NOTIFY.
//
// Only the notification, which this instance receives too, counts a created
// token in the known set or removes a deleted one: a token created here is
// recorded as a local add until then (knownset.Set.AddLocal), so it is
// counted once, whichever arrives first; a token deleted here keeps its
// entry until then, which costs at most a lookup that finds nothing.
func (r *Runtime) Invalidate(inv storage.Invalidation) {
	for _, h := range inv.Created {
		if p, ok := knownset.PrefixOf(h); ok {
			r.known.AddLocal(p)
		}
	}
	r.dropCached(inv)
}

// dropCached drops the cache entries inv names.
func (r *Runtime) dropCached(inv storage.Invalidation) {
	if inv.All {
		r.verifier.DropAll()
	} else if len(inv.Hashes) > 0 {
		r.verifier.Drop(inv.Hashes)
	}
}

// Close stops the background work, waits for it (last-use times are
// flushed one last time), then closes the cache and the pool, in that
// order: a cache delete racing the cache's close can panic. A Start after
// Close does nothing.
func (r *Runtime) Close() {
	// Running the once here makes a later Start a no-op, and orders this
	// read of cancel after a Start that ran.
	r.startOnce.Do(func() {})
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.loader.Stop()
	r.verifier.Close()
	r.db.Close()
}
