package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// fakeLoader is a Loader with counted calls, settable results and errors,
// and an optional gate that holds calls until released.
type fakeLoader struct {
	calls atomic.Int64

	mu    sync.Mutex
	creds map[token.Hash]token.Credential
	err   error
	// gate, when set, holds each call until it is closed; started receives
	// one value per held call once it is held.
	gate    chan struct{}
	started chan struct{}
	// ctxErrs records the loader context's error after the gate opened.
	ctxErrs []error
}

func newFake() *fakeLoader {
	return &fakeLoader{creds: map[token.Hash]token.Credential{}}
}

// load reads the fake database when called and then, if a gate is set,
// waits: like a query that has read its snapshot and is slow to return.
func (f *fakeLoader) load(ctx context.Context, h token.Hash) (token.Credential, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate, started := f.gate, f.started
	c, ok := f.creds[h]
	err := f.err
	f.mu.Unlock()
	if gate != nil {
		if started != nil {
			started <- struct{}{}
		}
		<-gate
		f.mu.Lock()
		f.ctxErrs = append(f.ctxErrs, ctx.Err())
		f.mu.Unlock()
	}
	switch {
	case err != nil:
		return token.Credential{}, err
	case !ok:
		return token.Credential{}, ErrNotFound
	}
	return c, nil
}

// hold makes the next calls block until the returned release is called.
func (f *fakeLoader) hold() (started <-chan struct{}, release func()) {
	gate, st := make(chan struct{}), make(chan struct{}, 100)
	f.mu.Lock()
	f.gate, f.started = gate, st
	f.mu.Unlock()
	var once sync.Once
	return st, func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate, f.started = nil, nil
			f.mu.Unlock()
			close(gate)
		})
	}
}

func (f *fakeLoader) set(tok string, c token.Credential) {
	f.mu.Lock()
	f.creds[token.Sum(tok)] = c
	f.mu.Unlock()
}

func (f *fakeLoader) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// countingCtx counts calls of Done. Verify evaluates ctx.Done() only in its
// select, after the lookup has joined the in-flight load, so the count tells
// how many callers are waiting on a load.
type countingCtx struct {
	context.Context
	n *atomic.Int64
}

func (c countingCtx) Done() <-chan struct{} {
	c.n.Add(1)
	return c.Context.Done()
}

func recv(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

var defaultCfg = Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1000}

func newVerifier(t testing.TB, cfg Config, f *fakeLoader) *Verifier {
	t.Helper()
	v, err := New(cfg, f.load)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func genToken(t testing.TB) string {
	t.Helper()
	tok, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func liveCred(id string) token.Credential {
	return token.Credential{
		TokenID: id, UserID: "u-" + id, Name: "n-" + id, Scopes: []string{token.ScopeAPI},
		CreatedAt: time.Now().Add(-time.Hour), ExpiresAt: time.Now().Add(24 * time.Hour),
	}
}

func verify(t testing.TB, v *Verifier, tok string) (token.Credential, token.Status) {
	t.Helper()
	c, r, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: unexpected error %v", err)
	}
	return c, r
}

func TestNewRejectsZeroMaxEntries(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{TTL: time.Minute}, newFake().load); err == nil {
		t.Error("New with a cache and MaxEntries 0 succeeded")
	}
	v, err := New(Config{}, newFake().load)
	if err != nil {
		t.Fatalf("New without cache: %v", err)
	}
	defer v.Close()
	if v.cache != nil || v.CacheEntries() != 0 || v.CacheBytes() != 0 {
		t.Error("the cache is off, yet there is one")
	}
	v.wait() // no cache: must not block or panic
}

func TestResults(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name string
		cred token.Credential
		want token.Status
	}{
		{"active", token.Credential{TokenID: "a", ExpiresAt: now.Add(time.Hour)}, token.Active},
		{"revoked", token.Credential{TokenID: "r", ExpiresAt: now.Add(time.Hour), Revoked: true}, token.Revoked},
		{"deactivated", token.Credential{TokenID: "d", ExpiresAt: now.Add(time.Hour), UserDeactivated: true}, token.Deactivated},
		{"revoked and deactivated", token.Credential{TokenID: "rd", ExpiresAt: now.Add(time.Hour), Revoked: true, UserDeactivated: true}, token.Revoked},
		{"expired", token.Credential{TokenID: "e", ExpiresAt: now.Add(-time.Hour)}, token.Expired},
		{"expired and revoked", token.Credential{TokenID: "er", ExpiresAt: now.Add(-time.Hour), Revoked: true}, token.Expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			v := newVerifier(t, defaultCfg, f)
			tok := genToken(t)
			f.set(tok, tc.cred)
			c, r := verify(t, v, tok)
			if r != tc.want || c.TokenID != tc.cred.TokenID {
				t.Errorf("Verify = %v (%q), want %v (%q)", r, c.TokenID, tc.want, tc.cred.TokenID)
			}
			if r.String() != tc.want.String() {
				t.Errorf("String = %q", r.String())
			}
		})
	}
}

func TestHitAfterMiss(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	for i := range 3 {
		c, r := verify(t, v, tok)
		if r != token.Active || c.TokenID != "t1" || c.UserID != "u-t1" {
			t.Fatalf("call %d: Verify = %v %+v", i, r, c)
		}
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("after call %d the loader ran %d times, want 1", i, n)
		}
		v.wait()
	}
	if h, m := v.Stats.Hits.Load(), v.Stats.Misses.Load(); h != 2 || m != 1 {
		t.Errorf("hits %d misses %d, want 2 and 1", h, m)
	}
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		negTTL    time.Duration
		wantCalls int64
	}{
		{"cached", time.Hour, 1},
		{"negative cache off", 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			v := newVerifier(t, Config{TTL: time.Hour, NegativeTTL: tc.negTTL, MaxEntries: 100}, f)
			tok := genToken(t)
			for range 3 {
				if c, r := verify(t, v, tok); r != token.Unknown || c.TokenID != "" {
					t.Fatalf("Verify(unknown) = %v %+v", r, c)
				}
				v.wait()
			}
			if n := f.calls.Load(); n != tc.wantCalls {
				t.Errorf("loader ran %d times, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestNegativeTTLBound(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, Config{TTL: time.Hour, NegativeTTL: 10 * time.Second, MaxEntries: 100}, f)
	t0 := time.Now()
	v.now = func() time.Time { return t0 }
	tok := genToken(t)
	verify(t, v, tok)
	for _, tc := range []struct {
		at    time.Duration
		loads int64
	}{{0, 1}, {10*time.Second - time.Nanosecond, 1}, {10 * time.Second, 2}} {
		v.now = func() time.Time { return t0.Add(tc.at) }
		if _, r := verify(t, v, tok); r != token.Unknown {
			t.Fatalf("at +%v: %v", tc.at, r)
		}
		if n := f.calls.Load(); n != tc.loads {
			t.Errorf("at +%v: %d loads, want %d", tc.at, n, tc.loads)
		}
	}
}

func TestMalformedNeverLoads(t *testing.T) {
	t.Parallel()
	good := genToken(t)
	flipped := []byte(good)
	flipped[20] ^= 'A' ^ 'B'
	if flipped[20] == good[20] {
		t.Fatal("no flip")
	}
	for _, tc := range []struct{ name, tok string }{
		{"empty", ""},
		{"short", good[:41]},
		{"long", good + "x"},
		{"wrong prefix", "ghp_" + good[4:]},
		{"bad character", good[:10] + "!" + good[11:]},
		{"bad checksum", string(flipped)},
		{"bad checksum tail", good[:41] + string(rune('0'+(good[41]-'0'+1)%10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.set(tc.tok, liveCred("x")) // even if the store knew it
			v := newVerifier(t, defaultCfg, f)
			c, r, err := v.Verify(context.Background(), tc.tok)
			if err != nil || r != token.Unknown || c.TokenID != "" {
				t.Errorf("Verify(%q) = %v %+v %v, want Unknown", tc.tok, r, c, err)
			}
			if n := f.calls.Load(); n != 0 {
				t.Errorf("loader ran %d times for a malformed token", n)
			}
			if m := v.Stats.Misses.Load() + v.Stats.Hits.Load(); m != 0 {
				t.Errorf("a malformed token reached the cache (%d lookups)", m)
			}
		})
	}
}

func TestExpiredWhileCached(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	t0 := time.Now()
	v.now = func() time.Time { return t0 }
	tok := genToken(t)
	c := liveCred("t1")
	c.ExpiresAt = t0.Add(10 * time.Minute)
	f.set(tok, c)
	if _, r := verify(t, v, tok); r != token.Active {
		t.Fatalf("before expiry: %v", r)
	}
	v.wait()
	for _, tc := range []struct {
		at   time.Time
		want token.Status
	}{
		{t0.Add(10*time.Minute - time.Nanosecond), token.Active},
		{t0.Add(10 * time.Minute), token.Expired},
		{t0.Add(11 * time.Minute), token.Expired},
	} {
		v.now = func() time.Time { return tc.at }
		if _, r := verify(t, v, tok); r != tc.want {
			t.Errorf("at expiry%+v: %v, want %v", tc.at.Sub(c.ExpiresAt), r, tc.want)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("loader ran %d times, want 1 (the verdicts must come from the cache)", n)
	}
}

// ttlStep is a Verify at t0+at and what it must give.
type ttlStep struct {
	at    time.Duration
	want  token.Status
	loads int64 // loader calls so far
}

// TestPositiveTTL: a known token's entry lives the cache ttl, and a token
// that expires within it is refused as expired from the entry right at its
// expiry; a token loaded already expired is cached as well (expiry is
// final), for the cache ttl.
func TestPositiveTTL(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	for _, tc := range []struct {
		name      string
		expiresIn time.Duration
		steps     []ttlStep
	}{
		{"far expiry: cache ttl", 48 * time.Hour, []ttlStep{{0, token.Active, 1}, {time.Hour - time.Nanosecond, token.Active, 1}, {time.Hour, token.Active, 2}, {2*time.Hour - 1, token.Active, 2}}},
		{"expiry within the ttl", 5 * time.Minute, []ttlStep{{0, token.Active, 1}, {5*time.Minute - time.Nanosecond, token.Active, 1}, {5 * time.Minute, token.Expired, 1}, {59 * time.Minute, token.Expired, 1}}},
		{"already expired: cached for the ttl", -time.Minute, []ttlStep{{0, token.Expired, 1}, {time.Second, token.Expired, 1}, {time.Hour - time.Nanosecond, token.Expired, 1}, {time.Hour, token.Expired, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			v := newVerifier(t, defaultCfg, f)
			tok := genToken(t)
			c := liveCred("t")
			c.ExpiresAt = t0.Add(tc.expiresIn)
			f.set(tok, c)
			for _, st := range tc.steps {
				v.now = func() time.Time { return t0.Add(st.at) }
				if _, r := verify(t, v, tok); r != st.want {
					t.Fatalf("at +%v: %v, want %v", st.at, r, st.want)
				}
				if n := f.calls.Load(); n != st.loads {
					t.Fatalf("at +%v: loader ran %d times, want %d", st.at, n, st.loads)
				}
				v.wait()
			}
		})
	}
}

func TestLoaderErrorNotCached(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	dbDown := errors.New("connection refused")
	f.setErr(dbDown)
	for i := range 2 {
		c, r, err := v.Verify(context.Background(), tok)
		if !errors.Is(err, dbDown) || r != token.Unknown || c.TokenID != "" {
			t.Fatalf("call %d with the database down: %v %+v %v", i, r, c, err)
		}
		v.wait()
	}
	f.setErr(nil)
	if _, r := verify(t, v, tok); r != token.Active {
		t.Fatalf("after recovery: %v", r)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("loader ran %d times, want 3 (errors must not be cached)", n)
	}
	if n := v.Stats.LoadErrors.Load(); n != 2 {
		t.Errorf("LoadErrors = %d, want 2", n)
	}
	// Neither for an unknown token: an error is not a negative entry.
	unknown := genToken(t)
	f.setErr(dbDown)
	if _, _, err := v.Verify(context.Background(), unknown); err == nil {
		t.Fatal("no error with the database down")
	}
	v.wait()
	f.setErr(nil)
	before := f.calls.Load()
	if _, r := verify(t, v, unknown); r != token.Unknown || f.calls.Load() != before+1 {
		t.Errorf("unknown after error: %v, loader calls %d -> %d", r, before, f.calls.Load())
	}
}

func TestConcurrentMissesShareOneLoad(t *testing.T) {
	t.Parallel()
	const n = 50
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	started, release := f.hold()
	defer release()

	var waiting atomic.Int64
	ctx := countingCtx{context.Background(), &waiting}
	results := make(chan token.Status, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, r, err := v.Verify(ctx, tok)
			results <- r
			errs <- err
		})
	}
	recv(t, started, "the load to start")
	wait.For(t, "all callers to wait on the load", func() bool { return waiting.Load() >= n })
	release()
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for r := range results {
		if r != token.Active {
			t.Fatalf("result %v", r)
		}
	}
	if c := f.calls.Load(); c != 1 {
		t.Errorf("%d concurrent misses ran the loader %d times, want 1", n, c)
	}
}

// TestGenerationGuard: a load that read the database before an invalidation
// must not store its result after it.
func TestGenerationGuard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		drop func(v *Verifier, h token.Hash)
	}{
		{"Drop", func(v *Verifier, h token.Hash) { v.Drop([][]byte{h[:]}) }},
		{"DropAll", func(v *Verifier, _ token.Hash) { v.DropAll() }},
		{"Drop of another hash", func(v *Verifier, _ token.Hash) { o := token.Sum("other"); v.Drop([][]byte{o[:]}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			v := newVerifier(t, defaultCfg, f)
			tok := genToken(t)
			f.set(tok, liveCred("t1"))
			started, release := f.hold()
			defer release()
			done := make(chan token.Status, 1)
			go func() {
				_, r, _ := v.Verify(context.Background(), tok)
				done <- r
			}()
			recv(t, started, "the load to start")
			tc.drop(v, token.Sum(tok))
			release()
			if r := <-done; r != token.Active {
				t.Fatalf("first Verify = %v", r)
			}
			v.wait()
			verify(t, v, tok)
			// Any invalidation bumps the generation, so even a Drop of
			// another hash keeps the stale-prone result out: conservative.
			if n := f.calls.Load(); n != 2 {
				t.Errorf("loader ran %d times, want 2: the load that started before %s stored its result", n, tc.name)
			}
		})
	}
}

// TestNoJoinAcrossInvalidation: a request that starts after Drop returned
// must not be answered by a load that read the database before the change
// (the changing instance drops its entries "before it answers, so the very
// next request on that instance already sees the change").
func TestNoJoinAcrossInvalidation(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	started, release := f.hold()
	defer release()
	first := make(chan token.Status, 1)
	go func() {
		_, r, _ := v.Verify(context.Background(), tok)
		first <- r
	}()
	recv(t, started, "the first load to start")

	// The token is revoked in the database, the instance drops it.
	revoked := liveCred("t1")
	revoked.Revoked = true
	f.set(tok, revoked)
	h := token.Sum(tok)
	v.Drop([][]byte{h[:]})
	// Later loads do not block.
	f.mu.Lock()
	f.gate, f.started = nil, nil
	f.mu.Unlock()

	var waiting atomic.Int64
	second := make(chan token.Status, 1)
	go func() {
		_, r, _ := v.Verify(countingCtx{context.Background(), &waiting}, tok)
		second <- r
	}()
	wait.For(t, "the second request to wait", func() bool { return waiting.Load() >= 1 })
	release()
	if r := <-first; r != token.Active {
		t.Errorf("first request (before the change) = %v, want Active", r)
	}
	if r := <-second; r != token.Revoked {
		t.Errorf("request after Drop = %v, want Revoked (it joined a load from before the change)", r)
	}
}

func TestDropAndDropAll(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	a, b := genToken(t), genToken(t)
	f.set(a, liveCred("a"))
	f.set(b, liveCred("b"))
	warm := func() {
		verify(t, v, a)
		verify(t, v, b)
		v.wait()
	}
	warm()
	warm()
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("warm: loader ran %d times, want 2", n)
	}

	// Drop a: only a reloads, and sees the new state at once.
	ra := liveCred("a")
	ra.Revoked = true
	f.set(a, ra)
	ha := token.Sum(a)
	v.Drop([][]byte{ha[:]})
	if _, r := verify(t, v, a); r != token.Revoked {
		t.Errorf("a after Drop = %v, want Revoked", r)
	}
	if _, r := verify(t, v, b); r != token.Active {
		t.Errorf("b after Drop(a) = %v", r)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("after Drop(a): loader ran %d times, want 3", n)
	}
	v.wait()

	// DropAll: both reload.
	v.DropAll()
	warm()
	if n := f.calls.Load(); n != 5 {
		t.Errorf("after DropAll: loader ran %d times, want 5", n)
	}
	// And the cache works again afterwards.
	warm()
	if n := f.calls.Load(); n != 5 {
		t.Errorf("after DropAll and warm-up: loader ran %d times, want 5", n)
	}
	if n := v.Stats.Invalidations.Load(); n != 2 {
		t.Errorf("Invalidations = %d, want 2", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, Config{TTL: 0, NegativeTTL: time.Hour}, f)
	tok, unknown := genToken(t), genToken(t)
	f.set(tok, liveCred("t1"))
	for range 3 {
		if _, r := verify(t, v, tok); r != token.Active {
			t.Fatalf("Verify = %v", r)
		}
		if _, r := verify(t, v, unknown); r != token.Unknown {
			t.Fatalf("Verify(unknown) = %v", r)
		}
		v.wait()
	}
	v.Drop([][]byte{{1}})
	v.DropAll()
	if n := f.calls.Load(); n != 6 {
		t.Errorf("with the cache off the loader ran %d times, want 6", n)
	}
}

// TestCallerCancelled: a caller that gives up gets its context's error, but
// the load it started runs on, uncancelled, and its result is cached for
// everyone else.
func TestCallerCancelled(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	started, release := f.hold()
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	type out struct {
		r   token.Status
		err error
	}
	a := make(chan out, 1)
	go func() {
		_, r, err := v.Verify(ctx, tok)
		a <- out{r, err}
	}()
	recv(t, started, "the load to start")
	// A second caller joins the same load and stays.
	var waiting atomic.Int64
	b := make(chan out, 1)
	go func() {
		_, r, err := v.Verify(countingCtx{context.Background(), &waiting}, tok)
		b <- out{r, err}
	}()
	wait.For(t, "the second caller to join", func() bool { return waiting.Load() >= 1 })

	cancel()
	if o := <-a; !errors.Is(o.err, context.Canceled) || o.r != token.Unknown {
		t.Fatalf("cancelled caller: %v %v, want Unknown and context.Canceled", o.r, o.err)
	}
	release()
	if o := <-b; o.err != nil || o.r != token.Active {
		t.Fatalf("second caller: %v %v", o.r, o.err)
	}
	f.mu.Lock()
	ctxErrs := f.ctxErrs
	f.mu.Unlock()
	if len(ctxErrs) != 1 || ctxErrs[0] != nil {
		t.Errorf("loader context errors %v: the caller's cancellation reached the shared load", ctxErrs)
	}
	v.wait()
	if _, r := verify(t, v, tok); r != token.Active {
		t.Fatalf("after: %v", r)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("loader ran %d times, want 1 (the cancelled caller's load was not cached)", n)
	}
}

func TestCallerDeadlineWithDatabaseHanging(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	_, release := f.hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, r, err := v.Verify(ctx, tok); !errors.Is(err, context.Canceled) || r != token.Unknown {
		t.Errorf("Verify with a hanging loader and a done context = %v %v", r, err)
	}
}

func TestMarkUsed(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	v.now = func() time.Time { return now }
	a, b, rev, unknown := genToken(t), genToken(t), genToken(t), genToken(t)
	ca, cb, cr := liveCred("a"), liveCred("b"), liveCred("r")
	ca.ExpiresAt, cb.ExpiresAt, cr.ExpiresAt = t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour)
	cr.Revoked = true
	f.set(a, ca)
	f.set(b, cb)
	f.set(rev, cr)

	if u := v.TakeUsed(); u != nil {
		t.Fatalf("TakeUsed before any use = %v", u)
	}
	for range 3 {
		verify(t, v, a)
		verify(t, v, rev)
		verify(t, v, unknown)
		v.wait()
	}
	u := v.TakeUsed()
	if len(u) != 1 || !u["a"].Equal(t0) {
		t.Fatalf("TakeUsed = %v, want only a at t0 (revoked and unknown tokens are not used)", u)
	}
	if u := v.TakeUsed(); u != nil {
		t.Fatalf("second TakeUsed = %v, want nil", u)
	}

	// Within the same second a cached token is queued once only.
	now = t0.Add(500 * time.Millisecond)
	verify(t, v, a)
	if u := v.TakeUsed(); u != nil {
		t.Errorf("same-second use queued again: %v", u)
	}
	// Next second: queued again, with the new time.
	now = t0.Add(1500 * time.Millisecond)
	verify(t, v, a)
	verify(t, v, b)
	v.wait()
	now = t0.Add(2 * time.Second)
	verify(t, v, a)
	u = v.TakeUsed()
	if len(u) != 2 || !u["a"].Equal(t0.Add(2*time.Second)) || !u["b"].Equal(t0.Add(1500*time.Millisecond)) {
		t.Fatalf("TakeUsed = %v", u)
	}

	// PutBackUsed keeps the newer time per token and adds missing ones.
	now = t0.Add(10 * time.Second)
	verify(t, v, a)
	v.PutBackUsed(map[string]time.Time{
		"a": t0.Add(2 * time.Second),         // older than the queued 10s: dropped
		"b": t0.Add(1500 * time.Millisecond), // not queued: added
		"c": t0.Add(20 * time.Second),        // not queued: added
	})
	now = t0.Add(11 * time.Second)
	verify(t, v, b) // newer than the put-back b
	v.PutBackUsed(map[string]time.Time{"b": t0.Add(3 * time.Second)})
	want := map[string]time.Time{"a": t0.Add(10 * time.Second), "b": t0.Add(11 * time.Second), "c": t0.Add(20 * time.Second)}
	u = v.TakeUsed()
	if len(u) != len(want) {
		t.Fatalf("TakeUsed = %v, want %v", u, want)
	}
	for id, at := range want {
		if !u[id].Equal(at) {
			t.Errorf("used[%s] = %v, want %v", id, u[id], at)
		}
	}
	v.PutBackUsed(nil)
	if u := v.TakeUsed(); u != nil {
		t.Errorf("TakeUsed after PutBackUsed(nil) = %v", u)
	}
}

// TestConcurrentVerifyAndInvalidate is for the race detector: verifications,
// drops and clears at once, with the final state consistent.
func TestConcurrentVerifyAndInvalidate(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 100}, f)
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = genToken(t)
		if i%2 == 0 {
			f.set(toks[i], liveCred(fmt.Sprint(i)))
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tok := toks[(g+i)%len(toks)]
				_, r, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Error(err)
					return
				}
				if want := (g+i)%len(toks)%2 == 0; want != (r == token.Active) {
					t.Errorf("token %d: %v", (g+i)%len(toks), r)
					return
				}
				switch i % 50 {
				case 0:
					v.DropAll()
				case 25:
					h := token.Sum(tok)
					v.Drop([][]byte{h[:]})
				}
				v.TakeUsed()
			}
		})
	}
	wg.Wait()
}

func warmHit(b *testing.B, v *Verifier, tok string, want token.Status) {
	for range 3 {
		if _, r, err := v.Verify(context.Background(), tok); err != nil || r != want {
			b.Fatalf("warm-up: %v %v", r, err)
		}
		v.wait()
	}
}

func BenchmarkVerifyHit(b *testing.B) {
	benchmarkVerifyCached(b, true)
}

func BenchmarkVerifyNegativeHit(b *testing.B) {
	benchmarkVerifyCached(b, false)
}

// benchmarkVerifyCached measures Verify on a cached live token (known) or
// a cached unknown one, and fails if any iteration missed the cache.
func benchmarkVerifyCached(b *testing.B, known bool) {
	f := newFake()
	v := newVerifier(b, Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1 << 16}, f)
	tok := genToken(b)
	want := token.Unknown
	if known {
		f.set(tok, liveCred("t1"))
		want = token.Active
	}
	warmHit(b, v, tok, want)
	loads := f.calls.Load()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, r, err := v.Verify(ctx, tok); err != nil || r != want {
			b.Fatalf("Verify = %v %v", r, err)
		}
	}
	if f.calls.Load() != loads {
		b.Fatalf("the benchmark missed the cache (%d loads)", f.calls.Load()-loads)
	}
}

func TestVerifyHitAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("t1"))
	for range 3 {
		verify(t, v, tok)
		v.wait()
	}
	ctx := context.Background()
	n := testing.AllocsPerRun(200, func() {
		if _, r, _ := v.Verify(ctx, tok); r != token.Active {
			t.Fatal("miss")
		}
	})
	if f.calls.Load() != 1 {
		t.Fatalf("not a cache hit: %d loads", f.calls.Load())
	}
	if n > 0 {
		t.Errorf("a cache hit allocates %v times, want none", n)
	}
}

// TestCacheKeyCollision: the cache is keyed by the first eight bytes of the
// hash; an entry stored under the same key for another hash is a miss, never
// another token's verdict.
func TestCacheKeyCollision(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	h := token.Sum(tok)
	other := h
	other[31] ^= 1
	v.cache.Set(cacheKey(h[:]), newEntry(other, liveCred("other"), time.Now().Add(time.Hour)), 1)
	v.wait()
	if _, r := verify(t, v, tok); r != token.Unknown {
		t.Fatalf("Verify = %v, want unknown (the colliding entry must not count)", r)
	}
	if f.calls.Load() != 1 {
		t.Fatalf("loads = %d, want 1", f.calls.Load())
	}
	f.set(tok, liveCred("mine"))
	v.Drop([][]byte{h[:]})
	if c, r := verify(t, v, tok); r != token.Active || c.TokenID != "mine" {
		t.Fatalf("Verify = %v %q, want active mine", r, c.TokenID)
	}
}

// TestCloseWithLoadsInFlight: loads that finish after or during Close must
// not touch the closed cache (ristretto panics on a send to its closed
// buffer); Verify after Close reads through. Run with -race.
func TestCloseWithLoadsInFlight(t *testing.T) {
	t.Parallel()
	for range 20 {
		f := newFake()
		v, err := New(defaultCfg, f.load)
		if err != nil {
			t.Fatal(err)
		}
		tok := genToken(t)
		f.set(tok, liveCred("t1"))
		started, release := f.hold()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // give up at once; the loads run on
				v.Verify(ctx, genToken(t))
				v.Verify(ctx, tok)
			})
		}
		recv(t, started, "a load to start")
		wg.Go(release)
		v.Close()
		wg.Wait()
		v.Drop([][]byte{{1}})
		v.DropAll()
		v.wait()
		if _, r := verify(t, v, tok); r != token.Active {
			t.Fatalf("Verify after Close = %v", r)
		}
		v.Close() // idempotent
	}
}

// wait blocks until buffered cache writes are applied.
func (v *Verifier) wait() {
	if v.cache != nil && !v.closed.Load() {
		v.cache.Wait()
	}
}

// TestUnknownFloodKeepsKnown: a flood of distinct unknown tokens, many more
// than the cache holds, does not evict cached known tokens: unknown tokens
// are remembered apart from known ones.
func TestUnknownFloodKeepsKnown(t *testing.T) {
	t.Parallel()
	const live, flood, cacheSize = 1000, 100_000, 2000
	f := newFake()
	v := newVerifier(t, Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: cacheSize}, f)
	toks := make([]string, live)
	for i := range toks {
		toks[i] = genToken(t)
		f.set(toks[i], liveCred(fmt.Sprint(i)))
	}
	// Cache every known token (ristretto may drop a Set under load: retry).
	for _, tok := range toks {
		wait.For(t, "a known token to be cached", func() bool {
			loads := f.calls.Load()
			verify(t, v, tok)
			v.wait()
			return f.calls.Load() == loads
		})
	}
	liveLoads := func(round int) int64 {
		loads := f.calls.Load()
		for i := range 100 {
			if _, r := verify(t, v, toks[(round*100+i)%live]); r != token.Active {
				t.Fatalf("known token refused: %v", r)
			}
		}
		return f.calls.Load() - loads
	}
	var during, checked int64
	for i := range flood {
		if _, r := verify(t, v, genToken(t)); r != token.Unknown {
			t.Fatalf("unknown token: %v", r)
		}
		if i%1000 == 999 {
			during += liveLoads(i / 1000)
			checked += 100
		}
	}
	after := int64(0)
	for round := range live / 100 {
		after += liveLoads(round)
	}
	t.Logf("known-token hit rate during the flood %.2f%% (%d loads of %d), after it %.2f%% (%d loads of %d)",
		100*float64(checked-during)/float64(checked), during, checked, 100*float64(live-after)/float64(live), after, live)
	if during != 0 || after != 0 {
		t.Errorf("a flood of %d unknown tokens made %d known-token lookups miss during it and %d after it",
			flood, during, after)
	}
	if n := v.CacheEntries(); n != live {
		t.Errorf("cache holds %d entries after the flood, want the %d known tokens", n, live)
	}
}

// TestNegativeTableDrop: Drop and DropAll forget unknown tokens too, so a
// token created after its hash was remembered as unknown is found.
func TestNegativeTableDrop(t *testing.T) {
	t.Parallel()
	for _, all := range []bool{false, true} {
		f := newFake()
		v := newVerifier(t, defaultCfg, f)
		tok := genToken(t)
		verify(t, v, tok)
		if _, r := verify(t, v, tok); r != token.Unknown || f.calls.Load() != 1 {
			t.Fatalf("not remembered as unknown: %v, %d loads", r, f.calls.Load())
		}
		f.set(tok, liveCred("new"))
		if all {
			v.DropAll()
		} else {
			h := token.Sum(tok)
			v.Drop([][]byte{h[:]})
		}
		if _, r := verify(t, v, tok); r != token.Active {
			t.Errorf("DropAll=%v: after the drop %v, want active", all, r)
		}
	}
}

// TestNegativeTableBounded: more unknown hashes than the table holds only
// push out other unknown hashes; the newest are remembered until their time.
func TestNegativeTableBounded(t *testing.T) {
	t.Parallel()
	tab := newNegTable(minNegSlots)
	if got := len(tab.buckets) * negWays; got != minNegSlots {
		t.Fatalf("slots = %d, want %d", got, minNegSlots)
	}
	hashes := make([]token.Hash, 4*minNegSlots)
	for i := range hashes {
		hashes[i] = token.Sum(genToken(t))
		tab.add(&hashes[i], int64(i+1000))
	}
	kept := 0
	for i := range hashes {
		if tab.has(&hashes[i], 0) {
			kept++
		}
	}
	if kept > minNegSlots || kept < minNegSlots/2 {
		t.Errorf("%d of %d unknown hashes kept in %d slots", kept, len(hashes), minNegSlots)
	}
	last := hashes[len(hashes)-1]
	if !tab.has(&last, 0) || tab.has(&last, int64(len(hashes)+1000)) {
		t.Error("the newest hash is not kept until its time")
	}
}

// TestCacheSize: CacheEntries counts cached known tokens only, and
// CacheBytes grows with them from the fixed part.
func TestCacheSize(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	fixed := v.CacheBytes()
	if v.CacheEntries() != 0 || fixed <= 0 {
		t.Fatalf("empty cache: %d entries, %d bytes", v.CacheEntries(), fixed)
	}
	a, b := genToken(t), genToken(t)
	f.set(a, liveCred("a"))
	f.set(b, liveCred("b"))
	for _, tok := range []string{a, b, genToken(t)} {
		verify(t, v, tok)
	}
	v.wait()
	if n, by := v.CacheEntries(), v.CacheBytes(); n != 2 || by != fixed+2*bytesPerEntry {
		t.Errorf("2 known and 1 unknown token cached: %d entries, %d bytes (fixed %d)", n, by, fixed)
	}
	v.DropAll()
	v.wait()
	if n := v.CacheEntries(); n != 0 {
		t.Errorf("after DropAll: %d entries", n)
	}
}

// TestEntryLayout pins the cache entry's header size: with a UUID token
// id, a 12-byte user id, a short name, the formatted expiry and no
// allow-list the entry fits the 176-byte Go size class, and a field added
// carelessly would cost every cached token 16 bytes or more. The entry
// carries the token's and user's quotas, allow-list and formatted expiry,
// so that a hit needs nothing else.
func TestEntryLayout(t *testing.T) {
	t.Parallel()
	if n := unsafe.Sizeof(entry{}); n != 96 {
		t.Errorf("entry header is %d bytes, want 96", n)
	}
	h := token.Sum(genToken(t))
	c := liveCred("0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f")
	c.Scopes = []string{token.ScopeAdmin, token.ScopeAPI}
	c.UserDeactivated = true
	c.RateLimit = quota.Limit{Requests: 1000, Window: time.Hour}
	c.UserRateLimit = quota.Limit{Requests: 5000, Window: 24 * time.Hour}
	c.AllowedIPs, _ = ipallow.Parse([]string{"192.0.2.0/24", "2001:db8::/32"})
	e := newEntry(h, c, time.Now())
	got := e.credential()
	if got.TokenID != c.TokenID || got.UserID != c.UserID || got.Name != c.Name ||
		!got.CreatedAt.Equal(c.CreatedAt) || !got.ExpiresAt.Equal(c.ExpiresAt) ||
		got.Revoked || !got.UserDeactivated || !got.HasScope(token.ScopeAPI) || !got.HasScope(token.ScopeAdmin) ||
		got.RateLimit != c.RateLimit || got.UserRateLimit != c.UserRateLimit || got.AllowedIPs != c.AllowedIPs ||
		got.ExpiresText != c.ExpiresAt.UTC().Format(time.RFC3339) {
		t.Errorf("credential() = %+v, want %+v", got, c)
	}
	if !e.matches(&h) {
		t.Error("entry does not match its own hash")
	}
	// No strings at all: the entry is its header alone.
	if got := newEntry(h, token.Credential{}, time.Now()).credential(); got.TokenID != "" || got.UserID != "" || got.Name != "" {
		t.Errorf("empty credential rebuilt as %+v", got)
	}
}

// TestExpiredRefusalCached: a token that is expired when first looked up
// costs one lookup, however often it is presented (expiry is final), and
// without waiting for ristretto between the requests.
func TestExpiredRefusalCached(t *testing.T) {
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	c := liveCred("old")
	c.ExpiresAt = time.Now().Add(-time.Minute)
	f.set(tok, c)
	for i := range 200 {
		if _, r := verify(t, v, tok); r != token.Expired {
			t.Fatalf("request %d: %v, want expired", i, r)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("200 requests with an expired token cost %d lookups, want 1", n)
	}
}

// TestFrontTable: a cache hit puts the entry into the front table, which
// then answers without the cache; Drop and DropAll clear it, and an entry
// found before an invalidation never gets there after it.
func TestFrontTable(t *testing.T) {
	t.Parallel()
	f := newFake()
	v := newVerifier(t, defaultCfg, f)
	tok := genToken(t)
	f.set(tok, liveCred("a"))
	h := token.Sum(tok)
	slot := v.frontSlot(cacheKey(h[:]))
	verify(t, v, tok) // load
	v.wait()
	if slot.Load() != nil {
		t.Fatal("a load put the entry into the front table; only a cache hit may")
	}
	verify(t, v, tok) // cache hit: promoted
	e := slot.Load()
	if e == nil || !e.matches(&h) {
		t.Fatal("a cache hit did not put the entry into the front table")
	}
	// The front answers even when the cache lost the entry (ristretto may
	// evict it); the loader is not asked.
	v.cache.Del(cacheKey(h[:]))
	v.wait()
	if _, r := verify(t, v, tok); r != token.Active || f.calls.Load() != 1 {
		t.Fatalf("front hit = %v after %d loads, want active after 1", r, f.calls.Load())
	}

	revoked := liveCred("a")
	revoked.Revoked = true
	f.set(tok, revoked)
	v.Drop([][]byte{h[:]})
	if slot.Load() != nil {
		t.Fatal("Drop left the entry in the front table")
	}
	if _, r := verify(t, v, tok); r != token.Revoked {
		t.Fatalf("after Drop = %v, want revoked", r)
	}

	// An entry read from the cache before an invalidation is not promoted
	// after it.
	gen := v.gen.Load()
	v.Drop([][]byte{{0}}) // any invalidation bumps the generation
	v.promote(slot, e, gen)
	if slot.Load() != nil {
		t.Fatal("promote stored an entry found before an invalidation")
	}

	v.wait()
	verify(t, v, tok)
	if slot.Load() == nil {
		t.Fatal("no promotion on a hit after the reload")
	}
	v.DropAll()
	if slot.Load() != nil {
		t.Fatal("DropAll left the entry in the front table")
	}
}
