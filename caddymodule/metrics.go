package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace, metricsSubsystem = "caddy", "armgate"

// Auth decision results, the only label values of decisions_total. Nothing
// is ever labelled by token or user.
const (
	resultAllowed     = "allowed"
	resultMissing     = "missing"
	resultMalformed   = "malformed"
	resultInvalid     = "invalid" // unknown, bad checksum, deleted
	resultExpired     = "expired"
	resultRevoked     = "revoked"
	resultDeactivated = "deactivated"
	resultForbidden   = "insufficient_scope"
	resultUnavailable = "unavailable"
	resultRateLimited = "rate_limited"
)

// processMetrics live for the process, so counters survive config reloads;
// they are registered with each config's registry.
var processMetrics = struct {
	once          sync.Once
	decisions     *prometheus.CounterVec
	queryDuration prometheus.Histogram
	invalidations prometheus.Counter
	// decision holds the pre-resolved counters, so the hot path does no
	// label lookup.
	decision map[string]prometheus.Counter
}{}

func initProcessMetrics() {
	m := &processMetrics
	m.once.Do(func() {
		m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "auth_decisions_total",
			Help: "Requests decided by armgate_auth, by result.",
		}, []string{"result"})
		m.decision = map[string]prometheus.Counter{}
		for _, r := range []string{resultAllowed, resultMissing, resultMalformed, resultInvalid, resultExpired,
			resultRevoked, resultDeactivated, resultForbidden, resultUnavailable, resultRateLimited} {
			m.decision[r] = m.decisions.WithLabelValues(r)
		}
		m.queryDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name:    "db_lookup_duration_seconds",
			Help:    "Latency of token lookups in PostgreSQL (cache misses).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		})
		m.invalidations = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "invalidations_received_total",
			Help: "Cache invalidation notifications received over LISTEN.",
		})
	})
}

// countDecision counts one auth decision.
func countDecision(result string) {
	processMetrics.decision[result].Inc()
}

// registerMetrics registers the process metrics and this app's gauges with
// the config's registry.
func (a *App) registerMetrics(reg *prometheus.Registry) error {
	initProcessMetrics()
	if reg == nil {
		return nil
	}
	s := a.shared
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}, f)
	}
	collectors := []prometheus.Collector{
		processMetrics.decisions, processMetrics.queryDuration, processMetrics.invalidations,
		counter("cache_hits_total", "Token lookups answered by the cache.",
			func() float64 { return float64(s.verifier.Stats.Hits.Load()) }),
		counter("cache_misses_total", "Token lookups that missed the cache.",
			func() float64 { return float64(s.verifier.Stats.Misses.Load()) }),
		counter("db_lookups_total", "Token lookups sent to PostgreSQL (concurrent misses share one).",
			func() float64 { return float64(s.verifier.Stats.Loads.Load()) }),
		counter("db_lookup_errors_total", "Token lookups that failed (answered 503).",
			func() float64 { return float64(s.verifier.Stats.LoadErrors.Load()) }),
		gauge("cache_entries", "Known tokens in the cache.",
			func() float64 { return float64(s.verifier.CacheEntries()) }),
		gauge("cache_bytes_estimated", "Memory held by the token cache, estimated from measured per-entry sizes.",
			func() float64 { return float64(s.verifier.CacheBytes()) }),
		gauge("listener_connected", "1 while the invalidation listener is connected.",
			func() float64 {
				if s.listening.Load() {
					return 1
				}
				return 0
			}),
		gauge("pool_acquired_conns", "Connections in use.",
			func() float64 { return float64(s.pool.Stat().AcquiredConns()) }),
		gauge("pool_idle_conns", "Idle connections.",
			func() float64 { return float64(s.pool.Stat().IdleConns()) }),
		gauge("pool_total_conns", "Open connections.",
			func() float64 { return float64(s.pool.Stat().TotalConns()) }),
		counter("pool_empty_acquire_total", "Acquires that waited for a connection.",
			func() float64 { return float64(s.pool.Stat().EmptyAcquireCount()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}
