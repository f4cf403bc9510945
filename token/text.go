package token

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckText checks a text a person types and a screen shows (a token name,
// a revocation reason, a display name): valid UTF-8, no control characters
// (Unicode Cc), and no format characters (Cf: zero-width characters, the
// bidirectional controls such as U+202E, soft hyphens) nor line or
// paragraph separators (Zl, Zp). Those show as nothing, or reorder what
// follows, so they would make two names look alike ("c\u200bi" beside "ci")
// or make a screen show something else than what is stored
// ("report\u202egpj.exe"). field names the text in the error.
func CheckText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s must be valid UTF-8", field)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s may not contain control characters", field)
	}
	if i := strings.IndexFunc(s, hidden); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("%s may not contain %U: invisible formatting characters (zero-width, bidirectional controls, line separators) "+
			"can make two names look alike or reverse what a screen shows", field, r)
	}
	return nil
}

// hidden reports whether r is a format character or a line or paragraph
// separator.
func hidden(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
