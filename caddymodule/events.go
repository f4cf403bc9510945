package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/armgate/armgate/events"
	"github.com/armgate/armgate/gateway"
)

// EventsConfig sends lifecycle events (token.created, token.revoked,
// token.leaked, token.expiring, token.rotated, user.deactivated) as
// webhooks signed per the Standard Webhooks specification. Delivery is at
// least once, in order per user; see the README.
type EventsConfig struct {
	// Webhook is the URL the events are posted to (http or https).
	Webhook string `json:"webhook,omitempty"`
	// Secret signs the events: whsec_ followed by the base64 of at least
	// 24 random bytes. Give it as {file.*} or {env.*}; it is resolved at
	// provision time.
	Secret string `json:"secret,omitempty"`
	// ExpiringNotice is how long before its expiry a token is announced
	// with token.expiring (once). Default 168h; "off" (-1 in JSON) sends
	// none.
	ExpiringNotice caddy.Duration `json:"expiring_notice,omitempty"`
	// Timeout bounds one delivery. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// RetryMin and RetryMax bound the wait between attempts, which
	// doubles from RetryMin. Defaults 5s and 1h.
	RetryMin caddy.Duration `json:"retry_min,omitempty"`
	RetryMax caddy.Duration `json:"retry_max,omitempty"`
	// RetryFor is how long an event is retried before it is marked
	// failed. Default 24h.
	RetryFor caddy.Duration `json:"retry_for,omitempty"`
	// Poll is how often the outbox is looked at when no change
	// notification woke the sender. Default 2s.
	Poll caddy.Duration `json:"poll,omitempty"`
	// ExpiringScan is how often tokens about to expire are looked for.
	// Default 1m.
	ExpiringScan caddy.Duration `json:"expiring_scan,omitempty"`
}

// gatewayConfig resolves the placeholders and checks the configuration;
// nil when events are not configured. Errors never hold the secret.
func (e *EventsConfig) gatewayConfig(repl *caddy.Replacer) (*events.Config, error) {
	if e == nil {
		return nil, nil
	}
	for _, d := range []caddy.Duration{e.Timeout, e.RetryMin, e.RetryMax, e.RetryFor, e.Poll, e.ExpiringScan} {
		if d < 0 {
			return nil, errors.New("armgate: events durations must be positive")
		}
	}
	if e.ExpiringNotice < -1 {
		return nil, errors.New("armgate: events expiring_notice must be positive, or off")
	}
	c := &events.Config{
		URL:            repl.ReplaceAll(e.Webhook, ""),
		Secret:         repl.ReplaceAll(e.Secret, ""),
		ExpiringNotice: time.Duration(e.ExpiringNotice),
		Timeout:        time.Duration(e.Timeout),
		MinBackoff:     time.Duration(e.RetryMin),
		MaxBackoff:     time.Duration(e.RetryMax),
		MaxAge:         time.Duration(e.RetryFor),
		Poll:           time.Duration(e.Poll),
		ScanEvery:      time.Duration(e.ExpiringScan),
	}
	if c.URL == "" {
		return nil, errors.New("armgate: events needs a webhook URL")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("armgate: %w", err)
	}
	return c, nil
}

// eventCollectors are the metrics of the event sender; none when events are
// not configured. No label names a user or a token.
func eventCollectors(rt *gateway.Runtime) []prometheus.Collector {
	s := rt.Events()
	if s == nil {
		return nil
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts(opts(name, help)), f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), f)
	}
	return []prometheus.Collector{
		counter("events_sent_total", "Lifecycle events delivered (the receiver answered 2xx).",
			func() float64 { return float64(s.Stats.Sent.Load()) }),
		counter("events_failed_total", "Lifecycle events given up after their retries (listed by GET /events?status=failed).",
			func() float64 { return float64(s.Stats.Failed.Load()) }),
		counter("events_attempt_errors_total", "Webhook deliveries that did not get a 2xx (each is retried with backoff).",
			func() float64 { return float64(s.Stats.AttemptErrors.Load()) }),
		gauge("events_queue_length", "Lifecycle events waiting for delivery, across instances.",
			func() float64 { n, _, _ := s.Stats.Queue(); return float64(n) }),
		gauge("events_failed_stored", "Lifecycle events marked failed and not retried yet, across instances.",
			func() float64 { _, n, _ := s.Stats.Queue(); return float64(n) }),
		gauge("events_oldest_pending_age_seconds", "Age of the oldest lifecycle event waiting for delivery; 0 when none.",
			func() float64 { _, _, age := s.Stats.Queue(); return age.Seconds() }),
	}
}
