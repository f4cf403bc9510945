package adminapi

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/quota"
)

// newControlsAdmin is the admin API on a real store, with the store for
// direct checks.
func newControlsAdmin(t *testing.T) (http.Handler, *storeEnv) {
	t.Helper()
	e := newStoreEnv(t)
	return New(Options{Store: e.store, AdminKeys: []string{testAdminKey}, Limits: testLimits, Invalidate: e.invalidate}), e
}

func seedToken(t *testing.T, h http.Handler, body string) CreatedToken {
	t.Helper()
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{}`, nil); rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		t.Fatalf("put user: %d %s", rec.Code, rec.Body)
	}
	var tok CreatedToken
	if rec := do(t, h, "POST", "/users/alice/tokens", testAdminKey, body, &tok); rec.Code != http.StatusCreated {
		t.Fatalf("create token: %d %s", rec.Code, rec.Body)
	}
	return tok
}

// TestPatchTokenControls: set, change and clear a quota and an allow-list;
// each change is audited as token.update with what changed and
// invalidates the token's cache entry.
func TestPatchTokenControls(t *testing.T) {
	t.Parallel()
	h, e := newControlsAdmin(t)
	tok := seedToken(t, h, `{"name":"ci"}`)
	if tok.RateLimit != nil || len(tok.AllowedIPs) != 0 || tok.AllowedIPs == nil {
		t.Fatalf("new token carries controls: %+v %#v", tok.RateLimit, tok.AllowedIPs)
	}
	var got Token
	rec := do(t, h, "PATCH", "/tokens/"+tok.ID, testAdminKey,
		`{"rate_limit":{"requests":5,"window":"90m"},"allowed_ips":["192.0.2.7/24","2001:DB8::1/32","::ffff:198.51.100.1"]}`, &got)
	if rec.Code != http.StatusOK {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	if got.RateLimit == nil || *got.RateLimit != (quota.Limit{Requests: 5, Window: 90 * time.Minute}) {
		t.Errorf("rate_limit = %+v", got.RateLimit)
	}
	if !strings.Contains(rec.Body.String(), `"rate_limit":{"requests":5,"window":"1h30m"}`) {
		t.Errorf("window not as typed: %s", rec.Body)
	}
	if want := "192.0.2.0/24,2001:db8::/32,198.51.100.1/32"; strings.Join(got.AllowedIPs, ",") != want {
		t.Errorf("allowed_ips = %v, want %s (masked, normalised)", got.AllowedIPs, want)
	}
	if len(e.invs) == 0 || len(e.invs[len(e.invs)-1].Hashes) != 1 {
		t.Errorf("no invalidation of the token: %+v", e.invs)
	}
	// Only the quota changes; the allow-list stays.
	if rec := do(t, h, "PATCH", "/tokens/"+tok.ID, testAdminKey, `{"rate_limit":null}`, &got); rec.Code != http.StatusOK {
		t.Fatalf("clear quota: %d %s", rec.Code, rec.Body)
	}
	if got.RateLimit != nil || len(got.AllowedIPs) != 3 {
		t.Errorf("after clearing the quota: %+v %v", got.RateLimit, got.AllowedIPs)
	}
	if rec := do(t, h, "PATCH", "/tokens/"+tok.ID, testAdminKey, `{"allowed_ips":[]}`, &got); rec.Code != http.StatusOK || len(got.AllowedIPs) != 0 {
		t.Fatalf("clear allow-list: %d %s", rec.Code, rec.Body)
	}
	var audit struct{ Events []auditEvent }
	do(t, h, "GET", "/audit?user_id=alice", testAdminKey, "", &audit)
	var updates []auditEvent
	for _, ev := range audit.Events {
		if ev.Action == "token.update" {
			updates = append(updates, ev)
		}
	}
	if len(updates) != 3 || updates[2].Detail["rate_limit"] != "5/1h30m0s" || updates[1].Detail["rate_limit"] != "none" ||
		updates[0].Actor != "admin_key" || updates[0].Target != tok.ID {
		t.Errorf("audit: %+v", updates)
	}
	if _, ok := updates[1].Detail["allowed_ips"]; ok {
		t.Errorf("allow-list reported changed when only the quota was: %+v", updates[1].Detail)
	}
}

// TestPatchTokenControlsRefusals: every bad value is a 400 naming the
// problem, and nothing is written.
func TestPatchTokenControlsRefusals(t *testing.T) {
	t.Parallel()
	h, _ := newControlsAdmin(t)
	tok := seedToken(t, h, `{"name":"ci","rate_limit":{"requests":10,"window":"1h"}}`)
	many := make([]string, 33)
	for i := range many {
		many[i] = `"10.0.` + itoa(i) + `.0/24"`
	}
	for _, c := range []struct{ body, want string }{
		{`{}`, "give rate_limit, allowed_ips or both"},
		{`{"rate_limit":{"requests":0,"window":"1h"}}`, "requests must be from 1"},
		{`{"rate_limit":{"requests":5,"window":"25h"}}`, "window must be from 1s to 24h"},
		{`{"rate_limit":{"requests":5,"window":"500ms"}}`, "window must be from 1s to 24h"},
		{`{"rate_limit":{"requests":5,"window":"1.5s"}}`, "whole number of seconds"},
		{`{"rate_limit":{"requests":5,"window":"hourly"}}`, "must be a duration"},
		{`{"rate_limit":{"requests":5}}`, "must be a duration"},
		{`{"rate_limit":{"requests":5,"window":"1h","burst":2}}`, "unknown field"},
		{`{"rate_limit":"5/1h"}`, "rate_limit"},
		{`{"allowed_ips":["10.0.0.0/33"]}`, "is not a CIDR"},
		{`{"allowed_ips":["example.com"]}`, "is not an IP address"},
		{`{"allowed_ips":["fe80::1%eth0"]}`, "is not an IP address"},
		{`{"allowed_ips":[` + strings.Join(many, ",") + `]}`, "at most 32"},
		{`{"allowed_ips":"10.0.0.0/8"}`, "allowed_ips"},
		{`{"rate_limit":null,"limit":1}`, "unknown field"},
	} {
		var eb ErrorBody
		rec := do(t, h, "PATCH", "/tokens/"+tok.ID, testAdminKey, c.body, &eb)
		if rec.Code != http.StatusBadRequest || eb.Error != "invalid_request" || !strings.Contains(eb.Message, c.want) {
			t.Errorf("%s: %d %+v, want 400 with %q", c.body, rec.Code, eb, c.want)
		}
	}
	var got Token
	do(t, h, "GET", "/tokens/"+tok.ID, testAdminKey, "", &got)
	if got.RateLimit == nil || got.RateLimit.Requests != 10 || len(got.AllowedIPs) != 0 {
		t.Errorf("a refused change was written: %+v %v", got.RateLimit, got.AllowedIPs)
	}
	if rec := do(t, h, "PATCH", "/tokens/00000000-0000-4000-8000-000000000000", testAdminKey, `{"rate_limit":null}`, nil); rec.Code != http.StatusNotFound {
		t.Errorf("unknown token: %d", rec.Code)
	}
	if rec := do(t, h, "PATCH", "/tokens/"+tok.ID, "", `{"rate_limit":null}`, nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("no credential: %d", rec.Code)
	}
}

// TestCreateTokenWithControlsAndUserQuota: token create takes rate_limit
// and allowed_ips (validated like PATCH); user PUT sets, keeps and clears
// the user's quota; rotation keeps the token's controls.
func TestCreateTokenWithControlsAndUserQuota(t *testing.T) {
	t.Parallel()
	h, _ := newControlsAdmin(t)
	tok := seedToken(t, h, `{"name":"ci","rate_limit":{"requests":100,"window":"1m"},"allowed_ips":["2001:db8::/48"]}`)
	if tok.RateLimit == nil || tok.RateLimit.Requests != 100 || strings.Join(tok.AllowedIPs, ",") != "2001:db8::/48" {
		t.Fatalf("created: %+v %v", tok.RateLimit, tok.AllowedIPs)
	}
	if rec := do(t, h, "POST", "/users/alice/tokens", testAdminKey, `{"name":"x","rate_limit":{"requests":1,"window":"48h"}}`, nil); rec.Code != http.StatusBadRequest {
		t.Errorf("create with a 48h window: %d %s", rec.Code, rec.Body)
	}
	var rot CreatedToken
	if rec := do(t, h, "POST", "/tokens/"+tok.ID+"/rotate", testAdminKey, `{}`, &rot); rec.Code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	if rot.RateLimit == nil || rot.RateLimit.Requests != 100 || len(rot.AllowedIPs) != 1 {
		t.Errorf("successor lost the controls: %+v %v", rot.RateLimit, rot.AllowedIPs)
	}
	var u User
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"rate_limit":{"requests":1000,"window":"24h"}}`, &u); rec.Code != http.StatusOK {
		t.Fatalf("put rate_limit: %d %s", rec.Code, rec.Body)
	}
	if u.RateLimit == nil || u.RateLimit.Requests != 1000 || u.RateLimit.Window != 24*time.Hour {
		t.Errorf("user rate_limit = %+v", u.RateLimit)
	}
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"display_name":"Alice"}`, &u); rec.Code != http.StatusOK || u.RateLimit == nil {
		t.Errorf("omitted rate_limit changed it: %d %+v", rec.Code, u.RateLimit)
	}
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"rate_limit":{"requests":-1,"window":"1h"}}`, nil); rec.Code != http.StatusBadRequest {
		t.Errorf("negative requests: %d", rec.Code)
	}
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"rate_limit":null}`, &u); rec.Code != http.StatusOK || u.RateLimit != nil {
		t.Errorf("null rate_limit: %d %+v", rec.Code, u.RateLimit)
	}
}

// TestTokenUsage: zero-filled UTC days, oldest first, the last client
// address, and the days parameter's bounds.
func TestTokenUsage(t *testing.T) {
	t.Parallel()
	h, e := newControlsAdmin(t)
	tok := seedToken(t, h, `{"name":"ci"}`)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	if err := e.store.RecordUsage(t.Context(), []quota.Usage{
		{TokenID: tok.ID, Day: today, Allowed: 7, QuotaRefused: 2, IPRefused: 1},
		{TokenID: tok.ID, Day: today.AddDate(0, 0, -2), Allowed: 3},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordLastUse(t.Context(), map[string]time.Time{tok.ID: time.Now()},
		map[string]netip.Addr{tok.ID: netip.MustParseAddr("2001:db8::7")}); err != nil {
		t.Fatal(err)
	}
	var u Usage
	if rec := do(t, h, "GET", "/tokens/"+tok.ID+"/usage", testAdminKey, "", &u); rec.Code != http.StatusOK {
		t.Fatalf("usage: %d %s", rec.Code, rec.Body)
	}
	if len(u.Days) != 30 || u.Days[29].Day != today.Format(time.DateOnly) || u.Days[0].Day != today.AddDate(0, 0, -29).Format(time.DateOnly) {
		t.Fatalf("days: %d, %v … %v", len(u.Days), u.Days[0], u.Days[len(u.Days)-1])
	}
	if d := u.Days[29]; d.Allowed != 7 || d.QuotaRefused != 2 || d.IPRefused != 1 {
		t.Errorf("today: %+v", d)
	}
	if d := u.Days[27]; d.Allowed != 3 || u.Days[28].Allowed != 0 {
		t.Errorf("two days ago: %+v, yesterday %+v", d, u.Days[28])
	}
	if u.LastIP == nil || *u.LastIP != "2001:db8::7" {
		t.Errorf("last_ip = %v", u.LastIP)
	}
	if rec := do(t, h, "GET", "/tokens/"+tok.ID+"/usage?days=1", testAdminKey, "", &u); rec.Code != http.StatusOK || len(u.Days) != 1 {
		t.Errorf("days=1: %d %d", rec.Code, len(u.Days))
	}
	if rec := do(t, h, "GET", "/tokens/"+tok.ID+"/usage?days=90", testAdminKey, "", &u); rec.Code != http.StatusOK || len(u.Days) != 90 {
		t.Errorf("days=90: %d %d", rec.Code, len(u.Days))
	}
	for _, q := range []string{"days=0", "days=91", "days=x", "days=1&days=2", "day=3"} {
		if rec := do(t, h, "GET", "/tokens/"+tok.ID+"/usage?"+q, testAdminKey, "", nil); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", q, rec.Code)
		}
	}
	if rec := do(t, h, "GET", "/tokens/00000000-0000-4000-8000-000000000000/usage", testAdminKey, "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("unknown token: %d", rec.Code)
	}
}
