package storage_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// TestCredentialCarriesControls: a lookup returns the token's and the
// user's quotas and the allow-list, and a change invalidates the token.
func TestCredentialCarriesControls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	tk, plain := e.mustCreate(t, "u", "t")
	c := e.lookup(t, plain)
	if !c.RateLimit.IsZero() || !c.UserRateLimit.IsZero() || !c.AllowedIPs.Empty() {
		t.Fatalf("fresh token carries controls: %+v", c)
	}
	lim := quota.Limit{Requests: 100, Window: time.Minute}
	ips, _ := ipallow.Parse([]string{"192.0.2.0/24", "2001:db8::/32"})
	_, inv, err := e.store.SetTokenControls(t.Context(), admin, tk.ID, storage.TokenControls{RateLimit: &lim, AllowedIPs: &ips}, nil)
	if err != nil || len(inv.Hashes) != 1 {
		t.Fatalf("SetTokenControls = %v, %+v", err, inv)
	}
	ulim := quota.Limit{Requests: 1000, Window: time.Hour}
	if inv, err := e.store.SetUserRateLimit(t.Context(), admin, "u", ulim); err != nil || len(inv.Hashes) != 1 {
		t.Fatalf("SetUserRateLimit = %v, %+v", err, inv)
	}
	c = e.lookup(t, plain)
	if c.RateLimit != lim || c.UserRateLimit != ulim || c.AllowedIPs != ips {
		t.Errorf("credential %+v, want limits %v %v and %v", c, lim, ulim, ips.Strings())
	}
	// Lowering only: the check sees the current controls and may refuse.
	higher := quota.Limit{Requests: 200, Window: time.Minute}
	_, _, err = e.store.SetTokenControls(t.Context(), admin, tk.ID, storage.TokenControls{RateLimit: &higher},
		func(cur storage.Controls) error {
			if cur.RateLimit == nil || *cur.RateLimit != lim {
				t.Errorf("check saw %+v", cur)
			}
			return storage.ErrNotFound
		})
	if err != storage.ErrNotFound {
		t.Errorf("a refused check: %v", err)
	}
	// Removing both.
	none, empty := quota.Limit{}, ipallow.List{}
	if _, _, err := e.store.SetTokenControls(t.Context(), admin, tk.ID, storage.TokenControls{RateLimit: &none, AllowedIPs: &empty}, nil); err != nil {
		t.Fatal(err)
	}
	if c = e.lookup(t, plain); !c.RateLimit.IsZero() || !c.AllowedIPs.Empty() {
		t.Errorf("after removal: %+v", c)
	}
	if _, err := e.pool.Exec(t.Context(), `UPDATE armgate.tokens SET rate_limit_requests = 5 WHERE id = $1`, tk.ID); err == nil {
		t.Error("a quota without a window was stored")
	}
}

// TestSyncQuotaTwoInstances: two instances' counts meet in one row per
// window, each sync is one statement, and old windows are pruned.
func TestSyncQuotaTwoInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Unix(1_800_000_000, 0)
	clk := func() time.Time { return now }
	a := quota.New(quota.Config{Now: clk, Store: e.store})
	b := quota.New(quota.Config{Now: clk, Store: e.store})
	lim := quota.Limit{Requests: 10, Window: time.Hour}
	ulim := quota.Limit{Requests: 100, Window: time.Hour}
	for range 4 {
		a.Token("t1", "u").Take(now, lim, ulim)
	}
	for range 3 {
		b.Token("t1", "u").Take(now, lim, ulim)
	}
	for _, c := range []*quota.Counters{a, b, a} {
		if err := c.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := a.Token("t1", "u").Take(now, lim, ulim); !d.Allowed || d.Token.Remaining != 2 || d.User.Remaining != 92 {
		t.Errorf("a after both synced: %+v, want 2 token and 92 user requests left", d)
	}
	var n int64
	if err := e.pool.QueryRow(t.Context(), `SELECT count FROM armgate.quota_counters WHERE kind = 't' AND subject = 't1'`).Scan(&n); err != nil || n != 7 {
		t.Errorf("stored count %d (%v), want 7", n, err)
	}
	if err := e.store.PruneQuotaCounters(t.Context(), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.quota_counters`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d windows left after pruning (%v)", n, err)
	}
}

// TestRecordUsage: usage per token and day adds up over flushes, the last
// client address is kept, and a deleted token's rows are dropped.
func TestRecordUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "u")
	tk, _ := e.mustCreate(t, "u", "t")
	gone, _ := e.mustCreate(t, "u", "gone")
	if _, err := e.store.DeleteToken(t.Context(), admin, gone.ID); err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	yesterday := today.Add(-24 * time.Hour)
	ctx := t.Context()
	for range 2 {
		if err := e.store.RecordUsage(ctx, []quota.Usage{
			{TokenID: tk.ID, Day: today, Allowed: 5, QuotaRefused: 2, IPRefused: 1},
			{TokenID: tk.ID, Day: yesterday, Allowed: 1},
			{TokenID: gone.ID, Day: today, Allowed: 9},
		}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.RecordLastUse(ctx, nil, map[string]netip.Addr{tk.ID: netip.MustParseAddr("2001:db8::7")}); err != nil {
			t.Fatal(err)
		}
	}
	days, last, err := e.store.TokenUsage(ctx, tk.ID, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 30 || days[29].Day != today.Format(time.DateOnly) {
		t.Fatalf("%d days, last %+v", len(days), days[len(days)-1])
	}
	if d := days[29]; d.Allowed != 10 || d.QuotaRefused != 4 || d.IPRefused != 2 {
		t.Errorf("today %+v, want 10/4/2", d)
	}
	if d := days[28]; d.Allowed != 2 {
		t.Errorf("yesterday %+v, want 2 allowed", d)
	}
	if last != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("last client address %v", last)
	}
	// A last use with an address, and one without: the address stays.
	at := time.Now().UTC().Truncate(time.Second)
	if err := e.store.RecordLastUse(ctx, map[string]time.Time{tk.ID: at}, map[string]netip.Addr{tk.ID: netip.MustParseAddr("192.0.2.5")}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordLastUse(ctx, map[string]time.Time{tk.ID: at.Add(time.Second)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, last, _ = e.store.TokenUsage(ctx, tk.ID, 1); last != netip.MustParseAddr("192.0.2.5") {
		t.Errorf("last client address %v after two last uses", last)
	}
	if got := e.get(t, tk.ID).LastUsedAt; got == nil || !got.Equal(at.Add(time.Second)) {
		t.Errorf("last_used_at %v, want %v", got, at.Add(time.Second))
	}
	if _, _, err := e.store.TokenUsage(ctx, gone.ID, 30); err != storage.ErrNotFound {
		t.Errorf("usage of a deleted token: %v", err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM armgate.token_usage WHERE token_id = $1`, gone.ID).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d usage rows for a deleted token (%v)", n, err)
	}
}
