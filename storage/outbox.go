package storage

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lifecycle events: the outbox.
//
// When events are enabled (EnableEvents), every change's transaction sets
// armgate.events, and a trigger on the audit log turns the audit rows of
// that transaction into outbox rows (token.create → token.created,
// token.revoke and token.logout → token.revoked, token.leaked, token.rotate →
// token.rotated, user.deactivate → user.deactivated). So an event exists
// exactly when its change committed, and a change that writes its audit
// rows in bulk (revoke-all, a leak report) queues one event per row, in
// order. The sender (package events) posts them.

// Event statuses.
const (
	EventPending = "pending"
	EventSent    = "sent"
	EventFailed  = "failed"
)

// Audit action of a retried event.
const ActionEventRetry = "event.retry"

// Errors of the outbox.
var (
	// ErrEventNotFailed: only a failed event can be retried.
	ErrEventNotFailed = errors.New("only a failed event can be retried")
)

// eventIDPattern is the form of an event id (the webhook-id header).
var eventIDPattern = regexp.MustCompile(`^evt_[0-9a-f]{32}$`)

// ValidEventID reports whether id has the form of an event id.
func ValidEventID(id string) bool { return eventIDPattern.MatchString(id) }

// EnableEvents makes every change's transaction queue its lifecycle
// events. Call it before the Store is used.
func (s *Store) EnableEvents() {
	// One round trip: the setting rides on BEGIN, and is local to the
	// transaction (safe behind a transaction-pooling proxy).
	s.txOpts = pgx.TxOptions{BeginQuery: `BEGIN; SELECT set_config('armgate.events', 'on', true)`}
}

// EventsEnabled reports whether EnableEvents was called.
func (s *Store) EventsEnabled() bool { return s.txOpts.BeginQuery != "" }

// Event is an outbox row.
type Event struct {
	ID            string
	Type          string
	UserID        string
	Status        string
	Attempts      int
	CreatedAt     time.Time
	NextAttemptAt *time.Time
	SentAt        *time.Time
	LastError     *string
	// Payload is the body the receiver gets.
	Payload json.RawMessage `db:"-"`
}

const eventColumns = `event_id AS id, type, user_id, status, attempts, created_at,
	CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, sent_at, last_error, payload::text AS payload_text`

type eventRow struct {
	Event
	PayloadText string
}

func collectEvent(row pgx.CollectableRow) (Event, error) {
	r, err := pgx.RowToStructByName[eventRow](row)
	e := r.Event
	e.Payload = json.RawMessage(r.PayloadText)
	e.CreatedAt = e.CreatedAt.UTC()
	e.NextAttemptAt, e.SentAt = utcPtr(e.NextAttemptAt), utcPtr(e.SentAt)
	return e, err
}

// ListEvents returns up to limit events with status, oldest first, after
// the event id after (a page's last; empty for the first page), and
// whether there are more.
func (s *Store) ListEvents(ctx context.Context, status, after string, limit int) ([]Event, bool, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM armgate.outbox
		WHERE status = $1 AND ($2 = '' OR id > coalesce((SELECT id FROM armgate.outbox WHERE event_id = $2), 0))
		ORDER BY armgate.outbox.id LIMIT $3`, status, after, limit+1) // not the id column of the answer: that is event_id
	events, err := pgx.CollectRows(rows, collectEvent)
	if err != nil {
		return nil, false, err
	}
	more := len(events) > limit
	if more {
		events = events[:limit]
	}
	return events, more, nil
}

// RetryEvent puts a failed event back in the queue with a fresh retry
// window. A pending event is left as it is; a sent one is
// ErrEventNotFailed. The retry is audited with actor.
func (s *Store) RetryEvent(ctx context.Context, actor, id string) (Event, error) {
	var e Event
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var status, userID string
		err := tx.QueryRow(ctx, `SELECT status, user_id FROM armgate.outbox WHERE event_id = $1 FOR UPDATE`, id).Scan(&status, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		switch status {
		case EventSent:
			return ErrEventNotFailed
		case EventFailed:
			if _, err := tx.Exec(ctx, `UPDATE armgate.outbox SET status = 'pending', attempts = 0,
				next_attempt_at = clock_timestamp(), window_start = clock_timestamp() WHERE event_id = $1`, id); err != nil {
				return err
			}
			if err := audit(ctx, tx, actor, ActionEventRetry, id, userID, nil); err != nil {
				return err
			}
		}
		rows, _ := tx.Query(ctx, `SELECT `+eventColumns+` FROM armgate.outbox WHERE event_id = $1`, id)
		e, err = pgx.CollectExactlyOneRow(rows, collectEvent)
		return err
	})
	return e, err
}

// Delivery is an event being delivered.
type Delivery struct {
	EventID  string
	Type     string
	UserID   string
	Payload  []byte
	Attempts int // attempts before this one
}

// RetryPolicy decides what becomes of an event whose delivery failed.
type RetryPolicy struct {
	// Delay is the wait before the next attempt, given the attempts made
	// so far (this one included, so at least 1).
	Delay func(attempts int) time.Duration
	// MaxAge is how long after its first attempt (or its retry by hand)
	// an event is retried; then it is failed.
	MaxAge time.Duration
}

// DeliverNext takes the oldest event that is due and whose user has no
// earlier pending event (events of a user go out in order), and calls send
// with it while holding its row lock: another instance's sender skips it,
// and a sender that dies mid-delivery releases it (it is sent again: delivery is
// at least once). A nil error from send marks it sent; another error
// schedules a retry, or fails it past the policy's MaxAge. Nothing happens
// when nothing is due (res.Found false). If ctx ends during send, the event is left as it
// was.
func (s *Store) DeliverNext(ctx context.Context, send func(Delivery) error, p RetryPolicy) (res DeliveryResult, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var d Delivery
		var payload string
		err := tx.QueryRow(ctx, `SELECT o.event_id, o.type, o.user_id, o.payload::text, o.attempts
			FROM armgate.outbox o
			WHERE o.status = 'pending' AND o.next_attempt_at <= clock_timestamp()
			  AND NOT EXISTS (SELECT 1 FROM armgate.outbox b
			                  WHERE b.status = 'pending' AND b.user_id = o.user_id AND b.id < o.id)
			ORDER BY o.id
			LIMIT 1
			FOR UPDATE OF o SKIP LOCKED`).Scan(&d.EventID, &d.Type, &d.UserID, &payload, &d.Attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		res.Found = true
		d.Payload = []byte(payload)
		res.Delivery = d
		res.SendErr = send(d)
		if ctx.Err() != nil {
			return ctx.Err() // roll back: the event stays as it was
		}
		if res.SendErr == nil {
			_, err = tx.Exec(ctx, `UPDATE armgate.outbox SET status = 'sent', sent_at = clock_timestamp(),
				attempts = attempts + 1, last_error = NULL WHERE event_id = $1`, d.EventID)
			return err
		}
		delay := p.Delay(d.Attempts + 1)
		var status string
		err = tx.QueryRow(ctx, `UPDATE armgate.outbox SET attempts = attempts + 1, last_error = $2,
			next_attempt_at = clock_timestamp() + $3::bigint * interval '1 microsecond',
			status = CASE WHEN clock_timestamp() + $3::bigint * interval '1 microsecond'
			                   > window_start + $4::bigint * interval '1 microsecond'
			              THEN 'failed' ELSE 'pending' END
			WHERE event_id = $1 RETURNING status`, d.EventID, truncate(res.SendErr.Error(), 500),
			delay.Microseconds(), p.MaxAge.Microseconds()).Scan(&status)
		res.Failed = status == EventFailed
		return err
	})
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return res, err
}

// DeliveryResult is what DeliverNext did.
type DeliveryResult struct {
	// Found: an event was due, and Delivery is it.
	Found    bool
	Delivery Delivery
	// SendErr is the delivery's error, nil when it was sent.
	SendErr error
	// Failed: the delivery failed and the event is past its retries.
	Failed bool
}

// truncate cuts s to at most n bytes (on a rune boundary).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// QueueStats describe the outbox.
type QueueStats struct {
	Pending int
	Failed  int
	// OldestPendingAge is the age of the oldest pending event, zero if
	// none.
	OldestPendingAge time.Duration
}

// OutboxStats counts the pending and failed events.
func (s *Store) OutboxStats(ctx context.Context) (QueueStats, error) {
	var st QueueStats
	var ageUS int64
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM armgate.outbox WHERE status = 'pending'),
		(SELECT count(*) FROM armgate.outbox WHERE status = 'failed'),
		coalesce((SELECT (extract(epoch FROM clock_timestamp() - min(created_at)) * 1e6)::bigint
		          FROM armgate.outbox WHERE status = 'pending'), 0)`).Scan(&st.Pending, &st.Failed, &ageUS)
	st.OldestPendingAge = time.Duration(ageUS) * time.Microsecond
	return st, err
}

// expiringBatch bounds the token.expiring events one scan statement
// queues.
const expiringBatch = 1000

// QueueExpiring queues token.expiring for every token that expires within
// notice and was not announced yet: active, not rotated away, of an active
// user. Each token is announced once (recorded in the same transaction;
// concurrent scans on several instances announce it once). It returns how
// many it queued.
func (s *Store) QueueExpiring(ctx context.Context, notice time.Duration) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `WITH due AS (
			INSERT INTO armgate.outbox_expiring (token_id)
			SELECT t.id FROM armgate.tokens t JOIN armgate.users u ON u.id = t.user_id
			WHERE t.revoked_at IS NULL AND t.rotated_at IS NULL AND u.deactivated_at IS NULL
			  AND t.expires_at > now() AND t.expires_at <= now() + $1::bigint * interval '1 microsecond'
			  AND NOT EXISTS (SELECT 1 FROM armgate.outbox_expiring e WHERE e.token_id = t.id)
			ORDER BY t.expires_at, t.id
			LIMIT $2
			ON CONFLICT DO NOTHING
			RETURNING token_id)
		INSERT INTO armgate.outbox (type, user_id, payload)
		SELECT 'token.expiring', t.user_id, armgate.outbox_payload('token.expiring', now(), NULL, '{}', t, u)
		FROM due JOIN armgate.tokens t ON t.id = due.token_id JOIN armgate.users u ON u.id = t.user_id
		ORDER BY t.expires_at, t.id`, notice.Microseconds(), expiringBatch)
		if err != nil {
			return total, err
		}
		n := int(tag.RowsAffected())
		total += n
		if n < expiringBatch {
			return total, nil
		}
	}
}

// PruneSentEvents deletes up to 1000 sent events older than keep and
// returns how many it deleted.
func (s *Store) PruneSentEvents(ctx context.Context, keep time.Duration) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM armgate.outbox WHERE id IN (
		SELECT id FROM armgate.outbox WHERE status = 'sent' AND sent_at < now() - $1::bigint * interval '1 microsecond'
		LIMIT 1000)`, keep.Microseconds())
	return int(tag.RowsAffected()), err
}
