package token

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// HeaderResult classifies an Authorization header for RFC 6750 handling.
type HeaderResult int

const (
	// HeaderOK means exactly one bearer token was found.
	HeaderOK HeaderResult = iota
	// HeaderMissing means no Authorization header, or another scheme:
	// 401 without an error code.
	HeaderMissing
	// HeaderMalformed means a bearer header that cannot be used (empty
	// value, bare scheme, extra parts, several headers): 400 invalid_request.
	HeaderMalformed
)

// ParseAuthorization extracts the bearer token from the values of the
// Authorization header. The scheme matches case-insensitively, one or more
// spaces or tabs separate it from the token, and surrounding whitespace is
// ignored. It does not allocate.
func ParseAuthorization(values []string) (string, HeaderResult) {
	switch len(values) {
	case 0:
		return "", HeaderMissing
	case 1:
	default:
		return "", HeaderMalformed
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", HeaderMalformed
	}
	scheme, rest := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, rest = v[:i], v[i:]
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", HeaderMissing
	}
	tok := strings.TrimLeft(rest, " \t")
	// Any white space, Unicode's too (U+00A0, U+3000, ...), makes the
	// header malformed rather than the token unknown.
	if tok == "" || containsSpace(tok) {
		return "", HeaderMalformed
	}
	return tok, HeaderOK
}

// containsSpace is strings.ContainsFunc(s, unicode.IsSpace) with a byte
// loop over the ASCII prefix, where the only white space is \t, \n, \v,
// \f, \r and the space: a token is all ASCII, and decoding it rune by rune
// was a tenth of the hit path's instructions.
func containsSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			return strings.ContainsFunc(s[i:], unicode.IsSpace)
		case c == ' ' || ('\t' <= c && c <= '\r'):
			return true
		}
	}
	return false
}
