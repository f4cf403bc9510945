package gateway

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/armgate/armgate/storage"
)

// Retention runs: one shortly after start (after a random delay, so that
// instances started together do not all try at once), then one every
// purgeInterval, each moved by up to a tenth of it at random. Instances take
// turns through an advisory lock; the others skip that run.
const (
	purgeInterval   = time.Hour
	purgeStartDelay = time.Minute
	// purgeTimeout bounds one run's batches.
	purgeTimeout = 10 * time.Minute
)

// purgeLoop deletes the tokens expired for longer than the retention, and
// the usage days older than it, at start and then periodically, until ctx
// ends. It waits for the schema.
func (r *Runtime) purgeLoop(ctx context.Context) {
	if r.retention <= 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-r.migrated:
	}
	delay := r.firstPurge()
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, purgeTimeout)
		n, err := r.Purge(pctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			r.logger.Warn("deleting expired tokens past the retention; retrying at the next run",
				zap.Error(err), zap.Int("deleted", n))
		case n > 0:
			r.logger.Info("deleted expired tokens past the retention",
				zap.Int("deleted", n), zap.Duration("retention", r.retention))
		}
		delay = purgeInterval - purgeInterval/10 + rand.N(purgeInterval/5)
	}
}

// Purge deletes, in batches, the tokens that expired longer than the
// retention ago, each with an audit event token.purge (actor system) and a
// notification that drops it from every instance's cache and known set,
// and then the daily usage rows of days older than the retention. It
// returns how many tokens it deleted; with retention off it deletes
// nothing. When another instance is purging, this one leaves the work to
// it.
func (r *Runtime) Purge(ctx context.Context) (int, error) {
	if r.retention <= 0 {
		return 0, nil
	}
	total := 0
	for {
		cutoff := time.Now().Add(-r.retention)
		n, inv, busy, err := r.db.Store().PurgeExpired(ctx, cutoff)
		if err != nil || busy {
			return total, err
		}
		total += n
		r.dropCached(inv)
		if n < storage.PurgeBatch {
			break
		}
	}
	for {
		n, busy, err := r.db.Store().PurgeUsage(ctx, time.Now().Add(-r.retention))
		if err != nil || busy || n < storage.PurgeUsageBatch {
			return total, err
		}
	}
}
