package ghkeys_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/leakstest"
	"github.com/armgate/armgate/internal/testclock"
	"github.com/armgate/armgate/leaks/ghkeys"
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

// urlSource fetches the keys from url, with an injected clock.
func urlSource(url string, c *testclock.Clock) *ghkeys.KeySource {
	return ghkeys.NewKeySource(func(ctx context.Context) ([]byte, error) {
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
	}, c.Now)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	a := leakstest.NewSigner(t, "key-a")
	other := leakstest.NewSigner(t, "key-a") // same id, another key
	ks := newKeyServer(t, leakstest.KeysDocument(t, a))
	src := ghkeys.URLKeys(ks.srv.URL, nil)
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
		{"no headers", "", "", body, ghkeys.ErrNoSignature, 1, true},
		{"no signature", a.ID, "", body, ghkeys.ErrNoSignature, 1, true},
		{"not base64", a.ID, "%%%", body, ghkeys.ErrBadSignature, 1, true},
		{"another key's signature", a.ID, other.Sign(t, body), body, ghkeys.ErrBadSignature, 1, true},
		{"body changed", a.ID, a.Sign(t, body), append([]byte(" "), body...), ghkeys.ErrBadSignature, 1, true},
		{"garbage DER", a.ID, "MEUCIQ==", body, ghkeys.ErrBadSignature, 1, true},
	} {
		err := src.Verify(ctx, tc.id, tc.sig, tc.body)
		if !errors.Is(err, tc.want) || ghkeys.IsRefusal(err) != tc.wantRefuse {
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
	c := testclock.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
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
	c.Add(30 * time.Second)
	if err := src.Verify(ctx, b.ID, b.Sign(t, body), body); !errors.Is(err, ghkeys.ErrUnknownKey) {
		t.Fatalf("unknown key within a minute of a fetch = %v, want ErrUnknownKey", err)
	}
	for i := range 50 { // a flood of made-up ids
		if err := src.Verify(ctx, fmt.Sprint("made-up-", i), a.Sign(t, body), body); !errors.Is(err, ghkeys.ErrUnknownKey) {
			t.Fatalf("made-up id = %v", err)
		}
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within the minute, want 1", n)
	}
	c.Add(31 * time.Second)
	if err := src.Verify(ctx, b.ID, b.Sign(t, body), body); err != nil {
		t.Fatalf("new key after a minute: %v", err)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// An id unknown also after the refresh: refused, and the next fetch
	// waits a minute again.
	if err := src.Verify(ctx, "key-z", a.Sign(t, body), body); !errors.Is(err, ghkeys.ErrUnknownKey) {
		t.Fatalf("unknown id = %v", err)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (refreshed less than a minute ago)", n)
	}
	c.Add(time.Minute)
	if err := src.Verify(ctx, "key-z", a.Sign(t, body), body); !errors.Is(err, ghkeys.ErrUnknownKey) {
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
	c := testclock.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	var doc []byte = leakstest.KeysDocument(t, a, b)
	var fail bool
	var mu sync.Mutex
	src := ghkeys.NewKeySource(func(context.Context) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, errors.New("key server down")
		}
		return doc, nil
	}, c.Now)
	body := []byte(`[]`)
	ctx := t.Context()
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	c.Add(2 * time.Hour)
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); err != nil {
		t.Fatalf("stale keys with the key server down: %v (want the old keys kept)", err)
	}
	mu.Lock()
	fail, doc = false, leakstest.KeysDocument(t, b)
	mu.Unlock()
	c.Add(2 * time.Hour)
	if err := src.Verify(ctx, a.ID, a.Sign(t, body), body); !errors.Is(err, ghkeys.ErrUnknownKey) {
		t.Fatalf("withdrawn key = %v, want ErrUnknownKey", err)
	}
}

// TestKeysUnavailable: without any keys, a report is not refused but
// unavailable (GitHub retries), and a failed fetch is not retried for a
// minute.
func TestKeysUnavailable(t *testing.T) {
	t.Parallel()
	c := testclock.New(time.Now())
	var fetches atomic.Int32
	src := ghkeys.NewKeySource(func(context.Context) ([]byte, error) {
		fetches.Add(1)
		return []byte(`{"public_keys":[]}`), nil
	}, c.Now)
	a := leakstest.NewSigner(t, "a")
	for range 3 {
		err := src.Verify(t.Context(), a.ID, a.Sign(t, []byte("x")), []byte("x"))
		if err == nil || ghkeys.IsRefusal(err) {
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
	if keys, err := ghkeys.ParseKeys(leakstest.KeysDocument(t, a)); err != nil || keys["a"] == nil {
		t.Fatalf("ParseKeys = %v, %v", keys, err)
	}
	for _, doc := range []string{
		``, `[]`, `{"public_keys":[]}`,
		`{"public_keys":[{"key_identifier":"a","key":"not pem"}]}`,
		`{"public_keys":[{"key":"` + strings.ReplaceAll(a.PEM(t), "\n", `\n`) + `"}]}`,
		// An RSA key: not P-256.
		`{"public_keys":[{"key_identifier":"r","key":"-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END PUBLIC KEY-----\n"}]}`,
	} {
		if _, err := ghkeys.ParseKeys([]byte(doc)); err == nil {
			t.Errorf("ParseKeys(%.40q) accepted", doc)
		}
	}
}
