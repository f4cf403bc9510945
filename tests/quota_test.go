package tests

import (
	"context"
	"encoding/json"
	"github.com/armgate/armgate/internal/wait"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// rateLimitItem is one member of a RateLimit-Policy or RateLimit header:
// its name and its integer parameters.
type rateLimitItem struct {
	name   string
	params map[string]int64
}

// parseRateLimit parses a RateLimit-Policy or RateLimit field as a
// Structured Fields list of items (draft-ietf-httpapi-ratelimit-headers-11):
// each a String naming the policy, with integer parameters.
func parseRateLimit(t *testing.T, h http.Header, field string) []rateLimitItem {
	t.Helper()
	vals := h.Values(field)
	if len(vals) == 0 {
		t.Fatalf("no %s header", field)
	}
	list, err := httpsfv.UnmarshalList(vals)
	if err != nil {
		t.Fatalf("%s %q is not a Structured Fields list: %v", field, vals, err)
	}
	var out []rateLimitItem
	for _, m := range list {
		it, ok := m.(httpsfv.Item)
		if !ok {
			t.Fatalf("%s: member %v is not an item", field, m)
		}
		name, ok := it.Value.(string)
		if !ok {
			t.Fatalf("%s: item %v is not a String", field, it.Value)
		}
		ri := rateLimitItem{name: name, params: map[string]int64{}}
		for _, k := range it.Params.Names() {
			v, _ := it.Params.Get(k)
			n, ok := v.(int64)
			if !ok {
				t.Fatalf("%s: parameter %s=%v is not an integer", field, k, v)
			}
			ri.params[k] = n
		}
		out = append(out, ri)
	}
	return out
}

// setControls sets a token's quota and allow-list through the store, as an
// admin would; the change reaches every instance by notification.
func setControls(t *testing.T, st *storage.Store, id string, lim *quota.Limit, cidrs []string) {
	t.Helper()
	c := storage.TokenControls{RateLimit: lim}
	if cidrs != nil {
		l, err := ipallow.Parse(cidrs)
		if err != nil {
			t.Fatal(err)
		}
		c.AllowedIPs = &l
	}
	if _, _, err := st.SetTokenControls(context.Background(), "admin", id, c, nil); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls until tok gets want from p (the change's notification
// may still be on its way) and returns that response.
func waitStatus(t *testing.T, p *caddyProc, tok string, want int) response {
	t.Helper()
	var r response
	if !wait.Until(10*time.Second, func() bool { r = p.get("/", tok); return r.Status == want }) {
		t.Fatalf("status %d (%s), want %d", r.Status, r.Body, want)
	}
	return r
}

// TestQuotaOneInstance: a token's quota is counted exactly on one instance;
// every response that passed carries the IETF headers, the refusal is an
// RFC 9457 problem with Retry-After, and the next window admits again. A
// user's quota spans their tokens; ratelimit_headers off drops the headers.
func TestQuotaOneInstance(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	_, st := openStore(t, dsn)
	p := startCaddy(t, "quota", procConfig{DSN: dsn, ExtraApp: "quota {\n user 1000 1h\n sync 200ms\n}",
		ExtraSite: "handle /quiet* {\n armgate_auth {\n ratelimit_headers off\n failure_limit off\n }\n respond \"quiet\" 200\n}"})

	id, tok := p.createToken("quinn", "five")
	setControls(t, st, id, &quota.Limit{Requests: 5, Window: time.Hour}, nil)
	// The first request after the notification is the first one counted.
	wait.Until(10*time.Second, func() bool {
		pol := p.get("/", tok).Header.Get("RateLimit-Policy")
		return pol != "" && pol != `"user";q=1000;w=3600`
	})
	for i := 2; i <= 5; i++ {
		r := p.get("/", tok)
		if r.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		pol := parseRateLimit(t, r.Header, "RateLimit-Policy")
		if len(pol) != 2 || pol[0].name != "token" || pol[0].params["q"] != 5 || pol[0].params["w"] != 3600 ||
			pol[1].name != "user" || pol[1].params["q"] != 1000 || pol[1].params["w"] != 3600 {
			t.Fatalf("RateLimit-Policy %q parsed as %+v", r.Header.Values("RateLimit-Policy"), pol)
		}
		rl := parseRateLimit(t, r.Header, "RateLimit")
		if len(rl) != 2 || rl[0].name != "token" || rl[0].params["r"] != int64(5-i) ||
			rl[0].params["t"] < 1 || rl[0].params["t"] > 3600 || rl[1].name != "user" || rl[1].params["r"] > int64(1000-i) {
			t.Fatalf("request %d: RateLimit %q parsed as %+v", i, r.Header.Values("RateLimit"), rl)
		}
		if r.Header.Get("ARM-Token-Expires") == "" {
			t.Errorf("request %d: no expiry notice", i)
		}
	}
	r := p.get("/", tok)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("6th request of 5: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 3600 {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	var prob struct {
		Type, Title, Detail, Error string
		Status                     int
	}
	if err := json.Unmarshal(r.Body, &prob); err != nil {
		t.Fatalf("problem body %s: %v", r.Body, err)
	}
	if prob.Type != "https://iana.org/assignments/http-problem-types#quota-exceeded" || prob.Status != 429 ||
		prob.Title == "" || prob.Detail == "" || prob.Error != "quota_exceeded" {
		t.Errorf("problem body %+v", prob)
	}
	if rl := parseRateLimit(t, r.Header, "RateLimit"); rl[0].params["r"] != 0 {
		t.Errorf("RateLimit on the refusal: %+v", rl)
	}
	if r.Header.Get("ARM-Token-Expires") != "" || string(r.Body) == "ok quinn" {
		t.Error("the refusal looks like a pass")
	}
	// ratelimit_headers off: the same token, no headers, and the quota
	// still holds.
	if r := p.get("/quiet", tok); r.Status != http.StatusTooManyRequests {
		t.Errorf("over quota on the quiet route: %d", r.Status)
	}

	// The next window admits again (1s windows).
	id2, tok2 := p.createToken("quinn", "reset")
	setControls(t, st, id2, &quota.Limit{Requests: 3, Window: time.Second}, nil)
	waitStatus(t, p, tok2, http.StatusTooManyRequests) // used up in some window
	r = waitStatus(t, p, tok2, http.StatusOK)          // and admitted in a later one
	if rl := parseRateLimit(t, r.Header, "RateLimit"); rl[0].params["r"] != 2 || rl[0].params["t"] != 1 {
		t.Errorf("first request of a new window: %+v", rl)
	}
	if r := p.get("/quiet", tok2); r.Status == http.StatusOK && (r.Header.Get("RateLimit") != "" || r.Header.Get("RateLimit-Policy") != "") {
		t.Errorf("ratelimit_headers off sent %q %q", r.Header.Get("RateLimit-Policy"), r.Header.Get("RateLimit"))
	}

	// The user's quota spans their tokens.
	if _, err := st.SetUserRateLimit(context.Background(), "admin", "quinn", quota.Limit{Requests: 3, Window: time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, tok3 := p.createToken("quinn", "third")
	r = waitStatus(t, p, tok3, http.StatusTooManyRequests)
	var prob2 struct{ Detail string }
	_ = json.Unmarshal(r.Body, &prob2)
	if rl := parseRateLimit(t, r.Header, "RateLimit"); len(rl) != 1 || rl[0].name != "user" || rl[0].params["r"] != 0 {
		t.Errorf("user quota refusal: RateLimit %+v, detail %q", rl, prob2.Detail)
	}
	// Quota refusals are not failures: the failure limiter (off here) is
	// tested in the handler's unit tests; the decision metric counts them.
	if v := p.metrics().Value(`caddy_armgate_auth_decisions_total{result="quota_exceeded"}`); v < 2 {
		t.Errorf("quota_exceeded decisions %v", v)
	}
}

// TestQuotaTwoInstances: two instances share a quota through PostgreSQL;
// once both have synced after the other's requests, the cluster admits
// exactly the quota.
func TestQuotaTwoInstances(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	pool, st := openStore(t, dsn)
	cfg := procConfig{DSN: dsn, ExtraApp: "quota {\n sync 200ms\n}"}
	a := startCaddy(t, "quota-a", cfg)
	b := startCaddy(t, "quota-b", cfg)
	id, tok := a.createToken("tess", "shared")
	const q = 20
	setControls(t, st, id, &quota.Limit{Requests: q, Window: time.Hour}, nil)
	for _, p := range []*caddyProc{a, b} {
		wait.Until(10*time.Second, func() bool { return p.get("/", tok).Header.Get("RateLimit-Policy") != "" })
	}
	stored := func() int64 {
		var n int64
		_ = pool.QueryRow(context.Background(), `SELECT coalesce(sum(count), 0) FROM armgate.quota_counters WHERE kind = 't' AND subject = $1`, id).Scan(&n)
		return n
	}
	syncs := func(p *caddyProc) float64 { return p.metrics().Value("caddy_armgate_quota_syncs_total") }
	// awaitSynced waits until p has completed a sync that started after
	// now: p then knows everything stored so far.
	awaitSynced := func(p *caddyProc) {
		n := syncs(p)
		if !wait.Until(10*time.Second, func() bool { return syncs(p) >= n+2 }) {
			t.Fatalf("%s does not sync", p.Name)
		}
	}
	if !wait.Until(10*time.Second, func() bool { return stored() == 2 }) {
		t.Fatalf("stored %d, want the 2 requests counted so far", stored())
	}
	allowed := 2
	for range 8 { // 10 on a in all
		if a.get("/", tok).Status == http.StatusOK {
			allowed++
		}
	}
	if !wait.Until(10*time.Second, func() bool { return stored() == 10 }) {
		t.Fatalf("stored %d, want 10", stored())
	}
	awaitSynced(b)
	n := 0
	for range 2 * q {
		if b.get("/", tok).Status == http.StatusOK {
			n++
		}
	}
	if allowed+n != q {
		t.Errorf("b admitted %d after a's %d: %d in all, want exactly %d", n, allowed, allowed+n, q)
	}
	if !wait.Until(10*time.Second, func() bool { return stored() == q }) {
		t.Fatalf("stored %d, want %d", stored(), q)
	}
	awaitSynced(a)
	if r := a.get("/", tok); r.Status != http.StatusTooManyRequests {
		t.Errorf("a after b used up the quota: %d", r.Status)
	}
}

// TestAllowListAndUsage: a token with an allow-list is refused 403
// ip_not_allowed from elsewhere, IPv4 directly and IPv6 behind a trusted
// proxy (X-Forwarded-For from a trusted peer), and the usage per day and
// the last client address are stored at the next flush.
func TestAllowListAndUsage(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	_, st := openStore(t, dsn)
	p := startCaddy(t, "allow", procConfig{DSN: dsn, ExtraApp: "last_used_flush 1s",
		ExtraGlobal: "servers {\n trusted_proxies static 127.0.0.1/32\n trusted_proxies_strict\n}"})
	id, tok := p.createToken("ivy", "office")
	setControls(t, st, id, nil, []string{"192.0.2.0/24", "2001:db8::/32"})
	r := waitStatus(t, p, tok, http.StatusForbidden)
	if body := r.json(t); body["error"] != "ip_not_allowed" {
		t.Errorf("body %v", body)
	}
	via := func(xff string) response {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-For", xff)
		r, err := p.send(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tt := range []struct {
		xff  string
		want int
	}{
		{"192.0.2.10", http.StatusOK},
		{"2001:db8:aa::1", http.StatusOK},
		{"198.51.100.1", http.StatusForbidden},
		{"2001:db9::1", http.StatusForbidden},
		// strict: the right-most untrusted entry is the client, so a
		// spoofed left-most entry does not help
		{"192.0.2.10, 198.51.100.1", http.StatusForbidden},
	} {
		if r := via(tt.xff); r.Status != tt.want {
			t.Errorf("X-Forwarded-For %q: %d %s, want %d", tt.xff, r.Status, r.Body, tt.want)
		}
	}
	// Loopback itself becomes allowed when listed.
	setControls(t, st, id, nil, []string{"127.0.0.0/8"})
	waitStatus(t, p, tok, http.StatusOK)

	var days []storage.DayUsage
	var last string
	if !wait.Until(15*time.Second, func() bool {
		u, a, err := st.TokenUsage(context.Background(), id, 2)
		if err != nil || len(u) != 2 {
			return false
		}
		days, last = u, a.String()
		return u[1].Allowed >= 3 && u[1].IPRefused >= 4 && last == "127.0.0.1"
	}) {
		t.Fatalf("usage %+v, last address %q", days, last)
	}
	if days[1].QuotaRefused != 0 {
		t.Errorf("usage today %+v", days[1])
	}
}
