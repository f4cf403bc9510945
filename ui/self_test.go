package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func selfGet(t *testing.T, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	Self().ServeHTTP(w, r)
	return w
}

func TestSelfServesFiles(t *testing.T) {
	tests := []struct {
		target      string
		contentType string
		cache       string
		contains    string
	}{
		{"/ui/", "text/html; charset=utf-8", "no-store", "My API Tokens"},
		{"/ui/index.html", "text/html; charset=utf-8", "no-store", `id="dlg-show-token"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "no-cache", `request("../" + path`},
		{"/ui/self.css", "text/css; charset=utf-8", "no-cache", ".whoami"},
		// Shared with the admin screen: the same bytes.
		{"/ui/app.css", "text/css; charset=utf-8", "no-cache", ".badge-revoked"},
		{"/ui/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
		{"/ui/common.js", "text/javascript; charset=utf-8", "no-cache", "const armgate"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			w := selfGet(t, http.MethodGet, tc.target, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
			}
			h := w.Header()
			want := map[string]string{
				"Content-Type":            tc.contentType,
				"Cache-Control":           tc.cache,
				"Content-Security-Policy": CSP,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.cache == "no-cache" && h.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if !strings.Contains(w.Body.String(), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
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
	assets := Self().(*screen).assets
	html := string(assets["index.html"].body)
	js := string(assets["common.js"].body) + string(assets["app.js"].body)
	bad := []struct {
		what string
		re   *regexp.Regexp
		in   string
	}{
		{"inline script", regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), html},
		{"script without src", regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r>])*)?>`), html},
		{"style element", regexp.MustCompile(`<style[\s>]`), html},
		{"style attribute", regexp.MustCompile(`\sstyle\s*=`), html},
		{"event-handler attribute", regexp.MustCompile(`\son[a-z]+\s*=`), html},
		{"javascript: URL", regexp.MustCompile(`(?i)javascript:`), html},
		{"absolute or external asset URL", regexp.MustCompile(`(?:src|href)="(?:/|https?:|//)`), html},
		{"innerHTML or outerHTML", regexp.MustCompile(`\.(?:inner|outer)HTML\b|insertAdjacentHTML`), js},
		{"eval or new Function", regexp.MustCompile(`\beval\(|new Function\(`), js},
		{"style attribute from script", regexp.MustCompile(`setAttribute\(\s*["']style`), js},
		{"web storage or cookies", regexp.MustCompile(`localStorage|sessionStorage|indexedDB|document\.cookie`), js},
		{"absolute API URL", regexp.MustCompile(`fetch\(\s*["'](?:/|https?:)`), js},
	}
	for _, b := range bad {
		if loc := b.re.FindStringIndex(b.in); loc != nil {
			t.Errorf("%s: %q", b.what, b.in[loc[0]:min(loc[1]+40, len(b.in))])
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(html, -1) {
		if _, ok := assets[m[1]]; !ok {
			t.Errorf("index.html names %q, which is not embedded", m[1])
		}
	}
}
