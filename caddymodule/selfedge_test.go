package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/token"
)

// edgeRequest is a POST as Caddy hands it to a handler: with the variables
// table, in which Caddy records whether the connection's peer is a trusted
// proxy.
func edgeRequest(trustedPeer bool, host string, hdr map[string][]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/tokens", nil)
	r.Host = host
	for k, vs := range hdr {
		r.Header[k] = vs
	}
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: trustedPeer, caddyhttp.ClientIPVarKey: "192.0.2.7"}
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
}

// TestExternalScheme: X-Forwarded-Proto is believed only from a trusted
// proxy, and only its last value, the one the proxy itself wrote.
func TestExternalScheme(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tls     bool
		trusted bool
		xfp     []string
		want    string
	}{
		{name: "plain http", want: "http"},
		{name: "TLS", tls: true, want: "https"},
		{name: "TLS, X-Forwarded-Proto http ignored", tls: true, trusted: true, xfp: []string{"http"}, want: "https"},
		{name: "trusted proxy, https", trusted: true, xfp: []string{"https"}, want: "https"},
		{name: "trusted proxy, HTTPS", trusted: true, xfp: []string{" HTTPS "}, want: "https"},
		{name: "trusted proxy, http", trusted: true, xfp: []string{"http"}, want: "http"},
		{name: "trusted proxy, none", trusted: true, want: "http"},
		{name: "trusted proxy, garbage", trusted: true, xfp: []string{"wss"}, want: "http"},
		{name: "untrusted peer, spoofed https", xfp: []string{"https"}, want: "http"},
		{name: "trusted proxy appended http to a client's https", trusted: true, xfp: []string{"https, http"}, want: "http"},
		{name: "trusted proxy appended https", trusted: true, xfp: []string{"http, https"}, want: "https"},
		{name: "two header lines, last counts", trusted: true, xfp: []string{"https", "http"}, want: "http"},
	} {
		r := edgeRequest(tt.trusted, "api.example.com", map[string][]string{"X-Forwarded-Proto": tt.xfp})
		if tt.xfp == nil {
			r.Header.Del("X-Forwarded-Proto")
		}
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if got := externalScheme(r); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// Outside Caddy (no variables table) nothing is trusted.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := externalScheme(r); got != "http" {
		t.Errorf("without Caddy's variables: %s", got)
	}
}

// TestSelfOriginDecisions: the origin rules of armgate_self as the glue
// sets them up, behind a load balancer that terminates TLS and beside it.
func TestSelfOriginDecisions(t *testing.T) {
	origins, err := parseOrigins([]string{"https://portal.example.com", "http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	policy := adminapi.OriginPolicy{Scheme: externalScheme, Origins: origins}
	lb := func(origin, xfp string) map[string][]string {
		h := map[string][]string{"Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}}
		if xfp != "" {
			h["X-Forwarded-Proto"] = []string{xfp}
		}
		return h
	}
	for _, tt := range []struct {
		name    string
		trusted bool
		host    string
		hdr     map[string][]string
		ok      bool
	}{
		{"https origin over http, trusted X-Forwarded-Proto", true, "api.example.com", lb("https://api.example.com", "https"), true},
		{"https origin over http, explicit 443", true, "api.example.com", lb("https://api.example.com:443", "https"), true},
		{"https origin, Host with :443", true, "api.example.com:443", lb("https://api.example.com", "https"), true},
		{"https origin over http, spoofed X-Forwarded-Proto from an untrusted peer", false, "api.example.com", lb("https://api.example.com", "https"), false},
		{"https origin over http, trusted proxy sends no X-Forwarded-Proto", true, "api.example.com", lb("https://api.example.com", ""), false},
		{"http origin behind a TLS proxy", true, "api.example.com", lb("http://api.example.com", "https"), false},
		{"other host behind the proxy", true, "api.example.com", lb("https://evil.example", "https"), false},
		{"other port behind the proxy", true, "api.example.com", lb("https://api.example.com:8443", "https"), false},
		{"plain http site", false, "api.example.com", lb("http://api.example.com", ""), true},
		{"plain http site, explicit :80", false, "api.example.com", lb("http://api.example.com:80", ""), true},
		{"plain http site on 8080", false, "api.example.com:8080", lb("http://api.example.com:8080", ""), true},
		{"extra origin", false, "api.example.com", lb("https://portal.example.com", ""), true},
		{"extra origin with explicit default port", false, "api.example.com", lb("https://portal.example.com:443", ""), true},
		{"extra origin, http", false, "api.example.com", lb("http://portal.example.com", ""), false},
		{"extra origin with a port", true, "api.example.com", lb("http://localhost:8080", "https"), true},
		{"extra origin, other port", false, "api.example.com", lb("http://localhost", ""), false},
		{"opaque origin", true, "api.example.com", lb("null", "https"), false},
		{"no Origin (not a browser)", false, "api.example.com", nil, true},
	} {
		err := policy.Check(edgeRequest(tt.trusted, tt.host, tt.hdr))
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: allowed %v, want %v (%v)", tt.name, got, tt.ok, err)
		}
	}
}

// TestIdentifiedByToken: armgate_auth's mark, whatever value a vars
// directive may have put over it, or an armgate token as the bearer
// credential; never a person's sign-in.
func TestIdentifiedByToken(t *testing.T) {
	tok, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	bad := tok[:len(tok)-1] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-1] != 'A']
	marked := func(v any) *http.Request {
		r := edgeRequest(false, "x", nil)
		caddyhttp.SetVar(r.Context(), tokenAuthVar, v)
		return r
	}
	withAuth := func(v string) *http.Request {
		return edgeRequest(false, "x", map[string][]string{"Authorization": {v}})
	}
	for _, tt := range []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"marked by armgate_auth", marked(tokenAuthMark{}), true},
		{"mark overwritten by a vars directive", marked(""), true},
		{"bearer armgate token", withAuth("Bearer " + tok), true},
		{"bearer armgate token, lower-case scheme", withAuth("bearer  " + tok), true},
		{"basic auth", withAuth("Basic YWxpY2U6c2VjcmV0"), false},
		{"bearer JWT of a sign-in", withAuth("Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"), false},
		{"bearer token with a bad checksum", withAuth("Bearer " + bad), false},
		{"nothing", edgeRequest(false, "x", nil), false},
		{"outside Caddy", httptest.NewRequest(http.MethodGet, "/", nil), false},
	} {
		if got := identifiedByToken(tt.r); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAuthMarksRequest: a request armgate_auth lets through carries its
// mark; a refused one never reaches the next handler.
func TestAuthMarksRequest(t *testing.T) {
	h, _ := newLimitedHandler(t, nil, newFakeClock())
	var marked bool
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		marked = identifiedByToken(r)
		return nil
	})
	r := limRequest("192.0.2.9", "Bearer "+limGood)
	if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if !marked {
		t.Error("armgate_auth let a request through without its mark")
	}
}

// TestSelfRefusesTokens: armgate_self answers a token-identified request
// 403 forbidden before the API or the screen sees it.
func TestSelfRefusesTokens(t *testing.T) {
	reached := false
	h := &SelfHandler{mount: mount{
		api:    http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }),
		screen: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }),
	}}
	for _, p := range []string{"/tokens", "/ui/", "/openapi.json"} {
		r := edgeRequest(false, "x", nil)
		r.URL.Path = p
		caddyhttp.SetVar(r.Context(), tokenAuthVar, tokenAuthMark{})
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		var eb adminapi.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || w.Code != 403 || eb.Error != "forbidden" ||
			!strings.Contains(eb.Message, "signed in") || reached {
			t.Errorf("%s: %d %s (reached %v)", p, w.Code, w.Body, reached)
		}
	}
	r := edgeRequest(false, "x", nil)
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nil); err != nil || !reached {
		t.Errorf("a person's request did not reach the API: %v", err)
	}
}

// TestWriteLimitConfig: defaults, off, and the JSON a config may give.
func TestWriteLimitConfig(t *testing.T) {
	if cfg, on := (*WriteLimit)(nil).config(); !on || cfg.Max != 60 || cfg.Window != time.Hour {
		t.Errorf("default: %+v %v", cfg, on)
	}
	if _, on := (&WriteLimit{Off: true}).config(); on {
		t.Error("off is on")
	}
	if cfg, _ := (&WriteLimit{Max: 5}).config(); cfg.Max != 5 || cfg.Window != time.Hour {
		t.Errorf("max only: %+v", cfg)
	}
	var h SelfHandler
	if err := json.Unmarshal([]byte(`{"origins":["https://a.example"],"write_limit":{"max":10,"window":"5m"}}`), &h); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := h.WriteLimit.config(); cfg.Max != 10 || cfg.Window != 5*time.Minute {
		t.Errorf("from JSON: %+v", cfg)
	}
	for _, bad := range []*WriteLimit{{Max: -1}, {Window: caddy.Duration(time.Millisecond)}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v validates", bad)
		}
	}
	if _, err := parseOrigins([]string{"https://ok.example", "https://bad.example/x"}); err == nil ||
		!strings.Contains(err.Error(), `"https://bad.example/x"`) {
		t.Errorf("bad origin: %v", err)
	}
}

// TestWriteLimiterShared: armgate_self handlers with the same settings share
// one write limiter, apart from the failure limiters, and it outlives one
// of them, as across a config reload.
func TestWriteLimiterShared(t *testing.T) {
	wl := func() *WriteLimit { return &WriteLimit{Max: 6661, Window: caddy.Duration(time.Hour)} }
	cfg, _ := wl().config()
	refs := func() int {
		n, _ := limiters.References(writeLimiterKey{cfg})
		return n
	}
	provision := func(l *WriteLimit) (*SelfHandler, adminapi.WriteLimiter) {
		t.Helper()
		h := &SelfHandler{WriteLimit: l}
		w, err := h.provisionWriteLimit()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Cleanup() })
		return h, w
	}
	h1, w1 := provision(wl())
	_, w2 := provision(wl())
	if w1 == nil || w1 != w2 {
		t.Fatalf("two handlers with the same settings: %p and %p, want one limiter", w1, w2)
	}
	if n, _ := limiters.References(cfg); n != 0 {
		t.Errorf("a failure limiter with the same numbers has %d references: the two share a pool key", n)
	}
	if _, other := provision(&WriteLimit{Max: 6662, Window: caddy.Duration(time.Hour)}); other == w1 {
		t.Error("other settings share the limiter")
	}
	if h, off := provision(&WriteLimit{Off: true}); off != nil || h.writeKey != nil {
		t.Error("write_limit off holds a limiter")
	}
	for range 6661 {
		w1.Take("alice")
	}
	if err := h1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := refs(); n != 1 {
		t.Errorf("references after one cleanup = %d, want 1", n)
	}
	if _, w3 := provision(wl()); w3 != w2 {
		t.Error("a handler provisioned after another's cleanup got a new limiter")
	} else if _, ok := w3.Take("alice"); ok {
		t.Error("the count did not survive the reload")
	}
}
