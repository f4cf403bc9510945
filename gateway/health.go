package gateway

import (
	"context"
	"sync"
	"time"
)

// HealthInterval is how long one database ping's result answers health
// checks: however often the health endpoint is called, the database sees
// at most one ping per interval.
const HealthInterval = time.Second

// pingTimeout bounds one health ping, so that a hung database reads as
// down instead of holding the health check.
const pingTimeout = 2 * time.Second

// Health is the runtime's state as a load balancer needs it.
type Health struct {
	// Database is true when the last ping of the pool succeeded.
	Database bool
	// Listener is true while the LISTEN connection for invalidations is up.
	Listener bool
	// Migrated is true once the schema is in place.
	Migrated bool
}

// Health reports the runtime's state. The database ping is cached for
// HealthInterval and concurrent callers share one ping.
func (r *Runtime) Health(ctx context.Context) Health {
	migrated := false
	select {
	case <-r.migrated:
		migrated = true
	default:
	}
	r.health.init.Do(func() {
		r.health.ping = r.db.pool.Ping
	})
	return Health{
		Database: r.health.up(ctx),
		Listener: r.Listening(),
		Migrated: migrated,
	}
}

// pingCache pings at most once per HealthInterval. Callers hold mu during
// the ping, so those arriving meanwhile wait for its result instead of
// pinging too.
type pingCache struct {
	init sync.Once
	ping func(context.Context) error
	// now is the clock; nil means time.Now.
	now func() time.Time

	mu     sync.Mutex
	at     time.Time
	result bool
	valid  bool
}

func (c *pingCache) up(ctx context.Context) bool {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := now(); c.valid && !t.Before(c.at) && t.Sub(c.at) < HealthInterval {
		return c.result
	}
	// The result is shared with other callers, so one caller hanging up
	// must not turn it into "down".
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	c.result = c.ping(pctx) == nil
	c.at, c.valid = now(), true
	return c.result
}
