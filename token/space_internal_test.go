package token

import (
	"strings"
	"testing"
	"unicode"
)

// TestContainsSpace: the ASCII fast path answers as ContainsFunc with
// unicode.IsSpace, for every byte value alone, after an ASCII prefix and
// before it, and for Unicode white space after a non-ASCII rune.
func TestContainsSpace(t *testing.T) {
	var cases []string
	for c := range 256 {
		b := string([]byte{byte(c)})
		cases = append(cases, b, "arm_abc"+b, b+"arm_abc", "arm_"+b+"_x")
	}
	cases = append(cases, "", "arm_é_x", "arm_é\u00a0", "arm_\u3000", "arm_\u0085", "\u00a0", "é", "日本\u2028", "\xff\xfe ", "\xffa")
	for _, s := range cases {
		if got, want := containsSpace(s), strings.ContainsFunc(s, unicode.IsSpace); got != want {
			t.Errorf("containsSpace(%q) = %v, want %v", s, got, want)
		}
	}
}
