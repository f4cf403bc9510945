package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// Reconnect backoff of the listener: it starts short and is capped, so an
// instance rejoins quickly after a blip and does not hammer a database that
// is down.
const (
	listenBackoffStart = 200 * time.Millisecond
	listenBackoffMax   = 5 * time.Second
	// listenConnectTimeout bounds a connection attempt when the DSN sets
	// no connect_timeout, so an unreachable host (dropped packets, not a
	// refusal) costs seconds rather than the kernel's minutes.
	listenConnectTimeout = 10 * time.Second
)

// ListenHooks receive what the invalidation listener learns. They run on the
// listener's goroutine and must be quick.
type ListenHooks struct {
	// Invalidate applies one notification.
	Invalidate func(Invalidation)
	// Connected runs after every (re)connect once LISTEN is in place:
	// events may have been missed while disconnected, so drop the cache.
	Connected func()
	// Disconnected runs when the connection is lost.
	Disconnected func()
	// LogError reports non-fatal errors (the listener keeps going).
	LogError func(error)
}

// Listen LISTENs on Channel over a dedicated connection made with cfg and
// calls the hooks, reconnecting with backoff until ctx ends.
//
// Notifications are delivered only on the server where they were committed,
// and a hot standby refuses LISTEN, so unless the DSN says otherwise
// (target_session_attrs) the connection goes to a primary: with a
// multi-host DSN, pgx then skips standbys instead of retrying the first
// host for ever.
func Listen(ctx context.Context, cfg *pgx.ConnConfig, h ListenHooks) error {
	cfg = cfg.Copy()
	if cfg.ValidateConnect == nil {
		cfg.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsPrimary
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = listenConnectTimeout
	}
	var (
		mu        sync.Mutex
		delay     time.Duration // 0 until the first connect
		connected bool
	)
	l := &pgxlisten.Listener{
		// Backoff is done in Connect; pgxlisten's own delay is fixed.
		ReconnectDelay: -1,
		LogError:       func(_ context.Context, err error) { h.LogError(err) },
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			mu.Lock()
			d := delay
			if connected {
				connected = false
				h.Disconnected()
			}
			if delay == 0 {
				delay = listenBackoffStart
			} else {
				delay = min(2*delay, listenBackoffMax)
			}
			mu.Unlock()
			if d > 0 {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(d):
				}
			}
			return pgx.ConnectConfig(ctx, cfg.Copy())
		},
	}
	l.Handle(Channel, handler{
		notify: func(payload string) error {
			var inv Invalidation
			if err := json.Unmarshal([]byte(payload), &inv); err != nil {
				// Unreadable: drop everything rather than risk a stale entry,
				// and reload the known tokens rather than miss a creation.
				inv = Invalidation{All: true, Rescan: true}
				h.Invalidate(inv)
				return fmt.Errorf("invalidation payload: %w", err)
			}
			h.Invalidate(inv)
			return nil
		},
		backlog: func() {
			mu.Lock()
			connected = true
			delay = listenBackoffStart
			mu.Unlock()
			h.Connected()
		},
	})
	return l.Listen(ctx)
}

// handler adapts the hooks to pgxlisten; HandleBacklog runs right after
// LISTEN on every (re)connect.
type handler struct {
	notify  func(string) error
	backlog func()
}

func (h handler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	return h.notify(n.Payload)
}

func (h handler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.backlog()
	return nil
}

var _ pgxlisten.BacklogHandler = handler{}
