package adminapi

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestParseOrigin: the origins option takes scheme://host[:port] and
// nothing else.
func TestParseOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string // want "" means refused
	}{
		{"https://portal.example.com", "https://portal.example.com"},
		{"HTTPS://Portal.Example.COM", "https://portal.example.com"},
		{"https://portal.example.com:443", "https://portal.example.com"},
		{"https://portal.example.com:8443", "https://portal.example.com:8443"},
		{"http://localhost:8080", "http://localhost:8080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"http://10.0.0.5", "http://10.0.0.5"},
		{"https://portal.example.com/", ""},
		{"https://portal.example.com/me", ""},
		{"https://portal.example.com?x", ""},
		{"https://portal.example.com#", ""},
		{"https://user@portal.example.com", ""},
		{"https://portal.example.com:", ""},
		{"https://portal.example.com:0", ""},
		{"https://portal.example.com:65536", ""},
		{"https://portal.example.com:0443", ""},
		{"ftp://portal.example.com", ""},
		{"portal.example.com", ""},
		{"//portal.example.com", ""},
		{"null", ""},
		{"*", ""},
		{"", ""},
	} {
		o, err := ParseOrigin(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseOrigin(%q) = %v, want an error", tt.in, o)
		case tt.want != "" && err != nil:
			t.Errorf("ParseOrigin(%q): %v", tt.in, err)
		case tt.want != "" && o.String() != tt.want:
			t.Errorf("ParseOrigin(%q) = %s, want %s", tt.in, o, tt.want)
		}
	}
}

// TestOriginPolicy: which Origin headers may change tokens, for a given
// external scheme. How the scheme is found behind a proxy is the glue's
// (caddymodule's externalScheme); here it is given.
func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	portal, err := ParseOrigin("https://portal.example.com")
	if err != nil {
		t.Fatal(err)
	}
	https := func(*http.Request) string { return "https" }
	for _, tt := range []struct {
		name    string
		scheme  func(*http.Request) string
		tls     bool
		host    string
		origins []Origin
		hdr     map[string][]string
		ok      bool
	}{
		{name: "no Origin", host: "api.example.com", ok: true},
		{name: "same origin, http", host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com"), ok: true},
		{name: "host case", host: "API.example.com", hdr: oneHeader("Origin", "http://api.EXAMPLE.com"), ok: true},
		{name: "explicit default port", host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com:80"), ok: true},
		{name: "Host with default port", host: "api.example.com:80", hdr: oneHeader("Origin", "http://api.example.com"), ok: true},
		{name: "other port", host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com:8080")},
		{name: "same port", host: "api.example.com:8080", hdr: oneHeader("Origin", "http://api.example.com:8080"), ok: true},
		{name: "https origin over plain http", host: "api.example.com", hdr: oneHeader("Origin", "https://api.example.com")},
		{name: "https origin, external scheme https", scheme: https, host: "api.example.com", hdr: oneHeader("Origin", "https://api.example.com"), ok: true},
		{name: "http origin, external scheme https", scheme: https, host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com")},
		{name: "https port default", scheme: https, host: "api.example.com", hdr: oneHeader("Origin", "https://api.example.com:443"), ok: true},
		{name: "TLS connection", tls: true, host: "api.example.com", hdr: oneHeader("Origin", "https://api.example.com"), ok: true},
		{name: "TLS connection, http origin", tls: true, host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com")},
		{name: "other host", host: "api.example.com", hdr: oneHeader("Origin", "http://evil.example")},
		{name: "suffix host", host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com.evil.example")},
		{name: "extra origin", host: "api.example.com", origins: []Origin{portal}, hdr: oneHeader("Origin", "https://portal.example.com"), ok: true},
		{name: "extra origin, other scheme", host: "api.example.com", origins: []Origin{portal}, hdr: oneHeader("Origin", "http://portal.example.com")},
		{name: "extra origin, other port", host: "api.example.com", origins: []Origin{portal}, hdr: oneHeader("Origin", "https://portal.example.com:8443")},
		{name: "opaque origin", host: "api.example.com", hdr: oneHeader("Origin", "null")},
		{name: "opaque origin with extra origins", host: "api.example.com", origins: []Origin{portal}, hdr: oneHeader("Origin", "null")},
		{name: "origin with a path", host: "api.example.com", hdr: oneHeader("Origin", "http://api.example.com/")},
		{name: "two Origin headers", host: "api.example.com", hdr: map[string][]string{"Origin": {"http://api.example.com", "http://api.example.com"}}},
		{name: "IPv6", host: "[::1]:8080", hdr: oneHeader("Origin", "http://[::1]:8080"), ok: true},
		{name: "cross-site fetch", host: "api.example.com", hdr: oneHeader("Sec-Fetch-Site", "cross-site")},
		{name: "cross-site fetch, same Origin", host: "api.example.com", hdr: map[string][]string{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://api.example.com"}}},
		{name: "same-site fetch", host: "api.example.com", hdr: map[string][]string{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://api.example.com"}}, ok: true},
	} {
		r := httptest.NewRequest(http.MethodPost, "/tokens", nil)
		r.Host = tt.host
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for k, vs := range tt.hdr {
			r.Header[k] = vs
		}
		err := OriginPolicy{Scheme: tt.scheme, Origins: tt.origins}.Check(r)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: allowed %v, want %v (%v)", tt.name, got, tt.ok, err)
		}
		if err != nil && (err.Status != http.StatusForbidden || err.Code != "forbidden") {
			t.Errorf("%s: refused with %d %s", tt.name, err.Status, err.Code)
		}
	}
}

func oneHeader(k, v string) map[string][]string { return map[string][]string{k: {v}} }
