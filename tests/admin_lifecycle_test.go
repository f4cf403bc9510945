package tests

// End-to-end tests of the token lifecycle through the admin endpoint
// (token semantics and the admin API, as the README states them): the per-user limit, changes seen by the
// gateway on the very next request, re-approval, lifetimes, audit,
// introspection, and the show-once rule.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/token"
)

// adminTokenLimit: 50 parallel creates with 10 free slots yield exactly
// 10; deleting frees a slot; revoked and deactivated tokens count, expired
// ones do not; token_count says the same.
func adminTokenLimit(t *testing.T, g *gateway) {
	g.putUser("lim")

	rs := g.concurrently(50, http.MethodPost, "/admin/users/lim/tokens", func(i int) []byte {
		return fmt.Appendf(nil, `{"name":"parallel %02d"}`, i)
	})
	statuses := make([]int, len(rs))
	codes := make([]string, len(rs))
	for i, r := range rs {
		statuses[i] = r.Status
		var m map[string]any
		_ = json.Unmarshal(r.Body, &m)
		codes[i], _ = m["error"].(string)
		if plain, ok := m["token"].(string); ok {
			g.remember(plain)
		}
	}
	if n201, n409 := count(statuses, 201), count(statuses, 409); n201 != 10 || n409 != 40 {
		t.Fatalf("50 parallel creates: %d×201, %d×409 (%v), want 10 and 40", n201, n409, statuses)
	}
	if n := count(codes, "token_limit_reached"); n != 40 {
		t.Errorf("409 codes: %v", codes)
	}
	tokenCount := func() int {
		t.Helper()
		var n int
		if err := g.Pool.QueryRow(context.Background(), `SELECT count(*) FROM armgate.tokens WHERE user_id = 'lim'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if u := g.getUser("lim"); u.TokenCount != n-expiredCount(g, "lim") {
			t.Errorf("token_count = %d, database has %d rows (%d expired)", u.TokenCount, n, expiredCount(g, "lim"))
		}
		return g.getUser("lim").TokenCount
	}
	if n := tokenCount(); n != 10 {
		t.Fatalf("token_count = %d after the parallel creates", n)
	}
	r := g.admin(http.MethodGet, "/users/lim/tokens", nil)
	want(t, r, http.StatusOK, "")
	list := decode[struct{ Tokens []adminapi.Token }](t, r).Tokens
	if len(list) != 10 {
		t.Fatalf("listed %d tokens", len(list))
	}
	refused := func(why string) {
		t.Helper()
		r := g.admin(http.MethodPost, "/users/lim/tokens", map[string]any{"name": "refused " + why})
		want(t, r, http.StatusConflict, "token_limit_reached")
	}
	refused("at the limit")

	// Delete frees a slot, for exactly one more.
	want(t, g.admin(http.MethodDelete, "/tokens/"+list[0].ID, nil), http.StatusNoContent, "")
	if n := tokenCount(); n != 9 {
		t.Errorf("token_count after a delete = %d", n)
	}
	g.newToken("lim", map[string]any{"name": "after delete"})
	refused("after refilling")

	// A revoked token still counts.
	want(t, g.admin(http.MethodPost, "/tokens/"+list[1].ID+"/revoke", nil), http.StatusOK, "")
	if n := tokenCount(); n != 10 {
		t.Errorf("token_count with a revoked token = %d", n)
	}
	refused("with a revoked token")

	// Deactivated tokens still count: the count holds while the user is
	// deactivated, and after reactivation the slots are still taken.
	want(t, g.admin(http.MethodPost, "/users/lim/deactivate", nil), http.StatusOK, "")
	if n := tokenCount(); n != 10 {
		t.Errorf("token_count while deactivated = %d", n)
	}
	want(t, g.admin(http.MethodPost, "/users/lim/reactivate", nil), http.StatusOK, "")
	refused("after reactivation")

	// An expired token does not count (it is still listed, as expired).
	g.expireToken(list[2].ID)
	if n := tokenCount(); n != 9 {
		t.Errorf("token_count with an expired token = %d", n)
	}
	if got := g.getToken(list[2].ID); got.Status != token.Expired {
		t.Errorf("expired token shows status %q", got.Status)
	}
	g.newToken("lim", map[string]any{"name": "after expiry"})
	refused("after using the expired slot")
	r = g.admin(http.MethodGet, "/users/lim/tokens", nil)
	if n := len(decode[struct{ Tokens []adminapi.Token }](t, r).Tokens); n != 11 {
		t.Errorf("list shows %d tokens, want 11 (10 live + 1 expired)", n)
	}
}

func expiredCount(g *gateway, user string) int {
	var n int
	if err := g.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM armgate.tokens WHERE user_id = $1 AND expires_at <= now()`, user).Scan(&n); err != nil {
		g.t.Fatal(err)
	}
	return n
}

// adminChangesThroughGateway: every change is seen by the gateway on
// the very next request after a cached 200.
func adminChangesThroughGateway(t *testing.T, g *gateway) {
	for _, u := range []string{"gw", "gw2"} {
		g.putUser(u)
	}
	status := func(tok string) int {
		t.Helper()
		return g.get("/v1/things", tok).Status
	}
	cached := func(tok string) {
		t.Helper()
		if s := status(tok); s != 200 {
			t.Fatalf("a live token got %d", s)
		}
	}

	// Revoke, re-approve.
	a := g.newToken("gw", map[string]any{"name": "a"})
	cached(a.Plain)
	want(t, g.admin(http.MethodPost, "/tokens/"+a.ID+"/revoke", map[string]any{"reason": "test"}), http.StatusOK, "")
	if s := status(a.Plain); s != 401 {
		t.Errorf("after revoke: %d, want 401", s)
	}
	want(t, g.admin(http.MethodPost, "/tokens/"+a.ID+"/reapprove", nil), http.StatusOK, "")
	if s := status(a.Plain); s != 200 {
		t.Errorf("after re-approve: %d, want 200", s)
	}

	// Deactivate the user: all its tokens at once; reactivate: those come
	// back, one revoked on its own stays out.
	b1 := g.newToken("gw2", map[string]any{"name": "b1"})
	b2 := g.newToken("gw2", map[string]any{"name": "b2", "scopes": []string{"api", "admin"}})
	b3 := g.newToken("gw2", map[string]any{"name": "b3"})
	b4 := g.newToken("gw2", map[string]any{"name": "b4"})
	for _, tok := range []string{b1.Plain, b2.Plain, b3.Plain, b4.Plain} {
		cached(tok)
	}
	want(t, g.admin(http.MethodPost, "/tokens/"+b3.ID+"/revoke", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPost, "/users/gw2/deactivate", nil), http.StatusOK, "")
	for _, tok := range []createdToken{b1, b2, b3, b4} {
		if s := status(tok.Plain); s != 401 {
			t.Errorf("%s after deactivation: %d, want 401", tok.Name, s)
		}
		if got := g.getToken(tok.ID); tok.Name != "b3" && got.Status != token.Deactivated {
			t.Errorf("%s status %q, want deactivated", tok.Name, got.Status)
		}
	}
	// A deactivated user's admin token is no admin credential.
	want(t, g.adminAs(b2.Plain, http.MethodGet, "/users", nil), http.StatusUnauthorized, "unauthorized")
	// Revoking a token of a deactivated user sticks after reactivation.
	want(t, g.admin(http.MethodPost, "/tokens/"+b4.ID+"/revoke", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPost, "/users/gw2/deactivate", nil), http.StatusOK, "") // idempotent
	r := g.admin(http.MethodPost, "/users/gw2/reactivate", nil)
	want(t, r, http.StatusOK, "")
	if u := decode[adminapi.User](t, r); u.Status != "active" {
		t.Errorf("reactivated user: %+v", u)
	}
	for _, tt := range []struct {
		tok  createdToken
		want int
	}{{b1, 200}, {b2, 200}, {b3, 401}, {b4, 401}} {
		if s := status(tt.tok.Plain); s != tt.want {
			t.Errorf("%s after reactivation: %d, want %d", tt.tok.Name, s, tt.want)
		}
	}
	want(t, g.adminAs(b2.Plain, http.MethodGet, "/users", nil), http.StatusOK, "")
	// Other users' tokens were never touched.
	if s := status(a.Plain); s != 200 {
		t.Errorf("another user's token: %d", s)
	}

	// Delete.
	c := g.newToken("gw", map[string]any{"name": "c"})
	cached(c.Plain)
	want(t, g.admin(http.MethodDelete, "/tokens/"+c.ID, nil), http.StatusNoContent, "")
	if s := status(c.Plain); s != 401 {
		t.Errorf("after delete: %d, want 401", s)
	}

	// Logout: the holder revokes its own token; afterwards it is refused.
	// Logout answers 204 for a token in any state that exists (a second
	// logout, a token revoked by the admin); the admin key, a deleted or an
	// unknown token is 401.
	d := g.newToken("gw", map[string]any{"name": "d"})
	cached(d.Plain)
	logout := func(cred string) response {
		t.Helper()
		return g.do(http.MethodPost, "/admin/logout", nil, bearer(cred, ""))
	}
	want(t, logout(d.Plain), http.StatusNoContent, "")
	if s := status(d.Plain); s != 401 {
		t.Errorf("after logout: %d, want 401", s)
	}
	want(t, logout(d.Plain), http.StatusNoContent, "") // again: still revoked
	got := g.getToken(d.ID)
	if got.Status != token.Revoked || got.RevokedReason == nil || *got.RevokedReason != "logout" ||
		got.RevokedBy == nil || *got.RevokedBy != "token:"+d.ID {
		t.Errorf("after logout: %+v", got)
	}
	r = logout(testAdminKey)
	want(t, r, http.StatusUnauthorized, "unauthorized")
	if got := r.Header.Get("WWW-Authenticate"); got != adminRealm {
		t.Errorf("logout with the admin key: WWW-Authenticate %q", got)
	}
	want(t, logout(""), http.StatusUnauthorized, "unauthorized")
	want(t, logout(c.Plain), http.StatusUnauthorized, "unauthorized") // deleted
	want(t, logout(b3.Plain), http.StatusNoContent, "")               // revoked by the admin: stays so
	if got := g.getToken(b3.ID); got.Status != token.Revoked || got.RevokedBy == nil || *got.RevokedBy != "admin_key" {
		t.Errorf("admin-revoked token after its logout: %+v, want the admin's revocation kept", got)
	}
	want(t, logout(wellFormedUnknown(t)), http.StatusUnauthorized, "unauthorized")
	// A logout of an admin-scope token works the same way.
	want(t, logout(b2.Plain), http.StatusNoContent, "")
	if s := status(b2.Plain); s != 401 {
		t.Errorf("admin-scope token after logout: %d", s)
	}
	want(t, g.adminAs(b2.Plain, http.MethodGet, "/users", nil), http.StatusUnauthorized, "unauthorized")
}

// adminReapproveRevoke: re-approval's refusals and no-op, and revoke's
// idempotency.
func adminReapproveRevoke(t *testing.T, g *gateway) {
	g.putUser("ra")
	auditRows := func() int {
		t.Helper()
		var n int
		if err := g.Pool.QueryRow(context.Background(), `SELECT count(*) FROM armgate.audit`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Active: a 200 no-op without an audit event.
	live := g.newToken("ra", map[string]any{"name": "live"})
	n := auditRows()
	r := g.admin(http.MethodPost, "/tokens/"+live.ID+"/reapprove", nil)
	want(t, r, http.StatusOK, "")
	if got := decode[adminapi.Token](t, r); got.Status != token.Active || got.RevokedAt != nil {
		t.Errorf("re-approved active token: %+v", got)
	}
	if got := auditRows(); got != n {
		t.Errorf("re-approving an active token wrote %d audit events", got-n)
	}

	// Revoke is idempotent and keeps the first revocation.
	r = g.admin(http.MethodPost, "/tokens/"+live.ID+"/revoke", map[string]any{"reason": "  first reason  "})
	want(t, r, http.StatusOK, "")
	first := decode[adminapi.Token](t, r)
	if first.Status != token.Revoked || first.RevokedAt == nil || first.RevokedReason == nil || *first.RevokedReason != "first reason" {
		t.Fatalf("revoked token: %+v", first)
	}
	n = auditRows()
	r = g.admin(http.MethodPost, "/tokens/"+live.ID+"/revoke", map[string]any{"reason": "second reason"})
	want(t, r, http.StatusOK, "")
	second := decode[adminapi.Token](t, r)
	if second.RevokedAt == nil || !second.RevokedAt.Equal(*first.RevokedAt) || *second.RevokedReason != "first reason" {
		t.Errorf("second revoke: %+v, first %+v", second, first)
	}
	if got := auditRows(); got != n {
		t.Errorf("a repeated revoke wrote %d audit events", got-n)
	}
	// Re-approve clears the revocation; a revoke without a body works too.
	r = g.admin(http.MethodPost, "/tokens/"+live.ID+"/reapprove", nil)
	if got := decode[adminapi.Token](t, r); r.Status != 200 || got.Status != token.Active || got.RevokedAt != nil || got.RevokedReason != nil {
		t.Errorf("re-approved: %d %s", r.Status, r.Body)
	}
	want(t, g.adminRaw(http.MethodPost, "/tokens/"+live.ID+"/revoke", nil), http.StatusOK, "")

	// Expired: 409 token_expired, revoked or not, and even when the user is
	// deactivated too. Revoking an expired token records it; it stays expired.
	exp := g.newToken("ra", map[string]any{"name": "expired"})
	expRevoked := g.newToken("ra", map[string]any{"name": "expired and revoked"})
	want(t, g.admin(http.MethodPost, "/tokens/"+expRevoked.ID+"/revoke", nil), http.StatusOK, "")
	g.expireToken(exp.ID)
	g.expireToken(expRevoked.ID)
	for _, id := range []string{exp.ID, expRevoked.ID} {
		want(t, g.admin(http.MethodPost, "/tokens/"+id+"/reapprove", nil), http.StatusConflict, "token_expired")
	}
	r = g.admin(http.MethodPost, "/tokens/"+exp.ID+"/revoke", map[string]any{"reason": "late"})
	want(t, r, http.StatusOK, "")
	if got := decode[adminapi.Token](t, r); got.Status != token.Expired || got.RevokedAt == nil {
		t.Errorf("revoked expired token: %+v", got)
	}

	// Deactivated user: a revoked token is 409 user_deactivated, so is a
	// merely deactivated one; the expired ones still say token_expired.
	deact := g.newToken("ra", map[string]any{"name": "deactivated"})
	revokedDeact := g.newToken("ra", map[string]any{"name": "revoked, user deactivated"})
	want(t, g.admin(http.MethodPost, "/tokens/"+revokedDeact.ID+"/revoke", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPost, "/users/ra/deactivate", nil), http.StatusOK, "")
	want(t, g.admin(http.MethodPost, "/tokens/"+revokedDeact.ID+"/reapprove", nil), http.StatusConflict, "user_deactivated")
	want(t, g.admin(http.MethodPost, "/tokens/"+deact.ID+"/reapprove", nil), http.StatusConflict, "user_deactivated")
	for _, id := range []string{exp.ID, expRevoked.ID} {
		want(t, g.admin(http.MethodPost, "/tokens/"+id+"/reapprove", nil), http.StatusConflict, "token_expired")
	}
	if got := g.getToken(revokedDeact.ID); got.Status != token.Revoked {
		t.Errorf("revoked token of a deactivated user shows %q (revoked comes first)", got.Status)
	}
	if got := g.getToken(deact.ID); got.Status != token.Deactivated {
		t.Errorf("token of a deactivated user shows %q", got.Status)
	}
	// After reactivation the refused re-approval is possible.
	want(t, g.admin(http.MethodPost, "/users/ra/reactivate", nil), http.StatusOK, "")
	r = g.admin(http.MethodPost, "/tokens/"+revokedDeact.ID+"/reapprove", nil)
	if want(t, r, http.StatusOK, ""); decode[adminapi.Token](t, r).Status != token.Active {
		t.Errorf("re-approved after reactivation: %s", r.Body)
	}
	if s := g.get("/v1/x", revokedDeact.Plain).Status; s != 200 {
		t.Errorf("re-approved token through the gateway: %d", s)
	}
}

// adminTokenLifetimes: expires_in and expires_at are honoured exactly,
// the default is token_lifetime, and every bad lifetime is 400.
func adminTokenLifetimes(t *testing.T, g *gateway) {
	g.putUser("lt")
	n := 0
	create := func(body map[string]any) (createdToken, time.Time, time.Time) {
		t.Helper()
		n++
		body["name"] = fmt.Sprintf("t%d", n)
		t0 := time.Now()
		c := g.newToken("lt", body)
		return c, t0, time.Now()
	}
	within := func(what string, got, lo, hi time.Time) {
		t.Helper()
		// PostgreSQL keeps microseconds.
		if got.Before(lo.Add(-time.Microsecond)) || got.After(hi) {
			t.Errorf("%s: expires_at %s not in [%s, %s]", what, got, lo, hi)
		}
	}

	c, t0, t1 := create(map[string]any{})
	within("default", c.ExpiresAt, t0.Add(48*time.Hour), t1.Add(48*time.Hour))
	c, t0, t1 = create(map[string]any{"expires_in": "90m"})
	within("expires_in 90m", c.ExpiresAt, t0.Add(90*time.Minute), t1.Add(90*time.Minute))
	c, t0, t1 = create(map[string]any{"expires_in": "720h"}) // exactly the maximum
	within("expires_in 720h", c.ExpiresAt, t0.Add(720*time.Hour), t1.Add(720*time.Hour))

	at := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	c, _, _ = create(map[string]any{"expires_at": at.Format(time.RFC3339)})
	if !c.ExpiresAt.Equal(at) {
		t.Errorf("expires_at %s, asked %s", c.ExpiresAt, at)
	}
	// An offset is accepted and answered in UTC.
	r := g.admin(http.MethodPost, "/users/lt/tokens", map[string]any{"name": "offset",
		"expires_at": at.In(time.FixedZone("", 2*3600)).Format(time.RFC3339)})
	if m := want(t, r, http.StatusCreated, ""); g.created(r).Plain == "" || m["expires_at"] != at.Format(time.RFC3339) {
		t.Errorf("expires_at with an offset answered as %v, want %s", m["expires_at"], at.Format(time.RFC3339))
	}
	// The stored expiry is what the gateway enforces.
	if got := g.getToken(c.ID); !got.ExpiresAt.Equal(at) {
		t.Errorf("GET shows expires_at %s", got.ExpiresAt)
	}

	before := g.rowCounts()
	now := time.Now().UTC()
	for _, body := range []map[string]any{
		{"expires_in": "1h", "expires_at": now.Add(time.Hour).Format(time.RFC3339)},
		{"expires_in": "0s"},
		{"expires_in": "-1h"},
		{"expires_in": "721h"},
		{"expires_in": "8760h"},
		{"expires_in": "10 days"},
		{"expires_in": "720"},
		{"expires_in": ""},
		{"expires_at": now.Add(-time.Hour).Format(time.RFC3339)},
		{"expires_at": now.Add(-time.Second).Format(time.RFC3339Nano)},
		{"expires_at": now.Add(721 * time.Hour).Format(time.RFC3339)},
		{"expires_at": now.Add(24 * time.Hour).Format("2006-01-02")},
		{"expires_at": now.Add(24 * time.Hour).Format(time.RFC1123)},
		{"expires_at": "tomorrow"},
		{"expires_at": ""},
	} {
		t.Run(fmt.Sprint(body), func(t *testing.T) {
			body["name"] = "refused"
			want(t, g.on(t).admin(http.MethodPost, "/users/lt/tokens", body), http.StatusBadRequest, "invalid_request")
		})
	}
	if after := g.rowCounts(); after != before {
		t.Errorf("refused creates wrote rows: %v -> %v", before, after)
	}
}

type auditEvent struct {
	At     string         `json:"at"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target"`
	Detail map[string]any `json:"detail"`
}

func (g *gateway) auditEvents(query string) ([]auditEvent, []byte) {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/audit"+query, nil)
	want(g.t, r, http.StatusOK, "")
	m := decode[map[string][]map[string]any](g.t, r)
	for _, e := range m["events"] {
		if got := keys(e); !slices.Equal(got, []string{"action", "actor", "at", "detail", "target"}) {
			g.t.Errorf("audit event fields %v", got)
		}
	}
	return decode[struct{ Events []auditEvent }](g.t, r).Events, r.Body
}

// adminAudit: one event per change, newest first, with the right actor
// (admin key, admin token, or the token itself at logout), filtered by
// user, never with a secret.
func adminAudit(t *testing.T, g *gateway) {
	_, adminTok := g.mint("aud-admin", "root", []string{token.ScopeAdmin})
	adminID := decode[struct{ Tokens []adminapi.Token }](t, g.admin(http.MethodGet, "/users/aud-admin/tokens", nil)).Tokens[0].ID

	want(t, g.admin(http.MethodPut, "/users/aud", map[string]any{"email": "aud@example.com"}), http.StatusCreated, "")
	for range 2 { // the second PUT repeats the values: 200, no event
		want(t, g.adminAs(adminTok, http.MethodPut, "/users/aud", map[string]any{"display_name": "Aud"}), http.StatusOK, "")
	}
	t1 := g.newToken("aud", map[string]any{"name": "t1"})
	t2 := g.newTokenAs(adminTok, "aud", map[string]any{"name": "t2", "scopes": []string{"api", "admin"}})
	for range 2 { // the second of each pair changes nothing and writes nothing
		want(t, g.admin(http.MethodPost, "/tokens/"+t1.ID+"/revoke", map[string]any{"reason": "lost laptop"}), http.StatusOK, "")
	}
	for range 2 {
		want(t, g.admin(http.MethodPost, "/tokens/"+t1.ID+"/reapprove", nil), http.StatusOK, "")
	}
	for range 2 {
		want(t, g.admin(http.MethodPost, "/users/aud/deactivate", nil), http.StatusOK, "")
	}
	for range 2 {
		want(t, g.admin(http.MethodPost, "/users/aud/reactivate", nil), http.StatusOK, "")
	}
	want(t, g.do(http.MethodPost, "/admin/logout", nil, bearer(t2.Plain, "")), http.StatusNoContent, "")
	want(t, g.admin(http.MethodDelete, "/tokens/"+t1.ID, nil), http.StatusNoContent, "")
	// Refused calls write nothing.
	want(t, g.admin(http.MethodPost, "/tokens/"+t2.ID+"/reapprove", map[string]any{"x": 1}), http.StatusBadRequest, "invalid_request")
	want(t, g.admin(http.MethodPost, "/users/aud/tokens", map[string]any{"name": "t2"}), http.StatusConflict, "name_taken")
	// A GET changes nothing.
	g.getUser("aud")

	type ev struct{ actor, action, target string }
	tokActor := "token:" + adminID
	wantEvents := []ev{ // newest first
		{"admin_key", "token.delete", t1.ID},
		{"token:" + t2.ID, "token.logout", t2.ID},
		{"admin_key", "user.reactivate", "aud"},
		{"admin_key", "user.deactivate", "aud"},
		{"admin_key", "token.reapprove", t1.ID},
		{"admin_key", "token.revoke", t1.ID},
		{tokActor, "token.create", t2.ID},
		{"admin_key", "token.create", t1.ID},
		{tokActor, "user.update", "aud"},
		{"admin_key", "user.create", "aud"},
	}
	events, raw := g.auditEvents("?user_id=aud")
	var got []ev
	for _, e := range events {
		got = append(got, ev{e.Actor, e.Action, e.Target})
	}
	if !slices.Equal(got, wantEvents) {
		t.Errorf("GET /audit?user_id=aud:\n got %v\nwant %v", got, wantEvents)
	}
	var prev time.Time
	for i, e := range events {
		at, err := time.Parse(time.RFC3339Nano, e.At)
		if err != nil || !strings.HasSuffix(e.At, "Z") {
			t.Errorf("at %q: not RFC 3339 UTC (%v)", e.At, err)
		}
		if i > 0 && at.After(prev) {
			t.Errorf("events not newest first: %s after %s", e.At, prev)
		}
		prev = at
		if e.Detail == nil {
			t.Errorf("event %d has no detail object", i)
		}
	}
	if len(events) == len(wantEvents) {
		if d := events[5].Detail; d["reason"] != "lost laptop" {
			t.Errorf("revoke detail %v", d)
		}
		if d := events[7].Detail; d["name"] != "t1" {
			t.Errorf("create detail %v", d)
		}
		if d := events[1].Detail; d["reason"] != "logout" {
			t.Errorf("logout detail %v", d)
		}
	}
	for _, secret := range []string{testAdminKey, adminTok, t1.Plain, t2.Plain} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the audit log holds a secret")
		}
	}
	// One row per change in the table too.
	var rows int
	if err := g.Pool.QueryRow(context.Background(), `SELECT count(*) FROM armgate.audit WHERE user_id = 'aud'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(wantEvents) {
		t.Errorf("audit rows for aud: %d, want %d", rows, len(wantEvents))
	}

	// Unfiltered: everyone's events, newest first: aud's, then aud-admin's
	// (made before them), then older ones. limit bounds it (default 50); an
	// unknown user has none.
	all, _ := g.auditEvents("")
	if len(all) < len(wantEvents)+2 {
		t.Fatalf("GET /audit: %d events", len(all))
	}
	for i, e := range all[:len(wantEvents)] {
		if (ev{e.Actor, e.Action, e.Target}) != wantEvents[i] {
			t.Errorf("GET /audit event %d = %+v, want %+v", i, e, wantEvents[i])
		}
	}
	if e := all[len(wantEvents)]; e.Action != "token.create" || e.Actor != "test" {
		t.Errorf("GET /audit event %d = %+v, want the aud-admin token.create", len(wantEvents), e)
	}
	if e := all[len(wantEvents)+1]; e.Action != "user.create" || e.Target != "aud-admin" {
		t.Errorf("GET /audit event %d = %+v, want the aud-admin user.create", len(wantEvents)+1, e)
	}
	if n := len(all); n != 50 {
		t.Errorf("GET /audit returned %d events; want the default limit 50 (there are more)", n)
	}
	if top, _ := g.auditEvents("?user_id=aud&limit=3"); len(top) != 3 || top[0].Action != "token.delete" || top[2].Action != "user.reactivate" {
		t.Errorf("limit=3: %v", top)
	}
	if none, _ := g.auditEvents("?user_id=nobody"); len(none) != 0 {
		t.Errorf("unknown user: %v", none)
	}
	other, _ := g.auditEvents("?user_id=aud-admin")
	if len(other) != 2 {
		t.Errorf("aud-admin events: %v", other)
	}
}

// adminIntrospection: RFC 7662 answers; exactly {"active":false} for
// every token the gateway refuses.
func adminIntrospection(t *testing.T, g *gateway) {
	for _, u := range []string{"in", "in-deact"} {
		g.putUser(u)
	}
	introspect := func(cred, form string) response {
		t.Helper()
		return g.do(http.MethodPost, "/admin/introspect", []byte(form), bearer(cred, "application/x-www-form-urlencoded"))
	}
	form := func(tok string) string { return url.Values{"token": {tok}}.Encode() }

	live := g.newToken("in", map[string]any{"name": "live", "scopes": []string{"api", "admin"}})
	for _, cred := range []string{testAdminKey, live.Plain} { // the token may introspect itself
		r := introspect(cred, form(live.Plain))
		want(t, r, http.StatusOK, "")
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m["active"] != true || m["sub"] != "in" || m["token_id"] != live.ID || m["scope"] != "api admin" {
			t.Errorf("live token: %s", r.Body)
		}
		for f, wantV := range map[string]int64{"exp": live.ExpiresAt.Unix(), "iat": live.CreatedAt.Unix()} {
			n, ok := m[f].(json.Number)
			if !ok {
				t.Errorf("%s = %v (%T), want a number", f, m[f], m[f])
				continue
			}
			if v, err := n.Int64(); err != nil || v != wantV {
				t.Errorf("%s = %s, want %d (Unix seconds)", f, n, wantV)
			}
		}
	}
	// A live api-only token is active too (scope aside).
	apiOnly := g.newToken("in", map[string]any{"name": "api only"})
	if m := want(t, introspect(testAdminKey, form(apiOnly.Plain)), http.StatusOK, ""); m["active"] != true || m["scope"] != "api" {
		t.Errorf("api-only token: %v", m)
	}

	revoked := g.newToken("in", map[string]any{"name": "revoked"})
	want(t, g.admin(http.MethodPost, "/tokens/"+revoked.ID+"/revoke", nil), http.StatusOK, "")
	expired := g.newToken("in", map[string]any{"name": "expired"})
	g.expireToken(expired.ID)
	deleted := g.newToken("in", map[string]any{"name": "deleted"})
	want(t, g.admin(http.MethodDelete, "/tokens/"+deleted.ID, nil), http.StatusNoContent, "")
	deact := g.newToken("in-deact", map[string]any{"name": "deactivated"})
	want(t, g.admin(http.MethodPost, "/users/in-deact/deactivate", nil), http.StatusOK, "")

	inactive := map[string]string{
		"revoked":      revoked.Plain,
		"expired":      expired.Plain,
		"deleted":      deleted.Plain,
		"deactivated":  deact.Plain,
		"unknown":      wellFormedUnknown(t),
		"bad checksum": badChecksum(live.Plain),
		"garbage":      "hello world",
		"admin key":    testAdminKey,
	}
	for name, tok := range inactive {
		t.Run(name, func(t *testing.T) {
			g := g.on(t)
			r := g.do(http.MethodPost, "/admin/introspect", []byte(form(tok)), bearer(testAdminKey, "application/x-www-form-urlencoded"))
			want(t, r, http.StatusOK, "")
			if got := string(bytes.TrimSpace(r.Body)); got != `{"active":false}` {
				t.Errorf("body %q, want exactly {\"active\":false}", got)
			}
			// And the gateway refuses it.
			if s := g.get("/v1/x", tok).Status; s < 400 {
				t.Errorf("the gateway let an inactive token through: %d", s)
			}
		})
	}

	// Bad requests.
	for name, tt := range map[string]struct {
		path, ct, body string
	}{
		"missing token":       {"/admin/introspect", "application/x-www-form-urlencoded", ""},
		"empty token":         {"/admin/introspect", "application/x-www-form-urlencoded", "token="},
		"other parameter":     {"/admin/introspect", "application/x-www-form-urlencoded", "access_token=" + live.Plain},
		"token twice":         {"/admin/introspect", "application/x-www-form-urlencoded", form(live.Plain) + "&" + form(live.Plain)},
		"token in the query":  {"/admin/introspect?" + form(wellFormedUnknown(t)), "application/x-www-form-urlencoded", ""},
		"JSON body":           {"/admin/introspect", "application/json", `{"token":"` + live.Plain + `"}`},
		"no content type":     {"/admin/introspect", "", form(live.Plain)},
		"malformed form body": {"/admin/introspect", "application/x-www-form-urlencoded", "token=%zz"},
	} {
		t.Run(name, func(t *testing.T) {
			r := g.on(t).do(http.MethodPost, tt.path, []byte(tt.body), bearer(testAdminKey, tt.ct))
			want(t, r, http.StatusBadRequest, "invalid_request")
		})
	}
	// The content type may carry parameters.
	r := g.do(http.MethodPost, "/admin/introspect", []byte(form(live.Plain)), bearer(testAdminKey, "application/x-www-form-urlencoded; charset=utf-8"))
	if m := want(t, r, http.StatusOK, ""); m["active"] != true {
		t.Errorf("with charset: %s", r.Body)
	}
	// Only admin credentials may introspect.
	r = introspect(apiOnly.Plain, form(live.Plain))
	want(t, r, http.StatusForbidden, "forbidden")
	if bytes.Contains(r.Body, []byte("active")) {
		t.Errorf("a 403 tells about the token: %s", r.Body)
	}
	want(t, introspect("", form(live.Plain)), http.StatusUnauthorized, "unauthorized")
	want(t, introspect(revoked.Plain, form(live.Plain)), http.StatusUnauthorized, "unauthorized")
}

// adminShowOnce: the plaintext is in the create response and nowhere
// else: not in any other response, not in any table (nor the hash outside
// its column), not in Caddy's log or access log. The tables and logs are
// checked for every token created by any subtest of TestAdmin before it.
func adminShowOnce(t *testing.T, g *gateway, dir string) {
	var (
		others  [][]byte // every response body except the creates
		created []createdToken
	)
	record := func(r response) response {
		others = append(others, r.Body)
		return r
	}
	for _, u := range []string{"so", "so2"} {
		record(g.admin(http.MethodPut, "/users/"+u, map[string]any{"email": u + "@example.com"}))
	}
	for i, spec := range []struct {
		user   string
		scopes []string
	}{{"so", nil}, {"so", []string{"admin"}}, {"so", []string{"api", "admin"}}, {"so2", nil}, {"so2", nil}} {
		body := map[string]any{"name": fmt.Sprintf("token %d", i)}
		if spec.scopes != nil {
			body["scopes"] = spec.scopes
		}
		created = append(created, g.newToken(spec.user, body))
	}
	api, adminTok, so2a, so2b := created[0], created[1], created[3], created[4]

	// Use them in every way there is.
	for _, c := range created {
		record(g.get("/v1/use?x=1", c.Plain))
		record(g.admin(http.MethodGet, "/tokens/"+c.ID, nil))
		record(g.do(http.MethodPost, "/admin/introspect", []byte(url.Values{"token": {c.Plain}}.Encode()),
			bearer(testAdminKey, "application/x-www-form-urlencoded")))
	}
	for _, u := range []string{"so", "so2"} {
		record(g.admin(http.MethodGet, "/users/"+u+"/tokens", nil))
		record(g.admin(http.MethodGet, "/users/"+u, nil))
	}
	record(g.adminAs(adminTok.Plain, http.MethodGet, "/users?status=active", nil))
	record(g.adminAs(api.Plain, http.MethodGet, "/users", nil))              // 403
	record(g.adminAs(badChecksum(api.Plain), http.MethodGet, "/users", nil)) // 401
	record(g.admin(http.MethodPost, "/tokens/"+api.ID+"/revoke", map[string]any{"reason": "rotating"}))
	record(g.get("/v1/use", api.Plain)) // 401 revoked
	record(g.admin(http.MethodPost, "/tokens/"+api.ID+"/reapprove", nil))
	record(g.admin(http.MethodPost, "/users/so2/deactivate", nil))
	record(g.get("/v1/use", so2a.Plain)) // 401 deactivated
	record(g.admin(http.MethodPost, "/users/so2/reactivate", nil))
	record(g.do(http.MethodPost, "/admin/logout", nil, bearer(so2a.Plain, "")))
	record(g.do(http.MethodPost, "/admin/logout", nil, bearer(so2a.Plain, ""))) // 204 again
	record(g.admin(http.MethodDelete, "/tokens/"+so2b.ID, nil))
	record(g.get("/v1/use", so2b.Plain)) // 401 deleted
	record(g.admin(http.MethodGet, "/audit", nil))
	record(g.admin(http.MethodGet, "/users/so/tokens", nil))
	record(g.admin(http.MethodPost, "/users/so/tokens", map[string]any{"name": "token 0"})) // 409
	record(g.admin(http.MethodPost, "/users/so/tokens", map[string]any{"name": "x", "bogus": 1}))

	// forms lists what must not appear for a token: the plaintext, its
	// secret part beyond the hint, and the hash in hex and base64.
	type secret struct{ what, s string }
	forms := func(plain string) []secret {
		h := sha256.Sum256([]byte(plain))
		return []secret{
			{"plaintext", plain},
			{"secret part", plain[8:]},
			{"hash hex", hex.EncodeToString(h[:])},
			{"hash HEX", strings.ToUpper(hex.EncodeToString(h[:]))},
			{"hash base64", base64.StdEncoding.EncodeToString(h[:])},
			{"hash base64 raw", base64.RawStdEncoding.EncodeToString(h[:])},
			{"hash base64url", base64.RawURLEncoding.EncodeToString(h[:])},
		}
	}
	all := g.issuedTokens()
	if len(all) < len(created) {
		t.Fatalf("only %d tokens remembered", len(all))
	}
	check := func(where string, b []byte) {
		t.Helper()
		for _, plain := range all {
			for _, s := range forms(plain) {
				if bytes.Contains(b, []byte(s.s)) {
					t.Errorf("%s holds the %s of token %s", where, s.what, token.Hint(plain))
				}
			}
		}
		if bytes.Contains(b, []byte(testAdminKey)) {
			t.Errorf("%s holds the admin key", where)
		}
	}
	for i, b := range others {
		check(fmt.Sprintf("response %d", i), b)
	}
	// The create responses do hold their own plaintext (the one place).
	for _, c := range created {
		if err := token.Check(c.Plain); err != nil {
			t.Errorf("create response plaintext: %v", err)
		}
	}

	// Every table of the schema, row by row.
	ctx := context.Background()
	rows, err := g.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'armgate' AND table_type = 'BASE TABLE' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{"audit", "tokens", "users"} {
		if !slices.Contains(tables, need) {
			t.Fatalf("tables %v lack %s", tables, need)
		}
	}
	hashes := map[string]bool{}
	for _, plain := range all {
		h := sha256.Sum256([]byte(plain))
		hashes[`\x`+hex.EncodeToString(h[:])] = true
	}
	dumped := 0
	for _, table := range tables {
		rows, err := g.Pool.Query(ctx, `SELECT row_to_json(t)::text FROM armgate.`+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			dumped++
			if table == "tokens" {
				// The hash column holds the hash, and nothing else holds it.
				var row map[string]any
				if err := json.Unmarshal([]byte(line), &row); err != nil {
					t.Fatal(err)
				}
				h, _ := row["hash"].(string)
				if !hashes[h] {
					t.Errorf("tokens.hash %q is not the SHA-256 of a created token", h)
				}
				delete(row, "hash")
				b, _ := json.Marshal(row)
				line = string(b)
			}
			check("table "+table, []byte(line))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if dumped < 20 {
		t.Errorf("only %d rows dumped", dumped)
	}

	// Caddy's logs. An access log line is written after its response, so
	// wait for the line of a last request: the earlier ones precede it.
	if r := g.get("/v1/last-request", adminTok.Plain); r.Status != 403 {
		t.Errorf("admin-only token on the api: %d", r.Status)
	}
	var access []byte
	wait.For(t, "the last request in the access log", func() bool {
		if access, err = os.ReadFile(filepath.Join(dir, "access.log")); err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(access, []byte(`"uri":"/v1/last-request"`))
	})
	general, err := os.ReadFile(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The logs must be real: the access log has the admin calls and the
	// gateway calls, with their Authorization headers (redacted).
	for _, s := range []string{`"uri":"/admin/users/so/tokens"`, `"uri":"/admin/introspect"`, `"uri":"/admin/logout"`, `"uri":"/v1/use?x=1"`, `"Authorization"`} {
		if !bytes.Contains(access, []byte(s)) {
			t.Errorf("the access log lacks %s; is it written? (%d bytes)", s, len(access))
		}
	}
	// An admin call made with a token names its user in the access log.
	var line string
	for l := range strings.SplitSeq(string(access), "\n") {
		if strings.Contains(l, `"uri":"/admin/users?status=active"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"user_id":"so"`) {
		t.Errorf("the access log line of an admin call with a token lacks its user id: %s", line)
	}
	if !bytes.Contains(general, []byte(`"level":"debug"`)) {
		t.Errorf("Caddy's log has no debug lines (%d bytes)", len(general))
	}
	check("the access log", access)
	check("Caddy's log", general)
}
