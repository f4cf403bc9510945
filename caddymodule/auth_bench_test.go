package caddymodule

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

// The hot-path benchmarks of issue 5. Run them with
//
//	go test -run '^$' -bench . -benchmem ./caddymodule ./verifier
//
// BenchmarkAuthMissPostgres needs PostgreSQL (see internal/testpg) and is
// skipped without it.

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// benchHandler is an AuthHandler over a real verifier with an in-memory
// loader that knows the token live.
func benchHandler(b *testing.B, fl *FailureLimit, live string) *AuthHandler {
	return benchHandlerWith(b, fl, live, nil)
}

// benchHandlerWith is benchHandler with the credential edited by edit (a
// quota, an allow-list).
func benchHandlerWith(b *testing.B, fl *FailureLimit, live string, edit func(*token.Credential)) *AuthHandler {
	b.Helper()
	initProcessMetrics()
	cred := token.Credential{TokenID: "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", UserID: "alice", Name: "laptop",
		Scopes: []string{token.ScopeAPI}, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(24 * time.Hour)}
	if edit != nil {
		edit(&cred)
	}
	want := token.Sum(live)
	v, err := verifier.New(verifier.Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1 << 16},
		func(_ context.Context, h token.Hash) (token.Credential, error) {
			if h == want {
				return cred, nil
			}
			return token.Credential{}, verifier.ErrNotFound
		})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	// Counters without a store, as the runtime's between syncs: usage is
	// counted for every token, quota or not.
	h := &AuthHandler{Realm: defaultRealm, Scope: "api", verifier: v, logger: zap.NewNop(),
		challenge: `Bearer realm="` + defaultRealm + `"`, quota: quota.New(quota.Config{})}
	if cfg, on := fl.config(); on {
		h.limiter = limiter.New(cfg, nil)
	}
	return h
}

// benchRequest is a request as Caddy's server hands it to a handler: with a
// replacer and the vars (client_ip) in its context.
func benchRequest(tok, ip string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://api.example.com/v1/items", nil)
	r.RemoteAddr = ip + ":40000"
	r.Header.Set("Authorization", "Bearer "+tok)
	repl := caddy.NewReplacer()
	// Caddy's server adds its http.* provider to every request's replacer.
	repl.Map(func(string) (any, bool) { return nil, false })
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

// awaitCached returns once tok is answered from the cache (the cache stores
// asynchronously): when a Verify loads nothing.
func awaitCached(b *testing.B, h *AuthHandler, tok string) {
	b.Helper()
	v := h.verifier.(*verifier.Verifier)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		loads := v.Stats.Loads.Load()
		if _, _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		if v.Stats.Loads.Load() == loads {
			return
		}
	}
	b.Fatal("token never cached")
}

func newToken(b *testing.B) string {
	tok, err := token.Generate()
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkAuthCheckHit is the check itself: header parse, shape and
// checksum, SHA-256 and the cache hit (target: ≤ 1 µs, ≤ 1 alloc).
func BenchmarkAuthCheckHit(b *testing.B) {
	tok := newToken(b)
	h := benchHandler(b, nil, tok)
	r := benchRequest(tok, "192.0.2.1")
	ctx := r.Context()
	for range 3 {
		h.verifier.Verify(ctx, tok)
		awaitCached(b, h, tok)
	}
	b.ReportAllocs()
	for b.Loop() {
		t, res := token.ParseAuthorization(r.Header.Values("Authorization"))
		if res != token.HeaderOK {
			b.Fatal("parse")
		}
		if _, vr, err := h.verifier.Verify(ctx, t); err != nil || vr != token.Active {
			b.Fatalf("Verify = %v %v", vr, err)
		}
	}
}

// freshRequests cycles through requests whose replacers are renewed every
// len(reqs) uses (with the timer stopped), as Caddy gives every request a
// new one: the placeholders the handler adds must not pile up.
type freshRequests struct {
	b    *testing.B
	tok  string
	reqs []*http.Request
	i    int
}

func newFreshRequests(b *testing.B, tok string) *freshRequests {
	f := &freshRequests{b: b, tok: tok, reqs: make([]*http.Request, 4096)}
	f.renew()
	return f
}

func (f *freshRequests) renew() {
	for i := range f.reqs {
		f.reqs[i] = benchRequest(f.tok, "192.0.2.1")
	}
}

func (f *freshRequests) next() *http.Request {
	if f.i == len(f.reqs) {
		f.b.StopTimer()
		f.renew()
		f.i = 0
		f.b.StartTimer()
	}
	f.i++
	return f.reqs[f.i-1]
}

// BenchmarkAuthServeHTTPHit is the whole handler on a cache hit: the check,
// the failure-limit gate, the decision counter and the three placeholders
// (one replacer function: 1 allocation).
func BenchmarkAuthServeHTTPHit(b *testing.B) {
	tok := newToken(b)
	benchHits(b, benchHandler(b, nil, tok), tok, nil)
}

// benchHits times h on fresh requests with tok once tok is cached; check,
// when given, looks at the response headers of the warm-up requests.
// Every timed request must reach next.
func benchHits(b *testing.B, h *AuthHandler, tok string, check func(http.Header)) {
	b.Helper()
	reqs := newFreshRequests(b, tok)
	w := &discardWriter{h: http.Header{}}
	reached := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached++; return nil })
	for range 3 {
		h.ServeHTTP(w, reqs.next(), next)
		awaitCached(b, h, tok)
	}
	if check != nil {
		check(w.h)
	}
	reached = 0
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, reqs.next(), next); err != nil {
			b.Fatal(err)
		}
	}
	if reached != b.N {
		b.Fatalf("next reached %d of %d times", reached, b.N)
	}
}

// BenchmarkAuthServeHTTPHitQuota is the hit with a token quota, a user
// quota and a 4-prefix allow-list on the token: the allow-list match, both
// windows, the usage count and the RateLimit headers (one allocation with
// the expiry notice).
func BenchmarkAuthServeHTTPHitQuota(b *testing.B) {
	tok := newToken(b)
	ips, err := ipallow.Parse([]string{"10.0.0.0/8", "2001:db8::/32", "198.51.100.0/24", "192.0.2.0/24"})
	if err != nil {
		b.Fatal(err)
	}
	h := benchHandlerWith(b, nil, tok, func(c *token.Credential) {
		c.RateLimit = quota.Limit{Requests: 1_000_000_000, Window: time.Hour}
		c.UserRateLimit = quota.Limit{Requests: 1_000_000_000, Window: 24 * time.Hour}
		c.AllowedIPs = ips
	})
	benchHits(b, h, tok, func(hdr http.Header) {
		if hdr.Get("RateLimit") == "" {
			b.Fatal("no RateLimit header")
		}
	})
}

// BenchmarkAuthServeHTTPHitOthersBlocked is the hit while some other client
// is blocked by the failure limiter: the gate then looks the client up.
func BenchmarkAuthServeHTTPHitOthersBlocked(b *testing.B) {
	tok := newToken(b)
	h := benchHandler(b, &FailureLimit{Max: 1, Window: caddy.Duration(time.Hour)}, tok)
	h.limiter.Fail(netip.MustParseAddr("198.51.100.1"))
	benchHits(b, h, tok, func(http.Header) {
		if !h.limiter.MayBlock() {
			b.Fatal("nobody blocked")
		}
	})
}

// BenchmarkAuthServeHTTPNegativeHit is a refused well-formed unknown token
// answered from the negative cache (limiter off), JSON body included.
func BenchmarkAuthServeHTTPNegativeHit(b *testing.B) {
	h := benchHandler(b, &FailureLimit{Off: true}, newToken(b))
	unknown := newToken(b)
	r := benchRequest(unknown, "192.0.2.1")
	w := &discardWriter{h: http.Header{}}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { b.Fatal("reached next"); return nil })
	for range 3 {
		h.ServeHTTP(w, r, next)
		awaitCached(b, h, unknown)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r, next)
	}
}

// BenchmarkAuthServeHTTPLimited is the 429 answer to a blocked client.
func BenchmarkAuthServeHTTPLimited(b *testing.B) {
	h := benchHandler(b, &FailureLimit{Max: 1, Window: caddy.Duration(time.Hour)}, newToken(b))
	r := benchRequest(newToken(b), "192.0.2.1")
	h.limiter.Fail(netip.MustParseAddr("192.0.2.1"))
	w := &discardWriter{h: http.Header{}}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { b.Fatal("reached next"); return nil })
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r, next)
	}
}

// BenchmarkAuthMissPostgres is the miss path against a real PostgreSQL: the
// check plus one indexed query per operation (the cache is off). "/live"
// reads a live token, "/unknown" a well-formed unknown one.
func BenchmarkAuthMissPostgres(b *testing.B) {
	dsn := testpg.NewDatabase(b)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := storage.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	store := storage.New(pool)
	_, live, err := store.CreateToken(ctx, "bench", storage.NewToken{UserID: "alice", Name: "bench",
		Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true})
	if err != nil {
		b.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{}, func(ctx context.Context, h token.Hash) (token.Credential, error) {
		c, err := store.LookupCredential(ctx, h)
		if errors.Is(err, storage.ErrNotFound) {
			return c, verifier.ErrNotFound
		}
		return c, err
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		tok  string
		want token.Status
	}{{"live", live, token.Active}, {"unknown", newToken(b), token.Unknown}} {
		b.Run(bc.name, func(b *testing.B) {
			loads := v.Stats.Loads.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, r, err := v.Verify(ctx, bc.tok); err != nil || r != bc.want {
					b.Fatalf("Verify = %v %v", r, err)
				}
			}
			b.ReportMetric(float64(v.Stats.Loads.Load()-loads)/float64(b.N), "queries/op")
		})
	}
}

// BenchmarkAuthServeHTTPNone is the e0 of the hit benchmarks: the same
// requests and next handler without armgate_auth, so that a hit's cost is
// the difference (in instructions per request, repeatable on a loaded
// machine; see docs/performance.md). It runs only with a fixed count
// (-benchtime 5000x): its timed part takes nanoseconds, so a time target
// makes b.N so large that renewing the requests, untimed, takes hours.
func BenchmarkAuthServeHTTPNone(b *testing.B) {
	if bt := flag.Lookup("test.benchtime"); bt == nil || !strings.HasSuffix(bt.Value.String(), "x") {
		b.Skip("needs a fixed count: -benchtime 5000x")
	}
	reqs := newFreshRequests(b, newToken(b))
	w := &discardWriter{h: http.Header{}}
	reached := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached++; return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := next.ServeHTTP(w, reqs.next()); err != nil {
			b.Fatal(err)
		}
	}
	if reached != b.N {
		b.Fatalf("next reached %d of %d times", reached, b.N)
	}
}

// BenchmarkAuthServeHTTPHitNoExpiry is BenchmarkAuthServeHTTPHit with
// expires_header off: the expiry notice's share of the hit.
func BenchmarkAuthServeHTTPHitNoExpiry(b *testing.B) {
	tok := newToken(b)
	h := benchHandler(b, nil, tok)
	h.ExpiresHeader = "off"
	h.configureExpiresHeader()
	benchHits(b, h, tok, func(hdr http.Header) {
		if len(hdr) != 0 {
			b.Fatalf("headers set with expires_header off: %v", hdr)
		}
	})
}
