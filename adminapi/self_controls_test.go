package adminapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// TestSelfControlsLowerOnly: on the self mount a user lowers a quota and
// narrows an allow-list of their own token, and is refused 403 with a
// clear message for anything that raises, clears or widens; another
// user's token is 404; nothing refused is written.
func TestSelfControlsLowerOnly(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := NewSelf(SelfOptions{Store: e.store, Invalidate: e.invalidate, Limits: testLimits,
		DefaultQuota: quota.Limit{Requests: 1000, Window: time.Hour},
		User:         func(r *http.Request) string { return r.Header.Get("X-Test-User") }})
	for _, u := range []string{"ann", "bob"} {
		if _, _, err := e.store.UpsertUser(t.Context(), storage.ActorAdminKey, u, storage.UserPatch{}); err != nil {
			t.Fatal(err)
		}
	}
	tok := e.adminToken(t, "ann", "ci", "api")
	path := "/tokens/" + tok.ID
	patch := func(user, body string, want int) (Token, ErrorBody) {
		t.Helper()
		var got Token
		var eb ErrorBody
		rec := selfDo(t, h, user, http.MethodPatch, path, body, nil, nil)
		if rec.Code != want {
			t.Fatalf("%s PATCH %s: %d %s, want %d", user, body, rec.Code, rec.Body, want)
		}
		serveBody(t, rec, &got, &eb)
		return got, eb
	}
	// No quota of its own: the default (1000/1h) is what may be lowered.
	_, eb := patch("ann", `{"rate_limit":{"requests":2000,"window":"1h"}}`, http.StatusForbidden)
	if eb.Error != "forbidden" || !strings.Contains(eb.Message, "higher than the quota in force, 1000 requests per 1h") {
		t.Errorf("raise over the default: %+v", eb)
	}
	patch("ann", `{"rate_limit":{"requests":100,"window":"1m"}}`, http.StatusForbidden) // 6000/h: a higher rate
	got, _ := patch("ann", `{"rate_limit":{"requests":500,"window":"1h"}}`, http.StatusOK)
	if got.RateLimit == nil || got.RateLimit.Requests != 500 {
		t.Fatalf("lowered: %+v", got.RateLimit)
	}
	got, _ = patch("ann", `{"rate_limit":{"requests":5,"window":"1m"}}`, http.StatusOK) // fewer, 300/h
	if got.RateLimit.Requests != 5 {
		t.Errorf("lowered again: %+v", got.RateLimit)
	}
	patch("ann", `{"rate_limit":{"requests":6,"window":"1m"}}`, http.StatusForbidden)
	if _, eb := patch("ann", `{"rate_limit":null}`, http.StatusForbidden); !strings.Contains(eb.Message, "cannot be removed here") {
		t.Errorf("clear: %+v", eb)
	}

	// Allow-list: anything while there is none, then only narrower.
	patch("ann", `{"allowed_ips":["10.0.0.0/8","2001:db8::/32"]}`, http.StatusOK)
	got, _ = patch("ann", `{"allowed_ips":["10.1.0.0/16","2001:db8:1::1"]}`, http.StatusOK)
	if strings.Join(got.AllowedIPs, " ") != "10.1.0.0/16 2001:db8:1::1/128" {
		t.Errorf("narrowed: %v", got.AllowedIPs)
	}
	for _, body := range []string{
		`{"allowed_ips":["10.0.0.0/8"]}`,              // wider
		`{"allowed_ips":["10.1.0.0/16","192.0.2.1"]}`, // one outside
		`{"allowed_ips":["::ffff:10.1.0.0/112"]}`,     // the same, mapped: allowed below
		`{"allowed_ips":[]}`,
		`{"allowed_ips":null}`,
	} {
		want := http.StatusForbidden
		if strings.Contains(body, "::ffff:") {
			want = http.StatusOK
		}
		if _, eb := patch("ann", body, want); want == http.StatusForbidden && eb.Error != "forbidden" {
			t.Errorf("%s: %+v", body, eb)
		}
	}

	// Another user's token does not exist for bob; bad input is 400.
	patch("bob", `{"rate_limit":{"requests":1,"window":"1h"}}`, http.StatusNotFound)
	patch("ann", `{"rate_limit":{"requests":1,"window":"2d"}}`, http.StatusBadRequest)
	cur, err := e.store.GetToken(t.Context(), tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cur.RateLimit == nil || cur.RateLimit.Requests != 5 || strings.Join(cur.AllowedIPs, " ") != "10.1.0.0/16" {
		t.Errorf("stored: %+v %v", cur.RateLimit, cur.AllowedIPs)
	}
	// Audited as the user's.
	events, err := e.store.Audit(t.Context(), "ann", 50)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range events {
		if ev.Action == "token.update" && ev.Actor == "user:ann" {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d token.update events by user:ann, want 5", n)
	}
	// The store refuses a user's change that comes without the check.
	if _, _, err := e.store.SetTokenControls(t.Context(), storage.ActorUser("ann"), tok.ID, storage.TokenControls{RateLimit: &quota.Limit{}}, nil); err == nil {
		t.Error("store accepted a user's change without the lower-only check")
	}

	// Usage: own token only, days bounded.
	var u Usage
	if rec := selfDo(t, h, "ann", http.MethodGet, path+"/usage?days=7", "", nil, &u); rec.Code != http.StatusOK || len(u.Days) != 7 {
		t.Errorf("own usage: %d %d", rec.Code, len(u.Days))
	}
	if rec := selfDo(t, h, "bob", http.MethodGet, path+"/usage", "", nil, nil); rec.Code != http.StatusNotFound {
		t.Errorf("bob reads ann's usage: %d", rec.Code)
	}
	if rec := selfDo(t, h, "ann", http.MethodGet, path+"/usage?days=100", "", nil, nil); rec.Code != http.StatusBadRequest {
		t.Errorf("days=100: %d", rec.Code)
	}
}

// serveBody decodes a recorded answer into ok or, for an error, eb.
func serveBody(t *testing.T, rec interface{ Result() *http.Response }, ok *Token, eb *ErrorBody) {
	t.Helper()
	res := rec.Result()
	defer res.Body.Close()
	var err error
	if res.StatusCode < 300 {
		err = decodeInto(res, ok)
	} else {
		err = decodeInto(res, eb)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func decodeInto(res *http.Response, v any) error {
	return json.NewDecoder(res.Body).Decode(v)
}
