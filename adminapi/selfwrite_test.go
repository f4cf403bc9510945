package adminapi

import (
	"net/http"
	"testing"
	"time"

	"github.com/armgate/armgate/limiter"
)

// TestSelfWriteLimit: each user's state-changing calls are limited; over
// the limit 429 too_many_requests with Retry-After and nothing changes,
// while reads still answer; cross-site calls are refused before they are
// counted, so another site cannot spend a user's budget.
func TestSelfWriteLimit(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := NewSelf(SelfOptions{Store: e.store, Invalidate: e.invalidate, Limits: testLimits,
		User:       func(r *http.Request) string { return r.Header.Get("X-Test-User") },
		WriteLimit: limiter.NewNames(limiter.Config{Max: 3, Window: time.Hour}, nil)})
	e.user(t, "alice")
	e.user(t, "bob")
	mine, _ := e.token(t, "alice", "mine")
	revoke := "/tokens/" + mine.ID + "/revoke"
	for range 5 {
		if rec := selfDo(t, h, "alice", "POST", revoke, "", map[string]string{"Origin": "https://evil.example"}, nil); rec.Code != 403 {
			t.Fatalf("cross-site revoke: %d %s", rec.Code, rec.Body)
		}
	}
	for i := range 3 {
		if rec := selfDo(t, h, "alice", "POST", revoke, "", nil, nil); rec.Code != 200 {
			t.Fatalf("write %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	tokens, audits := e.rows(t)
	var eb ErrorBody
	rec := selfDo(t, h, "alice", "POST", "/tokens", `{"name":"fourth"}`, nil, &eb)
	if rec.Code != 429 || eb.Error != "too_many_requests" || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("4th write: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if tk, au := e.rows(t); tk != tokens || au != audits {
		t.Errorf("a refused write changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	if rec := selfDo(t, h, "alice", "GET", "/tokens", "", nil, nil); rec.Code != 200 {
		t.Errorf("read over the write limit: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "GET", "/tokens/"+mine.ID, "", nil, nil); rec.Code != 200 {
		t.Errorf("read of a token over the write limit: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "bob", "POST", "/tokens", `{"name":"bobs"}`, nil, nil); rec.Code != 201 {
		t.Errorf("bob's write after alice's limit: %d %s", rec.Code, rec.Body)
	}
}
