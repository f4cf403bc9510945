package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

func init() {
	for _, name := range []string{"admin-rotate", "tokens-rotated"} {
		readmeScreenshots[name] = true
	}
}

// TestBrowserAdminRotate drives the admin screen's Rotate in Chromium
// against a real gateway and PostgreSQL: the new token is shown once (and
// works, as the old one does during its grace), the old row is marked
// rotated with its successor and the end of its grace, it has no Rotate of
// its own, rotating the successor during the grace is refused in plain
// words, and the audit log words the rotation.
func TestBrowserAdminRotate(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found; install Debian's chromium package to run it", chromiumPath)
	}
	g := startGateway(t, gatewayConfig{})
	const user = "u-2002"
	if r := g.admin("PUT", "/users/"+user, map[string]any{"display_name": "Grace Hopper"}); r.Status != http.StatusCreated {
		t.Fatalf("adding the user: %d %s", r.Status, r.Body)
	}
	ci := g.admin("POST", "/users/"+user+"/tokens", map[string]any{"name": "ci-pipeline", "expires_in": "8760h"}).json(t)
	oldTok, oldID := ci["token"].(string), ci["id"].(string)
	nightly := g.admin("POST", "/users/"+user+"/tokens", map[string]any{"name": "nightly-export", "expires_in": "720h"}).json(t)
	nightlyTok, _ := nightly["token"].(string)
	row := func(id string) string { return fmt.Sprintf(`#tokens-body tr[data-token-id=%q]`, id) }

	p := newPage(t)
	defer p.checkNoProblems()
	p.signInAdmin(g, 1400, 900)
	p.do("opening the user", chromedp.Navigate(g.URL+"/admin/ui/#/users/"+user), chromedp.WaitVisible(chromedp.CSS(row(oldID))))

	// Rotate ci-pipeline with a grace of 24 hours.
	p.do("rotating ci-pipeline",
		chromedp.Click(chromedp.CSS(row(oldID)+` button[aria-label^="Rotate"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm-grace")),
	)
	if txt := p.text("#confirm-text"); !strings.Contains(txt, "keeps working for the time you choose") {
		t.Errorf("rotate confirmation %q", txt)
	}
	p.do("confirming with a 24-hour grace",
		chromedp.SetValue(chromedp.ID("confirm-grace"), "24h"),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitVisible(chromedp.ID("dlg-show-token")),
	)
	p.waitJS("the new token in the dialog", `document.querySelector("#token-value").textContent !== ""`)
	newTok := p.text("#token-value")
	if !tokenShape.MatchString(newTok) || newTok == oldTok {
		t.Fatalf("the rotation shows %q, want a new token", newTok)
	}
	if title := p.text("#show-token-title"); title != "Rotated API token" {
		t.Errorf("show-once title %q", title)
	}

	// The old token's end, as the API has it and as the page words it.
	var old, succ struct {
		ID, Hint, ExpiresAt, RotatedTo string
	}
	var list struct {
		Tokens []struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			Hint      string `json:"hint"`
			ExpiresAt string `json:"expires_at"`
			RotatedTo string `json:"rotated_to"`
		} `json:"tokens"`
	}
	if r := g.admin("GET", "/users/"+user+"/tokens", nil); json.Unmarshal(r.Body, &list) != nil {
		t.Fatalf("listing the tokens: %d %s", r.Status, r.Body)
	}
	for _, tk := range list.Tokens {
		switch {
		case tk.ID == oldID:
			old = struct{ ID, Hint, ExpiresAt, RotatedTo string }{tk.ID, tk.Hint, tk.ExpiresAt, tk.RotatedTo}
		case tk.Name == "ci-pipeline":
			succ = struct{ ID, Hint, ExpiresAt, RotatedTo string }{tk.ID, tk.Hint, tk.ExpiresAt, tk.RotatedTo}
		}
	}
	if old.RotatedTo == "" || old.RotatedTo != succ.ID || succ.Hint != newTok[:8]+"…" {
		t.Fatalf("after the rotation: old %+v, successor %+v", old, succ)
	}
	graceEnd := run(p, "formatting the grace end", chromedp.Evaluate[string](fmt.Sprintf(
		`new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"}).format(new Date(%q))`, old.ExpiresAt)))
	if note := p.text("#show-token-old"); !strings.Contains(note, "The old token ("+old.Hint+") keeps working until "+graceEnd) || !strings.Contains(note, "in 24 hours") {
		t.Errorf("show-once note %q, want the old token's end %s (in 24 hours)", note, graceEnd)
	}
	p.shot("admin-rotate")

	// Both work during the grace.
	for _, k := range []struct{ name, tok string }{{"old", oldTok}, {"new", newTok}} {
		if r := g.get("/v1/ping", k.tok); r.Status != http.StatusOK {
			t.Errorf("the %s token after rotation: %d, want 200", k.name, r.Status)
		}
	}
	p.do("closing the show-once dialog", chromedp.Click(chromedp.ID("show-token-done")), chromedp.WaitNotVisible(chromedp.ID("dlg-show-token")))
	if strings.Contains(p.html(), newTok) {
		t.Error("the new token is in the DOM after its dialog closed")
	}

	// The old row: marked rotated, with its successor and grace end, and no
	// Rotate of its own.
	p.waitJS("the old row marked rotated", `document.querySelector(`+fmt.Sprintf("%q", row(oldID))+`).dataset.rotated === "true"`)
	status := p.textContent(row(oldID) + ` td[data-label="Status"]`)
	if want := "Rotated to “ci-pipeline” (" + succ.Hint + "); works until " + graceEnd; !strings.Contains(status, want) {
		t.Errorf("old row status %q, want it to contain %q", status, want)
	}
	if n := run(p, "old row's Rotate", chromedp.Evaluate[int](`document.querySelectorAll(`+fmt.Sprintf("%q", row(oldID)+` button[aria-label^="Rotate"]`)+`).length`)); n != 0 {
		t.Errorf("the rotated token still offers Rotate")
	}
	if s := p.textContent(row(succ.ID) + ` td[data-label="Status"]`); !strings.Contains(s, "Active") || strings.Contains(s, "Rotated") {
		t.Errorf("successor row status %q", s)
	}
	p.waitJS("the rotation in the audit log", `document.querySelector("#user-audit-body").textContent.includes("Token rotated")`)
	p.shot("tokens-rotated")

	// Rotating the successor while the old one is in its grace is refused,
	// in plain words, in the dialog.
	p.do("rotating the successor",
		chromedp.Click(chromedp.CSS(row(succ.ID)+` button[aria-label^="Rotate"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm-grace")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitVisible(chromedp.ID("confirm-error")),
	)
	if msg := p.text("#confirm-error"); msg != "This token replaced another one that still works until its grace ends. Rotate it again after that." {
		t.Errorf("rotating during the grace: %q", msg)
	}
	p.do("cancelling", chromedp.Click(chromedp.CSS(`#dlg-confirm [data-close]`)), chromedp.WaitNotVisible(chromedp.ID("dlg-confirm")))

	// A leak report revokes nightly-export; the audit log names the
	// reporter, not a raw actor string.
	if r := g.admin("POST", "/tokens/revoke-leaked", map[string]any{"tokens": []string{nightlyTok}}); r.Status != http.StatusOK {
		t.Fatalf("revoke-leaked: %d %s", r.Status, r.Body)
	}
	p.do("reloading the user", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(row(oldID))))
	p.waitJS("the leak report in the audit log", `document.querySelector("#user-audit-body").textContent.includes("Leak report from an administrator")`)
	if txt := p.textContent("#user-audit-body"); strings.Contains(txt, "leak:admin") {
		t.Errorf("the audit log shows the raw actor: %q", txt)
	}
}
