package leaks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/leakstest"
	"github.com/armgate/armgate/leaks"
	"github.com/armgate/armgate/token"
)

// keyServer serves a keys document in GitHub's shape and counts fetches.
type keyServer struct {
	mu      sync.Mutex
	doc     []byte
	fetches atomic.Int32
	srv     *httptest.Server
}

func newKeyServer(t *testing.T, doc []byte) *keyServer {
	ks := &keyServer{doc: doc}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ks.doc)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) set(doc []byte) {
	ks.mu.Lock()
	ks.doc = doc
	ks.mu.Unlock()
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// urlSource fetches the keys from url, with an injected clock.
func urlSource(url string, c *clock) *leaks.KeySource {
	return leaks.NewKeySource(func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}, c.now)
}

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

func TestVerify(t *testing.T) {
	t.Parallel()
	a := leakstest.NewSigner(t, "key-a")
	other := leakstest.NewSigner(t, "key-a") // same id, another key
	ks := newKeyServer(t, leakstest.KeysDocument(t, a))
	src := leaks.URLKeys(ks.srv.URL, nil)
	body := leakstest.Report(t, "https://github.com/o/r/blob/x/f", "arm_x")
	ctx := t.Context()

	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	for _, tc := range []struct {
		name       string
		id, sig    string
		body       []byte
		want       error
		wantFetch  int32
		wantRefuse bool
	}{
		{"no headers", "", "", body, leaks.ErrNoSignature, 1, true},
		{"no signature", a.ID, "", body, leaks.ErrNoSignature, 1, true},
		{"not base64", a.ID, "%%%", body, leaks.ErrBadSignature, 1, true},
		{"another key's signature", a.ID, other.Sign(t, body), body, leaks.ErrBadSignature, 1, true},
		{"body changed", a.ID, a.Sign(t, body), append([]byte(" "), body...), leaks.ErrBadSignature, 1, true},
		{"garbage DER", a.ID, "MEUCIQ==", body, leaks.ErrBadSignature, 1, true},
	} {
		err := src.Verify(ctx, tc.id, tc.sig, tc.body)
		if !errors.Is(err, tc.want) || leaks.IsRefusal(err) != tc.wantRefuse {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
		if n := ks.fetches.Load(); n != tc.wantFetch {
			t.Errorf("%s: %d fetches, want %d", tc.name, n, tc.wantFetch)
		}
	}
}

// TestUnknownKeyRefresh: an unknown key id fetches the keys again once;
// within a minute of that fetch no other fetch happens, whatever ids come;
// after a minute a new key published meanwhile is found.
func TestUnknownKeyRefresh(t *testing.T) {
	t.Parallel()
	a, b := leakstest.NewSigner(t, "key-a"), leakstest.NewSigner(t, "key-b")
	ks := newKeyServer(t, leakstest.KeysDocument(t, a))
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	src := urlSource(ks.srv.URL, c)
	ctx := t.Context()
	body := []byte(`[]`)

	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the first report, want 1", n)
	}
	// GitHub publishes b. A report signed with b 30 s after the first
	// fetch is refused: the keys were fetched less than a minute ago.
	ks.set(leakstest.KeysDocument(t, a, b))
	c.add(30 * time.Second)
	if err := src.Verify(ctx, b.ID, b.Sign(t, body), body); !errors.Is(err, leaks.ErrUnknownKey) {
		t.Fatalf("unknown key within a minute of a fetch = %v, want ErrUnknownKey", err)
	}
	for i := range 50 { // a flood of made-up ids
		if err := src.Verify(ctx, fmt.Sprint("made-up-", i), a.Sign(t, body), body); !errors.Is(err, leaks.ErrUnknownKey) {
			t.Fatalf("made-up id = %v", err)
		}
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within the minute, want 1", n)
	}
	c.add(31 * time.Second)
	if err := src.Verify(ctx, b.ID, b.Sign(t, body), body); err != nil {
		t.Fatalf("new key after a minute: %v", err)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// An id unknown also after the refresh: refused, and the next fetch
	// waits a minute again.
	if err := src.Verify(ctx, "key-z", a.Sign(t, body), body); !errors.Is(err, leaks.ErrUnknownKey) {
		t.Fatalf("unknown id = %v", err)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (refreshed less than a minute ago)", n)
	}
	c.add(time.Minute)
	if err := src.Verify(ctx, "key-z", a.Sign(t, body), body); !errors.Is(err, leaks.ErrUnknownKey) {
		t.Fatalf("unknown id after refresh = %v", err)
	}
	if n := ks.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 (refreshed once, then refused)", n)
	}
	// Known keys are taken from the cache.
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	if n := ks.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches for a known key, want 3", n)
	}
}

// TestKeysWithdrawn: keys older than an hour are fetched again, so that a
// key GitHub withdrew stops verifying; a failed fetch keeps the old keys.
func TestKeysWithdrawn(t *testing.T) {
	t.Parallel()
	a, b := leakstest.NewSigner(t, "key-a"), leakstest.NewSigner(t, "key-b")
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	var doc []byte = leakstest.KeysDocument(t, a, b)
	var fail bool
	var mu sync.Mutex
	src := leaks.NewKeySource(func(context.Context) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, errors.New("key server down")
		}
		return doc, nil
	}, c.now)
	body := []byte(`[]`)
	ctx := t.Context()
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	c.add(2 * time.Hour)
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatalf("stale keys with the key server down: %v (want the old keys kept)", err)
	}
	mu.Lock()
	fail, doc = false, leakstest.KeysDocument(t, b)
	mu.Unlock()
	c.add(2 * time.Hour)
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); !errors.Is(err, leaks.ErrUnknownKey) {
		t.Fatalf("withdrawn key = %v, want ErrUnknownKey", err)
	}
}

// TestKeysUnavailable: without any keys, a report is not refused but
// unavailable (GitHub retries), and a failed fetch is not retried for a
// minute.
func TestKeysUnavailable(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Now()}
	var fetches atomic.Int32
	src := leaks.NewKeySource(func(context.Context) ([]byte, error) {
		fetches.Add(1)
		return []byte(`{"public_keys":[]}`), nil
	}, c.now)
	a := leakstest.NewSigner(t, "a")
	for range 3 {
		err := src.Verify(t.Context(), a.ID, a.Sign(t, []byte("x")), []byte("x"))
		if err == nil || leaks.IsRefusal(err) {
			t.Fatalf("Verify without keys = %v, want an unavailable error", err)
		}
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches, want 1", fetches.Load())
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	a := leakstest.NewSigner(t, "a")
	if keys, err := leaks.ParseKeys(leakstest.KeysDocument(t, a)); err != nil || keys["a"] == nil {
		t.Fatalf("ParseKeys = %v, %v", keys, err)
	}
	for _, doc := range []string{
		``, `[]`, `{"public_keys":[]}`,
		`{"public_keys":[{"key_identifier":"a","key":"not pem"}]}`,
		`{"public_keys":[{"key":"` + strings.ReplaceAll(a.PEM(t), "\n", `\n`) + `"}]}`,
		// An RSA key: not P-256.
		`{"public_keys":[{"key_identifier":"r","key":"-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END PUBLIC KEY-----\n"}]}`,
	} {
		if _, err := leaks.ParseKeys([]byte(doc)); err == nil {
			t.Errorf("ParseKeys(%.40q) accepted", doc)
		}
	}
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
