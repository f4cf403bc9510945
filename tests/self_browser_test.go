package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

func init() {
	for _, name := range []string{"self-tokens", "self-show-once", "self-rotate", "self-tokens-narrow", "self-show-once-narrow"} {
		readmeScreenshots[name] = true
	}
}

const (
	selfUser     = "alice"
	selfPassword = "alice-password-1"
	// selfPasswordHash is bcrypt of selfPassword at the lowest cost, so that
	// basic_auth checks it quickly on every request.
	selfPasswordHash = "$2a$04$eAhz9T0yI7yKwJNBhsMJKeWc8J2ulMsgyzs05t9c2Z8.huiFWVs9i"
)

// selfToken is what the test reads of one token from the admin API.
type selfToken struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Status    string  `json:"status"`
	ExpiresAt string  `json:"expires_at"`
	RotatedTo *string `json:"rotated_to"`
}

// TestSelfBrowserMyAPITokens drives "My API Tokens" in Chromium against a
// real gateway and PostgreSQL, behind Caddy's basic_auth: create a token,
// copy it, use it, make sure the page forgot it, rotate, revoke, re-approve,
// delete, and the plain-word errors of a taken name and the 11th token.
func TestSelfBrowserMyAPITokens(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found; install Debian's chromium package to run it", chromiumPath)
	}
	g := startGateway(t, gatewayConfig{
		ExtraApp: "last_used_flush 200ms",
		// bob can sign in to the site but is unknown to armgate.
		// A second, deeper mount: the page must follow it.
		ExtraSite: fmt.Sprintf("handle_path /me/* {\n\t\tbasic_auth {\n\t\t\t%s %s\n\t\t\tbob %s\n\t\t}\n\t\tarmgate_self\n\t}\n"+
			"\thandle_path /people/self-service/* {\n\t\tbasic_auth {\n\t\t\t%s %s\n\t\t}\n\t\tarmgate_self\n\t}",
			selfUser, selfPasswordHash, selfPasswordHash, selfUser, selfPasswordHash),
	})
	if r := g.admin("PUT", "/users/"+selfUser, map[string]any{"display_name": "Alice Example"}); r.Status != http.StatusCreated {
		t.Fatalf("adding the user: %d %s", r.Status, r.Body)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(selfUser+":"+selfPassword))

	// The screen sits behind the site's sign-in, and carries the strict
	// headers.
	if r := g.get("/me/ui/", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("GET /me/ui/ without sign-in: %d, want 401", r.Status)
	}
	r := g.do("GET", "/me/ui/", nil, http.Header{"Authorization": {basic}})
	if r.Status != http.StatusOK || r.Header.Get("Content-Security-Policy") != uiCSP || !strings.Contains(string(r.Body), "My API Tokens") {
		t.Fatalf("GET /me/ui/: %d, headers %v", r.Status, r.Header)
	}

	p := newPage(t)
	defer p.checkNoProblems()
	if _, err := chromedp.Call(p.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": basic},
	}); err != nil {
		t.Fatalf("setting the basic auth header: %v", err)
	}
	byID := func(id string) string { return fmt.Sprintf(`#tokens-body tr[data-token-id=%q]`, id) }
	byName := func(name string) string { return fmt.Sprintf(`#tokens-body tr[data-token-name=%q]`, name) }
	tokens := func() []selfToken {
		t.Helper()
		var list struct{ Tokens []selfToken }
		r := g.admin("GET", "/users/"+selfUser+"/tokens", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("listing tokens: %d %s", r.Status, r.Body)
		}
		if err := json.Unmarshal(r.Body, &list); err != nil {
			t.Fatal(err)
		}
		return list.Tokens
	}
	find := func(name string, rotated bool) selfToken {
		t.Helper()
		for _, tk := range tokens() {
			if tk.Name == name && (tk.RotatedTo != nil) == rotated {
				return tk
			}
		}
		t.Fatalf("no token %q (rotated %v)", name, rotated)
		return selfToken{}
	}
	usage := func(want string) {
		t.Helper()
		p.waitJS("usage "+want, `document.querySelector("#token-usage").textContent.startsWith(`+fmt.Sprintf("%q", want)+`)`)
	}
	// /me/ui redirects to /me/ui/ relative to itself; the page loads the
	// signed-in user's (empty) list.
	p.do("opening the screen", chromedp.Navigate(g.URL+"/me/ui"), chromedp.WaitVisible(chromedp.ID("tokens-empty")))
	if loc := run(p, "location", chromedp.Location()); loc != g.URL+"/me/ui/" {
		t.Fatalf("location %q, want %s/me/ui/", loc, g.URL)
	}
	usage("0 of 10 tokens")
	if who := p.text("#whoami"); !strings.Contains(who, "Alice Example (alice)") {
		t.Errorf("whoami %q", who)
	}

	// Create a token; the show-once dialog shows it.
	p.do("creating a token",
		chromedp.Click(chromedp.ID("create-token")),
		chromedp.WaitVisible(chromedp.ID("token-name")),
		chromedp.SendKeys(chromedp.ID("token-name"), "ci-pipeline"),
		chromedp.SetValue(chromedp.ID("token-lifetime"), "8760h"),
		chromedp.Click(chromedp.ID("create-token-submit")),
		chromedp.WaitVisible(chromedp.ID("dlg-show-token")),
	)
	tok := p.text("#token-value")
	if !tokenShape.MatchString(tok) {
		p.shot("self-failure")
		t.Fatalf("show-once dialog shows %q, not a token", tok)
	}
	if w := p.text("#show-token-warning"); !strings.Contains(w, "won't be shown again") {
		t.Errorf("show-once warning %q lacks “won't be shown again”", w)
	}
	p.waitJS("the new row behind the dialog", `document.querySelector(`+fmt.Sprintf("%q", byName("ci-pipeline"))+`) !== null`)
	usage("1 of 10 tokens")
	p.shot("self-show-once")

	p.copyTokenAndClose(g, tok)

	// Two more tokens, one revoked, for a fuller table; and the first one's
	// use recorded.
	if r := g.admin("POST", "/users/"+selfUser+"/tokens", map[string]any{"name": "nightly-export", "expires_in": "720h"}); r.Status != http.StatusCreated {
		t.Fatalf("creating nightly-export: %d %s", r.Status, r.Body)
	}
	bot := g.admin("POST", "/users/"+selfUser+"/tokens", map[string]any{"name": "release-bot", "expires_in": "2160h"}).json(t)
	if r := g.admin("POST", "/tokens/"+bot["id"].(string)+"/revoke", map[string]any{"reason": "not needed now"}); r.Status != http.StatusOK {
		t.Fatalf("revoking release-bot: %d %s", r.Status, r.Body)
	}
	waitLastUsed(t, g, selfUser, "ci-pipeline")

	// After a reload the token is nowhere in the page.
	p.do("reloading the page", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(byName("release-bot"))))
	usage("3 of 10 tokens")
	if strings.Contains(p.html(), tok) {
		t.Error("the token text is in the DOM after a reload")
	}
	storage := run(p, "reading web storage", chromedp.Evaluate[string](
		`JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])`))
	if strings.Contains(storage, tok) {
		t.Error("the token is in web storage")
	}
	if got := p.textContent(byName("ci-pipeline") + ` td[data-label="Last used"]`); strings.Contains(got, "Never") {
		t.Errorf("ci-pipeline last used %q after use", got)
	}
	if got := p.textContent(byName("ci-pipeline") + ` td[data-label="Token"]`); got != tok[:8]+"…" {
		t.Errorf("hint %q, want %q", got, tok[:8]+"…")
	}
	if got := p.textContent(byName("ci-pipeline") + ` td[data-label="Name"]`); !strings.Contains(got, "Scopes: api") {
		t.Errorf("name cell %q lacks the scopes", got)
	}
	p.shot("self-tokens")

	// Rotate: the new token is shown once, with the old one's end.
	old := find("ci-pipeline", false)
	p.do("rotating ci-pipeline",
		chromedp.Click(chromedp.CSS(byID(old.ID)+` button[aria-label^="Rotate"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm-grace")),
		chromedp.SetValue(chromedp.ID("confirm-grace"), "1h"),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitVisible(chromedp.ID("dlg-show-token")),
	)
	rotated := p.text("#token-value")
	if !tokenShape.MatchString(rotated) || rotated == tok {
		t.Fatalf("rotation shows %q, want a new token", rotated)
	}
	old = find("ci-pipeline", true)
	if note := p.text("#show-token-old"); !strings.Contains(note, "keeps working until") || !strings.Contains(note, "in 1 hour") && !strings.Contains(note, "in 60 minutes") {
		t.Errorf("rotation note %q, want the old token's end (expires_at %s)", note, old.ExpiresAt)
	}
	p.shot("self-rotate")
	for _, k := range []struct{ name, tok string }{{"old", tok}, {"new", rotated}} {
		if r := g.get("/v1/ping", k.tok); r.Status != http.StatusOK {
			t.Errorf("the %s token after rotation: %d, want 200", k.name, r.Status)
		}
	}
	p.do("closing the rotation dialog",
		chromedp.Click(chromedp.ID("show-token-done")),
		chromedp.WaitNotVisible(chromedp.ID("dlg-show-token")),
	)
	if h := p.html(); strings.Contains(h, rotated) || strings.Contains(h, tok) {
		t.Error("a token is in the DOM after the rotation dialog closed")
	}
	p.waitJS("the rotated row", `document.querySelector(`+fmt.Sprintf("%q", byID(old.ID))+`).dataset.rotated === "true"`)
	if got := p.textContent(byID(old.ID) + ` td[data-label="Status"]`); !strings.Contains(got, "Rotated: works until") {
		t.Errorf("rotated token's status %q", got)
	}
	usage("3 of 10 tokens") // the rotated-away token no longer counts

	// Revoke the new token, with a confirmation; the gateway refuses it.
	fresh := find("ci-pipeline", false)
	p.revokeInScreen("the new ci-pipeline", byID(fresh.ID))
	if r := g.get("/v1/ping", rotated); r.Status != http.StatusUnauthorized {
		t.Fatalf("gateway with the revoked token: %d, want 401", r.Status)
	}
	if got := p.textContent(byID(fresh.ID) + ` td[data-label="Status"]`); !strings.Contains(got, "leaked in a build log") {
		t.Errorf("revoked status %q lacks the reason", got)
	}

	// release-bot was revoked by an administrator: the screen says so and
	// offers no Re-approve (only an administrator lifts it).
	if n := run(p, "counting release-bot's Re-approve buttons", chromedp.Evaluate[int](
		`document.querySelectorAll(`+fmt.Sprintf("%q", byName("release-bot")+` button[aria-label^="Re-approve"]`)+`).length`)); n != 0 {
		t.Errorf("release-bot, revoked by an administrator, offers %d Re-approve buttons", n)
	}
	if got := p.textContent(byName("release-bot") + ` td[data-label="Status"]`); !strings.Contains(got, "Revoked by an administrator") {
		t.Errorf("release-bot's status %q does not say an administrator revoked it", got)
	}

	// The token the user revoked themselves: they may re-approve it. Clicked
	// from the page's script, like Delete below: a list reload between
	// chromedp's lookup of the button and its click swallowed the click once
	// in a full, loaded test run.
	reapproveBtn := fmt.Sprintf("%q", byID(fresh.ID)+` button[aria-label^="Re-approve"]`)
	p.waitJS("the Re-approve button", `document.querySelector(`+reapproveBtn+`) !== null`)
	p.do("re-approving the token revoked here",
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+reapproveBtn+`).click()`),
		chromedp.WaitVisible(chromedp.ID("dlg-confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("dlg-confirm")),
	)
	p.waitJS("the re-approved token active", `document.querySelector(`+fmt.Sprintf("%q", byID(fresh.ID))+`).dataset.status === "active"`)

	// Errors in plain words: a taken name, then the 11th token.
	p.createTokenErrors(g, selfUser, "You already have a token named “nightly-export”",
		"You have 10 of 10 tokens; delete one first. Revoked tokens count until they are deleted or expire.")

	// Delete one, with a confirmation: a slot is free again.
	job := find("job-0", false)
	// Clicked from the page's script: the refused create above reloads the
	// list, and a row re-rendered between chromedp's lookup of the button
	// and its click would swallow the click.
	deleteBtn := fmt.Sprintf("%q", byID(job.ID)+` button[aria-label^="Delete"]`)
	p.waitJS("job-0's Delete button", `document.querySelector(`+deleteBtn+`) !== null`)
	p.do("deleting job-0",
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+deleteBtn+`).click()`),
		chromedp.WaitVisible(chromedp.ID("dlg-confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("dlg-confirm")),
		chromedp.WaitNotPresent(chromedp.CSS(byID(job.ID))),
	)
	usage("9 of 10 tokens")

	// A narrow window: no sideways scrolling, the list and the dialog.
	p.do("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	p.do("scrolling to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	p.shot("self-tokens-narrow")
	if !run(p, "measuring", chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`)) {
		t.Error("the page scrolls sideways at 390 px")
	}
	p.do("creating a token at 390 px",
		chromedp.Click(chromedp.ID("create-token")),
		chromedp.WaitVisible(chromedp.ID("token-name")),
		chromedp.SendKeys(chromedp.ID("token-name"), "laptop"),
		chromedp.Click(chromedp.ID("create-token-submit")),
		chromedp.WaitVisible(chromedp.ID("dlg-show-token")),
	)
	narrow := p.text("#token-value")
	if !tokenShape.MatchString(narrow) {
		t.Fatalf("narrow show-once dialog shows %q", narrow)
	}
	p.shot("self-show-once-narrow")
	p.do("closing", chromedp.Click(chromedp.ID("show-token-done")), chromedp.WaitNotVisible(chromedp.ID("dlg-show-token")))
	if strings.Contains(p.html(), narrow) {
		t.Error("the narrow window's token is in the DOM after its dialog closed")
	}
	usage("10 of 10 tokens")

	// Under another mount prefix the page finds its API too.
	p.do("opening the screen under /people/self-service/",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(g.URL+"/people/self-service/ui/"),
		chromedp.WaitVisible(chromedp.CSS(byName("laptop"))),
	)
	usage("10 of 10 tokens")

	// Someone the site signs in but armgate does not know is told whom to
	// ask, in plain words.
	if _, err := chromedp.Call(p.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:"+selfPassword))},
	}); err != nil {
		t.Fatalf("signing in as bob: %v", err)
	}
	p.do("opening the screen as bob", chromedp.Navigate(g.URL+"/me/ui/"), chromedp.WaitVisible(chromedp.ID("banner")))
	if msg := p.text("#banner"); !strings.Contains(msg, "ask an administrator") {
		t.Errorf("unknown user's message %q, want one that says to ask an administrator", msg)
	}
	if n := run(p, "counting rows", chromedp.Evaluate[int](`document.querySelectorAll("#tokens-body tr").length`)); n != 0 {
		t.Errorf("bob sees %d token rows", n)
	}
	if !run(p, "create button", chromedp.Evaluate[bool](`document.querySelector("#create-token").disabled`)) {
		t.Error("Create API Token is enabled for an unknown user")
	}
}
