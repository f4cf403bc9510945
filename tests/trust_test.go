package tests

// End-to-end tests of who may change a token: the self-service mount
// cannot undo an administrator's revocation or mint an admin token, logout
// works in any state, revoke-all leaves nothing live behind a concurrent
// rotation, rotation is bounded, and names show as what they are.

import (
	"context"
	"github.com/armgate/armgate/internal/wait"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// TestSelfCannotUndoAdmin is the reviewer's scenario: the admin creates an
// admin-scope token for alice and revokes it; alice, on /me/, can neither
// re-approve it (403) nor rotate it into a fresh admin token (403), and the
// token keeps failing on /admin/users. Her own revocations she lifts; the
// admin's she does not; a leaked token nobody lifts.
func TestSelfCannotUndoAdmin(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: basicAuthSite(t)})
	g.putUser("alice")
	ops := g.newToken("alice", map[string]any{"name": "ops", "scopes": []string{"admin"}, "expires_in": "24h"})
	want(t, g.adminAs(ops.Plain, http.MethodGet, "/users", nil), http.StatusOK, "")
	m := want(t, g.admin(http.MethodPost, "/tokens/"+ops.ID+"/revoke", map[string]any{"reason": "compromised - do not restore"}), http.StatusOK, "")
	if m["revoked_by"] != "admin_key" {
		t.Errorf("revoked_by = %v, want admin_key", m["revoked_by"])
	}
	want(t, g.adminAs(ops.Plain, http.MethodGet, "/users", nil), http.StatusUnauthorized, "unauthorized")
	rows := g.rowCounts()

	m = want(t, g.self("alice", http.MethodPost, "/tokens/"+ops.ID+"/reapprove", "", nil), http.StatusForbidden, "forbidden")
	if msg, _ := m["message"].(string); !strings.Contains(msg, "revoked by an administrator") {
		t.Errorf("re-approve refusal message %q", msg)
	}
	want(t, g.adminAs(ops.Plain, http.MethodGet, "/users", nil), http.StatusUnauthorized, "unauthorized")
	m = want(t, g.self("alice", http.MethodPost, "/tokens/"+ops.ID+"/rotate", `{"grace":"0s","expires_in":"8760h"}`, nil), http.StatusForbidden, "forbidden")
	if msg, _ := m["message"].(string); !strings.Contains(msg, "self-service scopes") {
		t.Errorf("rotate refusal message %q", msg)
	}
	if got := g.rowCounts(); got != rows {
		t.Errorf("refused calls changed rows: %v → %v", rows, got)
	}
	if got := g.getToken(ops.ID); got.Status != token.Revoked || got.RotatedTo != nil {
		t.Errorf("the admin token after the refusals: %+v", got)
	}

	// An active admin-scope token of hers does not rotate on /me/ either.
	live := g.newToken("alice", map[string]any{"name": "ops live", "scopes": []string{"api", "admin"}})
	want(t, g.self("alice", http.MethodPost, "/tokens/"+live.ID+"/rotate", `{"grace":"0s"}`, nil), http.StatusForbidden, "forbidden")
	want(t, g.adminAs(live.Plain, http.MethodGet, "/users", nil), http.StatusOK, "")

	// Her own revocation, and her token's logout, she lifts.
	c := want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"laptop"}`, nil), http.StatusCreated, "")
	laptop, plain := c["id"].(string), c["token"].(string)
	m = want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/revoke", "", nil), http.StatusOK, "")
	if m["revoked_by"] != "user:alice" {
		t.Errorf("self revoke revoked_by = %v", m["revoked_by"])
	}
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/reapprove", "", nil), http.StatusOK, "")
	if r := g.get("/api/x", plain); r.Status != http.StatusOK {
		t.Errorf("after her re-approval: %d", r.Status)
	}
	want(t, g.do(http.MethodPost, "/admin/logout", nil, bearer(plain, "")), http.StatusNoContent, "")
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/reapprove", "", nil), http.StatusOK, "")
	// The admin's revocation of the same token she does not lift.
	want(t, g.admin(http.MethodPost, "/tokens/"+laptop+"/revoke", nil), http.StatusOK, "")
	want(t, g.self("alice", http.MethodPost, "/tokens/"+laptop+"/reapprove", "", nil), http.StatusForbidden, "forbidden")
	if r := g.get("/api/x", plain); r.Status != http.StatusUnauthorized {
		t.Errorf("after the refused re-approval: %d", r.Status)
	}

	// A leaked token is re-approved by nobody.
	leaked := g.newToken("alice", map[string]any{"name": "leaked"})
	if _, _, err := g.Store.RevokeToken(context.Background(), storage.ActorLeak("github"), leaked.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	want(t, g.self("alice", http.MethodPost, "/tokens/"+leaked.ID+"/reapprove", "", nil), http.StatusConflict, "token_leaked")
	want(t, g.admin(http.MethodPost, "/tokens/"+leaked.ID+"/reapprove", nil), http.StatusConflict, "token_leaked")
	if r := g.get("/api/x", leaked.Plain); r.Status != http.StatusUnauthorized {
		t.Errorf("leaked token: %d", r.Status)
	}

	// The audit says what each change made and who revoked what.
	events, err := g.Store.Audit(context.Background(), "alice", 100)
	if err != nil {
		t.Fatal(err)
	}
	var sawCreate, sawReapprove bool
	for _, e := range events {
		switch {
		case e.Action == storage.ActionTokenCreate && e.Target == ops.ID:
			sawCreate = true
			if s, _ := e.Detail["scopes"].([]any); len(s) != 1 || s[0] != "admin" || e.Detail["expires_at"] == nil {
				t.Errorf("create event %+v, want its scopes and expires_at", e)
			}
		case e.Action == storage.ActionTokenReapprove && e.Target == laptop && e.Detail["revoked_by"] == "token:"+laptop:
			sawReapprove = true
		}
	}
	if !sawCreate || !sawReapprove {
		t.Errorf("audit: create of ops %v, re-approval of the logout %v", sawCreate, sawReapprove)
	}
}

// TestSelfRotationBounded: on /me/, a rotation whose predecessor is within
// its grace is 409 rotation_pending, and a lifetime past
// max_token_lifetime is 400.
func TestSelfRotationBounded(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: basicAuthSite(t), ExtraApp: "token_lifetime 24h\n\t\tmax_token_lifetime 720h"})
	g.putUser("alice")
	c := want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"ci"}`, nil), http.StatusCreated, "")
	id := c["id"].(string)
	want(t, g.self("alice", http.MethodPost, "/tokens/"+id+"/rotate", `{"grace":"0s","expires_in":"8760h"}`, nil), http.StatusBadRequest, "invalid_request")
	r := want(t, g.self("alice", http.MethodPost, "/tokens/"+id+"/rotate", `{"grace":"168h"}`, nil), http.StatusCreated, "")
	next := r["id"].(string)
	want(t, g.self("alice", http.MethodPost, "/tokens/"+next+"/rotate", `{"grace":"168h"}`, nil), http.StatusConflict, "rotation_pending")
	want(t, g.admin(http.MethodPost, "/tokens/"+next+"/rotate", map[string]any{"grace": "168h"}), http.StatusConflict, "rotation_pending")
	if exp, err := time.Parse(time.RFC3339, r["expires_at"].(string)); err != nil || exp.After(time.Now().Add(720*time.Hour)) {
		t.Errorf("rotated token expires %v (%v), past max_token_lifetime", r["expires_at"], err)
	}
}

// TestLogoutEveryState: POST /logout answers 204 for a token in any state
// that exists, through a real Caddy: a live one is refused afterwards, a
// revoked one keeps the admin's revocation, an expired one records
// revoked_at, and a deactivated user's token stays refused after the
// user's reactivation. An unknown one is 401.
func TestLogoutEveryState(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	logout := func(tok string) response {
		t.Helper()
		return g.do(http.MethodPost, "/admin/logout", nil, bearer(tok, ""))
	}
	g.putUser("lo")
	g.putUser("lod")

	live := g.newToken("lo", map[string]any{"name": "live"})
	if r := g.get("/v1/x", live.Plain); r.Status != http.StatusOK {
		t.Fatalf("live token: %d", r.Status)
	}
	want(t, logout(live.Plain), http.StatusNoContent, "")
	if r := g.get("/v1/x", live.Plain); r.Status != http.StatusUnauthorized {
		t.Errorf("live token after logout: %d", r.Status)
	}

	revoked := g.newToken("lo", map[string]any{"name": "revoked"})
	want(t, g.admin(http.MethodPost, "/tokens/"+revoked.ID+"/revoke", map[string]any{"reason": "by the admin"}), http.StatusOK, "")
	want(t, logout(revoked.Plain), http.StatusNoContent, "")
	if got := g.getToken(revoked.ID); got.Status != token.Revoked || *got.RevokedBy != "admin_key" || *got.RevokedReason != "by the admin" {
		t.Errorf("revoked token after logout: %+v", got)
	}

	expired := g.newToken("lo", map[string]any{"name": "expired"})
	g.expireToken(expired.ID)
	want(t, logout(expired.Plain), http.StatusNoContent, "")
	if got := g.getToken(expired.ID); got.Status != token.Expired || got.RevokedAt == nil || *got.RevokedBy != "token:"+expired.ID {
		t.Errorf("expired token after logout: %+v, want expired with revoked_at", got)
	}

	deact := g.newToken("lod", map[string]any{"name": "d"})
	other := g.newToken("lod", map[string]any{"name": "other"})
	want(t, g.admin(http.MethodPost, "/users/lod/deactivate", nil), http.StatusOK, "")
	want(t, logout(deact.Plain), http.StatusNoContent, "")
	want(t, g.admin(http.MethodPost, "/users/lod/reactivate", nil), http.StatusOK, "")
	if r := g.get("/v1/x", deact.Plain); r.Status != http.StatusUnauthorized {
		t.Errorf("logged-out token of a reactivated user: %d, want 401", r.Status)
	}
	if r := g.get("/v1/x", other.Plain); r.Status != http.StatusOK {
		t.Errorf("the user's other token after reactivation: %d, want 200", r.Status)
	}

	want(t, logout(wellFormedUnknown(t)), http.StatusUnauthorized, "unauthorized")
}

// TestRevokeAllWinsOverRotation: a test transaction holds the user's row
// lock while a rotation (grace 0s) and then a revoke-all of that user queue
// behind it on the admin API; once it is released and both have answered,
// no token of the user passes the gateway, the rotation's successor
// included.
func TestRevokeAllWinsOverRotation(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	g.putUser("race")
	tok := g.newToken("race", map[string]any{"name": "ci"})
	ctx := context.Background()
	hold, err := g.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx) //nolint:errcheck // released below; a second rollback is a no-op
	if _, err := hold.Exec(ctx, `SELECT 1 FROM armgate.users WHERE id = 'race' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	rotated, revoked := make(chan response, 1), make(chan response, 1)
	go func() {
		r, _ := g.send(http.MethodPost, "/admin/tokens/"+tok.ID+"/rotate", bearer(testAdminKey, "application/json"), []byte(`{"grace":"0s"}`))
		rotated <- r
	}()
	waitLockWaiters(t, g, 1)
	go func() {
		r, _ := g.send(http.MethodPost, "/admin/users/race/tokens/revoke", bearer(testAdminKey, "application/json"), []byte(`{}`))
		revoked <- r
	}()
	waitLockWaiters(t, g, 2)
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	rot, all := <-rotated, <-revoked
	if rot.Status != http.StatusCreated || all.Status != http.StatusOK {
		t.Fatalf("rotate %d %s; revoke-all %d %s", rot.Status, rot.Body, all.Status, all.Body)
	}
	successor := rot.json(t)["token"].(string)
	if n := all.json(t)["revoked"]; n != 2.0 {
		t.Errorf("revoke-all revoked %v, want 2 (the token and its successor)", n)
	}
	if r := g.get("/v1/x", successor); r.Status != http.StatusUnauthorized {
		t.Errorf("the successor passes after revoke-all: %d", r.Status)
	}
}

// waitLockWaiters waits until n sessions of the gateway's database wait for
// a lock.
func waitLockWaiters(t *testing.T, g *gateway, n int) {
	t.Helper()
	var waiting int
	if !wait.Until(30*time.Second, func() bool {
		if err := g.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting == n
	}) {
		t.Fatalf("%d sessions wait for a lock, want %d", waiting, n)
	}
}

// TestNamesShowAsStored: a name with invalid UTF-8 in the raw body, or with
// an invisible format character, is refused on the self-service mount and
// the admin API alike, and nothing is stored.
func TestNamesShowAsStored(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: basicAuthSite(t)})
	g.putUser("alice")
	rows := g.rowCounts()
	for _, body := range []string{"{\"name\":\"a\xff\xfeb\"}", `{"name":"report\u202egpj.exe"}`, `{"name":"c\u200bi"}`} {
		want(t, g.self("alice", http.MethodPost, "/tokens", body, nil), http.StatusBadRequest, "invalid_request")
		want(t, g.adminRaw(http.MethodPost, "/users/alice/tokens", []byte(body)), http.StatusBadRequest, "invalid_request")
	}
	want(t, g.adminRaw(http.MethodPut, "/users/alice", []byte(`{"display_name":"Alice\u202e"}`)), http.StatusBadRequest, "invalid_request")
	if got := g.rowCounts(); got != rows {
		t.Errorf("refused names changed rows: %v → %v", rows, got)
	}
}
