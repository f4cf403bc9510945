package tests

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// TestQuotaThroughAdminAPI: the per-token controls set over the admin API
// of a real Caddy take effect on the gateway at once (the change is
// applied to the instance's cache before the PATCH answers), and the usage
// call returns the counts after a flush.
func TestQuotaThroughAdminAPI(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	p := startCaddy(t, "quota-api", procConfig{DSN: dsn, ExtraApp: "last_used_flush 1s"})
	id, tok := p.createToken("una", "scripted")

	var got struct {
		RateLimit *struct {
			Requests int64
			Window   string
		} `json:"rate_limit"`
		AllowedIPs []string `json:"allowed_ips"`
	}
	r := p.adminOK(http.StatusOK, http.MethodPatch, "/tokens/"+id, `{"rate_limit":{"requests":3,"window":"1h"}}`)
	if err := json.Unmarshal(r.Body, &got); err != nil || got.RateLimit == nil || got.RateLimit.Requests != 3 || got.RateLimit.Window != "1h" {
		t.Fatalf("PATCH answered %s (%v)", r.Body, err)
	}
	for i := 1; i <= 3; i++ {
		if r := p.get("/", tok); r.Status != http.StatusOK {
			t.Fatalf("request %d of 3: %d %s", i, r.Status, r.Body)
		}
	}
	r = p.get("/", tok)
	if r.Status != http.StatusTooManyRequests || r.json(t)["error"] != "quota_exceeded" {
		t.Fatalf("4th request of 3: %d %s", r.Status, r.Body)
	}
	// Clearing the quota admits again; an allow-list without loopback
	// refuses.
	p.adminOK(http.StatusOK, http.MethodPatch, "/tokens/"+id, `{"rate_limit":null,"allowed_ips":["192.0.2.0/24","2001:db8::/32"]}`)
	r = p.get("/", tok)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "ip_not_allowed" {
		t.Fatalf("from loopback with a list without it: %d %s", r.Status, r.Body)
	}
	p.adminOK(http.StatusOK, http.MethodPatch, "/tokens/"+id, `{"allowed_ips":null}`)
	if r := p.get("/", tok); r.Status != http.StatusOK {
		t.Fatalf("allow-list cleared: %d %s", r.Status, r.Body)
	}
	// Bad input is refused and changes nothing.
	if r := p.admin(http.MethodPatch, "/tokens/"+id, `{"rate_limit":{"requests":3,"window":"2d"}}`); r.Status != http.StatusBadRequest {
		t.Errorf("window 2d: %d %s", r.Status, r.Body)
	}

	// 4 allowed (3 + 1 after clearing), 1 refused by quota, 1 by IP.
	var u struct {
		Days []struct {
			Day          string
			Allowed      int64
			QuotaRefused int64 `json:"quota_refused"`
			IPRefused    int64 `json:"ip_refused"`
		}
		LastIP *string `json:"last_ip"`
	}
	ok := wait.Until(15*time.Second, func() bool {
		r := p.adminOK(http.StatusOK, http.MethodGet, "/tokens/"+id+"/usage?days=7", "")
		if err := json.Unmarshal(r.Body, &u); err != nil || len(u.Days) != 7 {
			t.Fatalf("usage: %s (%v)", r.Body, err)
		}
		d := u.Days[6]
		return d.Allowed == 4 && d.QuotaRefused == 1 && d.IPRefused == 1 && u.LastIP != nil
	})
	if !ok {
		t.Fatalf("usage after flushes: %+v", u)
	}
	if u.Days[6].Day != time.Now().UTC().Format(time.DateOnly) || *u.LastIP != "127.0.0.1" {
		t.Errorf("today %q, last_ip %q", u.Days[6].Day, *u.LastIP)
	}
}
