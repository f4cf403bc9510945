package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

func counterValue(t *testing.T, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := processMetrics.decision[result].Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// fakeClock replaces the package clock for one test.
type fakeClock struct{ t atomic.Int64 }

func useFakeClock(t *testing.T) *fakeClock {
	c := new(fakeClock)
	c.t.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	old := now
	now = func() time.Time { return time.Unix(0, c.t.Load()) }
	t.Cleanup(func() { now = old })
	return c
}

func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// limitVerifier answers from a table and counts calls: a blocked client must
// not reach it.
type limitVerifier struct {
	calls   atomic.Int64
	verdict map[string]verdict
}

func (f *limitVerifier) Verify(_ context.Context, tok string) (token.Credential, verifier.Result, error) {
	f.calls.Add(1)
	v, ok := f.verdict[tok]
	if !ok {
		return token.Credential{}, verifier.Unknown, nil
	}
	return v.cred, v.result, v.err
}

const (
	limGood = "tok-good"
	limDown = "tok-db-down"
	limRead = "tok-read-only"
)

func newLimitedHandler(t *testing.T, fl *FailureLimit) (*AuthHandler, *limitVerifier) {
	t.Helper()
	initProcessMetrics()
	live := token.Credential{TokenID: "t1", UserID: "u1", Name: "n1", Scopes: []string{"api"}, ExpiresAt: time.Now().Add(time.Hour)}
	ro := live
	ro.Scopes = []string{"other"}
	v := &limitVerifier{verdict: map[string]verdict{
		limGood: {cred: live, result: verifier.Active},
		limDown: {err: errors.New("database down")},
		limRead: {cred: ro, result: verifier.Active},
	}}
	h := &AuthHandler{Realm: defaultRealm, Scope: "api", FailureLimit: fl, verifier: v, logger: zap.NewNop(),
		challenge: `Bearer realm="` + defaultRealm + `"`}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	h.limiter = newLimiter(fl)
	return h, v
}

// limRequest is a request from client ip, as Caddy's server would hand it
// over (client_ip in the vars); auth is the Authorization value, if any.
func limRequest(ip, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
	r.RemoteAddr = "192.0.2.250:40000" // the client_ip var wins
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

func serve(t *testing.T, h *AuthHandler, ip, auth string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.ServeHTTP(w, limRequest(ip, auth), next); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestFailureLimitBlocksBeforeLookup(t *testing.T) {
	clock := useFakeClock(t)
	h, v := newLimitedHandler(t, &FailureLimit{Max: 3, Window: caddy.Duration(time.Minute)})
	limited := counterValue(t, resultRateLimited)

	for i := range 3 {
		if w := serve(t, h, "198.51.100.7", "Bearer unknown"); w.Code != http.StatusUnauthorized {
			t.Fatalf("refusal %d: status %d, want 401", i+1, w.Code)
		}
		clock.advance(time.Second)
	}
	calls := v.calls.Load()
	for _, auth := range []string{"Bearer unknown", "Bearer " + limGood, "", "Bearer a b"} {
		w := serve(t, h, "198.51.100.7", auth)
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("%q after 3 refusals: status %d, want 429", auth, w.Code)
		}
		// 3 refusals at 0s, 1s, 2s; now 3s: blocked until 60s.
		if ra := w.Header().Get("Retry-After"); ra != "57" {
			t.Errorf("Retry-After = %q, want 57", ra)
		}
		if w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("429 carries a challenge: %q", w.Header().Get("WWW-Authenticate"))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var body adminapi.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != "too_many_requests" || body.Message == "" {
			t.Errorf("body = %s (%v)", w.Body, err)
		}
	}
	if got := v.calls.Load(); got != calls {
		t.Errorf("a blocked client reached the verifier %d times", got-calls)
	}
	if got := counterValue(t, resultRateLimited) - limited; got != 4 {
		t.Errorf("rate_limited decisions = %v, want 4", got)
	}
	// Another client is not affected.
	if w := serve(t, h, "198.51.100.8", "Bearer "+limGood); w.Code != http.StatusOK {
		t.Errorf("another client: status %d, want 200", w.Code)
	}
	// Released once the window has passed.
	clock.advance(57 * time.Second)
	if w := serve(t, h, "198.51.100.7", "Bearer "+limGood); w.Code != http.StatusOK {
		t.Errorf("after the window: status %d, want 200", w.Code)
	}
}

// TestFailureLimitCounts: 401 invalid_token and malformed 400 count; 401
// without a token, 403 and 503 do not, and neither do successes.
func TestFailureLimitCounts(t *testing.T) {
	tests := []struct {
		name   string
		auth   string
		status int
		counts bool
	}{
		{"unknown token", "Bearer unknown", http.StatusUnauthorized, true},
		{"malformed header", "Bearer a b", http.StatusBadRequest, true},
		{"bare scheme", "Bearer", http.StatusBadRequest, true},
		{"no token", "", http.StatusUnauthorized, false},
		{"other scheme", "Basic dXNlcjpwYXNz", http.StatusUnauthorized, false},
		{"insufficient scope", "Bearer " + limRead, http.StatusForbidden, false},
		{"database down", "Bearer " + limDown, http.StatusServiceUnavailable, false},
		{"success", "Bearer " + limGood, http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			useFakeClock(t)
			h, _ := newLimitedHandler(t, &FailureLimit{Max: 5, Window: caddy.Duration(time.Minute)})
			for i := range 5 {
				if w := serve(t, h, "203.0.113.9", tt.auth); w.Code != tt.status {
					t.Fatalf("request %d: status %d, want %d", i+1, w.Code, tt.status)
				}
			}
			w := serve(t, h, "203.0.113.9", tt.auth)
			if blocked := w.Code == http.StatusTooManyRequests; blocked != tt.counts {
				t.Errorf("6th request: status %d; counted = %v, want %v", w.Code, blocked, tt.counts)
			}
		})
	}
}

// TestFailureLimitSlidingWindow: the previous bucket counts in proportion to
// the part of it the window still covers, so a client is held to about max
// refusals per window, also across bucket boundaries.
func TestFailureLimitSlidingWindow(t *testing.T) {
	clock := useFakeClock(t)
	l := newLimiter(&FailureLimit{Max: 4, Window: caddy.Duration(time.Minute)})
	a := netip.MustParseAddr("198.51.100.1")
	at := func(d time.Duration) int64 {
		return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(d).UnixNano()
	}
	blockedAt := func(d time.Duration) bool {
		clock.t.Store(at(d))
		_, b := l.blocked(limRequest(a.String(), ""))
		return b
	}
	// The clock starts on a bucket boundary (2030-01-01T00:00:00Z).
	for _, d := range []time.Duration{50 * time.Second, 55 * time.Second, 58 * time.Second} {
		l.failKey(a, at(d))
	}
	if blockedAt(59 * time.Second) {
		t.Fatal("blocked after 3 of 4")
	}
	// At 75s the estimate is 3*(45/60) + 1 = 3.25: under 4.
	l.failKey(a, at(75*time.Second))
	if blockedAt(75 * time.Second) {
		t.Fatal("blocked at an estimate of 3.25")
	}
	// At 76s: 3*(44/60) + 2 = 4.2: blocked until 3*(1-f) + 2 < 4, f > 1/3: 80s.
	l.failKey(a, at(76*time.Second))
	if !blockedAt(76 * time.Second) {
		t.Fatal("not blocked at an estimate of 4.2")
	}
	if !blockedAt(80*time.Second - time.Millisecond) {
		t.Error("released too early")
	}
	if blockedAt(80 * time.Second) {
		t.Error("still blocked after the estimate fell under the limit")
	}
	// One more refusal at once blocks again: the client keeps to ~4/min.
	l.failKey(a, at(81*time.Second))
	if !blockedAt(81 * time.Second) {
		t.Error("not blocked again")
	}
}

func TestFailureLimitRetryAfterAndHorizon(t *testing.T) {
	clock := useFakeClock(t)
	l := newLimiter(&FailureLimit{Max: 2, Window: caddy.Duration(10 * time.Second)})
	r := limRequest("192.0.2.1", "")
	if l.horizon.Load() != 0 {
		t.Fatal("horizon set with nobody blocked")
	}
	l.fail(r)
	l.fail(r)
	secs, blocked := l.blocked(r)
	if !blocked || secs < 1 || secs > 20 {
		t.Fatalf("blocked = %v, Retry-After %d", blocked, secs)
	}
	if l.horizon.Load() == 0 {
		t.Fatal("horizon not set")
	}
	clock.advance(time.Duration(secs) * time.Second)
	if _, blocked := l.blocked(r); blocked {
		t.Fatal("still blocked after Retry-After")
	}
	if l.horizon.Load() != 0 {
		t.Error("horizon not reset once nobody is blocked")
	}
}

func TestFailureLimitClientKey(t *testing.T) {
	tests := []struct {
		ip, remote string
		want       string
		ok         bool
	}{
		{"203.0.113.5", "192.0.2.1:1234", "203.0.113.5", true},
		{"::ffff:203.0.113.5", "", "203.0.113.5", true},
		{"2001:db8:1:2:aaaa::1", "", "2001:db8:1:2::", true},
		{"2001:db8:1:2:bbbb::9", "", "2001:db8:1:2::", true},
		{"fe80::1%eth0", "", "fe80::", true},
		{"", "192.0.2.1:1234", "192.0.2.1", true},
		{"", "[2001:db8::7]:443", "2001:db8::", true},
		{"", "@", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if tt.ip != "" {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: tt.ip}))
		}
		got, ok := clientKey(r)
		if ok != tt.ok || ok && got.String() != tt.want {
			t.Errorf("clientKey(%q, %q) = %v %v, want %v %v", tt.ip, tt.remote, got, ok, tt.want, tt.ok)
		}
	}
}

// TestFailureLimitMemoryBound: a flood from ever new addresses keeps at most
// MaxClients tracked, and forgets stale ones after the window.
func TestFailureLimitMemoryBound(t *testing.T) {
	clock := useFakeClock(t)
	l := newLimiter(&FailureLimit{Max: 3, Window: caddy.Duration(time.Minute), MaxClients: 640})
	tracked := func() int {
		n := 0
		for i := range l.shards {
			n += len(l.shards[i].clients)
		}
		return n
	}
	for i := range 100_000 {
		l.failKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), clock.t.Load())
	}
	if n := tracked(); n > 640 || n < 320 {
		t.Errorf("tracked %d addresses, want at most 640 (and most of them)", n)
	}
	// Two windows later every entry is stale; the next refusals sweep them.
	clock.advance(2*time.Minute + time.Second)
	for i := range l.shards {
		for k := range l.shards[i].clients {
			l.failKey(k, clock.t.Load())
			break
		}
	}
	if n := tracked(); n > limiterShards {
		t.Errorf("tracked %d addresses after the sweep, want at most %d", n, limiterShards)
	}
}

// TestFailureLimitBlockedSurviveEviction: a full shard forgets unblocked
// addresses before blocked ones when it can see one among its sample.
func TestFailureLimitEvictionPrefersUnblocked(t *testing.T) {
	clock := useFakeClock(t)
	l := newLimiter(&FailureLimit{Max: 2, Window: caddy.Duration(time.Minute), MaxClients: limiterShards * 4})
	bad := netip.MustParseAddr("198.51.100.99")
	l.failKey(bad, clock.t.Load())
	l.failKey(bad, clock.t.Load())
	s := l.shard(bad)
	// Fill bad's shard with unblocked addresses, then overflow it a lot.
	added := 0
	for i := 0; added < 200; i++ {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if l.shard(a) == s {
			l.failKey(a, clock.t.Load())
			added++
		}
	}
	if len(s.clients) > l.perShard {
		t.Fatalf("shard holds %d, cap %d", len(s.clients), l.perShard)
	}
	// With a sample of 8 out of 4 entries, the blocked one is never the
	// one with the smallest block.
	if _, ok := s.clients[bad]; !ok {
		t.Error("the blocked address was evicted while unblocked ones were there")
	}
}

func TestFailureLimitOff(t *testing.T) {
	useFakeClock(t)
	h, v := newLimitedHandler(t, &FailureLimit{Off: true})
	if h.limiter != nil {
		t.Fatal("limiter built with failure_limit off")
	}
	for range 200 {
		serve(t, h, "192.0.2.3", "Bearer unknown")
	}
	if w := serve(t, h, "192.0.2.3", "Bearer unknown"); w.Code != http.StatusUnauthorized || v.calls.Load() != 201 {
		t.Errorf("status %d, %d lookups", w.Code, v.calls.Load())
	}
}

func TestFailureLimitDefault(t *testing.T) {
	useFakeClock(t)
	h, _ := newLimitedHandler(t, nil)
	for i := range defaultFailureMax {
		if w := serve(t, h, "192.0.2.4", "Bearer unknown"); w.Code != http.StatusUnauthorized {
			t.Fatalf("refusal %d: status %d", i+1, w.Code)
		}
	}
	if w := serve(t, h, "192.0.2.4", "Bearer unknown"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d refusals: status %d, want 429", defaultFailureMax, w.Code)
	}
}

// TestFailureLimitNoAllocs: the check allocates nothing, whether or not
// someone is blocked.
func TestFailureLimitNoAllocs(t *testing.T) {
	useFakeClock(t)
	l := newLimiter(nil)
	r := limRequest("192.0.2.5", "")
	if n := testing.AllocsPerRun(100, func() { l.blocked(r) }); n != 0 {
		t.Errorf("blocked() with nobody blocked allocates %v", n)
	}
	for range defaultFailureMax {
		l.fail(limRequest("192.0.2.6", ""))
	}
	if n := testing.AllocsPerRun(100, func() { l.blocked(r) }); n != 0 {
		t.Errorf("blocked() with someone blocked allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { l.fail(r) }); n != 0 {
		t.Errorf("fail() of a tracked client allocates %v", n)
	}
}

// TestFailureLimitConcurrent is for -race.
func TestFailureLimitConcurrent(t *testing.T) {
	l := newLimiter(&FailureLimit{Max: 5, Window: caddy.Duration(time.Second), MaxClients: 128})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				r := limRequest(fmt.Sprintf("10.0.%d.%d", g, i%300), "")
				if _, blocked := l.blocked(r); !blocked {
					l.fail(r)
				}
			}
		})
	}
	wg.Wait()
}

func TestFailureLimitCaddyfile(t *testing.T) {
	tests := []struct {
		in   string
		want *FailureLimit
		err  string
	}{
		{"armgate_auth", nil, ""},
		{"armgate_auth {\n failure_limit 20 1m\n}", &FailureLimit{Max: 20, Window: caddy.Duration(time.Minute)}, ""},
		{"armgate_auth {\n failure_limit off\n scope api\n}", &FailureLimit{Off: true}, ""},
		{"armgate_auth {\n failure_limit 5 30s {\n  max_clients 1000\n }\n realm x\n}",
			&FailureLimit{Max: 5, Window: caddy.Duration(30 * time.Second), MaxClients: 1000}, ""},
		{"armgate_auth {\n failure_limit 20\n}", nil, "takes <max> <window>"},
		{"armgate_auth {\n failure_limit 0 1m\n}", nil, "positive number"},
		{"armgate_auth {\n failure_limit 5 10ms\n}", nil, "at least 1s"},
		{"armgate_auth {\n failure_limit 5 soon\n}", nil, "at least 1s"},
		{"armgate_auth {\n failure_limit on\n}", nil, "takes <max> <window>"},
		{"armgate_auth {\n failure_limit off {\n  max_clients 5\n }\n}", nil, "takes no block"},
		{"armgate_auth {\n failure_limit 5 1m {\n  burst 5\n }\n}", nil, "unrecognized failure_limit option"},
		{"armgate_auth {\n failure_limit 5 1m\n failure_limit off\n}", nil, "only once"},
	}
	for _, tt := range tests {
		var h AuthHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if (h.FailureLimit == nil) != (tt.want == nil) || h.FailureLimit != nil && *h.FailureLimit != *tt.want {
			t.Errorf("%q: failure_limit = %+v, want %+v", tt.in, h.FailureLimit, tt.want)
		}
	}
}

func TestFailureLimitValidate(t *testing.T) {
	for _, f := range []*FailureLimit{{Max: -1}, {Window: caddy.Duration(time.Millisecond)}, {MaxClients: -5}} {
		h := AuthHandler{FailureLimit: f}
		if err := h.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", *f)
		}
	}
	h := AuthHandler{FailureLimit: &FailureLimit{Off: true, Max: -1}}
	if err := h.Validate(); err != nil {
		t.Errorf("Validate(off) = %v", err)
	}
}

// TestUserPlaceholders: a passed request carries the user placeholders
// (served by a replacer function, see setUserPlaceholders); a value set
// with Replacer.Set, as the vars directive does, comes first.
func TestUserPlaceholders(t *testing.T) {
	h, _ := newLimitedHandler(t, nil)
	r := limRequest("192.0.2.9", "Bearer "+limGood)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var got []string
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		got = append(got, repl.ReplaceAll("{http.auth.user.id} {http.auth.user.token_id} {http.auth.user.token_name} {http.auth.user.other}", "-"))
		repl.Set("http.auth.user.id", "override")
		got = append(got, repl.ReplaceAll("{http.auth.user.id}", "-"))
		return nil
	})
	if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "u1 t1 n1 -" || got[1] != "override" {
		t.Errorf("placeholders = %q", got)
	}
}
