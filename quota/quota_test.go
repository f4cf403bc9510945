package quota

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/armgate/armgate/internal/testclock"
)

// start is a window boundary for every window length used here.
var start = time.Unix(1_800_000_000-1_800_000_000%86400, 0)

// memStore is the shared store of several Counters, in memory.
type memStore struct {
	mu     sync.Mutex
	counts map[[4]any]int64
	calls  int
	down   bool
}

func newMemStore() *memStore { return &memStore{counts: map[[4]any]int64{}} }

func (s *memStore) SyncQuota(_ context.Context, rows []Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("database down")
	}
	s.calls++
	for i, r := range rows {
		k := [4]any{r.Kind, r.Subject, r.Window, r.Start}
		s.counts[k] += r.Delta
		rows[i].Count = s.counts[k]
	}
	return nil
}

func take(t *testing.T, tk *Token, now time.Time, tok, usr Limit, n int) (allowed int, last Decision) {
	t.Helper()
	for range n {
		last = tk.Take(now, tok, usr)
		if last.Allowed {
			allowed++
		}
	}
	return allowed, last
}

func TestExhaustionAndReset(t *testing.T) {
	clk := testclock.New(start.Add(4 * time.Second))
	c := New(Config{Now: clk.Now})
	lim := Limit{Requests: 3, Window: 10 * time.Second}
	tk := c.Token("tok", "alice")
	got, d := take(t, tk, clk.Now(), lim, Limit{}, 3)
	if got != 3 || d.Token.Remaining != 0 || d.Token.Reset != 6 {
		t.Fatalf("3 requests: allowed %d, last %+v", got, d)
	}
	d = tk.Take(clk.Now(), lim, Limit{})
	if d.Allowed || d.RetryAfter != 6 || d.ByUser {
		t.Fatalf("4th request: %+v, want refused with Retry-After 6", d)
	}
	clk.Add(6 * time.Second) // the next window
	d = tk.Take(clk.Now(), lim, Limit{})
	if !d.Allowed || d.Token.Remaining != 2 || d.Token.Reset != 10 {
		t.Fatalf("after the reset: %+v", d)
	}
}

func TestUserQuotaAcrossTokens(t *testing.T) {
	clk := testclock.New(start)
	c := New(Config{Now: clk.Now})
	usr := Limit{Requests: 4, Window: time.Minute}
	tok := Limit{Requests: 10, Window: time.Minute}
	a, b := c.Token("a", "alice"), c.Token("b", "alice")
	other := c.Token("c", "bob")
	take(t, a, clk.Now(), tok, usr, 2)
	take(t, b, clk.Now(), tok, usr, 2)
	d := a.Take(clk.Now(), tok, usr)
	if d.Allowed || !d.ByUser {
		t.Fatalf("5th request of the user: %+v", d)
	}
	// The refusal took nothing from the token's own window.
	if d.Token.Remaining != 8 {
		t.Errorf("token remaining %d after a user refusal, want 8", d.Token.Remaining)
	}
	if d := other.Take(clk.Now(), tok, usr); !d.Allowed {
		t.Errorf("another user's token refused: %+v", d)
	}
}

func TestLimitChangeResetsWindow(t *testing.T) {
	clk := testclock.New(start)
	c := New(Config{Now: clk.Now})
	tk := c.Token("t", "u")
	take(t, tk, clk.Now(), Limit{Requests: 2, Window: time.Minute}, Limit{}, 2)
	if d := tk.Take(clk.Now(), Limit{Requests: 5, Window: time.Hour}, Limit{}); !d.Allowed || d.Token.Remaining != 4 {
		t.Errorf("after the window changed: %+v", d)
	}
}

// TestTwoInstances: each instance sees the other's requests after a sync,
// and together they overshoot by at most what was counted between syncs.
func TestTwoInstances(t *testing.T) {
	clk := testclock.New(start)
	st := newMemStore()
	a := New(Config{Now: clk.Now, Store: st})
	b := New(Config{Now: clk.Now, Store: st})
	lim := Limit{Requests: 10, Window: time.Hour}
	ta, tb := a.Token("t", "u"), b.Token("t", "u")
	if n, _ := take(t, ta, clk.Now(), lim, Limit{}, 6); n != 6 {
		t.Fatalf("a allowed %d of 6", n)
	}
	for _, c := range []*Counters{a, b, a} {
		if err := c.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// b has never counted in this window, so it sent nothing and learnt
	// nothing: it syncs a window once it counts in it.
	n, _ := take(t, tb, clk.Now(), lim, Limit{}, 1)
	if err := b.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	m, d := take(t, tb, clk.Now(), lim, Limit{}, 10)
	if n+m != 4 || d.Allowed {
		t.Errorf("b allowed %d+%d after a's 6 of 10, want 4 in all", n, m)
	}
	for _, c := range []*Counters{b, a} {
		if err := c.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := ta.Take(clk.Now(), lim, Limit{}); d.Allowed || d.Token.Remaining != 0 {
		t.Errorf("a after b used the rest: %+v", d)
	}
	if st.counts[[4]any{byte(KindToken), "t", int64(3600), start.Unix()}] != 10 {
		t.Errorf("store counts %v, want 10", st.counts)
	}
}

// TestStoreDownCountsLocally: with the store down the instance keeps
// counting what it knew, and sends its counts once the store is back.
func TestStoreDownCountsLocally(t *testing.T) {
	clk := testclock.New(start)
	st := newMemStore()
	a := New(Config{Now: clk.Now, Store: st})
	lim := Limit{Requests: 5, Window: time.Hour}
	ta := a.Token("t", "u")
	take(t, ta, clk.Now(), lim, Limit{}, 2)
	if err := a.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.down = true
	take(t, ta, clk.Now(), lim, Limit{}, 2)
	if err := a.Sync(t.Context()); err == nil {
		t.Fatal("sync succeeded with the store down")
	}
	n, d := take(t, ta, clk.Now(), lim, Limit{}, 3)
	if n != 1 || d.Allowed {
		t.Errorf("with the store down: allowed %d of the last 3, want 1 (the quota still counts)", n)
	}
	st.down = false
	if err := a.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.counts[[4]any{byte(KindToken), "t", int64(3600), start.Unix()}]; got != 5 {
		t.Errorf("store has %d after recovery, want 5", got)
	}
}

func TestUsage(t *testing.T) {
	clk := testclock.New(start.Add(23*time.Hour + 59*time.Minute))
	c := New(Config{Now: clk.Now})
	lim := Limit{Requests: 2, Window: time.Minute}
	tk := c.Token("t", "u")
	take(t, tk, clk.Now(), lim, Limit{}, 3) // 2 allowed, 1 refused
	tk.RefuseIP(clk.Now())
	tk.Seen("192.0.2.1")
	tk.Seen("::ffff:198.51.100.2")
	clk.Add(2 * time.Minute) // the next UTC day
	take(t, tk, clk.Now(), lim, Limit{}, 1)
	tk.RefuseIP(clk.Now())
	clk.Add(24 * time.Hour) // and the one after: the first day's slot is reused
	take(t, tk, clk.Now(), Limit{}, Limit{}, 4)
	us, addrs := c.TakeUsage()
	want := map[string][3]int64{
		start.UTC().Format(time.DateOnly):                     {2, 1, 1},
		start.Add(24 * time.Hour).UTC().Format(time.DateOnly): {1, 0, 1},
		start.Add(48 * time.Hour).UTC().Format(time.DateOnly): {4, 0, 0},
	}
	got := map[string][3]int64{}
	for _, u := range us {
		if u.TokenID != "t" {
			t.Errorf("usage of %q", u.TokenID)
		}
		got[u.Day.Format(time.DateOnly)] = [3]int64{u.Allowed, u.QuotaRefused, u.IPRefused}
	}
	if len(got) != len(want) {
		t.Errorf("usage %v, want %v", got, want)
	}
	for d, w := range want {
		if got[d] != w {
			t.Errorf("day %s: %v, want %v", d, got[d], w)
		}
	}
	if a := addrs["t"]; a != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("last address %v, want 198.51.100.2 (unmapped)", a)
	}
	if us, addrs := c.TakeUsage(); len(us) != 0 || len(addrs) != 0 {
		t.Errorf("second TakeUsage: %v %v", us, addrs)
	}
	// Put back (a failed write) comes out with the next take.
	c.PutBackUsage([]Usage{{TokenID: "t", Day: start, Allowed: 7}}, map[string]netip.Addr{"t": netip.MustParseAddr("192.0.2.9")})
	tk.Take(start, Limit{}, Limit{})
	us, addrs = c.TakeUsage()
	if len(us) != 1 || us[0].Allowed != 8 || addrs["t"] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("after put back: %+v %v", us, addrs)
	}
}

// TestIdleTokensDropped: the state of a token unused for a few flushes,
// whose windows are over, goes; a token in a running window stays.
func TestIdleTokensDropped(t *testing.T) {
	clk := testclock.New(start)
	c := New(Config{Now: clk.Now})
	old := c.Token("old", "u")
	old.Take(clk.Now(), Limit{Requests: 5, Window: time.Second}, Limit{})
	c.Token("running", "u").Take(clk.Now(), Limit{Requests: 5, Window: time.Hour}, Limit{})
	clk.Add(time.Minute)
	for range idleFlushes + 1 {
		c.TakeUsage()
	}
	if n := c.Tokens(); n != 1 {
		t.Errorf("%d tokens kept, want 1", n)
	}
	if _, ok := c.tokens.shard("running").get("running"); !ok {
		t.Error("the token in a running window was dropped")
	}
	// The front table still holds the dropped state; it must not hand it
	// out, or the token's next requests would be counted where no flush
	// looks.
	again := c.Token("old", "u")
	if again == old {
		t.Fatal("a dropped token's state was handed out again")
	}
	again.Take(clk.Now(), Limit{}, Limit{})
	us, _ := c.TakeUsage()
	if len(us) != 1 || us[0].TokenID != "old" || us[0].Allowed != 1 {
		t.Errorf("usage after the token came back: %+v, want 1 allowed for old", us)
	}
}

// TestFrontSlotShared: two tokens whose ids share a slot of the front table
// each get their own state, however their lookups alternate.
func TestFrontSlotShared(t *testing.T) {
	c := New(Config{})
	a := "token-a"
	slot, _ := frontSlotsOf(maphash.String(seed, a))
	b := ""
	for i := 0; b == ""; i++ {
		id := fmt.Sprintf("token-%d", i)
		if s, _ := frontSlotsOf(maphash.String(seed, id)); s == slot {
			b = id
		}
	}
	ta, tb := c.Token(a, "u"), c.Token(b, "u")
	for range 3 {
		if got := c.Token(a, "u"); got != ta {
			t.Fatalf("%s got another token's state", a)
		}
		if got := c.Token(b, "u"); got != tb {
			t.Fatalf("%s got another token's state", b)
		}
	}
	if ta == tb || c.Tokens() != 2 {
		t.Errorf("two ids sharing a slot: %d states", c.Tokens())
	}
	// Both stay in the front table, each in one of its two slots.
	for _, tk := range []*Token{ta, tb} {
		i, j := frontSlotsOf(maphash.String(seed, tk.id))
		if c.front[i].Load() != tk && c.front[j].Load() != tk {
			t.Errorf("%s is in neither of its front slots", tk.id)
		}
	}
}

func TestTakeAllocatesNothing(t *testing.T) {
	c := New(Config{})
	lim := Limit{Requests: 1 << 30, Window: time.Hour}
	c.Token("t", "u").Seen("192.0.2.1")
	now := time.Now()
	n := testing.AllocsPerRun(1000, func() {
		tk := c.Token("t", "u")
		tk.Take(now, lim, lim)
		tk.Seen("192.0.2.1")
	})
	if n != 0 {
		t.Errorf("the hit path allocates %v times", n)
	}
}

func TestLimitValidate(t *testing.T) {
	for _, l := range []Limit{{1, 0}, {0, time.Second}, {-1, time.Second}, {1, 500 * time.Millisecond},
		{1, 25 * time.Hour}, {1, 1500 * time.Millisecond}, {MaxRequests + 1, time.Second}} {
		if l.Validate() == nil {
			t.Errorf("%+v valid", l)
		}
	}
	var l Limit
	if err := l.UnmarshalJSON([]byte(`{"requests": 1000, "window": "1h"}`)); err != nil || l != (Limit{1000, time.Hour}) {
		t.Errorf("UnmarshalJSON = %+v %v", l, err)
	}
	if err := l.UnmarshalJSON([]byte(`{"requests": 1000, "window": "forever"}`)); err == nil {
		t.Error("a bad window accepted")
	}
}

func BenchmarkTake(b *testing.B) {
	c := New(Config{})
	lim := Limit{Requests: 1 << 30, Window: time.Hour}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk := c.Token("0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", "alice")
			if !tk.Take(now, lim, lim).Allowed {
				b.Fatal("refused")
			}
			tk.Seen("192.0.2.1")
		}
	})
}

// TestLimitsText: the cached value is returned only for the limits it was
// stored with, so a changed quota gets a new RateLimit-Policy.
func TestLimitsText(t *testing.T) {
	c := New(Config{})
	tk := c.Token("t1", "u1")
	hour := Limit{Requests: 100, Window: time.Hour}
	day := Limit{Requests: 1000, Window: 24 * time.Hour}
	if _, ok := tk.LimitsText(hour, day); ok {
		t.Fatal("text before any was stored")
	}
	tk.SetLimitsText(hour, day, "A")
	if s, ok := tk.LimitsText(hour, day); !ok || s != "A" {
		t.Fatalf("LimitsText = %q %v, want A", s, ok)
	}
	for _, l := range [][2]Limit{{hour, {}}, {{}, day}, {{Requests: 101, Window: time.Hour}, day}, {hour, {Requests: 1000, Window: time.Hour}}} {
		if s, ok := tk.LimitsText(l[0], l[1]); ok {
			t.Errorf("LimitsText(%v, %v) = %q for other limits", l[0], l[1], s)
		}
	}
	if s, ok := c.Token("t1", "u1").LimitsText(hour, day); !ok || s != "A" {
		t.Fatalf("same token again: %q %v", s, ok)
	}
}

// TestTokenLayout: a Token fills four whole cache lines, the read-mostly
// fields on the first, and the allocator puts it on a 64-byte boundary.
func TestTokenLayout(t *testing.T) {
	var tk Token
	if n := unsafe.Sizeof(tk); n != 256 {
		t.Fatalf("Token is %d bytes, want 256", n)
	}
	for name, off := range map[string]uintptr{"win": unsafe.Offsetof(tk.win), "days": unsafe.Offsetof(tk.days), "mu": unsafe.Offsetof(tk.mu)} {
		if off%64 != 0 {
			t.Errorf("%s at offset %d, not on a cache line of its own", name, off)
		}
	}
	if end := unsafe.Offsetof(tk.addrDirty) + unsafe.Sizeof(tk.addrDirty); end > 64 {
		t.Errorf("the read-mostly fields end at %d, past the first line", end)
	}
	c := New(Config{})
	for i := range 16 {
		if p := uintptr(unsafe.Pointer(c.Token(fmt.Sprint("t", i), "u"))); p%64 != 0 {
			t.Errorf("a Token at %#x, not on a 64-byte boundary", p)
		}
	}
}

// TestTokenFoundByWhereItsIDIs: a state is found again by an id whose
// bytes sit where they sat last time without comparing them, but a
// prefix of those bytes (the same pointer, a shorter length) is another id,
// also when both share a slot of the front table.
func TestTokenFoundByWhereItsIDIs(t *testing.T) {
	// An id and a prefix of it whose first front slots are the same.
	var long, short string
	for i := 0; long == ""; i++ {
		s := fmt.Sprintf("tok-%d-x", i)
		a, _ := frontSlotsOf(maphash.String(seed, s))
		if b, _ := frontSlotsOf(maphash.String(seed, s[:len(s)-1])); a == b {
			long, short = s, s[:len(s)-1]
		}
	}
	c := New(Config{})
	a := c.Token(long, "u")
	if again := c.Token(long, "u"); again != a {
		t.Fatal("the same id at the same place found another state")
	}
	if copied := c.Token(strings.Clone(long), "u"); copied != a {
		t.Fatal("the same id elsewhere found another state")
	}
	a = c.Token(long, "u") // its place is long's again
	if p := c.Token(short, "u"); p == a || p.id != short {
		t.Fatalf("%s, a prefix at %s's place, got %q's state", short, long, p.id)
	}
}

// TestSeenAgain: the last address follows changes, also back to an
// address seen before.
func TestSeenAgain(t *testing.T) {
	c := New(Config{})
	tk := c.Token("t", "u")
	for _, ip := range []string{"192.0.2.1", "192.0.2.1", "2001:db8::1", "192.0.2.1"} {
		tk.Seen(ip)
		c.TakeUsage() // clears the dirty mark, as a flush does
	}
	if p := tk.lastIP.Load(); p == nil || *p != "192.0.2.1" {
		t.Fatalf("last address %v, want 192.0.2.1", p)
	}
	tk.Seen("2001:db8::1")
	if _, addrs := c.TakeUsage(); addrs["t"] != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("flushed address %v, want 2001:db8::1", addrs["t"])
	}
	tk.Seen("2001:db8::1")
	if _, addrs := c.TakeUsage(); len(addrs) != 0 {
		t.Fatalf("an unchanged address was flushed again: %v", addrs)
	}
}
