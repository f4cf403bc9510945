package quota

import (
	"context"
	"net/netip"
	"time"
)

// pending is one window waiting for the store's answer.
type pendingRow struct {
	w      *window
	idx    uint64
	secs   int64
	pushed uint64 // local count sent, in total, once the row is stored
}

// Sync sends every window counted in since its start to the store in one
// call: this instance's new requests go in, the cluster-wide counts come
// back and become what the other instances used. On an error nothing
// changes: the unsent counts go with the next sync, and each instance goes
// on counting with what it knew (quotas fail open, never tokens).
func (c *Counters) Sync(ctx context.Context) error {
	if c.store == nil {
		return nil
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	nowSec := c.now().Unix()
	var rows []Row
	var ps []pendingRow
	add := func(kind byte, subject string, w *window) {
		secs := w.secs.Load()
		if secs <= 0 {
			return // never counted under a limit
		}
		idx := uint64(nowSec / secs)
		l := w.local.Load()
		if l>>32 != idx {
			return // nothing counted in the current window
		}
		n := uint64(uint32(l))
		var done uint64
		if w.pushedIdx == idx && w.pushedSecs == secs {
			done = w.pushed
		}
		if n < done { // taken back after it was sent
			n = done
		}
		rows = append(rows, Row{Kind: kind, Subject: subject, Window: secs, Start: int64(idx) * secs, Delta: int64(n - done)})
		ps = append(ps, pendingRow{w: w, idx: idx, secs: secs, pushed: n})
	}
	c.tokens.each(func(t *Token) { add(KindToken, t.id, &t.win) })
	c.users.each(func(u *User) { add(KindUser, u.id, &u.win) })
	if len(rows) == 0 {
		return nil
	}
	if err := c.store.SyncQuota(ctx, rows); err != nil {
		c.SyncErrors.Add(1)
		return err
	}
	defer c.Syncs.Add(1) // once the counts are in place
	for i, p := range ps {
		p.w.pushed, p.w.pushedIdx, p.w.pushedSecs = p.pushed, p.idx, p.secs
		others := rows[i].Count - int64(p.pushed)
		if p.w.secs.Load() == p.secs {
			p.w.base.Store(pack(p.idx, others))
		}
	}
	return nil
}

// Run syncs every interval until ctx ends, then once more, so that a
// stopping instance leaves its counts to the others. logErr receives the
// first error of a run of failures; recovered is called when the store
// answers again.
func (c *Counters) Run(ctx context.Context, interval time.Duration, logErr func(error), recovered func()) {
	if c.store == nil || interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.Sync(sctx)
			cancel()
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		err := c.Sync(sctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			if logErr != nil {
				logErr(err)
			}
		case err == nil && failing:
			failing = false
			if recovered != nil {
				recovered()
			}
		}
	}
}

// Usage is a token's requests on one UTC day.
type Usage struct {
	TokenID string
	// Day is the day's midnight, UTC.
	Day                              time.Time
	Allowed, QuotaRefused, IPRefused int64
}

func (u Usage) any() bool { return u.Allowed != 0 || u.QuotaRefused != 0 || u.IPRefused != 0 }

type usageKey struct {
	id  string
	day int64
}

// takeDay empties s, whose day is d, into a Usage.
func takeDay(id string, s *day, d int64) Usage {
	return Usage{
		TokenID:      id,
		Day:          time.Unix(d*86400, 0).UTC(),
		Allowed:      s.allowed.Swap(0),
		QuotaRefused: s.quota.Swap(0),
		IPRefused:    s.ipRefused.Swap(0),
	}
}

// idleFlushes is how many usage flushes in a row must find a token unused
// before its state is dropped (once its windows are over).
const idleFlushes = 3

// TakeUsage returns the usage counted since the previous call (and any put
// back), one entry per token and day, and the tokens' new last client
// addresses. It also drops the state of tokens unused for a while whose
// windows are over.
func (c *Counters) TakeUsage() ([]Usage, map[string]netip.Addr) {
	c.usageMu.Lock()
	defer c.usageMu.Unlock()
	acc := c.pending
	addrs := c.addrs
	c.pending, c.addrs = nil, nil
	if acc == nil {
		acc = map[usageKey]*Usage{}
	}
	if addrs == nil {
		addrs = map[string]netip.Addr{}
	}
	nowSec := c.now().Unix()
	var idle []*Token
	c.tokens.each(func(t *Token) {
		found := false
		t.mu.Lock()
		for _, u := range t.carry {
			merge(acc, u)
			found = true
		}
		t.carry = nil
		for i := range t.days {
			s := &t.days[i]
			if u := takeDay(t.id, s, s.day.Load()); u.any() {
				merge(acc, u)
				found = true
			}
		}
		t.mu.Unlock()
		if t.addrDirty.Swap(false) {
			if p := t.lastIP.Load(); p != nil {
				if a, err := netip.ParseAddr(*p); err == nil {
					addrs[t.id] = a.Unmap().WithZone("")
				}
			}
			found = true
		}
		if found {
			t.idle = 0
		} else if t.idle++; t.idle >= idleFlushes && windowOver(&t.win, nowSec) && windowOver(&t.user.win, nowSec) {
			idle = append(idle, t)
		}
	})
	for _, t := range idle {
		c.dropToken(t)
	}
	var out []Usage
	for _, u := range acc {
		out = append(out, *u)
	}
	if len(addrs) == 0 {
		addrs = nil
	}
	return out, addrs
}

// PutBackUsage requeues usage and addresses that could not be stored.
func (c *Counters) PutBackUsage(us []Usage, addrs map[string]netip.Addr) {
	c.usageMu.Lock()
	defer c.usageMu.Unlock()
	if c.pending == nil {
		c.pending = map[usageKey]*Usage{}
	}
	for _, u := range us {
		merge(c.pending, u)
	}
	if len(addrs) > 0 && c.addrs == nil {
		c.addrs = map[string]netip.Addr{}
	}
	for id, a := range addrs {
		if _, newer := c.addrs[id]; !newer {
			c.addrs[id] = a
		}
	}
}

func merge(acc map[usageKey]*Usage, u Usage) {
	k := usageKey{u.TokenID, u.Day.Unix()}
	if cur, ok := acc[k]; ok {
		cur.Allowed += u.Allowed
		cur.QuotaRefused += u.QuotaRefused
		cur.IPRefused += u.IPRefused
		return
	}
	acc[k] = &u
}

// windowOver reports whether w counted nothing in its current window.
func windowOver(w *window, nowSec int64) bool {
	secs := w.secs.Load()
	return secs <= 0 || w.local.Load()>>32 != uint64(nowSec/secs)
}

// dropToken forgets t, and its user when no other token points there.
func (c *Counters) dropToken(t *Token) {
	sh := c.tokens.shard(t.id)
	sh.mu.Lock()
	if sh.m[t.id] != t {
		sh.mu.Unlock()
		return
	}
	t.dropped.Store(true)
	delete(sh.m, t.id)
	ush := c.users.shard(t.user.id)
	ush.mu.Lock()
	if t.user.refs--; t.user.refs == 0 && ush.m[t.user.id] == t.user {
		delete(ush.m, t.user.id)
	}
	ush.mu.Unlock()
	sh.mu.Unlock()
}

// Tokens returns the number of tokens with state, for tests and metrics.
func (c *Counters) Tokens() int {
	n := 0
	c.tokens.each(func(*Token) { n++ })
	return n
}
