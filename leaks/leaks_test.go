package leaks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/armgate/armgate/leaks"
	"github.com/armgate/armgate/token"
)

// readDocsPattern returns the regular expression docs/leaks.md gives: its
// line that starts with \barm_.
func readDocsPattern(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/leaks.md")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, `\barm_`) {
			return strings.TrimSpace(line)
		}
	}
	t.Fatal("docs/leaks.md gives no line starting with \\barm_")
	return ""
}

func gen(t *testing.T) string {
	t.Helper()
	s, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseGitHub(t *testing.T) {
	t.Parallel()
	good := gen(t)
	typo := good[:10] + flip(good[10]) + good[11:]
	body := fmt.Sprintf(`[
		{"token":%q,"type":"armgate_api_token","url":"https://github.com/o/r/blob/1/a.env","source":"content","extra":1},
		{"token":%q,"type":"armgate_api_token","url":"https://github.com/o/r/blob/1/b.env\u0000\u202e","source":"commit"},
		{"token":"ghp_16C7e42F292c6912E7710c838347Ae178B4a","type":"github_pat","url":"","source":"issue_comment"}
	]`, good, typo)
	items, err := leaks.ParseGitHub([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 {
		t.Fatalf("%d items", len(items))
	}
	if !items[0].Valid || items[1].Valid || items[2].Valid {
		t.Errorf("valid = %v %v %v, want true false false", items[0].Valid, items[1].Valid, items[2].Valid)
	}
	if items[0].Hash != token.Sum(good) || items[0].Source != "content" || items[0].URL != "https://github.com/o/r/blob/1/a.env" {
		t.Errorf("item 0 = %+v", items[0])
	}
	if items[1].URL != "https://github.com/o/r/blob/1/b.env" {
		t.Errorf("control and format characters kept in the URL: %q", items[1].URL)
	}
	// No item ever shows its token.
	for _, it := range items {
		if s := fmt.Sprintf("%v %+v %s", it, it, it); strings.Contains(s, good) || strings.Contains(s, "ghp_") {
			t.Errorf("an item prints its token: %s", s)
		}
	}
	found := map[token.Hash]bool{token.Sum(good): true, token.Sum(typo): true}
	fb := leaks.GitHubFeedback(items, func(h token.Hash) bool { return found[h] })
	want := []string{leaks.TruePositive, leaks.FalsePositive, leaks.FalsePositive}
	for i, f := range fb {
		if f.Label != want[i] || f.TokenType != items[i].Type || len(f.TokenHash) != 64 {
			t.Errorf("feedback %d = %+v, want label %s", i, f, want[i])
		}
	}
	b, _ := json.Marshal(fb)
	if strings.Contains(string(b), good) || !strings.Contains(string(b), `"token_hash"`) {
		t.Errorf("feedback %s", b)
	}

	for _, bad := range []string{
		``, `{}`, `null`, `"x"`, `[1]`, `[{"type":"x"}]`, `[{"token":5}]`, `[{"token":"a"}] x`, `[{"token":"a"}`, `[{"token":"a"}]]`,
	} {
		if _, err := leaks.ParseGitHub([]byte(bad)); err == nil {
			t.Errorf("ParseGitHub(%q) accepted", bad)
		}
	}
	if items, err := leaks.ParseGitHub([]byte(` [ ] `)); err != nil || len(items) != 0 {
		t.Errorf("empty report = %v, %v", items, err)
	}
	many := "[" + strings.Repeat(`{"token":"x"},`, leaks.MaxTokens) + `{"token":"x"}]`
	if _, err := leaks.ParseGitHub([]byte(many)); !errors.Is(err, leaks.ErrTooMany) {
		t.Errorf("%d tokens = %v, want ErrTooMany", leaks.MaxTokens+1, err)
	}
	full := "[" + strings.Repeat(`{"token":"x"},`, leaks.MaxTokens-1) + `{"token":"x"}]`
	if items, err := leaks.ParseGitHub([]byte(full)); err != nil || len(items) != leaks.MaxTokens {
		t.Errorf("%d tokens = %d, %v", leaks.MaxTokens, len(items), err)
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestParseGitLab(t *testing.T) {
	t.Parallel()
	good := gen(t)
	types := []string{leaks.GitLabTokenType}
	items, err := leaks.ParseGitLab([]byte(fmt.Sprintf(`[{"type":"armgate_api_token","token":%q,"location":"https://gitlab.example.com/g/p/-/blob/1/x"}]`, good)), types)
	if err != nil || len(items) != 1 || !items[0].Valid || items[0].URL != "https://gitlab.example.com/g/p/-/blob/1/x" {
		t.Fatalf("ParseGitLab = %+v, %v", items, err)
	}
	_, err = leaks.ParseGitLab([]byte(fmt.Sprintf(`[{"type":"aws_key","token":%q}]`, good)), types)
	if err == nil || strings.Contains(err.Error(), good) {
		t.Fatalf("unsupported type = %v", err)
	}
}

// TestCleanURL: stored URLs are valid UTF-8 without control or format
// characters, and bounded.
func TestCleanURL(t *testing.T) {
	t.Parallel()
	long := "https://x/" + strings.Repeat("é", leaks.MaxURLLen)
	for in, want := range map[string]string{
		"https://a/b":             "https://a/b",
		" https://a/b\n":          "https://a/b",
		"https://a/\u200bb\x7f":   "https://a/b",
		"https://a/\xffb":         "https://a/\uFFFDb",
		"javascript:alert(1)\r\n": "javascript:alert(1)",
	} {
		if got := leaks.CleanURL(in); got != want {
			t.Errorf("CleanURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := leaks.CleanURL(long); len(got) > leaks.MaxURLLen || !strings.HasPrefix(got, "https://x/é") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("long URL cut to %d bytes, broken: %v", len(got), strings.ContainsRune(got, '\uFFFD'))
	}
}

// tokenPattern is the regular expression docs/leaks.md gives secret
// scanners; keep the two equal.
const tokenPattern = `\barm_[0-9A-Za-z]{38}\b`

// TestTokenPattern: the documented pattern finds every generated token, in
// the contexts where tokens get pasted, and nothing that is not one.
func TestTokenPattern(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(tokenPattern)
	docs := readDocsPattern(t)
	if docs != tokenPattern {
		t.Fatalf("docs/leaks.md gives %q, the test checks %q", docs, tokenPattern)
	}
	for range 2000 {
		tok := gen(t)
		for _, ctx := range []string{"%s", "TOKEN=%s\n", `"authorization": "Bearer %s"`, "export ARM='%s';", "`%s`", "(%s)", "url?token=%s&x=1"} {
			s := fmt.Sprintf(ctx, tok)
			if m := re.FindAllString(s, -1); len(m) != 1 || m[0] != tok {
				t.Fatalf("pattern finds %q in %q", m, s)
			}
		}
	}
	tok := gen(t)
	for _, s := range []string{
		tok[:len(tok)-1],                       // 41 characters
		tok + "a",                              // 43 characters
		"x" + tok,                              // glued to a word before
		"ARM_" + tok[4:],                       // wrong case
		"arm-" + tok[4:],                       // wrong separator
		"arm_" + strings.Repeat("A", 37) + "-", // short random part
		"arm_" + strings.Repeat("é", 19),       // not base62
		"xarm_" + strings.Repeat("A", 38),
		"arm_" + strings.Repeat("A", 38) + "_", // "_" is a word character
	} {
		if re.MatchString(s) {
			t.Errorf("pattern matches near-miss %q", s)
		}
	}
}

func FuzzParseGitHub(f *testing.F) {
	f.Add([]byte(`[{"token":"arm_x","type":"t","url":"u","source":"content"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"token":"a"},{"token":"b","url":"\u0000"}]`))
	f.Add([]byte(`{"token":"a"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := leaks.ParseGitHub(b)
		if err != nil {
			return
		}
		if len(items) > leaks.MaxTokens {
			t.Fatalf("%d items", len(items))
		}
		for _, it := range items {
			if len(it.URL) > leaks.MaxURLLen || strings.ContainsFunc(it.URL, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("URL %q not cleaned", it.URL)
			}
		}
		fb := leaks.GitHubFeedback(items, func(token.Hash) bool { return true })
		if len(fb) != len(items) {
			t.Fatalf("%d feedback entries for %d items", len(fb), len(items))
		}
		if _, err := json.Marshal(fb); err != nil {
			t.Fatal(err)
		}
	})
}
