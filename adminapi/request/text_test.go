package request

import (
	"strings"
	"testing"
	"time"
)

// TestTextHonest: names, reasons and display names must show as what is
// stored. Invalid UTF-8 in the raw body is 400 before JSON decoding could
// replace it with U+FFFD, and so is an escaped lone surrogate; Unicode
// format characters (zero-width, bidirectional controls) are 400 in every
// text field, whichever API or the command line sends them.
func TestTextHonest(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name, body, msg string
	}{
		{"raw invalid UTF-8", "{\"name\":\"a\xff\xfeb\"}", "not valid UTF-8 (at byte 10)"},
		{"raw invalid UTF-8 in an unknown field", "{\"x\xff\":1}", "not valid UTF-8"},
		{"overlong encoding", "{\"name\":\"\xc0\xaf\"}", "not valid UTF-8"},
		{"encoded surrogate", "{\"name\":\"\xed\xa0\x80\"}", "not valid UTF-8"},
		{"escaped lone high surrogate", `{"name":"a\ud800b"}`, "lone UTF-16 surrogate"},
		{"escaped lone low surrogate", `{"name":"a\udc00"}`, "lone UTF-16 surrogate"},
		{"escaped high surrogate at the end", `{"name":"\ud83d"}`, "lone UTF-16 surrogate"},
		{"escaped high then not low", `{"name":"\ud83d\u0041"}`, "lone UTF-16 surrogate"},
		{"right-to-left override", `{"name":"report\u202egpj.exe"}`, "U+202E"},
		{"right-to-left override raw", "{\"name\":\"report\u202egpj.exe\"}", "U+202E"},
		{"zero-width space", `{"name":"c\u200bi"}`, "U+200B"},
		{"zero-width joiner", `{"name":"a\u200db"}`, "U+200D"},
		{"byte order mark", `{"name":"\ufeffci"}`, "U+FEFF"},
		{"first strong isolate", `{"name":"a\u2068b"}`, "U+2068"},
		{"line separator", `{"name":"a\u2028b"}`, "U+2028"},
		{"tag character", `{"name":"a\udb40\udc41"}`, "U+E0041"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c CreateToken
			err := Decode(strings.NewReader(tt.body), &c)
			if err == nil {
				_, err = c.Token(now, testLimits)
			}
			wantError(t, err, 400, tt.msg)
		})
	}
	for _, ok := range []string{
		`{"name":"emoji \ud83d\ude00"}`, "{\"name\":\"emoji 😀\"}", `{"name":"quote \" and \\ backslash \\u202e"}`,
		`{"name":"Zoë's café, 東京"}`, `{"name":"שלום"}`,
	} {
		var c CreateToken
		if err := Decode(strings.NewReader(ok), &c); err != nil {
			t.Errorf("%s: %v", ok, err)
		} else if _, err := c.Token(now, testLimits); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	// The other text fields.
	for name, err := range map[string]error{
		"display name": func() error { _, err := User{DisplayName: str("Mallory\u202e")}.Patch(); return err }(),
		"email":        func() error { _, err := User{Email: str("a\u200b@example.com")}.Patch(); return err }(),
		"reason":       func() error { _, err := Revoke{Reason: "ok\u200b"}.CleanReason(); return err }(),
		"self create": func() error {
			_, err := SelfCreate{Name: "c\u200bi"}.Token(now, testLimits)
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s with a format character was accepted", name)
			continue
		}
		wantError(t, err, 400, "U+20")
	}
}
