// Package request is the admin and self-service APIs' request bodies:
// decoding (Decode: one JSON object, strictly), the body types and their
// validation, and the Error every refusal is. Validation returns plain
// values (Token, UserPatch, Controls), not the store's types, and the
// package imports neither net/http nor storage: adminapi and the command
// line convert what it returns, and its fuzz targets build without the
// server.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a request body.
const (
	// MaxBodyBytes bounds a request body, so that a client cannot make the
	// handler buffer an arbitrary amount; the handler also caps the body
	// reader with it.
	MaxBodyBytes       = 64 << 10
	maxEmailLen        = 254 // RFC 5321 path limit
	maxDisplayNameLen  = 200
	maxRevokeReasonLen = 500
)

// Read reads the whole body, at most MaxBodyBytes: the size decides 413
// before anything about the content is looked at. A reader that stops at
// its own cap says so by returning ErrTooLarge (adminapi's capped body
// does).
func Read(body io.Reader) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if errors.Is(err, ErrTooLarge) || len(b) > MaxBodyBytes {
		return nil, ErrTooLarge
	} else if err != nil {
		return nil, BadRequest("reading the request body: %v", err)
	}
	return b, nil
}

// Decode reads one JSON object from body into dst, a pointer to a
// struct. Unknown fields, wrong types and trailing data are 400; an empty
// body counts as {} so that calls whose fields are all optional need none.
// A body that is not valid UTF-8, or escapes a lone UTF-16 surrogate, is
// 400 too: encoding/json would silently store U+FFFD in its place, so what
// is stored would differ from what was sent.
func Decode(body io.Reader, dst any) error {
	b, err := Read(body)
	if err != nil {
		return err
	}
	if err := checkText(b); err != nil {
		return err
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil
	}
	if trimmed[0] != '{' {
		return BadRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, dst)
	}
	if _, err := dec.Token(); err != io.EOF {
		return BadRequest("the request body must hold a single JSON object; found data after it")
	}
	return exactKeys(trimmed, dst)
}

// checkText refuses a raw body whose text encoding/json would change on
// decoding: invalid UTF-8, or a \u escape of a UTF-16 surrogate that is not
// half of a pair. It runs on the raw bytes, before decoding replaces them.
func checkText(b []byte) error {
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return BadRequest("the request body is not valid UTF-8 (at byte %d)", i)
	}
	if i := loneSurrogate(b); i >= 0 {
		return BadRequest("the request body escapes a lone UTF-16 surrogate (at byte %d), which is not a character", i)
	}
	return nil
}

// loneSurrogate returns the offset of the first \uXXXX escape inside a JSON
// string of b that names a UTF-16 surrogate outside a high-low pair, or -1.
// Outside strings backslashes cannot occur in valid JSON, and invalid JSON
// is refused by the decoder anyway.
func loneSurrogate(b []byte) int {
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			if i+1 >= len(b) {
				return -1
			}
			if b[i+1] != 'u' {
				i++ // a one-character escape, e.g. \" or \\
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				return -1 // malformed: the decoder says so
			}
			switch {
			case r >= 0xD800 && r < 0xDC00: // high half: a low half must follow
				if lo, ok := hex4(b, i+8); !ok || b[i+6] != '\\' || b[i+7] != 'u' || lo < 0xDC00 || lo >= 0xE000 {
					return i
				}
				i += 11
			case r >= 0xDC00 && r < 0xE000: // a low half alone
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// exactKeys rejects what encoding/json lets through: a key that matches a
// field only case-insensitively ({"NAME": …}) and a repeated key (it would
// keep the last). b has already decoded cleanly into dst.
func exactKeys(b []byte, dst any) error {
	known := JSONNames(reflect.TypeOf(dst))
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // the opening brace
		return BadRequest("the request body is not valid JSON")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return BadRequest("the request body is not valid JSON")
		}
		k, _ := t.(string)
		switch {
		case !slices.Contains(known, k):
			return BadRequest("unknown field %q (field names are case-sensitive)", k)
		case seen[k]:
			return BadRequest("field %q is given more than once", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return BadRequest("the request body is not valid JSON")
		}
	}
	return nil
}

// JSONNames lists the JSON names of the fields of the struct type t, or
// of the struct it points to, in field order: the tag's name, else the
// field's (as encoding/json does); fields tagged "-" and unexported ones
// are left out, and an embedded struct without a name contributes its
// fields in its place (adminapi's CreatedToken: Token's, then "token").
// The one place that reads json tags.
func JSONNames(t reflect.Type) []string {
	t = indirect(t)
	var names []string
	if t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && indirect(f.Type).Kind() == reflect.Struct {
			names = append(names, JSONNames(f.Type)...)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// jsonError turns an encoding/json error into a message that names the
// field and says what is wrong.
func jsonError(err error, dst any) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return BadRequest("the request body is not valid JSON: %s (at byte %d)",
			strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field := te.Field
		if field == "" {
			field = "the request body"
		}
		return BadRequest("%s must be %s, not %s", field, describeType(te.Type), te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BadRequest("the request body is truncated JSON")
	}
	// DisallowUnknownFields has no error type, only this text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return BadRequest("unknown field %s (known fields: %s)", name, strings.Join(JSONNames(reflect.TypeOf(dst)), ", "))
	}
	return BadRequest("invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// indirect is the type t points to, through any number of pointers.
func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func describeType(t reflect.Type) string {
	t = indirect(t)
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
