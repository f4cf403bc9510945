package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/armgate/armgate/limiter"
	"github.com/armgate/armgate/token"
)

// TestAdminFailureLimit: 20 refused credentials from one address block it;
// the 21st call without a valid credential gets 429 with Retry-After, while
// the admin key and an admin-scope token from that address still pass, and
// another address is unaffected.
func TestAdminFailureLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	lim := limiter.New(limiter.Config{Max: 20, Window: time.Minute}, func() time.Time { return now })
	h := New(Options{
		Store: &fakeStore{},
		Verifier: fakeVerifier{
			tokAdmin:   {cred: token.Credential{TokenID: "id-admin", Scopes: []string{"admin"}}, result: token.Active},
			tokAPI:     {cred: token.Credential{TokenID: "id-api", Scopes: []string{"api"}}, result: token.Active},
			tokRevoked: {cred: token.Credential{TokenID: "id-rev", Scopes: []string{"admin"}}, result: token.Revoked},
		},
		AdminKeys: []string{testAdminKey},
		Limiter:   lim,
		ClientAddr: func(r *http.Request) (netip.Addr, bool) {
			a, err := netip.ParseAddr(r.Header.Get("X-Test-Client"))
			return a, err == nil
		},
	})
	call := func(client, auth string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest("GET", "/users/u1", nil)
		r.Header.Set("X-Test-Client", client)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	const attacker, other = "192.0.2.7", "192.0.2.8"
	// Every kind of refusal counts: wrong key, no header, revoked token,
	// a token without the admin scope (403).
	refusals := []struct {
		auth   string
		status int
	}{
		{"Bearer wrong-key-" + testAdminKey, 401},
		{"", 401},
		{"Bearer " + tokRevoked, 401},
		{"Bearer " + tokAPI, 403},
	}
	for i := range 20 {
		rf := refusals[i%len(refusals)]
		if rec := call(attacker, rf.auth); rec.Code != rf.status {
			t.Fatalf("refusal %d (%q): status %d, want %d", i+1, rf.auth, rec.Code, rf.status)
		}
	}
	for _, rf := range refusals {
		rec := call(attacker, rf.auth)
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("blocked %q: status %d, want 429", rf.auth, rec.Code)
		}
		if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Errorf("blocked %q: Retry-After %q, want 1..60 seconds", rf.auth, rec.Header().Get("Retry-After"))
		}
		var body ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "too_many_requests" {
			t.Errorf("blocked %q: body %s, want error too_many_requests", rf.auth, rec.Body)
		}
	}
	for _, tt := range []struct {
		name, client, auth string
		status             int
	}{
		{"admin key from the blocked address", attacker, "Bearer " + testAdminKey, 200},
		{"admin token from the blocked address", attacker, "Bearer " + tokAdmin, 200},
		{"wrong key from another address", other, "Bearer wrong", 401},
		{"admin key from another address", other, "Bearer " + testAdminKey, 200},
	} {
		if rec := call(tt.client, tt.auth); rec.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, rec.Code, tt.status, rec.Body)
		}
	}
	// The block lapses with the window.
	now = now.Add(2 * time.Minute)
	if rec := call(attacker, "Bearer wrong"); rec.Code != 401 {
		t.Errorf("after the window: status %d, want 401", rec.Code)
	}
}

// TestAdminFailureLimitPeerAddr: without ClientAddr, the connection's peer
// is counted.
func TestAdminFailureLimitPeerAddr(t *testing.T) {
	h := New(Options{
		Store:     &fakeStore{},
		Verifier:  fakeVerifier{},
		AdminKeys: []string{testAdminKey},
		Limiter:   limiter.New(limiter.Config{Max: 2, Window: time.Minute}, nil),
	})
	var got []int
	for _, peer := range []string{"198.51.100.1:1000", "198.51.100.1:1001", "198.51.100.1:1002", "198.51.100.2:1000"} {
		r := httptest.NewRequest("GET", "/users/u1", nil)
		r.RemoteAddr = peer
		r.Header.Set("Authorization", "Bearer wrong")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		got = append(got, rec.Code)
	}
	if want := []int{401, 401, 429, 401}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}
