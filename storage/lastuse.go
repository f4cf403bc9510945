package storage

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// RecordLastUse stores last-use times and last client addresses collected
// in memory, in one statement that updates each token row once.
func (s *Store) RecordLastUse(ctx context.Context, used map[string]time.Time, addrs map[string]netip.Addr) error {
	if len(used) == 0 && len(addrs) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used)+len(addrs))
	ats := make([]*time.Time, 0, cap(ids))
	as := make([]*netip.Addr, 0, cap(ids))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, &at)
		if a, ok := addrs[id]; ok {
			as = append(as, &a)
		} else {
			as = append(as, nil)
		}
	}
	for id, a := range addrs {
		if _, ok := used[id]; !ok {
			ids = append(ids, id)
			ats = append(ats, nil)
			as = append(as, &a)
		}
	}
	_, err := s.pool.Exec(ctx, `UPDATE armgate.tokens t
		SET last_used_at = CASE WHEN t.last_used_at IS NULL OR t.last_used_at < v.at THEN v.at ELSE t.last_used_at END,
		    last_client_addr = coalesce(v.addr, t.last_client_addr)
		FROM unnest($1::uuid[], $2::timestamptz[], $3::inet[]) AS v(id, at, addr)
		WHERE t.id = v.id AND (v.addr IS NOT NULL OR t.last_used_at IS NULL OR t.last_used_at < v.at)`, ids, ats, as)
	if err != nil {
		return fmt.Errorf("record last use: %w", err)
	}
	return nil
}
