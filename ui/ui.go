// Package ui serves armgate's screens: static HTML, CSS and JavaScript,
// embedded so that the gateway needs no internet and no build step. The
// admin screen calls its JSON API with a credential it keeps in
// sessionStorage; the self-service screen relies on the site's own sign-in
// and keeps none. Loading the files needs no credential of armgate's: they
// carry no secret, and the admin page has to load before anyone can sign in.
//
// Each screen lives at Prefix relative to the handler that mounts it (after
// the mount prefix was stripped), e.g. /admin/ui/ for armgate_admin mounted
// at /admin/.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed admin
var adminFiles embed.FS

// The self-service screen shares the admin screen's stylesheet, icon and
// common script, so both look and behave alike from one source.
//
//go:embed self admin/app.css admin/favicon.svg admin/common.js
var selfFiles embed.FS

// Prefix is where a screen lives relative to its handler's mount.
const Prefix = "/ui/"

// CSP forbids everything a screen does not need: no inline script or
// style, no other origin, no framing, no form posts, no <base>.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Owns reports whether p (the path after the mount prefix) belongs to a
// screen rather than to the JSON API beside it.
func Owns(p string) bool {
	return p == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(p, Prefix)
}

// Admin returns the handler of the admin screen ("API Tokens"). It reads
// the embedded files once, on the first call.
var Admin = sync.OnceValue(func() http.Handler { return newScreen(adminFiles, "admin") })

// Self returns the handler of the self-service screen ("My API Tokens"),
// where a signed-in person manages their own tokens. It calls the JSON API
// beside it with relative URLs and the site's own sign-in, so it keeps no
// credential. It reads the embedded files once, on the first call.
var Self = sync.OnceValue(func() http.Handler {
	return newScreen(selfFiles, "self", "admin/app.css", "admin/favicon.svg", "admin/common.js")
})

type asset struct {
	body        []byte
	contentType string
	// etag is the content hash, computed once; http.ServeContent answers
	// If-None-Match with it.
	etag string
}

// screen serves one directory of embedded files under Prefix.
type screen struct {
	assets map[string]asset
}

// newScreen serves the files of dir, and each shared file (a path in files
// outside dir) under its base name beside them.
func newScreen(files fs.FS, dir string, shared ...string) *screen {
	assets := map[string]asset{}
	add := func(p, name string) error {
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		assets[name] = asset{
			body:        b,
			contentType: contentType(p),
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		}
		return nil
	}
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return add(p, strings.TrimPrefix(p, dir+"/"))
	})
	for _, p := range shared {
		if err == nil {
			err = add(p, path.Base(p))
		}
	}
	if err != nil {
		panic("ui: reading embedded " + dir + ": " + err.Error()) // cannot happen with go:embed
	}
	return &screen{assets: assets}
}

// contentType is not left to the system's MIME tables for the types the
// screens use.
func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if ct := mime.TypeByExtension(path.Ext(p)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// ServeHTTP serves the files for paths under Prefix. The bare prefix
// without its slash redirects to it, relative to the request, so that it
// works under any mount prefix.
func (s *screen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: GET, HEAD")
		return
	}
	p := r.URL.Path
	if bare := strings.TrimSuffix(Prefix, "/"); p == bare {
		// Relative, so /admin/ui goes to /admin/ui/ whatever the mount.
		target := path.Base(bare) + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		h.Set("Location", target)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusFound)
		return
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such file: "+p)
		return
	}
	if name == "" {
		name = "index.html"
	}
	a, ok := s.assets[name]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such file in the screen: "+name)
		return
	}
	h.Set("Content-Type", a.contentType)
	if name == "index.html" {
		// The page carries no secret, but it names the current asset set;
		// never keep a stale one.
		h.Set("Cache-Control", "no-store")
	} else {
		// Revalidate every time: assets change with the binary.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
	}
	// ServeContent answers HEAD, If-None-Match and Range and sets
	// Content-Length; the zero modification time sends no Last-Modified.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}

// writeError answers with the admin API's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
