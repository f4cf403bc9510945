package adminapi

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// OriginPolicy decides whether a state-changing self-service call comes
// from the site's own pages. The mount may sit behind cookie sign-in, so a
// page on another site could otherwise make the signed-in user's browser
// change their tokens with the user's cookies or cached credentials.
//
// A call is allowed when Sec-Fetch-Site is not cross-site and the Origin
// header, if sent, is either the request's own origin (the scheme the
// client used, the Host header's host and port) or one of Origins.
type OriginPolicy struct {
	// Scheme returns the scheme, "http" or "https", with which the client
	// reached the site. Behind a load balancer that terminates TLS it is
	// not the scheme of the connection to this server: the glue takes it
	// from the X-Forwarded-Proto of a trusted proxy. Nil means https on a
	// TLS connection, else http.
	Scheme func(r *http.Request) string
	// Origins are further origins whose pages may change tokens, as
	// ParseOrigin returns them.
	Origins []Origin
}

// Origin is a web origin: a scheme (http or https), a lower-case host and a
// port, the scheme's default when the origin names none.
type Origin struct {
	Scheme string
	Host   string
	Port   string
}

// String returns the origin as a browser sends it: the port only when it
// is not the scheme's default; an IPv6 host in brackets.
func (o Origin) String() string {
	h := o.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if o.Port == defaultPort(o.Scheme) {
		return o.Scheme + "://" + h
	}
	return o.Scheme + "://" + h + ":" + o.Port
}

// ParseOrigin parses an origin for the origins option: http or https, a
// host and an optional port, nothing else (no path, not even "/", no user,
// query or fragment), since a browser's Origin header never has more.
func ParseOrigin(s string) (Origin, error) {
	o, err := parseOrigin(s)
	if err != nil {
		return Origin{}, fmt.Errorf("origin %q: %w", s, err)
	}
	return o, nil
}

var errOriginForm = errors.New("an origin is scheme://host or scheme://host:port, with scheme http or https")

func parseOrigin(s string) (Origin, error) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" ||
		u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "#") || u.Host == "" {
		return Origin{}, errOriginForm
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return Origin{}, errOriginForm
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return Origin{}, errOriginForm
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return Origin{}, errOriginForm
		}
		port = defaultPort(scheme)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return Origin{}, errors.New("the port must be a number from 1 to 65535")
	}
	return Origin{Scheme: scheme, Host: host, Port: port}, nil
}

// defaultPort is the port of a scheme's URLs that name none.
func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// errCrossSite is the refusal of a call from another site's page.
var errCrossSite = &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "cross-site requests may not change tokens"}

// errOtherOrigin is the refusal of a call whose Origin is neither the
// site's nor one of the configured origins.
var errOtherOrigin = &Error{Status: http.StatusForbidden, Code: "forbidden",
	Message: "requests from another origin may not change tokens; the site's own pages may (see the origins option of armgate_self)"}

// Check refuses a cross-site request: nil when r may change tokens.
func (p OriginPolicy) Check(r *http.Request) *Error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errCrossSite
	}
	values := r.Header.Values("Origin")
	if len(values) == 0 {
		return nil // not a browser, or an old one on a same-origin call
	}
	if len(values) > 1 {
		return errOtherOrigin
	}
	o, err := parseOrigin(values[0])
	if err != nil {
		return errOtherOrigin // "null" (an opaque origin) included
	}
	if o == p.requestOrigin(r) {
		return nil
	}
	for _, allowed := range p.Origins {
		if o == allowed {
			return nil
		}
	}
	return errOtherOrigin
}

// requestOrigin is the origin the client sent the request to: its scheme,
// and the host and port of the Host header (the scheme's default port when
// the header names none).
func (p OriginPolicy) requestOrigin(r *http.Request) Origin {
	scheme := "http"
	if p.Scheme != nil {
		scheme = p.Scheme(r)
	} else if r.TLS != nil {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, defaultPort(scheme)
	}
	return Origin{Scheme: scheme, Host: strings.ToLower(strings.Trim(host, "[]")), Port: port}
}
