package storage

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// rateLimitColumns are the per-token controls a credential carries, read
// with the token (t) and its user (u).
const rateLimitColumns = `t.rate_limit_requests, t.rate_limit_window, u.rate_limit_requests, u.rate_limit_window,
       coalesce(t.allowed_ips, '{}')`

// controlColumns receives rateLimitColumns.
type controlColumns struct {
	tokReq, tokWin, userReq, userWin *int64
	ips                              []netip.Prefix
}

// apply sets the credential's limits and allow-list.
func (q *controlColumns) apply(c *token.Credential) error {
	c.RateLimit = limitOf(q.tokReq, q.tokWin)
	c.UserRateLimit = limitOf(q.userReq, q.userWin)
	l, err := ipallow.New(q.ips)
	if err != nil {
		return fmt.Errorf("token %s: allowed_ips: %w", c.TokenID, err)
	}
	c.AllowedIPs = l
	return nil
}

func limitOf(req, win *int64) quota.Limit {
	if req == nil || win == nil {
		return quota.Limit{}
	}
	return quota.Limit{Requests: *req, Window: time.Duration(*win) * time.Second}
}

// limitArgs are the column values of l: NULLs for no limit.
func limitArgs(l quota.Limit) (req, win any) {
	if l.IsZero() {
		return nil, nil
	}
	return l.Requests, l.Seconds()
}

// SyncQuota adds this instance's counts to the cluster-wide quota windows
// and reads back every window's total, in one statement.
func (s *Store) SyncQuota(ctx context.Context, rows []quota.Row) error {
	if len(rows) == 0 {
		return nil
	}
	kinds := make([]string, len(rows))
	subjects := make([]string, len(rows))
	secs := make([]int64, len(rows))
	starts := make([]int64, len(rows))
	deltas := make([]int64, len(rows))
	for i, r := range rows {
		kinds[i], subjects[i], secs[i], starts[i], deltas[i] = string(rune(r.Kind)), r.Subject, r.Window, r.Start, r.Delta
	}
	// Rows come back in no particular order: match them by key.
	res, err := s.pool.Query(ctx, `
INSERT INTO armgate.quota_counters AS c (kind, subject, window_secs, window_start, count)
SELECT k::"char", s, w, st, d FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS v(k, s, w, st, d)
ON CONFLICT (kind, subject, window_secs, window_start) DO UPDATE SET count = c.count + excluded.count
RETURNING kind::text, subject, window_secs, window_start, count`, kinds, subjects, secs, starts, deltas)
	if err != nil {
		return fmt.Errorf("sync quota counters: %w", err)
	}
	type key struct {
		kind, subject string
		secs, start   int64
	}
	idx := make(map[key]int, len(rows))
	for i := range rows {
		idx[key{kinds[i], subjects[i], secs[i], starts[i]}] = i
	}
	var k key
	var count int64
	for res.Next() {
		if err := res.Scan(&k.kind, &k.subject, &k.secs, &k.start, &count); err != nil {
			res.Close()
			return fmt.Errorf("sync quota counters: %w", err)
		}
		if i, ok := idx[k]; ok {
			rows[i].Count = count
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("sync quota counters: %w", err)
	}
	return nil
}

// PruneQuotaCounters deletes the quota windows that ended before before.
func (s *Store) PruneQuotaCounters(ctx context.Context, before time.Time) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM armgate.quota_counters WHERE window_start + window_secs < $1`, before.Unix())
	if err != nil {
		return fmt.Errorf("prune quota counters: %w", err)
	}
	return nil
}

// RecordUsage adds the requests counted per token and day, in one
// statement. Rows of tokens deleted meanwhile are dropped.
func (s *Store) RecordUsage(ctx context.Context, usage []quota.Usage) error {
	if len(usage) > 0 {
		ids := make([]string, len(usage))
		days := make([]time.Time, len(usage))
		ok, qr, ir := make([]int64, len(usage)), make([]int64, len(usage)), make([]int64, len(usage))
		for i, u := range usage {
			ids[i], days[i], ok[i], qr[i], ir[i] = u.TokenID, u.Day, u.Allowed, u.QuotaRefused, u.IPRefused
		}
		_, err := s.pool.Exec(ctx, `
INSERT INTO armgate.token_usage AS u (token_id, day, allowed, quota_refused, ip_refused)
SELECT v.id, (v.day AT TIME ZONE 'UTC')::date, v.a, v.q, v.i
FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(id, day, a, q, i)
JOIN armgate.tokens t ON t.id = v.id
ON CONFLICT (token_id, day) DO UPDATE SET allowed = u.allowed + excluded.allowed,
	quota_refused = u.quota_refused + excluded.quota_refused, ip_refused = u.ip_refused + excluded.ip_refused`,
			ids, days, ok, qr, ir)
		if err != nil {
			return fmt.Errorf("record usage: %w", err)
		}
	}
	return nil
}

// DayUsage is one token's requests on one UTC day.
type DayUsage struct {
	Day          string // YYYY-MM-DD
	Allowed      int64
	QuotaRefused int64
	IPRefused    int64
}

// TokenUsage returns the token's requests per UTC day for the last days
// days up to today (days without requests included, as zeros), oldest
// first, and the last client address (invalid if none is known yet).
func (s *Store) TokenUsage(ctx context.Context, tokenID string, days int) ([]DayUsage, netip.Addr, error) {
	var last *netip.Addr
	if err := s.pool.QueryRow(ctx, `SELECT last_client_addr FROM armgate.tokens WHERE id = $1`, tokenID).Scan(&last); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, netip.Addr{}, ErrNotFound
		}
		return nil, netip.Addr{}, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT to_char(d, 'YYYY-MM-DD'), coalesce(u.allowed, 0), coalesce(u.quota_refused, 0), coalesce(u.ip_refused, 0)
FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($2::int - 1), (now() AT TIME ZONE 'UTC')::date, '1 day') AS d
LEFT JOIN armgate.token_usage u ON u.token_id = $1 AND u.day = d::date
ORDER BY d`, tokenID, days)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	out := make([]DayUsage, 0, days)
	for rows.Next() {
		var d DayUsage
		if err := rows.Scan(&d.Day, &d.Allowed, &d.QuotaRefused, &d.IPRefused); err != nil {
			rows.Close()
			return nil, netip.Addr{}, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, netip.Addr{}, err
	}
	var a netip.Addr
	if last != nil {
		a = last.Unmap()
	}
	return out, a, nil
}

// Audit actions of the per-token controls.
const (
	ActionTokenControls = "token.update"
	ActionUserRateLimit = ActionUserUpdate
)

// TokenControls is a change of a token's quota and allow-list; a nil field
// is left as it is, a zero Limit or an empty List removes the control.
type TokenControls struct {
	RateLimit  *quota.Limit
	AllowedIPs *ipallow.List
}

// Controls is what a token carries of quota and allow-list, and its last
// client address.
type Controls struct {
	RateLimit      *quota.Limit
	AllowedIPs     []string
	LastClientAddr *string
}

// TokenControlsOf reads the token's quota, allow-list and last client
// address.
func (s *Store) TokenControlsOf(ctx context.Context, id string) (Controls, error) {
	var req, win *int64
	var ips []netip.Prefix
	var last *netip.Addr
	err := s.pool.QueryRow(ctx, `SELECT rate_limit_requests, rate_limit_window, coalesce(allowed_ips, '{}'), last_client_addr
		FROM armgate.tokens WHERE id = $1`, id).Scan(&req, &win, &ips, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return Controls{}, ErrNotFound
	}
	if err != nil {
		return Controls{}, err
	}
	return controlsOf(req, win, ips, last), nil
}

func controlsOf(req, win *int64, ips []netip.Prefix, last *netip.Addr) Controls {
	c := Controls{AllowedIPs: []string{}}
	if l := limitOf(req, win); !l.IsZero() {
		c.RateLimit = &l
	}
	if l, err := ipallow.New(ips); err == nil {
		c.AllowedIPs = l.Strings()
	}
	if last != nil {
		a := last.Unmap().String()
		c.LastClientAddr = &a
	}
	return c
}

// SetTokenControls changes the token's quota and allow-list, audited as
// actor's, and invalidates its cache entry everywhere. check, if set, runs
// on the current controls in the transaction and may refuse the change
// (the self-service mount only lowers and narrows).
func (s *Store) SetTokenControls(ctx context.Context, actor, id string, c TokenControls,
	check func(cur Controls) error) (Token, Invalidation, error) {
	if _, ok := selfUser(actor); ok && check == nil {
		// A user may only lower and narrow: the caller must say how.
		return Token{}, Invalidation{}, errors.New("storage: a user's change of token controls needs its lower-only check")
	}
	return s.changeToken(ctx, actor, ActionTokenControls, id, false, func(tx pgx.Tx, _ Token) (map[string]any, bool, error) {
		var req, win *int64
		var ips []netip.Prefix
		if err := tx.QueryRow(ctx, `SELECT rate_limit_requests, rate_limit_window, coalesce(allowed_ips, '{}')
			FROM armgate.tokens WHERE id = $1`, id).Scan(&req, &win, &ips); err != nil {
			return nil, false, err
		}
		if check != nil {
			if err := check(controlsOf(req, win, ips, nil)); err != nil {
				return nil, false, err
			}
		}
		detail := map[string]any{}
		if c.RateLimit != nil {
			r, w := limitArgs(*c.RateLimit)
			req, win = nil, nil
			if r != nil {
				rr, ww := r.(int64), w.(int64)
				req, win = &rr, &ww
			}
			detail["rate_limit"] = c.RateLimit.String()
		}
		if c.AllowedIPs != nil {
			ips = c.AllowedIPs.Prefixes()
			detail["allowed_ips"] = c.AllowedIPs.Strings()
		}
		var ipArg any
		if len(ips) > 0 {
			ipArg = ips
		}
		_, err := tx.Exec(ctx, `UPDATE armgate.tokens SET rate_limit_requests = $2, rate_limit_window = $3, allowed_ips = $4::cidr[]
			WHERE id = $1`, id, req, win, ipArg)
		return detail, false, err
	})
}

// SetUserRateLimit sets (or, with a zero Limit, removes) the quota on all
// of the user's tokens together, and invalidates their cache entries.
func (s *Store) SetUserRateLimit(ctx context.Context, actor, id string, l quota.Limit) (Invalidation, error) {
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		req, win := limitArgs(l)
		tag, err := tx.Exec(ctx, `UPDATE armgate.users SET rate_limit_requests = $2, rate_limit_window = $3, updated_at = now()
			WHERE id = $1`, id, req, win)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		rows, _ := tx.Query(ctx, `SELECT hash FROM armgate.tokens WHERE user_id = $1 AND expires_at > now()`, id)
		if inv.Hashes, err = pgx.CollectRows(rows, pgx.RowTo[[]byte]); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, ActionUserRateLimit, id, id, map[string]any{"rate_limit": l.String()}); err != nil {
			return err
		}
		return notify(ctx, tx, inv)
	})
	return inv, err
}

// UserRateLimit returns the user's own quota (zero: none).
func (s *Store) UserRateLimit(ctx context.Context, id string) (quota.Limit, error) {
	var req, win *int64
	err := s.pool.QueryRow(ctx, `SELECT rate_limit_requests, rate_limit_window FROM armgate.users WHERE id = $1`, id).Scan(&req, &win)
	if errors.Is(err, pgx.ErrNoRows) {
		return quota.Limit{}, ErrNotFound
	}
	return limitOf(req, win), err
}
