package verifier

import (
	"context"
	"testing"
	"time"

	"github.com/armgate/armgate/knownset"
	"github.com/armgate/armgate/token"
)

// loadSet makes set current with the prefixes of toks.
func loadSet(t *testing.T, set *knownset.Set, toks ...string) {
	t.Helper()
	err := set.Load(context.Background(), func(_ context.Context, fn func(uint64)) error {
		for _, tok := range toks {
			fn(knownset.Prefix(token.Sum(tok)))
		}
		return nil
	})
	if err != nil || !set.Current() {
		t.Fatalf("load: %v, current %v", err, set.Current())
	}
}

// TestKnownSet: with a current set, a token absent from it is refused
// without a lookup once the budget is spent; a known token is looked up;
// while the set is not current every miss is looked up.
func TestKnownSet(t *testing.T) {
	t.Parallel()
	for _, cacheOn := range []bool{true, false} {
		t.Run(map[bool]string{true: "cache", false: "no cache"}[cacheOn], func(t *testing.T) {
			f := newFake()
			known, created := genToken(t), genToken(t)
			f.set(known, liveCred("k"))
			set := knownset.New()
			cfg := defaultCfg
			if !cacheOn {
				cfg.TTL = 0
			}
			cfg.Known, cfg.Budget = set, knownset.NewBudget(0.001, 2) // two lookups, then none
			v := newVerifier(t, cfg, f)

			// Not current: unknown tokens are looked up.
			if _, st := verify(t, v, genToken(t)); st != token.Unknown || f.calls.Load() != 1 {
				t.Fatalf("set not current: status %v, %d lookups, want Unknown, 1", st, f.calls.Load())
			}
			if !v.NeedsBlindLookup(genToken(t)) {
				t.Error("NeedsBlindLookup = false for an uncached token while the set is not current")
			}

			loadSet(t, set, known)
			if v.NeedsBlindLookup(genToken(t)) {
				t.Error("NeedsBlindLookup = true with a current set")
			}
			calls := f.calls.Load()
			// A token created elsewhere, not in the set yet: the budget
			// looks it up.
			f.set(created, liveCred("c"))
			if _, st := verify(t, v, created); st != token.Active {
				t.Fatalf("token created elsewhere: status %v, want Active", st)
			}
			// One more lookup left, then none.
			verify(t, v, genToken(t))
			if got := f.calls.Load() - calls; got != 2 {
				t.Fatalf("%d lookups within the budget, want 2", got)
			}
			refused := v.Stats.AbsentRefused.Load()
			for range 100 {
				if _, st := verify(t, v, genToken(t)); st != token.Unknown {
					t.Fatalf("absent token: status %v", st)
				}
			}
			if got := f.calls.Load() - calls; got != 2 {
				t.Errorf("%d lookups after the budget was spent, want 2", got)
			}
			if got := v.Stats.AbsentRefused.Load() - refused; got != 100 {
				t.Errorf("AbsentRefused counted %d, want 100", got)
			}
			// A token in the set is looked up whatever the budget.
			if _, st := verify(t, v, known); st != token.Active {
				t.Errorf("known token: status %v, want Active", st)
			}
			// Stale again: lookups as before.
			set.MarkStale()
			calls = f.calls.Load()
			verify(t, v, genToken(t))
			if f.calls.Load() != calls+1 {
				t.Error("no lookup for an absent token while the set is stale")
			}
		})
	}
}

// TestNeedsBlindLookupCached: a cached answer, known or unknown, needs no
// lookup even while the set is not current; a malformed token never does.
func TestNeedsBlindLookupCached(t *testing.T) {
	t.Parallel()
	f := newFake()
	good, unknown := genToken(t), genToken(t)
	f.set(good, liveCred("g"))
	cfg := defaultCfg
	cfg.Known = knownset.New()
	v := newVerifier(t, cfg, f)
	verify(t, v, good)
	verify(t, v, unknown)
	v.wait()
	for _, tok := range []string{good, unknown, "not-a-token"} {
		if v.NeedsBlindLookup(tok) {
			t.Errorf("NeedsBlindLookup(%.8s…) = true for a cached answer", tok)
		}
	}
}

// TestAbsentWait: a token absent from the set with the budget spent waits
// for the set to learn of it (a notification on its way) and is then looked
// up; one that stays absent is refused after the wait.
func TestAbsentWait(t *testing.T) {
	t.Parallel()
	f := newFake()
	set := knownset.New()
	cfg := defaultCfg
	cfg.Known, cfg.Budget, cfg.AbsentWait = set, nil, time.Minute
	v := newVerifier(t, cfg, f)
	loadSet(t, set)
	created := genToken(t)
	f.set(created, liveCred("c"))
	go func() {
		time.Sleep(10 * time.Millisecond)
		set.Add(knownset.Prefix(token.Sum(created)))
	}()
	if _, st := verify(t, v, created); st != token.Active {
		t.Fatalf("token notified while waiting: status %v, want Active", st)
	}
	v2 := newVerifier(t, Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 100,
		Known: set, AbsentWait: 5 * time.Millisecond}, f)
	calls := f.calls.Load()
	if _, st := verify(t, v2, genToken(t)); st != token.Unknown || f.calls.Load() != calls {
		t.Errorf("absent token: status %v, %d lookups, want Unknown without a lookup", st, f.calls.Load()-calls)
	}
}
