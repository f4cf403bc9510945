package ui

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

func TestUIServesFiles(t *testing.T) {
	testServesFiles(t, Admin(), []servedFile{
		{"/ui/", "text/html; charset=utf-8", "no-store", `<script src="app.js" defer></script>`},
		{"/ui/index.html", "text/html; charset=utf-8", "no-store", "Create API Token"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "no-cache", `"use strict";`},
		{"/ui/app.css", "text/css; charset=utf-8", "no-cache", ".badge-revoked"},
		{"/ui/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
	})
}

func TestUICSPIsTheStrictOne(t *testing.T) {
	const want = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if CSP != want {
		t.Fatalf("CSP = %q, want %q", CSP, want)
	}
}

func TestUINotFoundAndMethods(t *testing.T) {
	for _, target := range []string{"/ui/nope.js", "/ui/ui/index.html", "/ui/../admin.go", "/ui/app.js/x", "/other"} {
		w := uiGet(t, http.MethodGet, target, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", target, w.Code)
			continue
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "not_found" {
			t.Errorf("GET %s: body %q, want a not_found error", target, w.Body)
		}
		if w.Header().Get("Content-Security-Policy") != CSP {
			t.Errorf("GET %s: error response lacks the CSP", target)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := uiGet(t, m, "/ui/", nil)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /ui/: status %d, Allow %q; want 405 with GET, HEAD", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

func TestUIHead(t *testing.T) {
	w := uiGet(t, http.MethodHead, "/ui/app.js", nil)
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("HEAD: status %d, %d body bytes; want 200 and none", w.Code, w.Body.Len())
	}
	get := uiGet(t, http.MethodGet, "/ui/app.js", nil)
	if cl := w.Header().Get("Content-Length"); cl == "" || cl != strconv.Itoa(get.Body.Len()) {
		t.Errorf("HEAD Content-Length = %q, want the GET body's %d", cl, get.Body.Len())
	}
	if w.Header().Get("ETag") != get.Header().Get("ETag") {
		t.Errorf("HEAD ETag %q differs from GET's %q", w.Header().Get("ETag"), get.Header().Get("ETag"))
	}
}

func TestUIRedirectIsRelative(t *testing.T) {
	for target, want := range map[string]string{"/ui": "ui/", "/ui?x=1": "ui/?x=1"} {
		w := uiGet(t, http.MethodGet, target, nil)
		if w.Code != http.StatusFound || w.Header().Get("Location") != want {
			t.Errorf("GET %s: %d Location %q, want 302 %q", target, w.Code, w.Header().Get("Location"), want)
		}
	}
}

func TestUIETag(t *testing.T) {
	w := uiGet(t, http.MethodGet, "/ui/app.css", nil)
	etag := w.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on app.css")
	}
	w = uiGet(t, http.MethodGet, "/ui/app.css", http.Header{"If-None-Match": {`"other", ` + etag}})
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("If-None-Match: status %d, %d bytes; want 304", w.Code, w.Body.Len())
	}
	w = uiGet(t, http.MethodGet, "/ui/app.css", http.Header{"If-None-Match": {`"other"`}})
	if w.Code != http.StatusOK {
		t.Fatalf("stale If-None-Match: status %d, want 200", w.Code)
	}
}

func TestOwnsOnlyUIPaths(t *testing.T) {
	for p, want := range map[string]bool{
		"/ui": true, "/ui/": true, "/ui/app.js": true,
		"/users": false, "/uix": false, "/": false, "/tokens/ui/": false,
	} {
		if got := Owns(p); got != want {
			t.Errorf("Owns(%s) = %v, want %v", p, got, want)
		}
	}
}

// TestUIAssetsSuitTheCSP checks what a strict CSP would otherwise break at
// run time: inline scripts, inline styles and event-handler attributes, and
// asset URLs that would not follow the mount prefix.
func TestUIAssetsSuitTheCSP(t *testing.T) {
	testAssetsSuitTheCSP(t, Admin(),
		cspRule{"persistent storage", regexp.MustCompile(`localStorage|indexedDB|document\.cookie`), false})
}
