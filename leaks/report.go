// Package leaks receives reports of leaked tokens: GitHub secret scanning's
// signed reports (their signature is checked by the subpackage ghkeys),
// GitLab's token revocation API, and lists an administrator submits. It
// parses and classifies what a report names, and builds GitHub's feedback;
// the revocation itself is one store operation (storage.RevokeLeaked). It
// imports neither Caddy, PostgreSQL nor net/http, and never logs or returns
// a token.
package leaks

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/armgate/armgate/token"
)

const (
	// MaxBodyBytes bounds a report's body.
	MaxBodyBytes = 1 << 20
	// MaxTokens bounds the tokens of one report.
	MaxTokens = 1000
	// MaxURLLen bounds a stored URL, in bytes; longer ones are cut.
	MaxURLLen = 2048
	// maxFieldLen bounds type and source, which are only recorded.
	maxFieldLen = 100
	// GitLabTokenType is the token type armgate answers GitLab's
	// revocable_token_types with unless configured otherwise.
	GitLabTokenType = "armgate_api_token"
)

// Labels of GitHub's feedback, also the metric labels of reported tokens.
const (
	TruePositive  = "true_positive"
	FalsePositive = "false_positive"
)

// ErrTooMany is a report of more than MaxTokens tokens.
var ErrTooMany = fmt.Errorf("a report may name at most %d tokens", MaxTokens)

// Item is one token a report names. Its String never shows the token.
type Item struct {
	token string
	// Type is the reporter's name of the token type.
	Type string
	// URL is where the token was found (cleaned by CleanURL).
	URL string
	// Source is GitHub's kind of location ("content", "commit", ...).
	Source string
	// Hash is the SHA-256 of the token as reported.
	Hash token.Hash
	// Valid: the token has armgate's shape and checksum. Only valid
	// tokens are looked up; the others are another issuer's or mangled.
	Valid bool
}

// String names the item without its token.
func (it Item) String() string { return "leak report item (type " + it.Type + ")" }

// Hint is the token's display hint, for answers to an administrator who
// sent the token; empty for a token that is not armgate's.
func (it Item) Hint() string {
	if !it.Valid {
		return ""
	}
	return token.Hint(it.token)
}

// HashHex is the SHA-256 of the token, hex-encoded, as GitHub's feedback
// names it.
func (it Item) HashHex() string { return hex.EncodeToString(it.Hash[:]) }

func newItem(tok, typ, url, source string) Item {
	return Item{
		token:  tok,
		Type:   cleanField(typ, maxFieldLen),
		URL:    CleanURL(url),
		Source: cleanField(source, maxFieldLen),
		Hash:   token.Sum(tok),
		Valid:  token.Check(tok) == nil,
	}
}

// githubItem is one entry of a GitHub report. Unknown fields are ignored:
// GitHub may add some.
type githubItem struct {
	Token  *string `json:"token"`
	Type   string  `json:"type"`
	URL    string  `json:"url"`
	Source string  `json:"source"`
}

// ParseGitHub reads a GitHub secret scanning report: a JSON array of
// {"token","type","url","source"}. An entry without a token string, or
// anything but such an array, is an error; so are more than MaxTokens
// entries (ErrTooMany).
func ParseGitHub(body []byte) ([]Item, error) {
	raw, err := array(body)
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, len(raw))
	for i, r := range raw {
		var g githubItem
		if err := json.Unmarshal(r, &g); err != nil || g.Token == nil {
			return nil, fmt.Errorf("entry #%d is not an object with a string \"token\"", i+1)
		}
		items = append(items, newItem(*g.Token, g.Type, g.URL, g.Source))
	}
	return items, nil
}

// gitlabItem is one entry of GitLab's revoke_tokens.
type gitlabItem struct {
	Type     string  `json:"type"`
	Token    *string `json:"token"`
	Location string  `json:"location"`
}

// ParseGitLab reads GitLab's revoke_tokens body: a JSON array of
// {"type","token","location"}. Every type must be one of types.
func ParseGitLab(body []byte, types []string) ([]Item, error) {
	raw, err := array(body)
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, len(raw))
	for i, r := range raw {
		var g gitlabItem
		if err := json.Unmarshal(r, &g); err != nil || g.Token == nil {
			return nil, fmt.Errorf("entry #%d is not an object with a string \"token\"", i+1)
		}
		if !contains(types, g.Type) {
			return nil, fmt.Errorf("entry #%d: token type %q is not revocable here (revocable: %s)",
				i+1, cleanField(g.Type, maxFieldLen), strings.Join(types, ", "))
		}
		items = append(items, newItem(*g.Token, g.Type, g.Location, ""))
	}
	return items, nil
}

// Tokens makes items of tokens an administrator submits, all found at url.
func Tokens(tokens []string, url string) ([]Item, error) {
	if len(tokens) > MaxTokens {
		return nil, ErrTooMany
	}
	items := make([]Item, len(tokens))
	for i, t := range tokens {
		items[i] = newItem(strings.TrimSpace(t), "", url, "")
	}
	return items, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// array splits body, which must be a JSON array of at most MaxTokens
// elements.
func array(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, errors.New("the report must be a JSON array")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // [
		return nil, errors.New("the report must be a JSON array")
	}
	var raw []json.RawMessage
	for dec.More() {
		if len(raw) == MaxTokens {
			return nil, ErrTooMany
		}
		var r json.RawMessage
		if err := dec.Decode(&r); err != nil {
			return nil, errors.New("the report is not valid JSON")
		}
		raw = append(raw, r)
	}
	if _, err := dec.Token(); err != nil { // ]
		return nil, errors.New("the report is not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("the report has data after its JSON array")
	}
	return raw, nil
}

// CleanURL makes a reported URL safe to store and show: valid UTF-8
// without control or format characters, at most MaxURLLen bytes.
func CleanURL(s string) string { return cleanField(s, MaxURLLen) }

func cleanField(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// Feedback is one entry of GitHub's feedback array.
type Feedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// Label is the feedback label of it: true_positive for an armgate token that
// exists (found: the store knows its hash), false_positive for anything else
// (another issuer's, mangled, never issued or deleted).
func Label(it Item, found func(token.Hash) bool) string {
	if it.Valid && found(it.Hash) {
		return TruePositive
	}
	return FalsePositive
}

// GitHubFeedback is GitHub's feedback for a report, one entry per item, in
// the report's order.
func GitHubFeedback(items []Item, found func(token.Hash) bool) []Feedback {
	fb := make([]Feedback, len(items))
	for i, it := range items {
		fb[i] = Feedback{TokenHash: it.HashHex(), TokenType: it.Type, Label: Label(it, found)}
	}
	return fb
}
