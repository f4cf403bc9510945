package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// listenCloseTimeout bounds the goodbye to a connection given up on:
	// a stopped server does not read it.
	listenCloseTimeout = time.Second
)

// DefaultHeartbeat is how often the listener proves its connection alive
// unless ListenHooks.Heartbeat says otherwise.
const DefaultHeartbeat = 5 * time.Second

// errHeartbeatLost is the error of a connection whose heartbeat did not
// come back in time.
var errHeartbeatLost = errors.New("heartbeat not back within the interval; the connection is given up")

// ListenHooks receive what the invalidation listener learns. They run on the
// listener's goroutine and must be quick.
type ListenHooks struct {
	// Invalidate applies one notification.
	Invalidate func(Invalidation)
	// Connected runs after every (re)connect once LISTEN is in place:
	// events may have been missed while disconnected, so drop the cache.
	Connected func()
	// Disconnected runs when the connection is lost, or given up on
	// because its heartbeat did not come back.
	Disconnected func()
	// LogError reports non-fatal errors (the listener keeps going).
	LogError func(error)
	// Heartbeat is how often the listener sends itself a notification and
	// how long it waits for it: one that does not come back in time is a
	// lost connection (closed and reconnected), so a connection that hangs
	// without closing (a stopped backend, a half-open TCP path) is noticed
	// within twice the interval. Zero means DefaultHeartbeat.
	Heartbeat time.Duration
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
	hb := h.Heartbeat
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	var delay time.Duration // 0 until the first connect
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if delay == 0 {
			delay = listenBackoffStart
		} else {
			delay = min(2*delay, listenBackoffMax)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err != nil {
			if ctx.Err() == nil {
				h.LogError(fmt.Errorf("connect: %w", err))
			}
			continue
		}
		connected := false
		err = listenOn(ctx, conn, hb, h, func() {
			connected = true
			delay = listenBackoffStart
			h.Connected()
		})
		// A hung connection is abandoned: Close gives up after its timeout
		// and closes the socket either way.
		cctx, cancel := context.WithTimeout(context.Background(), listenCloseTimeout)
		_ = conn.Close(cctx)
		cancel()
		if connected {
			h.Disconnected()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.LogError(err)
	}
}

// listenOn runs one connection: LISTEN, then notifications and heartbeats
// until an error. up runs once LISTEN is in place.
func listenOn(ctx context.Context, conn *pgx.Conn, hb time.Duration, h ListenHooks, up func()) error {
	// The heartbeat goes to a channel of this connection's own, so that
	// other instances never receive it.
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	hbChannel := Channel + "_hb_" + hex.EncodeToString(nonce[:])
	for _, ch := range []string{Channel, hbChannel} {
		lctx, cancel := context.WithTimeout(ctx, hb)
		_, err := conn.Exec(lctx, "LISTEN "+pgx.Identifier{ch}.Sanitize())
		cancel()
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	up()
	var (
		seq     uint64    // of the last heartbeat sent
		pending bool      // it has not come back yet
		due     time.Time // when it must be back, or the next one is sent
	)
	due = time.Now().Add(hb)
	for {
		wctx, cancel := context.WithDeadline(ctx, due)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if wctx.Err() == nil || conn.IsClosed() {
				return fmt.Errorf("waiting for notifications: %w", err)
			}
			// due has come.
			if pending {
				return errHeartbeatLost
			}
			seq++
			sent := time.Now()
			sctx, cancel := context.WithTimeout(ctx, hb)
			_, err := conn.Exec(sctx, "SELECT pg_notify($1, $2)", hbChannel, strconv.FormatUint(seq, 10))
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
			pending, due = true, sent.Add(hb)
			continue
		}
		if n == nil {
			continue
		}
		switch n.Channel {
		case hbChannel:
			if n.Payload == strconv.FormatUint(seq, 10) && pending {
				// Back in time: the next one goes out one interval after
				// this one was sent.
				pending = false
			}
		case Channel:
			inv, err := decodeInvalidation([]byte(n.Payload))
			if err != nil {
				// Unreadable: drop everything rather than risk a stale
				// entry, and reload the known tokens rather than miss a
				// creation.
				h.Invalidate(Invalidation{All: true, Rescan: true})
				h.LogError(fmt.Errorf("invalidation payload: %w", err))
				continue
			}
			h.Invalidate(inv)
		}
	}
}
