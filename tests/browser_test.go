package tests

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/armgate/armgate/internal/wait"
)

// chromiumPath is Debian's Chromium (package chromium). The test installs
// nothing; without it, it skips.
const chromiumPath = "/usr/bin/chromium"

var updateScreenshots = flag.Bool("update-screenshots", false,
	"also write the screenshots the README shows to docs/screenshots/")

// screenshotDir holds every screenshot of a run; it is git-ignored.
const screenshotDir = "testdata/screenshots"

// readmeScreenshots are the screenshots docs/screenshots/ keeps.
var readmeScreenshots = map[string]bool{"tokens": true, "show-once": true}

const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// page drives one Chromium tab and fails the test on the first error.
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // console errors and exceptions the page raised
}

// newPage starts a headless Chromium with a fresh profile and opens a tab.
func newPage(t *testing.T) *page {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found; install Debian's chromium package to run it", chromiumPath)
	}
	profile := t.TempDir() // removed after the browser below has exited
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
	t.Cleanup(cancelAlloc) // kills the browser and waits for it
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)

	p := &page{t: t, ctx: ctx}
	console := chromedp.Console(ctx) // starts the browser and subscribes
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			// A refused API call (the wrong key, on purpose) is logged as a
			// failed resource load; everything else that is an error counts,
			// CSP violations included.
			if m.IsException() || (m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "Failed to load resource")) {
				p.mu.Lock()
				p.problems = append(p.problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
				p.mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return p
}

// do runs steps with a deadline; what names them in a failure.
// signInAdmin opens g's admin screen in a width×height window and signs in
// with the admin key.
func (p *page) signInAdmin(g *gateway, width, height int64) {
	p.t.Helper()
	p.do("opening the admin screen", chromedp.EmulateViewport(width, height), chromedp.Navigate(g.URL+"/admin/ui/"), chromedp.WaitVisible(chromedp.ID("signin-key")))
	p.do("signing in",
		chromedp.SendKeys(chromedp.ID("signin-key"), testAdminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("view-users")),
	)
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](p *page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	run(p, "waiting for "+what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second)))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return strings.TrimSpace(run(p, "reading "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// textContent reads an element's text whether or not it is shown.
func (p *page) textContent(sel string) string {
	p.t.Helper()
	return run(p, "reading "+sel, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {textContent: ""}).textContent`, sel)))
}

func (p *page) html() string {
	p.t.Helper()
	return run(p, "reading the DOM", chromedp.Evaluate[string](`document.documentElement.outerHTML`))
}

// shot saves a screenshot of the viewport as testdata/screenshots/name.png,
// and as docs/screenshots/name.png too for the README's with
// -update-screenshots.
func (p *page) shot(name string) {
	p.t.Helper()
	// Let layout and fonts settle, and keep the caret out of the picture.
	p.do("settling before screenshot "+name,
		chromedp.Evaluate[chromedp.Void](`document.fonts.ready.then(() => new Promise(r => requestAnimationFrame(() => r())))`, chromedp.EvalAwaitPromise))
	png := run(p, "screenshot "+name, chromedp.CaptureScreenshot())
	dirs := []string{screenshotDir}
	if *updateScreenshots && readmeScreenshots[name] {
		dirs = append(dirs, filepath.Join("..", "docs", "screenshots"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *page) checkNoProblems() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, msg := range p.problems {
		p.t.Errorf("browser console: %s", msg)
	}
}

var tokenShape = regexp.MustCompile(`^arm_[0-9A-Za-z]{38}$`)

// copyTokenAndClose checks the show-once dialog of tok: Copy puts exactly
// the token on the clipboard, the token works through the gateway, and
// closing the dialog removes it from the DOM.
// revokeInScreen revokes the token of the row rowSel (what names it in
// failures) through its Revoke button and the confirmation, with a reason,
// and waits for the row to show it revoked.
func (p *page) revokeInScreen(what, rowSel string) {
	p.t.Helper()
	p.do("revoking "+what,
		chromedp.Click(chromedp.CSS(rowSel+` button[aria-label^="Revoke"]`)),
		chromedp.WaitVisible(chromedp.ID("dlg-confirm")),
	)
	if txt := p.text("#confirm-text"); !strings.Contains(txt, "refused at once") {
		p.t.Errorf("revoke confirmation %q", txt)
	}
	p.do("confirming the revoke",
		chromedp.SendKeys(chromedp.ID("confirm-reason"), "leaked in a build log"),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("dlg-confirm")),
	)
	p.waitJS(what+" revoked", `document.querySelector(`+fmt.Sprintf("%q", rowSel)+`).dataset.status === "revoked"`)
}

func (p *page) copyTokenAndClose(g *gateway, tok string) {
	p.t.Helper()
	for _, perm := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: perm}, Setting: browser.PermissionSettingGranted, Origin: g.URL,
		}); err != nil {
			p.t.Fatalf("granting %s: %v", perm, err)
		}
	}
	p.do("copying the token", chromedp.Click(chromedp.ID("copy-token")))
	p.waitJS("the copy status", `document.querySelector("#copy-status").textContent !== ""`)
	if s := p.text("#copy-status"); s != "Copied to the clipboard." {
		p.t.Errorf("copy status %q", s)
	}
	if clip := run(p, "reading the clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise)); clip != tok {
		p.t.Errorf("clipboard holds %q, want the token", clip)
	}

	if r := g.get("/v1/ping", tok); r.Status != http.StatusOK {
		p.t.Fatalf("gateway with the new token: %d %s", r.Status, r.Body)
	}

	p.do("closing the show-once dialog",
		chromedp.Click(chromedp.ID("show-token-done")),
		chromedp.WaitNotVisible(chromedp.ID("dlg-show-token")),
	)
	if strings.Contains(p.html(), tok) {
		p.t.Error("the token is still in the DOM after its dialog closed")
	}
}

// createTokenErrors checks the create dialog's errors for user, who has
// a token named nightly-export and 2 more: the taken name (an error
// containing takenMsg), then, filled up to 10 tokens, the 11th (exactly
// limitMsg); then it cancels the dialog.
func (p *page) createTokenErrors(g *gateway, user, takenMsg, limitMsg string) {
	p.t.Helper()
	p.do("creating a token with a taken name",
		chromedp.Click(chromedp.ID("create-token")),
		chromedp.WaitVisible(chromedp.ID("token-name")),
		chromedp.SendKeys(chromedp.ID("token-name"), "nightly-export"),
		chromedp.Click(chromedp.ID("create-token-submit")),
		chromedp.WaitVisible(chromedp.ID("create-token-error")),
	)
	if msg := p.text("#create-token-error"); !strings.Contains(msg, takenMsg) {
		p.t.Errorf("name taken: %q", msg)
	}
	for i := range 7 {
		if r := g.admin("POST", "/users/"+user+"/tokens", map[string]any{"name": fmt.Sprintf("job-%d", i)}); r.Status != http.StatusCreated {
			p.t.Fatalf("filling up: %d %s", r.Status, r.Body)
		}
	}
	p.do("creating an 11th token",
		chromedp.Clear(chromedp.ID("token-name")),
		chromedp.SendKeys(chromedp.ID("token-name"), "one-too-many"),
		chromedp.Click(chromedp.ID("create-token-submit")),
	)
	p.waitJS("the limit message", `document.querySelector("#create-token-error").textContent === `+fmt.Sprintf("%q", limitMsg))
	p.waitJS("the usage at the limit", `document.querySelector("#token-usage").textContent.startsWith("10 of 10 tokens")`)
	p.do("cancelling", chromedp.Click(chromedp.CSS(`#dlg-create-token [data-close]`)), chromedp.WaitNotVisible(chromedp.ID("dlg-create-token")))
}

// TestBrowserAPITokensScreen drives the admin screen in Chromium against a
// real gateway and PostgreSQL: sign in, add a user, create a token, use it,
// make sure the page forgot it, revoke it from the screen, and see the
// gateway refuse it.
func TestBrowserAPITokensScreen(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found; install Debian's chromium package to run it", chromiumPath)
	}
	g := startGateway(t, gatewayConfig{
		ExtraApp: "last_used_flush 200ms",
		// A second mount under a deeper prefix: the page must follow it.
		ExtraSite: "handle_path /ops/gateway-admin/* {\n\t\tarmgate_admin\n\t}",
	})

	// The static files need no credential, and carry the strict headers.
	r := g.get("/admin/ui/", "")
	if r.Status != http.StatusOK || r.Header.Get("Content-Security-Policy") != uiCSP ||
		r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /admin/ui/: %d, headers %v", r.Status, r.Header)
	}

	p := newPage(t)
	defer p.checkNoProblems()
	const user = "u-1001"
	tokenRow := func(name string) string { return fmt.Sprintf(`#tokens-body tr[data-token-name=%q]`, name) }

	// Sign in: first with a wrong key, then with the admin key. /admin/ui
	// redirects to /admin/ui/ relative to itself.
	p.do("opening the screen",
		chromedp.Navigate(g.URL+"/admin/ui"),
		chromedp.WaitVisible(chromedp.ID("signin-key")),
	)
	if loc := run(p, "location", chromedp.Location()); loc != g.URL+"/admin/ui/" {
		t.Fatalf("location %q, want %s/admin/ui/", loc, g.URL)
	}
	p.do("signing in with a wrong key",
		chromedp.SendKeys(chromedp.ID("signin-key"), "not-the-admin-key"),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("signin-error")),
	)
	if msg := p.text("#signin-error"); !strings.Contains(msg, "was not accepted") {
		t.Errorf("wrong key: message %q, want one that says the key was not accepted", msg)
	}
	p.do("signing in with the admin key",
		chromedp.Clear(chromedp.ID("signin-key")),
		chromedp.SendKeys(chromedp.ID("signin-key"), testAdminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("view-users")),
	)
	if got := run(p, "session storage", chromedp.Evaluate[string](`sessionStorage.getItem("armgate.admin.credential")`)); got != testAdminKey {
		t.Errorf("sessionStorage holds %q, want the admin key", got)
	}

	// Add a user; the screen goes on to the user's API Tokens.
	p.do("adding a user",
		chromedp.Click(chromedp.ID("add-user")),
		chromedp.WaitVisible(chromedp.ID("add-user-id")),
		chromedp.SendKeys(chromedp.ID("add-user-id"), user),
		chromedp.SendKeys(chromedp.ID("add-user-name"), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.ID("add-user-email"), "ada@example.com"),
		chromedp.Click(chromedp.ID("add-user-submit")),
		chromedp.WaitVisible(chromedp.ID("view-user")),
	)
	p.waitJS("the user's page", `document.querySelector("#token-usage").textContent === "0 of 10 tokens"`)
	if got := p.text("#user-title"); got != user {
		t.Errorf("user page title %q, want %q", got, user)
	}

	// Create a token; read it from the show-once dialog.
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
		p.shot("failure")
		t.Fatalf("show-once dialog shows %q, not a token; dialog: %s", tok,
			run(p, "dialog", chromedp.Evaluate[string](`document.querySelector("#dlg-show-token").outerHTML`)))
	}
	if w := p.text("#show-token-warning"); !strings.Contains(w, "cannot be viewed again") {
		t.Errorf("show-once warning %q lacks 'cannot be viewed again'", w)
	}
	p.waitJS("the new row behind the dialog", `document.querySelector(`+fmt.Sprintf("%q", tokenRow("ci-pipeline"))+`) !== null`)

	p.shot("show-once")

	p.copyTokenAndClose(g, tok)

	// Two more tokens from the API, one revoked, for a fuller table; and the
	// first one's use recorded.
	other := g.admin("POST", "/users/"+user+"/tokens", map[string]any{"name": "nightly-export", "expires_in": "720h"}).json(t)
	otherTok, _ := other["token"].(string)
	bot := g.admin("POST", "/users/"+user+"/tokens", map[string]any{"name": "release-bot", "expires_in": "2160h"}).json(t)
	if r := g.admin("POST", "/tokens/"+bot["id"].(string)+"/revoke", map[string]any{"reason": "rotated"}); r.Status != http.StatusOK {
		t.Fatalf("revoking release-bot: %d %s", r.Status, r.Body)
	}
	waitLastUsed(t, g, user, "ci-pipeline")

	// After a reload, the session is still signed in (sessionStorage) and the
	// token is nowhere: not in the DOM, not in storage.
	p.do("reloading the page", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(tokenRow("release-bot"))))
	p.waitJS("three tokens", `document.querySelector("#token-usage").textContent === "3 of 10 tokens"`)
	if strings.Contains(p.html(), tok) {
		t.Error("the token text is in the DOM after a reload")
	}
	storage := run(p, "reading web storage", chromedp.Evaluate[string](
		`JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])`))
	if strings.Contains(storage, tok) {
		t.Error("the token is in web storage")
	}
	if got := p.textContent(tokenRow("ci-pipeline") + ` td[data-label="Last used"]`); strings.Contains(got, "Never") {
		t.Errorf("ci-pipeline last used %q after use", got)
	}
	if got := p.textContent(tokenRow("ci-pipeline") + ` td[data-label="Token"]`); got != tok[:8]+"…" {
		t.Errorf("hint %q, want %q", got, tok[:8]+"…")
	}
	p.shot("tokens")

	// Revoke it in the screen; the gateway refuses it.
	p.revokeInScreen("ci-pipeline", tokenRow("ci-pipeline"))
	if r := g.get("/v1/ping", tok); r.Status != http.StatusUnauthorized {
		t.Fatalf("gateway with the revoked token: %d, want 401", r.Status)
	}
	p.waitJS("the revoke in the audit log", `document.querySelector("#user-audit-body").textContent.includes("Token revoked")`)

	// Errors in plain words: a taken name, then the 11th token.
	p.createTokenErrors(g, user, "already has a token named “nightly-export”",
		"This user already has 10 tokens, the maximum per license. Delete or let one expire first.")

	// Deactivating the user stops all of their tokens at once.
	if r := g.get("/v1/ping", otherTok); r.Status != http.StatusOK {
		t.Fatalf("nightly-export before deactivation: %d", r.Status)
	}
	p.do("deactivating the user", chromedp.Click(chromedp.ID("toggle-user")), chromedp.WaitVisible(chromedp.ID("dlg-confirm")))
	if txt := p.text("#confirm-text"); !strings.Contains(txt, "tokens (10 tokens) stop working at once") {
		t.Errorf("deactivate confirmation %q", txt)
	}
	p.do("confirming the deactivation", chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitVisible(chromedp.ID("user-deactivated-note")))
	if r := g.get("/v1/ping", otherTok); r.Status != http.StatusUnauthorized {
		t.Fatalf("nightly-export after deactivation: %d, want 401", r.Status)
	}

	// A narrow window: no sideways scrolling.
	p.do("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	p.shot("tokens-narrow")
	if !run(p, "measuring", chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`)) {
		t.Error("the page scrolls sideways at 390 px")
	}
	p.do("back to 1280x800", chromedp.EmulateViewport(1280, 800))

	// The users list shows the user with status and count.
	p.do("opening the users list", chromedp.Click(chromedp.ID("nav-users")), chromedp.WaitVisible(chromedp.CSS(`#users-body tr[data-user-id="`+user+`"]`)))
	if row := p.text(`#users-body tr[data-user-id="` + user + `"]`); !strings.Contains(row, "Deactivated") || !strings.Contains(row, "10 of 10") {
		t.Errorf("users row %q", row)
	}
	p.shot("users")

	// Sign out forgets the key.
	p.do("signing out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin-key")))
	if got := run(p, "session storage", chromedp.Evaluate[string](`sessionStorage.length + ""`)); got != "0" {
		t.Errorf("sessionStorage has %s items after sign-out", got)
	}

	// Under another mount prefix the page finds its API too.
	p.do("opening the screen under /ops/gateway-admin/",
		chromedp.Navigate(g.URL+"/ops/gateway-admin/ui/#/users/"+user),
		chromedp.WaitVisible(chromedp.ID("signin-key")),
		chromedp.SendKeys(chromedp.ID("signin-key"), testAdminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.CSS(tokenRow("nightly-export"))),
	)
}

// waitLastUsed waits until the gateway has flushed the token's last use.
func waitLastUsed(t *testing.T, g *gateway, user, name string) {
	t.Helper()
	wait.For(t, "last_used_at of "+name, func() bool {
		var list struct {
			Tokens []struct {
				Name       string  `json:"name"`
				LastUsedAt *string `json:"last_used_at"`
			} `json:"tokens"`
		}
		r := g.admin("GET", "/users/"+user+"/tokens", nil)
		if err := json.Unmarshal(r.Body, &list); err != nil {
			t.Fatal(err)
		}
		for _, tk := range list.Tokens {
			if tk.Name == name && tk.LastUsedAt != nil {
				return true
			}
		}
		return false
	})
}
