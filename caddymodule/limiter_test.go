package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/internal/testclock"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/token"
)

// counterValue reads auth_decisions_total{result=o} through the collector.
func counterValue(t *testing.T, o outcome) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, numOutcomes)
	processMetrics.decisions.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if d.GetLabel()[0].GetValue() == o.String() {
			return d.GetCounter().GetValue()
		}
	}
	t.Fatalf("no auth_decisions_total{result=%q}", o)
	return 0
}

// newFakeClock returns a limiter's clock in tests.
func newFakeClock() *testclock.Clock {
	return testclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

// limitVerifier answers from a table and counts calls. With current set,
// it plays a verifier whose set of known tokens is current; otherwise only
// the tokens in cached are answered without a lookup.
type limitVerifier struct {
	calls   atomic.Int64
	verdict map[string]verdict
	current bool
	cached  map[string]bool
}

func (f *limitVerifier) NeedsBlindLookup(tok string) bool {
	return !f.current && !f.cached[tok]
}

func (f *limitVerifier) Verify(_ context.Context, tok string) (token.Credential, token.Status, error) {
	f.calls.Add(1)
	v, ok := f.verdict[tok]
	if !ok {
		return token.Credential{}, token.Unknown, nil
	}
	return v.cred, v.result, v.err
}

const (
	limGood    = "tok-good"
	limDown    = "tok-db-down"
	limRead    = "tok-read-only"
	limRevoked = "tok-revoked"
)

// newLimitedHandler returns a handler with the failure limit fl whose
// limiter reads the time from clock.
func newLimitedHandler(t *testing.T, fl *FailureLimit, clock *testclock.Clock) (*AuthHandler, *limitVerifier) {
	t.Helper()
	initProcessMetrics()
	live := token.Credential{TokenID: "t1", UserID: "u1", Name: "n1", Scopes: []string{"api"}, ExpiresAt: time.Now().Add(time.Hour)}
	ro := live
	ro.Scopes = []string{"other"}
	v := &limitVerifier{verdict: map[string]verdict{
		limGood:    {cred: live, result: token.Active},
		limDown:    {err: errors.New("database down")},
		limRead:    {cred: ro, result: token.Active},
		limRevoked: {cred: live, result: token.Revoked},
	}}
	h := &AuthHandler{Realm: defaultRealm, Scope: "api", FailureLimit: fl, verifier: v, logger: zap.NewNop(),
		challenge: `Bearer realm="` + defaultRealm + `"`}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg, on := fl.config(); on {
		h.limiter = limiter.New(cfg, clock.Now)
	}
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

// TestFailureLimitSparesExistingTokens: a blocked client gets 429 only for
// a malformed header or a token that does not exist; a token that exists
// gets its own answer. Only while the known set is not current is a blocked
// client's cache miss refused without a lookup.
func TestFailureLimitSparesExistingTokens(t *testing.T) {
	tests := []struct {
		name    string
		current bool            // the known set is current
		cached  map[string]bool // answered without a lookup
		auth    string
		status  int
		lookup  bool
	}{
		{"live token", true, nil, "Bearer " + limGood, http.StatusOK, true},
		{"revoked token", true, nil, "Bearer " + limRevoked, http.StatusUnauthorized, true},
		{"insufficient scope", true, nil, "Bearer " + limRead, http.StatusForbidden, true},
		{"unknown token", true, nil, "Bearer unknown", http.StatusTooManyRequests, true},
		{"malformed header", true, nil, "Bearer a b", http.StatusTooManyRequests, false},
		{"no token", true, nil, "", http.StatusUnauthorized, false},
		{"set not current, cached live token", false, map[string]bool{limGood: true}, "Bearer " + limGood, http.StatusOK, true},
		{"set not current, cached revoked token", false, map[string]bool{limRevoked: true}, "Bearer " + limRevoked, http.StatusUnauthorized, true},
		{"set not current, cache miss", false, nil, "Bearer " + limGood, http.StatusTooManyRequests, false},
		{"set not current, unknown token", false, nil, "Bearer unknown", http.StatusTooManyRequests, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			h, v := newLimitedHandler(t, &FailureLimit{Max: 3, Window: caddy.Duration(time.Minute)}, clock)
			v.current, v.cached = tt.current, tt.cached
			for i := range 3 {
				if w := serve(t, h, "198.51.100.7", "Bearer unknown"); w.Code != http.StatusUnauthorized {
					t.Fatalf("refusal %d: status %d, want 401", i+1, w.Code)
				}
				clock.Add(time.Second)
			}
			calls := v.calls.Load()
			limited := counterValue(t, outcomeRateLimited)
			w := serve(t, h, "198.51.100.7", tt.auth)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if looked := v.calls.Load() != calls; looked != tt.lookup {
				t.Errorf("verifier called = %v, want %v", looked, tt.lookup)
			}
			if w.Code != http.StatusTooManyRequests {
				return
			}
			if got := counterValue(t, outcomeRateLimited) - limited; got != 1 {
				t.Errorf("rate_limited decisions = %v, want 1", got)
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
		})
	}
}

// TestFailureLimitRelease: another client is not affected, and the block
// ends with its window.
func TestFailureLimitRelease(t *testing.T) {
	clock := newFakeClock()
	h, _ := newLimitedHandler(t, &FailureLimit{Max: 3, Window: caddy.Duration(time.Minute)}, clock)
	for range 3 {
		serve(t, h, "198.51.100.7", "Bearer unknown")
		clock.Add(time.Second)
	}
	if w := serve(t, h, "198.51.100.7", "Bearer unknown"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("blocked client: status %d, want 429", w.Code)
	}
	if w := serve(t, h, "198.51.100.8", "Bearer unknown"); w.Code != http.StatusUnauthorized {
		t.Errorf("another client: status %d, want 401", w.Code)
	}
	clock.Add(57 * time.Second)
	if w := serve(t, h, "198.51.100.7", "Bearer unknown"); w.Code != http.StatusUnauthorized {
		t.Errorf("after the window: status %d, want 401", w.Code)
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
			h, _ := newLimitedHandler(t, &FailureLimit{Max: 5, Window: caddy.Duration(time.Minute)}, newFakeClock())
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

func TestFailureLimitClientAddr(t *testing.T) {
	tests := []struct {
		ip, remote string
		want       string
		ok         bool
	}{
		{"203.0.113.5", "192.0.2.1:1234", "203.0.113.5", true},
		{"2001:db8:1:2:aaaa::1", "", "2001:db8:1:2:aaaa::1", true},
		{"", "192.0.2.1:1234", "192.0.2.1", true},
		{"", "[2001:db8::7]:443", "2001:db8::7", true},
		{"", "@", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if tt.ip != "" {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: tt.ip}))
		}
		got, ok := clientAddr(r)
		if ok != tt.ok || ok && got.String() != tt.want {
			t.Errorf("clientAddr(%q, %q) = %v %v, want %v %v", tt.ip, tt.remote, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFailureLimitOff(t *testing.T) {
	h, v := newLimitedHandler(t, &FailureLimit{Off: true}, newFakeClock())
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
	h, _ := newLimitedHandler(t, nil, newFakeClock())
	for i := range limiter.DefaultMax {
		if w := serve(t, h, "192.0.2.4", "Bearer unknown"); w.Code != http.StatusUnauthorized {
			t.Fatalf("refusal %d: status %d", i+1, w.Code)
		}
	}
	if w := serve(t, h, "192.0.2.4", "Bearer unknown"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d refusals: status %d, want 429", limiter.DefaultMax, w.Code)
	}
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
	h, _ := newLimitedHandler(t, nil, newFakeClock())
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

// TestFailureLimitShared: handlers with the same settings share one limiter
// (one budget per client), and it outlives one of them, as across a config
// reload where the new handlers load it before the old ones are cleaned up.
func TestFailureLimitShared(t *testing.T) {
	// Settings no other test uses: the pool is per process.
	fl := func() *FailureLimit { return &FailureLimit{Max: 7771, Window: caddy.Duration(time.Minute)} }
	cfg, _ := fl().config()
	refs := func() int {
		n, _ := limiters.References(cfg)
		return n
	}
	provision := func(f *FailureLimit) *AuthHandler {
		t.Helper()
		h := &AuthHandler{FailureLimit: f}
		if err := h.provisionLimiter(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Cleanup() })
		return h
	}
	h1, h2 := provision(fl()), provision(fl())
	if h1.limiter == nil || h1.limiter != h2.limiter {
		t.Fatalf("two handlers with the same settings: limiters %p and %p, want one", h1.limiter, h2.limiter)
	}
	if n := refs(); n != 2 {
		t.Errorf("references = %d, want 2", n)
	}
	// The same settings spelled out with the defaults share it too.
	h3 := provision(&FailureLimit{Max: 7771, Window: caddy.Duration(time.Minute), MaxClients: limiter.DefaultMaxClients})
	if h3.limiter != h1.limiter {
		t.Error("explicit default max_clients gives another limiter")
	}
	if other := provision(&FailureLimit{Max: 7772, Window: caddy.Duration(time.Minute)}); other.limiter == h1.limiter {
		t.Error("other settings share the limiter")
	}
	if off := provision(&FailureLimit{Off: true}); off.limiter != nil || off.hold.key != nil {
		t.Error("failure_limit off holds a limiter")
	}

	// A reload: the old handler goes after the new one took the limiter.
	if err := h1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Cleanup(); err != nil { // twice is harmless
		t.Fatal(err)
	}
	if n := refs(); n != 2 {
		t.Errorf("references after one cleanup = %d, want 2", n)
	}
	if h4 := provision(fl()); h4.limiter != h2.limiter {
		t.Error("a handler provisioned after another's cleanup got a new limiter")
	}
	for _, h := range []*AuthHandler{h2, h3} {
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if n := refs(); n != 1 {
		t.Errorf("references = %d, want 1", n)
	}
}
