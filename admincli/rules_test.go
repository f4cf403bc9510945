package admincli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/admincli"
)

const ruleAdminKey = "rules-test-admin-key-0123456789abcdef"

// api is the admin API on the env's store, with the runner's limits and
// clock: call sends one request with body as JSON and returns the status
// and, for a refusal, the error body.
func (e *env) api(t *testing.T) func(method, target string, body any) (int, adminapi.ErrorBody) {
	h := adminapi.New(adminapi.Options{Store: e.r.Store, AdminKeys: []string{ruleAdminKey}, Limits: e.r.Limits, Now: e.r.Now})
	return func(method, target string, body any) (int, adminapi.ErrorBody) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(method, target, strings.NewReader(string(b)))
		r.Header.Set("Authorization", "Bearer "+ruleAdminKey)
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var eb adminapi.ErrorBody
		if rec.Code >= 400 {
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
			}
		}
		return rec.Code, eb
	}
}

// newToken creates a token for user from the command line and returns its
// id.
func (e *env) newToken(t *testing.T, user, name string) string {
	t.Helper()
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, user, request.CreateToken{Name: name})
	})
	return e.scalar(t, "SELECT id::text FROM armgate.tokens WHERE user_id = $1 AND name = $2", user, name).(string)
}

// TestCLIAndAPIRefuseAlike: token create and rotate from the command line
// and through the admin API refuse the same expiry and grace values with
// the same message, the command line's naming its flags and quoting the
// values as typed; the bounds themselves are accepted by both.
func TestCLIAndAPIRefuseAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // token_lifetime 24h, max_token_lifetime 48h
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	e.r.Now = func() time.Time { return now }
	api := e.api(t)

	cases := []struct {
		name                     string
		grace, expiresIn, expiry *string // expiry: expires_at
		rotateOnly               bool
		api, cli                 string
	}{
		{name: "empty expires_in", expiresIn: ptr(""),
			api: "expires_in may not be empty (omit it for the default lifetime)",
			cli: "--expires-in may not be empty (omit it for the default lifetime)"},
		{name: "empty expires_at", expiry: ptr(""),
			api: "expires_at may not be empty (omit it for the default lifetime)",
			cli: "--expires-at may not be empty (omit it for the default lifetime)"},
		{name: "not a duration", expiresIn: ptr("soon"),
			api: `expires_in: "soon" is not a duration such as "720h"`,
			cli: `--expires-in: "soon" is not a duration such as "720h"`},
		{name: "typed value named like a field", expiresIn: ptr("grace expires_at"),
			api: `expires_in: "grace expires_at" is not a duration such as "720h"`,
			cli: `--expires-in: "grace expires_at" is not a duration such as "720h"`},
		{name: "negative lifetime", expiresIn: ptr("-1h"),
			api: "expires_in must be positive", cli: "--expires-in must be positive"},
		{name: "zero lifetime", expiresIn: ptr("0s"),
			api: "expires_in must be positive", cli: "--expires-in must be positive"},
		{name: "over the maximum, as typed", expiresIn: ptr("2880m1s"),
			api: "expires_in 2880m1s exceeds the maximum token lifetime 48h",
			cli: "--expires-in 2880m1s exceeds the maximum token lifetime 48h"},
		{name: "both", expiresIn: ptr("1h"), expiry: ptr("2026-12-07T00:00:00Z"),
			api: "give expires_in or expires_at, not both", cli: "give --expires-in or --expires-at, not both"},
		{name: "not a time", expiry: ptr("tomorrow"),
			api: `expires_at: "tomorrow" is not an RFC 3339 time such as "2027-01-31T00:00:00Z"`,
			cli: `--expires-at: "tomorrow" is not an RFC 3339 time such as "2027-01-31T00:00:00Z"`},
		{name: "in the past", expiry: ptr("2026-12-06T12:00:00Z"),
			api: "expires_at is in the past", cli: "--expires-at is in the past"},
		{name: "too far", expiry: ptr("2026-12-08T12:00:01Z"),
			api: "expires_at is more than the maximum token lifetime 48h away",
			cli: "--expires-at is more than the maximum token lifetime 48h away"},
		{name: "grace over the maximum", grace: ptr("168h1s"), rotateOnly: true,
			api: `grace must be from 0s to 168h, got "168h1s"`, cli: `--grace must be from 0s to 168h, got "168h1s"`},
		{name: "negative grace", grace: ptr("-1s"), rotateOnly: true,
			api: `grace must be from 0s to 168h, got "-1s"`, cli: `--grace must be from 0s to 168h, got "-1s"`},
		{name: "grace not a duration", grace: ptr("a day"), rotateOnly: true,
			api: `grace must be a Go duration such as "24h" or "0s", got "a day"`,
			cli: `--grace must be a Go duration such as "24h" or "0s", got "a day"`},
		{name: "grace named like a field", grace: ptr("expires_in"), rotateOnly: true,
			api: `grace must be a Go duration such as "24h" or "0s", got "expires_in"`,
			cli: `--grace must be a Go duration such as "24h" or "0s", got "expires_in"`},
		{name: "grace with a quote", grace: ptr(`1h" grace "expires_in`), rotateOnly: true,
			api: `grace must be a Go duration such as "24h" or "0s", got "1h\" grace \"expires_in"`,
			cli: `--grace must be a Go duration such as "24h" or "0s", got "1h\" grace \"expires_in"`},
		{name: "empty grace", grace: ptr(""), rotateOnly: true,
			api: `grace must be a Go duration such as "24h" or "0s", got ""`,
			cli: `--grace must be a Go duration such as "24h" or "0s", got ""`},
		{name: "good grace, bad lifetime", grace: ptr("1h"), expiresIn: ptr("49h"), rotateOnly: true,
			api: "expires_in 49h exceeds the maximum token lifetime 48h",
			cli: "--expires-in 49h exceeds the maximum token lifetime 48h"},
	}

	apiTok, cliTok := e.newToken(t, "rita", "api"), e.newToken(t, "rita", "cli")
	e.out.Reset()
	before := e.counts(t)
	for _, c := range cases {
		rot := request.Rotate{Grace: c.grace, ExpiresIn: c.expiresIn, ExpiresAt: c.expiry}
		status, body := api("POST", "/tokens/"+apiTok+"/rotate", rot)
		calls := map[string]error{"rotate": e.r.TokenRotate(t.Context(), cliTok, rot)}
		statuses := map[string]int{"rotate": status}
		bodies := map[string]adminapi.ErrorBody{"rotate": body}
		if !c.rotateOnly {
			create := request.CreateToken{Name: "refused", ExpiresIn: c.expiresIn, ExpiresAt: c.expiry}
			statuses["create"], bodies["create"] = api("POST", "/users/victor/tokens", create)
			calls["create"] = e.r.TokenCreate(t.Context(), "victor", create)
		}
		for call, err := range calls {
			if b := bodies[call]; statuses[call] != http.StatusBadRequest || b.Error != "invalid_request" || b.Message != c.api {
				t.Errorf("%s, %s: API %d %+v, want 400 invalid_request %q", call, c.name, statuses[call], b, c.api)
			}
			if code, msg := admincli.ExitCode(err), admincli.Message(err); code != 2 || msg != c.cli {
				t.Errorf("%s, %s: CLI exit %d %q, want 2 %q", call, c.name, code, msg, c.cli)
			}
		}
	}
	if after := e.counts(t); after != before || e.out.Len() != 0 {
		t.Errorf("refusals changed users, tokens, audit events: %v before, %v after; printed %q", before, after, e.out.String())
	}

	// The bounds themselves are accepted by both: 48h of lifetime (as a
	// duration and as a time), 168h and 0s of grace.
	for i, rot := range []request.Rotate{
		{Grace: ptr("168h"), ExpiresIn: ptr("48h")},
		{Grace: ptr("0s"), ExpiresAt: ptr("2026-12-08T12:00:00Z")},
	} {
		user := fmt.Sprintf("bound%d", i)
		apiTok, cliTok := e.newToken(t, user, "api"), e.newToken(t, user, "cli")
		if status, body := api("POST", "/tokens/"+apiTok+"/rotate", rot); status != http.StatusCreated {
			t.Errorf("API rotate %d: %d %+v", i, status, body)
		}
		if err := e.r.TokenRotate(t.Context(), cliTok, rot); err != nil {
			t.Errorf("CLI rotate %d: %v", i, err)
		}
		create := request.CreateToken{Name: "bound", ExpiresIn: rot.ExpiresIn, ExpiresAt: rot.ExpiresAt}
		if err := e.r.UserPut(t.Context(), user+"2", nil, nil); err != nil {
			t.Fatal(err)
		}
		if status, body := api("POST", "/users/"+user+"2/tokens", create); status != http.StatusCreated {
			t.Errorf("API create %d: %d %+v", i, status, body)
		}
		if err := e.r.TokenCreate(t.Context(), user+"3", create); err != nil {
			t.Errorf("CLI create %d: %v", i, err)
		}
	}
}
