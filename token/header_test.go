package token_test

import (
	"strings"
	"testing"
	"unicode"

	"github.com/armgate/armgate/token"
)

const tok42 = "arm_0123456789ABCDEFGHIJKLMNOPQRSTUV2drOfJ"

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		values  []string
		wantTok string
		want    token.HeaderResult
	}{
		// No credentials: 401 without an error code.
		{"missing (nil)", nil, "", token.HeaderMissing},
		{"missing (empty slice)", []string{}, "", token.HeaderMissing},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", token.HeaderMissing},
		{"basic bare", []string{"Basic"}, "", token.HeaderMissing},
		{"scheme prefix of bearer", []string{"Bear " + tok42}, "", token.HeaderMissing},
		{"scheme glued to token", []string{"Bearer" + tok42}, "", token.HeaderMissing},
		{"token without scheme", []string{tok42}, "", token.HeaderMissing},
		{"bearer after other scheme", []string{"Token Bearer " + tok42}, "", token.HeaderMissing},

		// One usable bearer token.
		{"canonical", []string{"Bearer " + tok42}, tok42, token.HeaderOK},
		{"lower case", []string{"bearer " + tok42}, tok42, token.HeaderOK},
		{"upper case", []string{"BEARER " + tok42}, tok42, token.HeaderOK},
		{"mixed case", []string{"bEaReR " + tok42}, tok42, token.HeaderOK},
		{"tab separator", []string{"Bearer\t" + tok42}, tok42, token.HeaderOK},
		{"several spaces", []string{"Bearer    " + tok42}, tok42, token.HeaderOK},
		{"spaces and tabs", []string{"Bearer \t \t" + tok42}, tok42, token.HeaderOK},
		{"surrounding whitespace", []string{" \t Bearer " + tok42 + " \t "}, tok42, token.HeaderOK},
		{"trailing space", []string{"Bearer " + tok42 + " "}, tok42, token.HeaderOK},
		// Shape is Check's business, not the parser's.
		{"any non-blank token", []string{"Bearer abc"}, "abc", token.HeaderOK},

		// Malformed bearer header: 400 invalid_request.
		{"empty value", []string{""}, "", token.HeaderMalformed},
		{"whitespace-only value", []string{" \t  "}, "", token.HeaderMalformed},
		{"bare Bearer", []string{"Bearer"}, "", token.HeaderMalformed},
		{"bare bearer lower", []string{"bearer"}, "", token.HeaderMalformed},
		{"Bearer and spaces", []string{"Bearer   "}, "", token.HeaderMalformed},
		{"Bearer and tab", []string{"Bearer\t"}, "", token.HeaderMalformed},
		{"inner space", []string{"Bearer " + tok42[:20] + " " + tok42[20:]}, "", token.HeaderMalformed},
		{"inner tab", []string{"Bearer " + tok42[:20] + "\t" + tok42[20:]}, "", token.HeaderMalformed},
		{"two tokens", []string{"Bearer " + tok42 + " " + tok42}, "", token.HeaderMalformed},
		{"inner newline", []string{"Bearer abc\ndef"}, "", token.HeaderMalformed},
		{"inner CR", []string{"Bearer abc\rdef"}, "", token.HeaderMalformed},
		{"inner vertical tab", []string{"Bearer abc\vdef"}, "", token.HeaderMalformed},
		{"inner form feed", []string{"Bearer abc\fdef"}, "", token.HeaderMalformed},
		{"trailing newline", []string{"Bearer " + tok42 + "\n"}, "", token.HeaderMalformed},
		{"two header values", []string{"Bearer " + tok42, "Bearer " + tok42}, "", token.HeaderMalformed},
		{"two values, one basic", []string{"Basic x", "Bearer " + tok42}, "", token.HeaderMalformed},
		{"two empty values", []string{"", ""}, "", token.HeaderMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res := token.ParseAuthorization(tc.values)
			if got != tc.wantTok || res != tc.want {
				t.Errorf("ParseAuthorization(%q) = %q, %v; want %q, %v", tc.values, got, res, tc.wantTok, tc.want)
			}
		})
	}
}

func TestParseAuthorizationDoesNotAllocate(t *testing.T) {
	values := []string{"  bearer\t" + tok42 + " "}
	n := testing.AllocsPerRun(100, func() {
		if _, res := token.ParseAuthorization(values); res != token.HeaderOK {
			t.Fatal("not ok")
		}
	})
	if n != 0 {
		t.Errorf("ParseAuthorization allocates %v times per call, want 0", n)
	}
}

// FuzzParseAuthorization: no panic; HeaderOK means one non-empty token
// without whitespace that follows a case-insensitive "Bearer" in the single
// header value; the result is deterministic.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"", " ", "\t", "Bearer", "Bearer ", "bearer\t\t" + tok42, "BEARER " + tok42 + " ",
		"Basic dXNlcjpwYXNz", "Bearer a b", "Bearer\u00a0" + tok42, "Bearer " + tok42 + "\u00a0x",
		"Bearer \x00", "Bearer\r\n" + tok42, " Bearer  x ", "Bearerx", "\xff\xfe", "Bearer \u3000x",
	} {
		f.Add(s, "", uint8(1))
		f.Add(s, "Bearer "+tok42, uint8(2))
	}
	f.Add("", "", uint8(0))
	f.Fuzz(func(t *testing.T, a, b string, n uint8) {
		var values []string
		switch n % 3 {
		case 1:
			values = []string{a}
		case 2:
			values = []string{a, b}
		}
		tok, res := token.ParseAuthorization(values)
		tok2, res2 := token.ParseAuthorization(values)
		if tok != tok2 || res != res2 {
			t.Fatalf("not deterministic: %q,%v then %q,%v", tok, res, tok2, res2)
		}
		switch res {
		case token.HeaderOK:
			if len(values) != 1 {
				t.Fatalf("HeaderOK for %d values", len(values))
			}
			if tok == "" {
				t.Fatal("HeaderOK with an empty token")
			}
			if strings.ContainsFunc(tok, unicode.IsSpace) {
				t.Fatalf("HeaderOK with whitespace in token %q", tok)
			}
			v := strings.Trim(values[0], " \t")
			if len(v) < 7 || !strings.EqualFold(v[:6], "bearer") || !strings.HasSuffix(v, tok) {
				t.Fatalf("token %q does not follow a bearer scheme in %q", tok, values[0])
			}
			if mid := v[6 : len(v)-len(tok)]; mid == "" || strings.Trim(mid, " \t") != "" {
				t.Fatalf("scheme and token in %q separated by %q", values[0], mid)
			}
		case token.HeaderMissing, token.HeaderMalformed:
			if tok != "" {
				t.Fatalf("result %v with token %q", res, tok)
			}
			if len(values) > 1 && res != token.HeaderMalformed {
				t.Fatalf("%d values gave %v, want HeaderMalformed", len(values), res)
			}
			if len(values) == 0 && res != token.HeaderMissing {
				t.Fatalf("no values gave %v", res)
			}
		default:
			t.Fatalf("unknown result %v", res)
		}
	})
}
