package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

func init() {
	for _, name := range []string{"usage-admin", "usage-self", "self-limits"} {
		readmeScreenshots[name] = true
	}
}

// TestBrowserUsageCharts: both screens show each token's quota, its
// allow-list and a 30-day bar chart of its usage, drawn in the page (inline
// SVG) from the usage call, under the strict CSP (any violation fails the
// test through the console check). On the self screen the person lowers a
// quota and narrows an allow-list, and sees a raise and a wider list refused
// in the API's own words; on the admin screen the administrator raises the
// quota and removes the allow-list.
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
	p.signInAdmin(g, 1400, 800)
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

	ciID := ci["id"].(string)
	// stored reads ci-pipeline's controls from the admin API.
	stored := func() (quota string, ips []string) {
		t.Helper()
		var tk struct {
			RateLimit *struct {
				Requests int64  `json:"requests"`
				Window   string `json:"window"`
			} `json:"rate_limit"`
			AllowedIPs []string `json:"allowed_ips"`
		}
		r := g.admin("GET", "/tokens/"+ciID, nil)
		if err := json.Unmarshal(r.Body, &tk); err != nil || r.Status != http.StatusOK {
			t.Fatalf("GET /tokens/%s: %d %s", ciID, r.Status, r.Body)
		}
		if tk.RateLimit != nil {
			quota = fmt.Sprintf("%d/%s", tk.RateLimit.Requests, tk.RateLimit.Window)
		}
		return quota, tk.AllowedIPs
	}
	// limits fills in ci-pipeline's limits dialog on page p and saves it.
	limits := func(p *page, requests, window, ips string) {
		t.Helper()
		p.do("opening ci-pipeline's limits", chromedp.Click(chromedp.CSS(row("ci-pipeline")+` button.btn-limits`)), chromedp.WaitVisible(chromedp.ID("limits-requests")))
		fields := [][2]string{{"limits-requests", requests}, {"limits-ips", ips}}
		if window != "" {
			fields = append(fields, [2]string{"limits-window", window})
		}
		for _, f := range fields {
			js := fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; return e.value === %q ? "" : e.outerHTML; })()`, f[0], f[1], f[1])
			if bad := run(p, "setting "+f[0], chromedp.Evaluate[string](js)); bad != "" {
				t.Fatalf("could not set %s to %q: %s", f[0], f[1], bad)
			}
		}
		p.do("saving the limits", chromedp.Click(chromedp.ID("limits-save")))
	}
	saved := func(p *page, what string) {
		t.Helper()
		p.waitJS(what, `!document.querySelector("#dlg-limits").open`)
	}
	refused := func(p *page, what, apiSays string) {
		t.Helper()
		p.waitJS(what, `!document.querySelector("#limits-error").hidden`)
		if got, want := p.text("#limits-error"), sentence(apiSays); got != want {
			t.Errorf("%s: the page says %q, want the API's words %q", what, got, want)
		}
		p.do("cancelling", chromedp.Click(chromedp.CSS(`#dlg-limits button[type="button"]`)), chromedp.WaitNotVisible(chromedp.ID("dlg-limits")))
	}
	// apiSays is the message of the self API's own answer to body.
	apiSays := func(body string, wantStatus int) string {
		t.Helper()
		r := g.do("PATCH", "/me/tokens/"+ciID, []byte(body), http.Header{"Authorization": {basic}, "Content-Type": {"application/json"}})
		if r.Status != wantStatus {
			t.Fatalf("PATCH %s as %s: %d %s, want %d", body, selfUser, r.Status, r.Body, wantStatus)
		}
		m, _ := r.json(t)["message"].(string)
		return m
	}
	// A raise is refused, in the API's words, and changes nothing.
	limits(q, "10000", "", "192.0.2.0/24\n2001:db8::/32")
	raise := apiSays(`{"rate_limit":{"requests":10000,"window":"1h"}}`, http.StatusForbidden)
	if !strings.Contains(raise, "higher than the quota in force") {
		t.Fatalf("the API's refusal of a raise: %q", raise)
	}
	q.waitJS("the refusal of a raise", `!document.querySelector("#limits-error").hidden`)
	q.shot("self-limits")
	refused(q, "a raise", raise)
	if quota, ips := stored(); quota != "5000/1h" || strings.Join(ips, " ") != "192.0.2.0/24 2001:db8::/32" {
		t.Fatalf("after a refused raise: quota %q, allowed_ips %v", quota, ips)
	}
	// So is a wider allow-list.
	limits(q, "5000", "", "192.0.2.0/24\n198.51.100.0/24")
	refused(q, "a wider allow-list", apiSays(`{"allowed_ips":["192.0.2.0/24","198.51.100.0/24"]}`, http.StatusForbidden))

	// Lowering the quota and narrowing the allow-list work, and show.
	limits(q, "1000", "", "192.0.2.0/24\n2001:db8::/32")
	saved(q, "the lower quota saved")
	q.waitJS("the lower quota shown", `document.querySelector(`+fmt.Sprintf("%q", row("ci-pipeline")+" .quota")+`).dataset.quota === "1000/1h"`)
	limits(q, "1000", "", "192.0.2.128/25")
	saved(q, "the narrower allow-list saved")
	q.waitJS("the narrower allow-list shown", `document.querySelector(`+fmt.Sprintf("%q", row("ci-pipeline")+" .allowed-ips")+`).dataset.allowedIps === "192.0.2.128/25"`)
	if quota, ips := stored(); quota != "1000/1h" || strings.Join(ips, " ") != "192.0.2.128/25" {
		t.Errorf("after lowering and narrowing: quota %q, allowed_ips %v", quota, ips)
	}
	// Back up to 5000 is a raise again; at 390 px the form still fits.
	q.do("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	limits(q, "5000", "", "192.0.2.128/25")
	q.waitJS("the refusal at 390 px", `!document.querySelector("#limits-error").hidden`)
	q.shot("self-limits-narrow")
	if !run(q, "measuring the form", chromedp.Evaluate[bool](`(() => { const f = document.querySelector("#limits-form"); return f.scrollWidth <= f.clientWidth && document.documentElement.scrollWidth <= window.innerWidth; })()`)) {
		t.Error("the limits form scrolls sideways at 390 px")
	}
	refused(q, "a raise back to 5000", apiSays(`{"rate_limit":{"requests":5000,"window":"1h"}}`, http.StatusForbidden))

	// The admin screen sets anything: a higher quota over a day, and no
	// allow-list.
	p.do("reloading the admin screen", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(row("laptop"))))
	limits(p, "20000", "24h", "")
	saved(p, "the admin's change saved")
	p.waitJS("the raised quota shown", `document.querySelector(`+fmt.Sprintf("%q", row("ci-pipeline")+" .quota")+`).dataset.quota === "20000/24h"`)
	if cell := p.textContent(row("ci-pipeline") + ` td[data-label="Limits and usage"]`); !strings.Contains(cell, "Quota: 20,000 per 24h") || !strings.Contains(cell, "From: anywhere") {
		t.Errorf("admin: ci-pipeline cell after the change %q", cell)
	}
	if quota, ips := stored(); quota != "20000/24h" || len(ips) != 0 {
		t.Errorf("after the admin's change: quota %q, allowed_ips %v", quota, ips)
	}
	_ = laptop
}

// sentence is what the screens make of an API message: a capital first and
// a full stop last.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.ContainsAny(s[len(s)-1:], ".!?") {
		s += "."
	}
	return s
}
