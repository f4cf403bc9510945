package caddymodule

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

// The admin screen ("API Tokens"): static HTML, CSS and JavaScript, embedded
// so the gateway needs no internet and no build step. The page calls the
// admin API with the admin credential it keeps in sessionStorage; loading
// the files themselves needs no credential.
//
//go:embed ui
var uiFiles embed.FS

// uiCSP forbids everything the page does not need: no inline script or
// style, no other origin, no framing, no form posts, no <base>.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiPrefix is where the screen lives, relative to the admin handler's
// mount (after handle_path stripped it).
const uiPrefix = "/ui/"

type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

// uiAssets reads the embedded files once.
var uiAssets = sync.OnceValue(func() map[string]uiAsset {
	assets := map[string]uiAsset{}
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the system's MIME tables
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		assets[strings.TrimPrefix(p, "ui/")] = uiAsset{
			body:        b,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("caddymodule: reading embedded ui: " + err.Error()) // cannot happen with go:embed
	}
	return assets
})

// isUIPath reports whether p (the path after the admin mount prefix) belongs
// to the admin screen rather than the JSON API.
func isUIPath(p string) bool {
	return p == strings.TrimSuffix(uiPrefix, "/") || strings.HasPrefix(p, uiPrefix)
}

// serveUI serves the admin screen and reports true when r is for it; the
// admin handler calls it before authenticating, since the static files carry
// no secret and the page has to load before anyone can sign in.
func serveUI(w http.ResponseWriter, r *http.Request) bool {
	if !isUIPath(r.URL.Path) {
		return false
	}
	uiHandler().ServeHTTP(w, r)
	return true
}

// uiHandler serves the embedded admin screen for paths under /ui/ (as seen
// after the mount prefix was stripped). /ui redirects to ui/, relative to
// the request, so it works under any mount prefix.
func uiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			uiError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: GET, HEAD")
			return
		}
		p := r.URL.Path
		if p == strings.TrimSuffix(uiPrefix, "/") {
			// Relative, so /admin/ui goes to /admin/ui/ whatever the mount.
			target := "ui/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			h.Set("Location", target)
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusFound)
			return
		}
		name, ok := strings.CutPrefix(p, uiPrefix)
		if !ok {
			uiError(w, http.StatusNotFound, "not_found", "no such file: "+p)
			return
		}
		if name == "" {
			name = "index.html"
		}
		a, ok := uiAssets()[name]
		if !ok {
			uiError(w, http.StatusNotFound, "not_found", "no such file in the admin screen: "+name)
			return
		}
		h.Set("Content-Type", a.contentType)
		if name == "index.html" {
			// The page carries no secret, but it names the current asset
			// set; never keep a stale one.
			h.Set("Cache-Control", "no-store")
		} else {
			// Revalidate every time: assets change with the binary.
			h.Set("Cache-Control", "no-cache")
			h.Set("ETag", a.etag)
			if etagMatch(r.Header.Get("If-None-Match"), a.etag) {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(a.body)
		}
	})
}

// etagMatch reports whether an If-None-Match header lists etag (or *).
func etagMatch(header, etag string) bool {
	for v := range strings.SplitSeq(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

// uiError answers with the admin API's error shape.
func uiError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
