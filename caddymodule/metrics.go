package caddymodule

import (
	"errors"
	"net/http"
	"sync"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/armgate/armgate/stripe"
	"github.com/armgate/armgate/token"
)

const metricsNamespace, metricsSubsystem = "caddy", "armgate"

// outcome is how armgate_auth decided a request; its label is the only
// label of auth_decisions_total. Nothing is ever labelled by token or user.
type outcome uint8

const (
	outcomeAllowed outcome = iota
	outcomeMissing
	outcomeMalformed
	outcomeInvalid // unknown, bad checksum, deleted
	outcomeExpired
	outcomeRevoked
	outcomeDeactivated
	outcomeInsufficientScope
	outcomeUnavailable
	outcomeRateLimited
	// outcomeCanceled: the client went away while its token was being
	// looked up; no decision reached it.
	outcomeCanceled
	// outcomeQuotaExceeded: a live token over its (or its user's) quota.
	outcomeQuotaExceeded
	// outcomeIPNotAllowed: a live token used from outside its allow-list.
	outcomeIPNotAllowed
	numOutcomes
)

// outcomeLabels is the one list of outcomes: the metric is pre-registered
// with all of them, the handler counts through them.
var outcomeLabels = [numOutcomes]string{
	outcomeAllowed:           "allowed",
	outcomeMissing:           "missing",
	outcomeMalformed:         "malformed",
	outcomeInvalid:           "invalid",
	outcomeExpired:           "expired",
	outcomeRevoked:           "revoked",
	outcomeDeactivated:       "deactivated",
	outcomeInsufficientScope: "insufficient_scope",
	outcomeUnavailable:       "unavailable",
	outcomeRateLimited:       "rate_limited",
	outcomeCanceled:          "canceled",
	outcomeQuotaExceeded:     "quota_exceeded",
	outcomeIPNotAllowed:      "ip_not_allowed",
}

// String returns the outcome's metric label.
func (o outcome) String() string { return outcomeLabels[o] }

// refusalOutcome is the outcome of a token refused with status s.
func refusalOutcome(s token.Status) outcome {
	switch s {
	case token.Expired:
		return outcomeExpired
	case token.Revoked:
		return outcomeRevoked
	case token.Deactivated:
		return outcomeDeactivated
	default:
		return outcomeInvalid
	}
}

// processMetrics live for the process, so counters survive config reloads;
// they are registered with each config's registry.
var processMetrics = struct {
	once          sync.Once
	decisions     *decisionCounts
	queryDuration prometheus.Histogram
	invalidations prometheus.Counter
}{}

// decisionCounts is auth_decisions_total: a collector of striped counters,
// one per outcome, since every request adds to one of them (a
// prometheus.Counter is one atomic that both CPUs write per request).
type decisionCounts struct {
	desc  *prometheus.Desc
	count [numOutcomes]stripe.Counter
}

func (d *decisionCounts) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *decisionCounts) Collect(ch chan<- prometheus.Metric) {
	for o, label := range outcomeLabels {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.count[o].Load()), label)
	}
}

func initProcessMetrics() {
	m := &processMetrics
	m.once.Do(func() {
		o := prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "auth_decisions_total",
			Help: "Requests decided by armgate_auth, by result.",
		}
		m.decisions = &decisionCounts{desc: prometheus.NewDesc(
			prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), o.Help, []string{"result"}, nil)}
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

// countDecision counts one auth decision on request r. r's address picks
// the stripe: requests served at the same time are different objects.
func countDecision(o outcome, r *http.Request) {
	processMetrics.decisions.count[o].Add(uint64(uintptr(unsafe.Pointer(r)) >> 8))
}

// registerMetrics registers the process metrics and this app's gauges with
// the config's registry.
func (a *App) registerMetrics(reg *prometheus.Registry) error {
	initProcessMetrics()
	if reg == nil {
		return nil
	}
	rt := a.runtime
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
			func() float64 { return float64(rt.Verifier().Stats.Hits.Load()) }),
		counter("cache_misses_total", "Token lookups that missed the cache.",
			func() float64 { return float64(rt.Verifier().Stats.Misses.Load()) }),
		counter("db_lookups_total", "Token lookups sent to PostgreSQL (concurrent misses share one).",
			func() float64 { return float64(rt.Verifier().Stats.Loads.Load()) }),
		counter("db_lookup_errors_total", "Token lookups that failed (answered 503).",
			func() float64 { return float64(rt.Verifier().Stats.LoadErrors.Load()) }),
		counter("absent_refused_total", "Well-formed tokens refused as unknown without a query: absent from the current set of known tokens, and no lookup left in the budget.",
			func() float64 { return float64(rt.Verifier().Stats.AbsentRefused.Load()) }),
		gauge("known_tokens", "Tokens in the set of known tokens.",
			func() float64 { n, _ := rt.KnownTokens(); return float64(n) }),
		gauge("known_tokens_current", "1 while the set of known tokens is current (loaded, listener connected); unknown tokens are looked up otherwise.",
			func() float64 {
				if _, ok := rt.KnownTokens(); ok {
					return 1
				}
				return 0
			}),
		gauge("cache_entries", "Known tokens in the cache.",
			func() float64 { return float64(rt.Verifier().CacheEntries()) }),
		gauge("cache_bytes_estimated", "Memory held by the token cache, estimated from measured per-entry sizes.",
			func() float64 { return float64(rt.Verifier().CacheBytes()) }),
		gauge("listener_connected", "1 while the invalidation listener is connected.",
			func() float64 {
				if rt.Listening() {
					return 1
				}
				return 0
			}),
		gauge("pool_acquired_conns", "Connections in use.",
			func() float64 { return float64(rt.Database().PoolStat().AcquiredConns()) }),
		gauge("pool_idle_conns", "Idle connections.",
			func() float64 { return float64(rt.Database().PoolStat().IdleConns()) }),
		gauge("pool_total_conns", "Open connections.",
			func() float64 { return float64(rt.Database().PoolStat().TotalConns()) }),
		counter("pool_empty_acquire_total", "Acquires that waited for a connection.",
			func() float64 { return float64(rt.Database().PoolStat().EmptyAcquireCount()) }),
		counter("last_used_writes_total", "Batched last-use writes (one UPDATE of every token used since the previous one).",
			func() float64 { return float64(rt.LastUsedWrites()) }),
		counter("quota_syncs_total", "Quota syncs with PostgreSQL (one statement each).",
			func() float64 { return float64(rt.Quota().Syncs.Load()) }),
		counter("quota_sync_errors_total", "Quota syncs that failed; quotas then count per instance.",
			func() float64 { return float64(rt.Quota().SyncErrors.Load()) }),
	}
	for _, c := range append(collectors, eventCollectors(rt)...) {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}
