// Package events delivers armgate's lifecycle events (token.created,
// token.revoked, token.leaked, token.expiring, token.rotated,
// user.deactivated) as webhooks signed per the Standard Webhooks
// specification. The events are queued in PostgreSQL by the changes
// themselves (storage's outbox, in the change's own transaction); the
// Sender posts them in order per user, at least once, retrying with
// exponential backoff for up to a day, and announces tokens that are about
// to expire. It does not import Caddy.
package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	// The Standard Webhooks reference library: its Sign is what every
	// receiver's Verify checks, so armgate does not hand-roll the
	// signing string, the key decoding or the header format.
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"

	"github.com/armgate/armgate/storage"
)

// Defaults, as documented in the README.
const (
	DefaultExpiringNotice = 7 * 24 * time.Hour
	DefaultPoll           = 2 * time.Second
	DefaultScanEvery      = time.Minute
	DefaultMinBackoff     = 5 * time.Second
	DefaultMaxBackoff     = time.Hour
	DefaultMaxAge         = 24 * time.Hour
	DefaultTimeout        = 10 * time.Second
	DefaultKeepSent       = 7 * 24 * time.Hour
	// maxResponseBody bounds what is read of a receiver's answer.
	maxResponseBody = 64 << 10
	// maxRedirects bounds the redirects followed (on the webhook's own
	// host only).
	maxRedirects = 3
)

// Config defines a Sender.
type Config struct {
	// URL receives the events (POST). Required: http or https.
	URL string
	// Secret signs them: "whsec_" and the base64 of at least 24 random
	// bytes. Required.
	Secret string
	// ExpiringNotice is how long before its expiry a token is announced
	// (token.expiring); zero means DefaultExpiringNotice, negative none.
	ExpiringNotice time.Duration

	// The rest have defaults; tests shorten them.

	// Poll is how often the queue is looked at when nothing woke the
	// sender.
	Poll time.Duration
	// ScanEvery is how often tokens about to expire are looked for.
	ScanEvery time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff (with jitter).
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is how long an event is retried before it is failed.
	MaxAge time.Duration
	// Timeout bounds one delivery.
	Timeout time.Duration
	// KeepSent is how long sent events stay in the outbox.
	KeepSent time.Duration
}

// minSecretBytes is the least key length accepted: 24 random bytes.
const minSecretBytes = 24

// Validate checks the URL and the secret; the errors never hold the secret.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("events: webhook must be an http or https URL")
	}
	return checkSecret(c.Secret)
}

func checkSecret(secret string) error {
	const hint = " (generate one with: echo \"whsec_$(openssl rand -base64 32)\")"
	if !strings.HasPrefix(secret, "whsec_") {
		return errors.New("events: secret must be in the form whsec_<base64>" + hint)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil || wh == nil {
		return errors.New("events: secret is not valid base64 after whsec_" + hint)
	}
	if n := decodedLen(strings.TrimPrefix(secret, "whsec_")); n < minSecretBytes {
		return fmt.Errorf("events: secret is %d bytes; at least %d are required%s", n, minSecretBytes, hint)
	}
	return nil
}

// decodedLen is the number of bytes a padded base64 string decodes to.
func decodedLen(s string) int {
	return len(s)/4*3 - strings.Count(s[max(0, len(s)-2):], "=")
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ExpiringNotice, DefaultExpiringNotice)
	def(&c.Poll, DefaultPoll)
	def(&c.ScanEvery, DefaultScanEvery)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.Timeout, DefaultTimeout)
	def(&c.KeepSent, DefaultKeepSent)
	return c
}

// Stats are the sender's counters and the outbox's last known state.
type Stats struct {
	Sent, Failed, Attempts atomic.Int64
	// AttemptErrors counts attempts that did not get a 2xx.
	AttemptErrors atomic.Int64

	mu       sync.Mutex
	queue    storage.QueueStats
	queueAt  time.Time
	queueSet bool
}

// Queue returns the pending and failed counts and the age of the oldest
// pending event, as of the sender's last look (aged since then).
func (s *Stats) Queue() (pending, failed int, oldestAge time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.queueSet {
		return 0, 0, 0
	}
	age := s.queue.OldestPendingAge
	if s.queue.Pending > 0 {
		age += time.Since(s.queueAt)
	}
	return s.queue.Pending, s.queue.Failed, age
}

func (s *Stats) setQueue(q storage.QueueStats) {
	s.mu.Lock()
	s.queue, s.queueAt, s.queueSet = q, time.Now(), true
	s.mu.Unlock()
}

// Sender delivers the outbox.
type Sender struct {
	cfg    Config
	store  *storage.Store
	wh     *standardwebhooks.Webhook
	client *http.Client
	logger *zap.Logger
	wake   chan struct{}
	// Stats are for metrics.
	Stats Stats
	// now is the clock of the webhook-timestamp header.
	now func() time.Time
}

// New returns a Sender for store, which must have events enabled.
func New(cfg Config, store *storage.Store, logger *zap.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	wh, err := standardwebhooks.NewWebhook(cfg.Secret)
	if err != nil {
		return nil, errors.New("events: invalid secret")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	target, _ := url.Parse(cfg.URL)
	return &Sender{
		cfg:    cfg,
		store:  store,
		wh:     wh,
		client: newClient(target, cfg.Timeout),
		logger: logger,
		wake:   make(chan struct{}, 1),
		now:    time.Now,
	}, nil
}

// newClient is the webhook's HTTP client: a timeout per delivery, no
// cookies, redirects followed only on the webhook's own scheme and host.
func newClient(target *url.URL, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return http.ErrUseLastResponse
			}
			if req.URL.Scheme != target.Scheme || req.URL.Host != target.Host {
				return http.ErrUseLastResponse // a 3xx, so a failed attempt
			}
			return nil
		},
	}
}

// Wake makes the sender look at the queue now (e.g. on a change
// notification). It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends. Database errors are logged and retried at
// the next poll.
func (s *Sender) Run(ctx context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	var lastScan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-s.wake:
		}
		if time.Since(lastScan) >= s.cfg.ScanEvery {
			lastScan = time.Now()
			s.housekeeping(ctx)
		}
		s.drain(ctx)
		s.refreshStats(ctx)
		poll.Reset(s.cfg.Poll)
	}
}

// housekeeping queues token.expiring events and prunes sent events.
func (s *Sender) housekeeping(ctx context.Context) {
	if s.cfg.ExpiringNotice > 0 {
		if n, err := s.store.QueueExpiring(ctx, s.cfg.ExpiringNotice); err != nil {
			s.logError("queueing token.expiring events", err)
		} else if n > 0 {
			s.logger.Info("token.expiring events queued", zap.Int("tokens", n))
		}
	}
	if _, err := s.store.PruneSentEvents(ctx, s.cfg.KeepSent); err != nil {
		s.logError("pruning sent events", err)
	}
}

// drain delivers every due event, one at a time.
func (s *Sender) drain(ctx context.Context) {
	policy := storage.RetryPolicy{Delay: s.backoff, MaxAge: s.cfg.MaxAge}
	for ctx.Err() == nil {
		res, err := s.store.DeliverNext(ctx, func(d storage.Delivery) error { return s.post(ctx, d) }, policy)
		if err != nil {
			s.logError("delivering events", err)
			return
		}
		if !res.Found {
			return
		}
		s.Stats.Attempts.Add(1)
		if res.SendErr == nil {
			s.Stats.Sent.Add(1)
			continue
		}
		s.Stats.AttemptErrors.Add(1)
		d := res.Delivery
		if res.Failed {
			s.Stats.Failed.Add(1)
			s.logger.Error("webhook delivery failed for good; retry it with POST /events/{id}/retry",
				zap.String("event_id", d.EventID), zap.String("type", d.Type),
				zap.Int("attempts", d.Attempts+1), zap.String("error", res.SendErr.Error()))
			continue
		}
		s.logger.Warn("webhook delivery failed; retrying with backoff",
			zap.String("event_id", d.EventID), zap.String("type", d.Type),
			zap.Int("attempt", d.Attempts+1), zap.String("error", res.SendErr.Error()))
		// The next due event may be another user's: go on.
	}
}

func (s *Sender) refreshStats(ctx context.Context) {
	q, err := s.store.OutboxStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logError("reading the outbox", err)
		}
		return
	}
	s.Stats.setQueue(q)
}

func (s *Sender) logError(what string, err error) {
	if !errors.Is(err, context.Canceled) {
		s.logger.Error(what, zap.Error(err))
	}
}

// backoff is the wait after the attempts-th failed attempt: MinBackoff
// doubled per attempt, capped at MaxBackoff, with up to 20% jitter so that
// instances retrying the same receiver do not stay in step.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// post delivers one event. The error never holds the webhook URL (it may
// carry a credential) or the receiver's body.
func (s *Sender) post(ctx context.Context, d storage.Delivery) error {
	ts := s.now()
	sig, err := s.wh.Sign(d.EventID, ts, d.Payload)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return errors.New("building the request failed")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "armgate-webhooks")
	req.Header.Set(standardwebhooks.HeaderWebhookID, d.EventID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, fmt.Sprint(ts.Unix()))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("request failed: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}
