package tests

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

func init() {
	for _, name := range []string{"usage-admin", "usage-self"} {
		readmeScreenshots[name] = true
	}
}

// TestBrowserUsageCharts: both screens show each token's quota, its
// allow-list and a 30-day bar chart of its usage, drawn in the page (inline
// SVG) from the usage call, under the strict CSP (any violation fails the
// test through the console check).
func TestBrowserUsageCharts(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found; install Debian's chromium package to run it", chromiumPath)
	}
	g := startGateway(t, gatewayConfig{
		ExtraSite: fmt.Sprintf("handle_path /me/* {\n\t\tbasic_auth {\n\t\t\t%s %s\n\t\t}\n\t\tarmgate_self\n\t}", selfUser, selfPasswordHash),
	})
	if r := g.admin("PUT", "/users/"+selfUser, map[string]any{"display_name": "Alice Example"}); r.Status != http.StatusCreated {
		t.Fatalf("adding the user: %d %s", r.Status, r.Body)
	}
	ci := g.admin("POST", "/users/"+selfUser+"/tokens", map[string]any{"name": "ci-pipeline",
		"rate_limit": map[string]any{"requests": 5000, "window": "1h"}, "allowed_ips": []string{"192.0.2.0/24", "2001:db8::/32"}}).json(t)
	laptop := g.admin("POST", "/users/"+selfUser+"/tokens", map[string]any{"name": "laptop"}).json(t)
	// 30 days of made-up traffic for ci-pipeline, some of it refused.
	if _, err := g.Pool.Exec(t.Context(), `INSERT INTO armgate.token_usage (token_id, day, allowed, quota_refused, ip_refused)
		SELECT $1, (now() AT TIME ZONE 'UTC')::date - i, 200 + (i * 37) % 180, CASE WHEN i % 7 = 3 THEN 40 ELSE 0 END, CASE WHEN i % 11 = 5 THEN 25 ELSE 0 END
		FROM generate_series(0, 29) AS i WHERE i % 9 <> 8`, ci["id"]); err != nil {
		t.Fatal(err)
	}
	wantSum := "allowed in 30 days"
	row := func(name string) string { return fmt.Sprintf(`#tokens-body tr[data-token-name=%q]`, name) }
	check := func(p *page, screen string) {
		t.Helper()
		p.waitJS(screen+": charts drawn", `document.querySelectorAll('#tokens-body .usage-chart[data-loaded="true"]').length === 2`)
		if n := run(p, "bars", chromedp.Evaluate[int](`document.querySelectorAll(`+fmt.Sprintf("%q", row("ci-pipeline")+" svg.bars g")+`).length`)); n != 30 {
			t.Errorf("%s: %d day bars, want 30", screen, n)
		}
		if n := run(p, "refused bars", chromedp.Evaluate[int](`document.querySelectorAll(`+fmt.Sprintf("%q", row("ci-pipeline")+" rect.bar-quota, "+row("ci-pipeline")+" rect.bar-ip")+`).length`)); n == 0 {
			t.Errorf("%s: no refused requests drawn", screen)
		}
		if n := run(p, "laptop bars", chromedp.Evaluate[int](`document.querySelectorAll(`+fmt.Sprintf("%q", row("laptop")+" rect.bar-allowed")+`).length`)); n != 0 {
			t.Errorf("%s: an unused token has %d bars", screen, n)
		}
		cell := p.textContent(row("ci-pipeline") + ` td[data-label="Limits and usage"]`)
		if !strings.Contains(cell, "Quota: 5,000 per 1h") || !strings.Contains(cell, "From: 192.0.2.0/24, 2001:db8::/32") || !strings.Contains(cell, wantSum) {
			t.Errorf("%s: ci-pipeline cell %q", screen, cell)
		}
		if cell := p.textContent(row("laptop") + ` td[data-label="Limits and usage"]`); !strings.Contains(cell, "Quota: default") || !strings.Contains(cell, "From: anywhere") {
			t.Errorf("%s: laptop cell %q", screen, cell)
		}
		label := run(p, "chart label", chromedp.Evaluate[string](`document.querySelector(`+fmt.Sprintf("%q", row("ci-pipeline")+" svg.bars")+`).getAttribute("aria-label")`))
		if !strings.HasPrefix(label, "Last 30 days: ") || !strings.Contains(label, "over quota") {
			t.Errorf("%s: chart label %q", screen, label)
		}
	}

	// The admin screen.
	p := newPage(t)
	defer p.checkNoProblems()
	p.do("opening the admin screen", chromedp.EmulateViewport(1400, 800), chromedp.Navigate(g.URL+"/admin/ui/"), chromedp.WaitVisible(chromedp.ID("signin-key")))
	p.do("signing in",
		chromedp.SendKeys(chromedp.ID("signin-key"), testAdminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("view-users")),
	)
	p.do("opening the user", chromedp.Navigate(g.URL+"/admin/ui/#/users/"+selfUser), chromedp.WaitVisible(chromedp.CSS(row("laptop"))))
	check(p, "admin")
	p.shot("usage-admin")

	// The self screen, as alice.
	q := newPage(t)
	defer q.checkNoProblems()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(selfUser+":"+selfPassword))
	if _, err := chromedp.Call(q.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": basic},
	}); err != nil {
		t.Fatal(err)
	}
	q.do("opening My API Tokens", chromedp.EmulateViewport(1400, 800), chromedp.Navigate(g.URL+"/me/ui/"), chromedp.WaitVisible(chromedp.CSS(row("laptop"))))
	check(q, "self")
	q.shot("usage-self")
	_ = laptop
}
