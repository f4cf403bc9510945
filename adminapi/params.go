package adminapi

import (
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// Path and query parameters. Each parser refuses a bad value with a 400,
// so that a malformed id or filter never reaches the database.

// pathUserID returns the {user_id} path value if it is a valid user id;
// the store would otherwise just report it not found.
func pathUserID(r *http.Request) (string, error) {
	id := r.PathValue("user_id")
	if err := ValidateUserID(id); err != nil {
		return "", badRequest("invalid user id: %v", err)
	}
	return id, nil
}

// pathTokenID returns the {token_id} path value, checked by ParseTokenID.
func pathTokenID(r *http.Request) (string, error) {
	return ParseTokenID(r.PathValue("token_id"))
}

// ParseTokenID accepts only the canonical 36-character UUID form (any
// case) and returns it in lower case, so that a malformed id is a 400 and
// never reaches the database.
func ParseTokenID(s string) (string, error) {
	if len(s) != 36 {
		return "", badRequest("invalid token id %q: must be a UUID such as 0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", badRequest("invalid token id %q: must be a UUID such as 0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f", s)
	}
	return u.String(), nil
}

// queryParams checks that q holds only the known keys, each at most once,
// so that a typo such as ?state= is an error rather than a silently
// ignored filter.
func queryParams(q url.Values, known ...string) error {
	for k, v := range q {
		if !slices.Contains(known, k) {
			return badRequest("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(v) > 1 {
			return badRequest("query parameter %q given more than once", k)
		}
	}
	return nil
}

// Page sizes of the list calls.
const (
	defaultPageLimit = 50
	maxPageLimit     = 500
)

// ParseLimit returns the limit query parameter, 50 when absent; it is
// bounded so that one call cannot read an unbounded page.
func ParseLimit(q url.Values) (int, error) {
	if !q.Has("limit") {
		return defaultPageLimit, nil
	}
	s := q.Get("limit")
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, badRequest("limit must be an integer from 1 to %d, got %q", maxPageLimit, s)
	}
	return n, nil
}

// ParseUserStatus returns the status filter of GET /users: "" (all),
// "active" or "deactivated"; anything else would silently match nothing.
func ParseUserStatus(s string) (string, error) {
	switch s {
	case "", string(storage.UserActive), string(storage.UserDeactivated):
		return s, nil
	}
	return "", badRequest("status must be %q or %q, got %q", storage.UserActive, storage.UserDeactivated, s)
}

// EncodeCursor returns the users cursor after lastID. It is opaque to
// clients (the base64url of the last id seen), so that its form may change.
func EncodeCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// DecodeCursor returns the last id seen from a cursor, "" for none; a
// cursor that is not one EncodeCursor made is a 400.
func DecodeCursor(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || ValidateUserID(string(b)) != nil {
		return "", badRequest("invalid cursor: pass next_cursor from the previous page unchanged")
	}
	return string(b), nil
}

// parseIntrospection returns the token of an RFC 7662 request: a POST with
// an application/x-www-form-urlencoded body holding token=.
func parseIntrospection(r *http.Request) (string, error) {
	if r.URL.Query().Has("token") {
		// Query strings end up in access logs.
		return "", badRequest("send token in the form body, not in the query string")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", badRequest("the body must be application/x-www-form-urlencoded with a token parameter")
	}
	b, err := request.Read(r.Body)
	if err != nil {
		return "", err
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return "", badRequest("the form body is malformed: %v", err)
	}
	switch v := form["token"]; {
	case len(v) == 0 || v[0] == "":
		return "", badRequest("the token parameter is required")
	case len(v) > 1:
		return "", badRequest("the token parameter must be given once")
	default:
		return v[0], nil
	}
}
