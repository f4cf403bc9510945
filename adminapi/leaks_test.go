package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/leakstest"
	"github.com/armgate/armgate/leaks"
	"github.com/armgate/armgate/leaks/ghkeys"
	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// fakeLeakStore records the calls of RevokeLeaked and knows some hashes.
type fakeLeakStore struct {
	mu     sync.Mutex
	known  map[token.Hash]string // hash → token id
	leaked map[token.Hash]bool
	calls  []fakeLeakCall
	err    error
}

type fakeLeakCall struct {
	actor string
	leaks []storage.Leak
}

func (s *fakeLeakStore) RevokeLeaked(_ context.Context, actor string, ls []storage.Leak) (map[token.Hash]storage.LeakOutcome, storage.Invalidation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fakeLeakCall{actor, ls})
	if s.err != nil {
		return nil, storage.Invalidation{}, s.err
	}
	if s.leaked == nil {
		s.leaked = map[token.Hash]bool{}
	}
	out := map[token.Hash]storage.LeakOutcome{}
	var inv storage.Invalidation
	for _, l := range ls {
		id, ok := s.known[l.Hash]
		if _, dup := out[l.Hash]; !ok || dup { // the store dedupes, too
			continue
		}
		out[l.Hash] = storage.LeakOutcome{TokenID: id, Revoked: !s.leaked[l.Hash]}
		if !s.leaked[l.Hash] {
			inv.Hashes = append(inv.Hashes, l.Hash[:])
		}
		s.leaked[l.Hash] = true
	}
	return out, inv, nil
}

func (s *fakeLeakStore) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *fakeLeakStore) lastCall() fakeLeakCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[len(s.calls)-1]
}

func genToken(t testing.TB) string {
	t.Helper()
	s, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// leakEnv is the admin API with leak reports on: GitHub keys served by a
// local server in GitHub's shape, a GitLab token, a failure limiter.
type leakEnv struct {
	h           http.Handler
	store       *fakeLeakStore
	signer      *leakstest.Signer
	keyFetches  *atomic.Int32
	invalidated *atomic.Int32
	counts      map[string]int
	countsMu    sync.Mutex
}

const testGitLabToken = "gitlab-token-for-tests-0123456789abcdef"

func newLeakEnv(t *testing.T) *leakEnv {
	t.Helper()
	e := &leakEnv{
		store:       &fakeLeakStore{known: map[token.Hash]string{}},
		signer:      leakstest.NewSigner(t, "key-1"),
		keyFetches:  new(atomic.Int32),
		invalidated: new(atomic.Int32),
		counts:      map[string]int{},
	}
	doc := leakstest.KeysDocument(t, e.signer)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.keyFetches.Add(1)
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	now := time.Unix(1_800_000_000, 0)
	e.h = New(Options{
		AdminKeys:  []string{testAdminKey},
		Invalidate: func(inv storage.Invalidation) { e.invalidated.Add(int32(len(inv.Hashes))) },
		Limiter:    limiter.New(limiter.Config{Max: 3, Window: time.Minute}, func() time.Time { return now }),
		ClientAddr: func(r *http.Request) (netip.Addr, bool) {
			a, err := netip.ParseAddr(r.Header.Get("X-Test-Client"))
			return a, err == nil
		},
		Leaks: LeakOptions{
			Store:       e.store,
			GitHubKeys:  ghkeys.URLKeys(srv.URL, nil),
			GitLabToken: testGitLabToken,
			Tokens: func(source, label string, n int) {
				e.countsMu.Lock()
				e.counts[source+"/"+label] += n
				e.countsMu.Unlock()
			},
		},
	})
	return e
}

func (e *leakEnv) post(t *testing.T, path string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("POST", path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Test-Client", "192.0.2.1")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

func (e *leakEnv) signed(t *testing.T, body []byte) map[string]string {
	return map[string]string{"Github-Public-Key-Identifier": e.signer.ID, "Github-Public-Key-Signature": e.signer.Sign(t, body)}
}

func TestGitHubLeakReport(t *testing.T) {
	e := newLeakEnv(t)
	existing, unknown := genToken(t), genToken(t)
	typo := existing[:20] + map[bool]string{true: "b", false: "a"}[existing[20] == 'a'] + existing[21:]
	e.store.known[token.Sum(existing)] = "84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d"
	body := leakstest.Report(t, "https://github.com/o/r/blob/1/.env", existing, unknown, typo, "ghp_16C7e42F292c6912E7710c838347Ae178B4a")

	rec := e.post(t, "/leaks/github", body, e.signed(t, body))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var fb []leaks.Feedback
	if err := json.Unmarshal(rec.Body.Bytes(), &fb); err != nil {
		t.Fatal(err)
	}
	want := []string{leaks.TruePositive, leaks.FalsePositive, leaks.FalsePositive, leaks.FalsePositive}
	if len(fb) != len(want) {
		t.Fatalf("feedback %s", rec.Body)
	}
	for i, f := range fb {
		if f.Label != want[i] || f.TokenType != "armgate_api_token" {
			t.Errorf("feedback %d = %+v, want %s", i, f, want[i])
		}
	}
	if strings.Contains(rec.Body.String(), existing) || !strings.Contains(rec.Body.String(), fb[0].TokenHash) {
		t.Errorf("feedback shows a token: %s", rec.Body)
	}
	// Only armgate tokens with a good checksum are looked up.
	c := e.store.lastCall()
	if c.actor != storage.ActorLeakGitHub || len(c.leaks) != 2 ||
		c.leaks[0].Hash != token.Sum(existing) || c.leaks[1].Hash != token.Sum(unknown) ||
		c.leaks[0].URL != "https://github.com/o/r/blob/1/.env" || c.leaks[0].FoundIn != "content" {
		t.Errorf("store call %+v", c)
	}
	if e.invalidated.Load() != 1 {
		t.Errorf("%d hashes invalidated locally, want 1", e.invalidated.Load())
	}
	if e.counts["github/true_positive"] != 1 || e.counts["github/false_positive"] != 3 {
		t.Errorf("counts %v", e.counts)
	}

	// The same report again: same answer, nothing more revoked.
	rec = e.post(t, "/leaks/github", body, e.signed(t, body))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), leaks.TruePositive) || e.invalidated.Load() != 1 {
		t.Errorf("repeated report: %d %s, %d invalidated", rec.Code, rec.Body, e.invalidated.Load())
	}

	// Nothing that could be armgate's: no query at all.
	calls := e.store.callCount()
	body = leakstest.Report(t, "", typo, "arm_short", "ghp_16C7e42F292c6912E7710c838347Ae178B4a")
	rec = e.post(t, "/leaks/github", body, e.signed(t, body))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), leaks.TruePositive) {
		t.Errorf("malformed only: %d %s", rec.Code, rec.Body)
	}
	if e.store.callCount() != calls {
		t.Error("a report without armgate tokens reached the store")
	}
}

func TestGitHubLeakReportRefused(t *testing.T) {
	e := newLeakEnv(t)
	existing := genToken(t)
	e.store.known[token.Sum(existing)] = "id"
	body := leakstest.Report(t, "https://x", existing)
	other := leakstest.NewSigner(t, "key-1")
	stranger := leakstest.NewSigner(t, "key-2")
	for _, tc := range []struct {
		name string
		body []byte
		hdr  map[string]string
	}{
		{"no signature", body, nil},
		{"signature only", body, map[string]string{"Github-Public-Key-Signature": e.signer.Sign(t, body)}},
		{"another key under the same id", body, map[string]string{"Github-Public-Key-Identifier": "key-1", "Github-Public-Key-Signature": other.Sign(t, body)}},
		{"signature of another body", append(bytes.Clone(body), ' '), e.signed(t, body)},
		{"unknown key id", body, map[string]string{"Github-Public-Key-Identifier": stranger.ID, "Github-Public-Key-Signature": stranger.Sign(t, body)}},
	} {
		r := httptest.NewRequest("POST", "/leaks/github", bytes.NewReader(tc.body))
		r.Header.Set("X-Test-Client", "198.51.100."+fmt.Sprint(len(tc.name))) // under the limit
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"unauthorized"`) {
			t.Errorf("%s: %d %s", tc.name, rec.Code, rec.Body)
		}
	}
	if e.store.callCount() != 0 {
		t.Error("a refused report reached the store")
	}
	// The keys were fetched for the first report that named a key id;
	// the unknown id a moment later fetches nothing (at most one fetch a
	// minute: the leaks package tests the refresh after it).
	if n := e.keyFetches.Load(); n != 1 {
		t.Errorf("%d key fetches, want 1", n)
	}
}

// TestGitHubLeakReportLimits: bodies over 1 MiB and reports of more than
// 1 000 tokens are 413; a report of 1 000 tokens is one store call.
func TestGitHubLeakReportLimits(t *testing.T) {
	e := newLeakEnv(t)
	big := []byte("[" + strings.Repeat(" ", leaks.MaxBodyBytes) + "]")
	if rec := e.post(t, "/leaks/github", big, e.signed(t, big)); rec.Code != 413 {
		t.Errorf("body over 1 MiB: %d %s", rec.Code, rec.Body)
	}
	tokens := make([]string, leaks.MaxTokens+1)
	for i := range tokens {
		tokens[i] = genToken(t)
		if i%2 == 0 {
			e.store.known[token.Sum(tokens[i])] = fmt.Sprint("id-", i)
		}
	}
	tooMany := leakstest.Report(t, "https://x", tokens...)
	if rec := e.post(t, "/leaks/github", tooMany, e.signed(t, tooMany)); rec.Code != 413 {
		t.Errorf("%d tokens: %d %s", len(tokens), rec.Code, rec.Body)
	}
	if e.store.callCount() != 0 {
		t.Fatal("a refused report reached the store")
	}
	full := leakstest.Report(t, "https://x", tokens[:leaks.MaxTokens]...)
	rec := e.post(t, "/leaks/github", full, e.signed(t, full))
	if rec.Code != 200 {
		t.Fatalf("%d tokens: %d %s", leaks.MaxTokens, rec.Code, rec.Body)
	}
	var fb []leaks.Feedback
	if err := json.Unmarshal(rec.Body.Bytes(), &fb); err != nil || len(fb) != leaks.MaxTokens {
		t.Fatalf("feedback of %d entries, %v", len(fb), err)
	}
	if e.store.callCount() != 1 || len(e.store.lastCall().leaks) != leaks.MaxTokens {
		t.Errorf("%d store calls, want one with %d tokens", e.store.callCount(), leaks.MaxTokens)
	}
	if e.counts["github/true_positive"] != leaks.MaxTokens/2 {
		t.Errorf("counts %v", e.counts)
	}
}

// TestGitHubLeakReportNotLimited: an address blocked by refused credentials
// still gets its validly signed reports through (never 429).
func TestGitHubLeakReportNotLimited(t *testing.T) {
	e := newLeakEnv(t)
	body := leakstest.Report(t, "https://x", genToken(t))
	for range 5 {
		e.post(t, "/users/u1", nil, nil) // no credential: refused
	}
	if rec := e.post(t, "/leaks/github", body, nil); rec.Code != 429 {
		t.Fatalf("unsigned report from a blocked address: %d, want 429", rec.Code)
	}
	if rec := e.post(t, "/leaks/github", body, e.signed(t, body)); rec.Code != 200 {
		t.Errorf("signed report from a blocked address: %d %s", rec.Code, rec.Body)
	}
}

func TestGitLabLeakReport(t *testing.T) {
	e := newLeakEnv(t)
	existing := genToken(t)
	e.store.known[token.Sum(existing)] = "id"
	for _, auth := range []string{testGitLabToken, "Bearer " + testGitLabToken} {
		r := httptest.NewRequest("GET", "/leaks/gitlab/v1/revocable_token_types", nil)
		r.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"types":["armgate_api_token"]}` {
			t.Errorf("types with %q: %d %s", auth[:6], rec.Code, rec.Body)
		}
	}
	body := []byte(fmt.Sprintf(`[{"type":"armgate_api_token","token":%q,"location":"https://gitlab.example.com/g/p/-/blob/1/x"},
		{"type":"armgate_api_token","token":"arm_bad"}]`, existing))
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer " + testAdminKey, 401}, {testGitLabToken + "x", 401}, {testGitLabToken, 204}} {
		rec := e.post(t, "/leaks/gitlab/v1/revoke_tokens", body, map[string]string{"Authorization": tc.auth})
		if rec.Code != tc.status {
			t.Errorf("revoke_tokens with %q…: %d %s, want %d", tc.auth[:min(len(tc.auth), 6)], rec.Code, rec.Body, tc.status)
		}
	}
	if c := e.store.lastCall(); e.store.callCount() != 1 || c.actor != storage.ActorLeakGitLab || len(c.leaks) != 1 ||
		c.leaks[0].URL != "https://gitlab.example.com/g/p/-/blob/1/x" {
		t.Errorf("store calls %d, last %+v", e.store.callCount(), c)
	}
	bad := []byte(fmt.Sprintf(`[{"type":"aws_access_key","token":%q}]`, existing))
	if rec := e.post(t, "/leaks/gitlab/v1/revoke_tokens", bad, map[string]string{"Authorization": testGitLabToken}); rec.Code != 400 {
		t.Errorf("unsupported type: %d %s", rec.Code, rec.Body)
	}
}

// TestLeakRoutesOff: without configuration the GitHub and GitLab routes are
// 404, and need no admin credential to say so.
func TestLeakRoutesOff(t *testing.T) {
	h := New(Options{AdminKeys: []string{testAdminKey}, Leaks: LeakOptions{Store: &fakeLeakStore{}}})
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/leaks/github", strings.NewReader("[]")),
		httptest.NewRequest("GET", "/leaks/gitlab/v1/revocable_token_types", nil),
		httptest.NewRequest("POST", "/leaks/gitlab/v1/revoke_tokens", strings.NewReader("[]")),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 404 {
			t.Errorf("%s %s: %d", r.Method, r.URL.Path, rec.Code)
		}
	}
}

func TestRevokeLeakedByHand(t *testing.T) {
	e := newLeakEnv(t)
	existing, unknown := genToken(t), genToken(t)
	e.store.known[token.Sum(existing)] = "84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d"
	body := []byte(fmt.Sprintf(`{"tokens":[%q,%q,"hunter2",%q],"url":"https://chat.example.com/p/1"}`, existing, unknown, existing))
	if rec := e.post(t, "/tokens/revoke-leaked", body, nil); rec.Code != 401 {
		t.Fatalf("without credential: %d", rec.Code)
	}
	admin := map[string]string{"Authorization": "Bearer " + testAdminKey}
	rec := e.post(t, "/tokens/revoke-leaked", body, admin)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var res RevokedLeaks
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	want := []string{LeakRevoked, LeakNotFound, LeakMalformed, LeakRevoked}
	if len(res.Results) != 4 || res.Revoked != 1 {
		t.Fatalf("answer %s", rec.Body)
	}
	for i, r := range res.Results {
		if r.Result != want[i] {
			t.Errorf("result %d = %s, want %s", i, r.Result, want[i])
		}
	}
	if res.Results[0].Hint != token.Hint(existing) || res.Results[2].Hint != "" || res.Results[0].TokenID == nil {
		t.Errorf("results %+v", res.Results)
	}
	if s := rec.Body.String(); strings.Contains(s, existing) || strings.Contains(s, "hunter2") {
		t.Errorf("the answer shows a submitted secret: %s", s)
	}
	c := e.store.lastCall()
	if c.actor != storage.ActorLeakAdmin || c.leaks[0].ReportedBy != storage.ActorAdminKey || c.leaks[0].URL != "https://chat.example.com/p/1" {
		t.Errorf("store call %+v", c)
	}
	rec = e.post(t, "/tokens/revoke-leaked", body, admin)
	if !strings.Contains(rec.Body.String(), `"already_leaked"`) {
		t.Errorf("again: %s", rec.Body)
	}
	for _, bad := range []string{`{}`, `{"tokens":[]}`, `{"tokens":"arm_x"}`, `{"tokens":["a"],"url":"a\u0000b"}`, `{"tokens":["a"],"note":"x"}`} {
		if rec := e.post(t, "/tokens/revoke-leaked", []byte(bad), admin); rec.Code != 400 {
			t.Errorf("%s: %d %s", bad, rec.Code, rec.Body)
		}
	}
}
