package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

// quotaHandler is a handler whose verifier finds every token live with
// cred, with a failure limiter that blocks after one failure.
func quotaHandler(t *testing.T, cred token.Credential) *AuthHandler {
	t.Helper()
	initProcessMetrics()
	cfg, _ := (&FailureLimit{Max: 1, Window: caddy.Duration(time.Hour)}).config()
	return &AuthHandler{Realm: defaultRealm, Scope: "api", logger: zap.NewNop(),
		challenge: `Bearer realm="` + defaultRealm + `"`, quota: quota.New(quota.Config{}),
		limiter: limiter.New(cfg, nil),
		verifier: verifyFunc(func(context.Context, string) (token.Credential, token.Status, error) {
			return cred, token.Active, nil
		})}
}

func quotaRequest(ip string) *http.Request {
	r := authRequest(context.Background(), "Bearer arm_whatever")
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

// TestQuotaRefusalIsNoFailure: a live token over its quota gets 429
// quota_exceeded again and again, and its address is never blocked by the
// failure limiter; nothing reaches next.
func TestQuotaRefusalIsNoFailure(t *testing.T) {
	h := quotaHandler(t, token.Credential{TokenID: "t", UserID: "u", Scopes: []string{"api"},
		ExpiresAt: time.Now().Add(time.Hour), RateLimit: quota.Limit{Requests: 1, Window: time.Hour}})
	reached := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached++; return nil })
	for i := range 5 {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, quotaRequest("192.0.2.1"), next); err != nil {
			t.Fatal(err)
		}
		want := http.StatusTooManyRequests
		if i == 0 {
			want = http.StatusOK
		}
		if w.Code != want {
			t.Fatalf("request %d: %d, want %d", i, w.Code, want)
		}
		if i > 0 && (!strings.Contains(w.Body.String(), `"quota_exceeded"`) || w.Header().Get("Retry-After") == "" ||
			w.Header().Get("Arm-Token-Expires") != "") {
			t.Errorf("refusal %d: %v %s", i, w.Header(), w.Body)
		}
	}
	if reached != 1 {
		t.Errorf("next reached %d times, want 1", reached)
	}
	if _, blocked := h.limiter.Blocked(netip.MustParseAddr("192.0.2.1")); blocked {
		t.Error("quota refusals blocked the address in the failure limiter")
	}
}

// TestAllowListRefusal: 403 ip_not_allowed from outside the list, IPv4 and
// IPv6 (mapped addresses normalised), and no failure counted.
func TestAllowListRefusal(t *testing.T) {
	ips, _ := ipallow.Parse([]string{"192.0.2.0/24", "2001:db8::/32"})
	h := quotaHandler(t, token.Credential{TokenID: "t", UserID: "u", Scopes: []string{"api"},
		ExpiresAt: time.Now().Add(time.Hour), AllowedIPs: ips})
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	for ip, want := range map[string]int{
		"192.0.2.7": 200, "::ffff:192.0.2.7": 200, "2001:db8::1": 200,
		"198.51.100.1": 403, "2001:db9::1": 403, "::1": 403, "not an address": 403,
	} {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, quotaRequest(ip), next); err != nil {
			t.Fatal(err)
		}
		if w.Code != want || (want == 403 && !strings.Contains(w.Body.String(), `"ip_not_allowed"`)) {
			t.Errorf("%s: %d %s, want %d", ip, w.Code, w.Body, want)
		}
	}
	if _, blocked := h.limiter.Blocked(netip.MustParseAddr("198.51.100.1")); blocked {
		t.Error("allow-list refusals blocked the address in the failure limiter")
	}
}

func TestQuotaCaddyfile(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("armgate {\n database x\n quota {\n token 1000 1h\n user 5000 24h\n sync 500ms\n }\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Quota.Token.limit() != (quota.Limit{Requests: 1000, Window: time.Hour}) ||
		a.Quota.User.limit() != (quota.Limit{Requests: 5000, Window: 24 * time.Hour}) || a.quotaSync() != 500*time.Millisecond {
		t.Errorf("quota %+v %+v sync %s", a.Quota.Token, a.Quota.User, a.quotaSync())
	}
	for _, bad := range []string{"token 0 1h", "token 10 48h", "token 10", "user 10 1500ms", "nonsense 1"} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("armgate {\n quota {\n " + bad + "\n }\n}")); err == nil {
			t.Errorf("quota { %s } accepted", bad)
		}
	}
	var h AuthHandler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("armgate_auth {\n ratelimit_headers maybe\n}")); err == nil {
		t.Error("ratelimit_headers maybe accepted")
	}
}

// TestPassHeadersLongValues: the longest values (the largest quotas and
// windows, the policy and the expiry formatted per request because nothing
// cached them) come out whole, beyond the request's preallocated buffer.
func TestPassHeadersLongValues(t *testing.T) {
	h := &AuthHandler{expiresKey: defaultExpiresHeader}
	exp := time.Date(2031, 12, 31, 23, 59, 59, 0, time.UTC)
	cred := token.Credential{ExpiresAt: exp} // no ExpiresText: formatted here
	lim := quota.Limit{Requests: quota.MaxRequests, Window: quota.MaxWindow}
	d := quota.Decision{Allowed: true,
		Token: quota.Status{Limit: lim, Remaining: quota.MaxRequests, Reset: 86400},
		User:  quota.Status{Limit: lim, Remaining: quota.MaxRequests - 1, Reset: 86399}}
	for _, qs := range []*quota.Token{nil, quota.New(quota.Config{}).Token("t", "u")} {
		w := httptest.NewRecorder()
		h.setPassHeaders(w, &cred, qs, &d)
		want := map[string]string{
			hdrRateLimitPolicy:   `"token";q=1000000000;w=86400, "user";q=1000000000;w=86400`,
			hdrRateLimit:         `"token";r=1000000000;t=86400, "user";r=999999999;t=86399`,
			defaultExpiresHeader: "2031-12-31T23:59:59Z",
		}
		for k, v := range want {
			if got := w.Header()[k]; len(got) != 1 || got[0] != v {
				t.Errorf("quota state %v: %s = %q, want %q", qs != nil, k, got, v)
			}
		}
	}
}
