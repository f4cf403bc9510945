package ui

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

func TestSelfServesFiles(t *testing.T) {
	testServesFiles(t, Self(), []servedFile{
		{"/ui/", "text/html; charset=utf-8", "no-store", "My API Tokens"},
		{"/ui/index.html", "text/html; charset=utf-8", "no-store", `id="dlg-show-token"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "no-cache", `request("../" + path`},
		{"/ui/self.css", "text/css; charset=utf-8", "no-cache", ".whoami"},
		// Shared with the admin screen: the same bytes.
		{"/ui/app.css", "text/css; charset=utf-8", "no-cache", ".badge-revoked"},
		{"/ui/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
		{"/ui/common.js", "text/javascript; charset=utf-8", "no-cache", "const armgate"},
	})
}

func TestSelfSharesTheAdminLook(t *testing.T) {
	for _, f := range []string{"/ui/app.css", "/ui/favicon.svg", "/ui/common.js"} {
		s, a := selfGet(t, http.MethodGet, f, nil), uiGet(t, http.MethodGet, f, nil)
		if s.Body.String() != a.Body.String() || s.Header().Get("ETag") != a.Header().Get("ETag") {
			t.Errorf("%s differs between the self-service and admin screens", f)
		}
	}
	// The admin screen does not gain the self screen's files.
	if w := uiGet(t, http.MethodGet, "/ui/self.css", nil); w.Code != http.StatusNotFound {
		t.Errorf("admin screen serves self.css: %d", w.Code)
	}
	if a, s := uiGet(t, http.MethodGet, "/ui/app.js", nil), selfGet(t, http.MethodGet, "/ui/app.js", nil); a.Body.String() == s.Body.String() {
		t.Error("both screens serve the same app.js")
	}
}

func TestSelfHeadETagAndErrors(t *testing.T) {
	get := selfGet(t, http.MethodGet, "/ui/app.js", nil)
	head := selfGet(t, http.MethodHead, "/ui/app.js", nil)
	if head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Fatalf("HEAD: status %d, %d body bytes; want 200 and none", head.Code, head.Body.Len())
	}
	if cl := head.Header().Get("Content-Length"); cl != strconv.Itoa(get.Body.Len()) {
		t.Errorf("HEAD Content-Length = %q, want %d", cl, get.Body.Len())
	}
	etag := get.Header().Get("ETag")
	if etag == "" || head.Header().Get("ETag") != etag || head.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("HEAD headers %v; GET ETag %q", head.Header(), etag)
	}
	if w := selfGet(t, http.MethodGet, "/ui/app.js", http.Header{"If-None-Match": {etag}}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match: status %d, %d bytes; want 304", w.Code, w.Body.Len())
	}
	if w := selfGet(t, http.MethodGet, "/ui/admin.js", nil); w.Code != http.StatusNotFound || w.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("unknown file: %d, CSP %q", w.Code, w.Header().Get("Content-Security-Policy"))
	}
	if w := selfGet(t, http.MethodPost, "/ui/", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", w.Code)
	}
	if w := selfGet(t, http.MethodGet, "/ui", nil); w.Code != http.StatusFound || w.Header().Get("Location") != "ui/" {
		t.Errorf("GET /ui: %d Location %q, want 302 ui/", w.Code, w.Header().Get("Location"))
	}
}

// TestSelfAssetsSuitTheCSP checks what the strict CSP would break at run
// time, and that the page reaches its API relative to itself and keeps no
// secret in storage.
func TestSelfAssetsSuitTheCSP(t *testing.T) {
	testAssetsSuitTheCSP(t, Self(),
		cspRule{"web storage or cookies", regexp.MustCompile(`localStorage|sessionStorage|indexedDB|document\.cookie`), false},
		cspRule{"absolute API URL", regexp.MustCompile(`(?:fetch|request)\(\s*["'](?:/|https?:)`), false})
}
