package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// serve sends one request to a screen's handler.
func serve(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func uiGet(t *testing.T, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, Admin(), method, target, header)
}

func selfGet(t *testing.T, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, Self(), method, target, header)
}

// servedFile is a file a screen must serve, with its headers and a piece
// of its body.
type servedFile struct {
	target      string
	contentType string
	cache       string
	contains    string
}

// testServesFiles checks that h serves each file with the right type,
// caching and security headers.
func testServesFiles(t *testing.T, h http.Handler, files []servedFile) {
	t.Helper()
	for _, tc := range files {
		t.Run(tc.target, func(t *testing.T) {
			w := serve(t, h, http.MethodGet, tc.target, nil)
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

// cspRule is a pattern that must not occur in a screen's page or scripts.
type cspRule struct {
	what   string
	re     *regexp.Regexp
	inHTML bool // else in the scripts
}

// cspRules is what a strict CSP would otherwise break at run time: inline
// scripts, inline styles and event-handler attributes, asset URLs that
// would not follow the mount prefix, and HTML or code built from strings.
var cspRules = []cspRule{
	{"inline script", regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), true},
	{"script without src", regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r>])*)?>`), true},
	{"style element", regexp.MustCompile(`<style[\s>]`), true},
	{"style attribute", regexp.MustCompile(`\sstyle\s*=`), true},
	{"event-handler attribute", regexp.MustCompile(`\son[a-z]+\s*=`), true},
	{"javascript: URL", regexp.MustCompile(`(?i)javascript:`), true},
	{"absolute or external asset URL", regexp.MustCompile(`(?:src|href)="(?:/|https?:|//)`), true},
	{"innerHTML or outerHTML", regexp.MustCompile(`\.(?:inner|outer)HTML\b|insertAdjacentHTML`), false},
	{"eval or new Function", regexp.MustCompile(`\beval\(|new Function\(`), false},
	{"style attribute from script", regexp.MustCompile(`setAttribute\(\s*["']style`), false},
}

// testAssetsSuitTheCSP checks a screen's index.html and scripts against
// cspRules and the screen's own extra rules, and that every asset the
// page names is embedded.
func testAssetsSuitTheCSP(t *testing.T, h http.Handler, extra ...cspRule) {
	t.Helper()
	assets := h.(*screen).assets
	html := string(assets["index.html"].body)
	js := string(assets["common.js"].body) + string(assets["app.js"].body)
	for _, b := range append(append([]cspRule(nil), cspRules...), extra...) {
		in := js
		if b.inHTML {
			in = html
		}
		if loc := b.re.FindStringIndex(in); loc != nil {
			t.Errorf("%s: %q", b.what, in[loc[0]:min(loc[1]+40, len(in))])
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(html, -1) {
		if _, ok := assets[m[1]]; !ok {
			t.Errorf("index.html names %q, which is not embedded", m[1])
		}
	}
}
