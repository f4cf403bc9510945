package caddymodule

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// Limits of the admin API; see DESIGN.md §5.
const (
	maxBodyBytes       = 64 << 10
	defaultPageLimit   = 50
	maxPageLimit       = 500
	maxEmailLen        = 254 // RFC 5321 path limit
	maxDisplayNameLen  = 200
	maxRevokeReasonLen = 500

	userStatusActive      = "active"
	userStatusDeactivated = "deactivated"
)

// apiError is an admin API error response: status plus the {"error",
// "message"} body.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

var errTooLarge = &apiError{http.StatusRequestEntityTooLarge, "request_too_large",
	fmt.Sprintf("the request body exceeds %d KiB", maxBodyBytes>>10)}

// readBody reads the whole body, at most maxBodyBytes: the size decides
// 413 before anything about the content is looked at.
func readBody(body io.Reader) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, maxBodyBytes+1))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok || len(b) > maxBodyBytes {
		return nil, errTooLarge
	} else if err != nil {
		return nil, badRequest("reading the request body: %v", err)
	}
	return b, nil
}

// decodeJSON reads one JSON object from body into dst, a pointer to a
// struct. Unknown fields, wrong types and trailing data are 400; an empty
// body counts as {} so that calls whose fields are all optional need none.
func decodeJSON(body io.Reader, dst any) error {
	b, err := readBody(body)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil
	}
	if trimmed[0] != '{' {
		return badRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, dst)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the request body must hold a single JSON object; found data after it")
	}
	return exactKeys(trimmed, dst)
}

// exactKeys rejects what encoding/json lets through: a key that matches a
// field only case-insensitively ({"NAME": …}) and a repeated key (it would
// keep the last). b has already decoded cleanly into dst.
func exactKeys(b []byte, dst any) error {
	known := jsonNames(reflect.TypeOf(dst).Elem())
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // the opening brace
		return badRequest("the request body is not valid JSON")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return badRequest("the request body is not valid JSON")
		}
		k, _ := t.(string)
		switch {
		case !known[k]:
			return badRequest("unknown field %q (field names are case-sensitive)", k)
		case seen[k]:
			return badRequest("field %q is given more than once", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badRequest("the request body is not valid JSON")
		}
	}
	return nil
}

// jsonNames returns the JSON field names of the struct type t.
func jsonNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// jsonError turns an encoding/json error into a message that names the
// field and says what is wrong.
func jsonError(err error, dst any) *apiError {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest("the request body is not valid JSON: %s (at byte %d)",
			strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field := te.Field
		if field == "" {
			field = "the request body"
		}
		return badRequest("%s must be %s, not %s", field, describeType(te.Type), te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badRequest("the request body is truncated JSON")
	}
	// DisallowUnknownFields has no error type, only this text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest("unknown field %s (known fields: %s)", name, strings.Join(jsonFields(dst), ", "))
	}
	return badRequest("invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	default:
		return "a " + t.Kind().String()
	}
}

// jsonFields lists the JSON names of the fields of the struct dst points to.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	if t.Kind() != reflect.Struct {
		return names
	}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// ---- request bodies

// userRequest is the body of PUT /users/{user_id}. Omitted (or null)
// fields are left as they are on update.
type userRequest struct {
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
}

func (b userRequest) patch() (storage.UserPatch, error) {
	if b.Email != nil {
		if err := validateEmail(*b.Email); err != nil {
			return storage.UserPatch{}, err
		}
	}
	if b.DisplayName != nil {
		if err := validateDisplayName(*b.DisplayName); err != nil {
			return storage.UserPatch{}, err
		}
	}
	return storage.UserPatch{Email: b.Email, DisplayName: b.DisplayName}, nil
}

func validateEmail(s string) error {
	if s == "" || len(s) > maxEmailLen {
		return badRequest("email must be an email address of 1 to %d characters", maxEmailLen)
	}
	// Only a bare address: no display name, comments or angle brackets.
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return badRequest("email %q is not an email address such as user@example.com", s)
	}
	return nil
}

func validateDisplayName(s string) error {
	switch {
	case !utf8.ValidString(s):
		return badRequest("display_name must be valid UTF-8")
	case utf8.RuneCountInString(s) > maxDisplayNameLen:
		return badRequest("display_name is longer than %d characters", maxDisplayNameLen)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return badRequest("display_name may not contain control characters")
	}
	return nil
}

// createTokenRequest is the body of POST /users/{user_id}/tokens.
type createTokenRequest struct {
	Name      string   `json:"name"`
	ExpiresIn *string  `json:"expires_in"`
	ExpiresAt *string  `json:"expires_at"`
	Scopes    []string `json:"scopes"`
}

// tokenLimits are the app settings a token create is checked against.
type tokenLimits struct {
	maxPerUser            int
	lifetime, maxLifetime time.Duration
}

// newToken validates the body and returns what to store for userID.
func (b createTokenRequest) newToken(userID string, now time.Time, l tokenLimits) (storage.NewToken, error) {
	name, err := token.NormalizeName(b.Name)
	if err != nil {
		return storage.NewToken{}, badRequest("%v", err)
	}
	scopes, err := token.NormalizeScopes(b.Scopes)
	if err != nil {
		return storage.NewToken{}, badRequest("%v", err)
	}
	var in, at string
	if b.ExpiresIn != nil {
		if in = *b.ExpiresIn; in == "" {
			return storage.NewToken{}, badRequest(`expires_in may not be empty (omit it for the default lifetime)`)
		}
	}
	if b.ExpiresAt != nil {
		if at = *b.ExpiresAt; at == "" {
			return storage.NewToken{}, badRequest(`expires_at may not be empty (omit it for the default lifetime)`)
		}
	}
	exp, err := token.Expiry(now, in, at, l.lifetime, l.maxLifetime)
	if err != nil {
		return storage.NewToken{}, badRequest("%v", err)
	}
	return storage.NewToken{
		UserID:     userID,
		Name:       name,
		Scopes:     scopes,
		ExpiresAt:  exp.UTC(),
		MaxPerUser: l.maxPerUser,
	}, nil
}

// revokeRequest is the body of POST /tokens/{token_id}/revoke.
type revokeRequest struct {
	Reason string `json:"reason"`
}

func (b revokeRequest) reason() (string, error) {
	r := strings.TrimSpace(b.Reason)
	switch {
	case !utf8.ValidString(r):
		return "", badRequest("reason must be valid UTF-8")
	case utf8.RuneCountInString(r) > maxRevokeReasonLen:
		return "", badRequest("reason is longer than %d characters", maxRevokeReasonLen)
	case strings.IndexFunc(r, unicode.IsControl) >= 0:
		return "", badRequest("reason may not contain control characters")
	}
	return r, nil
}

// emptyRequest is the body of calls that take no fields: nothing, or {}.
type emptyRequest struct{}

// ---- path and query parameters

func pathUserID(r *http.Request) (string, error) {
	id := r.PathValue("user_id")
	if err := ValidateUserID(id); err != nil {
		return "", badRequest("invalid user id: %v", err)
	}
	return id, nil
}

// parseTokenID accepts only the canonical 36-character UUID form (any
// case) and returns it in lower case, so that a malformed id is a 400 and
// never reaches the database.
func parseTokenID(s string) (string, error) {
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

func parseLimit(q url.Values) (int, error) {
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

func parseUserStatus(s string) (string, error) {
	switch s {
	case "", userStatusActive, userStatusDeactivated:
		return s, nil
	}
	return "", badRequest("status must be %q or %q, got %q", userStatusActive, userStatusDeactivated, s)
}

// The users cursor is opaque to clients: the base64url of the last id seen.
func encodeCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

func decodeCursor(s string) (string, error) {
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
	b, err := readBody(r.Body)
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

// ---- responses

// createdToken is the create response: the token JSON plus the plaintext,
// the only place it is ever shown.
type createdToken struct {
	storage.Token
	Plaintext string `json:"token"`
}

type usersPage struct {
	Users      []userJSON `json:"users"`
	NextCursor *string    `json:"next_cursor"`
}

type tokenList struct {
	Tokens []storage.Token `json:"tokens"`
}

type auditList struct {
	Events []storage.AuditEvent `json:"events"`
}

// introspection is the RFC 7662 answer; an inactive token gets exactly
// {"active":false}.
type introspection struct {
	Active  bool   `json:"active"`
	Sub     string `json:"sub,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Exp     int64  `json:"exp,omitempty"`
	Iat     int64  `json:"iat,omitempty"`
}

func introspectionOf(c token.Credential) introspection {
	return introspection{
		Active:  true,
		Sub:     c.UserID,
		TokenID: c.TokenID,
		Scope:   strings.Join(c.Scopes, " "),
		Exp:     c.ExpiresAt.Unix(),
		Iat:     c.CreatedAt.Unix(),
	}
}

func writeAdminError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, errorBody{Error: e.code, Message: e.message})
}
