package token_test

import (
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/armgate/armgate/token"
)

// alphabet is the token format's base62 alphabet, written out independently of the
// package under test.
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62x6 writes n in base62, most significant digit first, left-padded
// with '0' to 6 characters, as the token format specifies for the checksum.
func base62x6(n uint32) string {
	var b [6]byte
	for i := range b {
		b[i] = '0'
	}
	for i := 5; n > 0; i-- {
		b[i] = alphabet[n%62]
		n /= 62
	}
	return string(b[:])
}

// withChecksum appends the format's checksum to the 36-character body.
func withChecksum(body string) string {
	return body + base62x6(crc32.ChecksumIEEE([]byte(body)))
}

func TestBase62Helper(t *testing.T) {
	t.Parallel()
	// Hand-checked: 0xCBF43926 (the CRC-32 check value of "123456789") =
	// 3421780262 = 3·62^5 + 45·62^4 + 35·62^3 + 27·62^2 + 22·62 + 14
	// -> digits 3 j Z R M E.
	if got := crc32.ChecksumIEEE([]byte("123456789")); got != 0xCBF43926 {
		t.Fatalf("crc32(123456789) = %#x", got)
	}
	for _, tc := range []struct {
		n    uint32
		want string
	}{
		{0, "000000"},
		{61, "00000z"},
		{62, "000010"},
		{0xCBF43926, "3jZRME"},
		{0xFFFFFFFF, "4gfFC3"},
	} {
		if got := base62x6(tc.n); got != tc.want {
			t.Errorf("base62x6(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestKnownVectors(t *testing.T) {
	t.Parallel()
	// Computed outside Go (Python zlib.crc32) and checked by hand as above.
	for _, tc := range []struct{ tok string }{
		{"arm_000000000000000000000000000000001zGUWI"}, // crc 0x6c90a97a
		{"arm_0123456789ABCDEFGHIJKLMNOPQRSTUV2drOfJ"}, // crc 0x9051a1e9
	} {
		if err := token.Check(tc.tok); err != nil {
			t.Errorf("Check(%q) = %v, want nil", tc.tok, err)
		}
		if got := withChecksum(tc.tok[:36]); got != tc.tok {
			t.Errorf("independent checksum of %q = %q", tc.tok[:36], got)
		}
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		tok, err := token.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 42 || token.Len != 42 {
			t.Fatalf("len(%q) = %d, token.Len = %d, want 42", tok, len(tok), token.Len)
		}
		if !strings.HasPrefix(tok, "arm_") || token.Prefix != "arm_" {
			t.Fatalf("%q lacks the arm_ prefix", tok)
		}
		for i := 4; i < len(tok); i++ {
			if !strings.ContainsRune(alphabet, rune(tok[i])) {
				t.Fatalf("%q: byte %d (%q) is not base62", tok, i, tok[i])
			}
		}
		if err := token.Check(tok); err != nil {
			t.Fatalf("Check(Generate()) = %v for %q", err, tok)
		}
		if want := withChecksum(tok[:36]); tok != want {
			t.Fatalf("checksum of %q differs from the independent computation %q", tok, want)
		}
		if seen[tok] {
			t.Fatalf("Generate repeated %q", tok)
		}
		seen[tok] = true
	}
}

// TestGenerateUniform checks that the random part is roughly uniform over
// the 62 characters with a chi-square test (61 degrees of freedom: mean 61,
// standard deviation about 11). The bound is loose, p < 1e-9 for a fair
// generator; modulo bias (8 characters 25% more likely) or a missing
// character exceeds it by orders of magnitude.
func TestGenerateUniform(t *testing.T) {
	t.Parallel()
	const tokens = 20000
	var counts [256]int
	for range tokens {
		tok, err := token.Generate()
		if err != nil {
			t.Fatal(err)
		}
		for i := 4; i < 36; i++ {
			counts[tok[i]]++
		}
	}
	n := float64(tokens * 32)
	exp := n / 62
	chi := 0.0
	for i := range 256 {
		if !strings.ContainsRune(alphabet, rune(i)) {
			if counts[i] != 0 {
				t.Fatalf("non-alphabet byte %#x drawn %d times", i, counts[i])
			}
			continue
		}
		d := float64(counts[i]) - exp
		chi += d * d / exp
	}
	t.Logf("chi-square over %d characters, 61 df: %.1f", int(n), chi)
	if chi > 170 {
		t.Errorf("random part is not uniform: chi-square %.1f > 170 (61 df); counts %v", chi, counts['0':'z'+1])
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	good, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"good", good, nil},
		{"empty", "", token.ErrMalformed},
		{"short by one", good[:41], token.ErrMalformed},
		{"long by one", good + "0", token.ErrMalformed},
		{"prefix only", "arm_", token.ErrMalformed},
		{"upper-case prefix", "ARM_" + good[4:], token.ErrMalformed},
		{"other prefix", "ghp_" + good[4:], token.ErrMalformed},
		{"dash in random part", good[:10] + "-" + good[11:], token.ErrMalformed},
		{"underscore in checksum", good[:40] + "_" + good[41:], token.ErrMalformed},
		{"space", good[:20] + " " + good[21:], token.ErrMalformed},
		{"NUL", good[:20] + "\x00" + good[21:], token.ErrMalformed},
		{"high byte", good[:20] + "\xff" + good[21:], token.ErrMalformed},
		{"multibyte same rune count", good[:39] + "é" + good[41:], token.ErrMalformed},
		{"checksum of another body", good[:36] + withChecksum(strings.Repeat("0", 36))[36:], token.ErrChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := token.Check(tc.tok); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("Check(%q) = %v, want %v", tc.tok, got, tc.want)
			}
		})
	}
}

// TestCheckSingleCharacterChange replaces every character of a valid token by
// every other base62 character: no such typo may pass.
func TestCheckSingleCharacterChange(t *testing.T) {
	t.Parallel()
	for range 5 {
		good, err := token.Generate()
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(good) {
			for j := range len(alphabet) {
				c := alphabet[j]
				if c == good[i] {
					continue
				}
				bad := good[:i] + string(c) + good[i+1:]
				err := token.Check(bad)
				switch {
				case err == nil:
					t.Fatalf("Check accepted %q (position %d of %q changed)", bad, i, good)
				case i < 4 && !errors.Is(err, token.ErrMalformed):
					t.Fatalf("prefix change %q: %v, want ErrMalformed", bad, err)
				case i >= 4 && !errors.Is(err, token.ErrChecksum):
					t.Fatalf("body change %q: %v, want ErrChecksum", bad, err)
				}
			}
		}
	}
}

func TestHint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"arm_AbCdEfGh0123456789abcdefghijklmnopqrst", "arm_AbCd…"},
		{"arm_0123456789ABCDEFGHIJKLMNOPQRSTUV2drOfJ", "arm_0123…"},
		{"short", "short…"},
	} {
		if got := token.Hint(tc.in); got != tc.want {
			t.Errorf("Hint(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	tok, _ := token.Generate()
	if got := token.Hint(tok); got != tok[:8]+"…" || strings.Contains(got, tok[8:]) {
		t.Errorf("Hint(%q) = %q", tok, got)
	}
}

func TestSum(t *testing.T) {
	t.Parallel()
	tok, _ := token.Generate()
	for _, s := range []string{tok, tok[:41], tok + "x", "", "arm_0123456789ABCDEFGHIJKLMNOPQRSTUV2drOfJ"} {
		if got, want := token.Sum(s), sha256.Sum256([]byte(s)); got != token.Hash(want) {
			t.Errorf("Sum(%q) = %x, want %x", s, got, want)
		}
	}
	other, _ := token.Generate()
	if token.Sum(tok) == token.Sum(other) {
		t.Error("two tokens share a hash")
	}
}

func TestCheckAndSumDoNotAllocate(t *testing.T) {
	tok, _ := token.Generate()
	n := testing.AllocsPerRun(100, func() {
		if token.Check(tok) != nil {
			t.Fatal("check failed")
		}
		_ = token.Sum(tok)
	})
	if n != 0 {
		t.Errorf("Check+Sum allocate %v times per call, want 0", n)
	}
}

func BenchmarkCheckAndSum(b *testing.B) {
	tok, err := token.Generate()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var h token.Hash
	for b.Loop() {
		if token.Check(tok) != nil {
			b.Fatal("check failed")
		}
		h = token.Sum(tok)
	}
	_ = h
}
