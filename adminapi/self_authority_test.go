package adminapi

import (
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// adminToken makes a token for user with scopes, as an administrator would.
func (e *storeEnv) adminToken(t *testing.T, user, name string, scopes ...string) storage.Token {
	t.Helper()
	tk, _, err := e.store.CreateToken(t.Context(), storage.ActorAdminKey, storage.NewToken{
		UserID: user, Name: name, Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestSelfAuthority: the self-service calls do only what a user may do to
// their own tokens. An administrator's revocation is not theirs to lift
// (403), nor is an admin-scope token theirs to rotate (403); a leak
// revocation is lifted by nobody (409 token_leaked); a rotation whose
// predecessor is within its grace waits (409 rotation_pending).
func TestSelfAuthority(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.self()
	admin := e.admin(nil)
	e.user(t, "alice")
	ctx := t.Context()

	// The reviewer's scenario: an admin-scope token of alice's, revoked by
	// the admin.
	ops := e.adminToken(t, "alice", "ops", token.ScopeAdmin)
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorAdminKey, ops.ID, "compromised - do not restore"); err != nil {
		t.Fatal(err)
	}
	tokens, audits := e.rows(t)
	var eb ErrorBody
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+ops.ID+"/reapprove", "", nil, &eb); rec.Code != 403 || eb.Error != "forbidden" ||
		!strings.Contains(eb.Message, "revoked by an administrator") {
		t.Errorf("re-approving the admin's revocation: %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{`{"grace":"0s"}`, `{"grace":"0s","expires_in":"24h"}`, ``} {
		eb = ErrorBody{}
		if rec := selfDo(t, h, "alice", "POST", "/tokens/"+ops.ID+"/rotate", body, nil, &eb); rec.Code != 403 || eb.Error != "forbidden" ||
			!strings.Contains(eb.Message, "self-service scopes") {
			t.Errorf("rotating an admin-scope token %s: %d %s", body, rec.Code, rec.Body)
		}
	}
	if got, _ := e.store.GetToken(ctx, ops.ID); got.Status != token.Revoked || got.RotatedTo != nil {
		t.Errorf("the admin token after the refusals: %+v", got)
	}
	// An active admin-scope token does not rotate on the self-service mount
	// either; the admin rotates it.
	ops2 := e.adminToken(t, "alice", "ops2", token.ScopeAPI, token.ScopeAdmin)
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+ops2.ID+"/rotate", `{"grace":"0s"}`, nil, nil); rec.Code != 403 {
		t.Errorf("rotating an active api+admin token: %d %s", rec.Code, rec.Body)
	}
	if tk, au := e.rows(t); tk != tokens+1 || au != audits+1 {
		t.Errorf("refused calls changed rows: tokens %d→%d, audit %d→%d", tokens+1, tk, audits+1, au)
	}
	if rec := do(t, admin, "POST", "/tokens/"+ops2.ID+"/rotate", testAdminKey, `{"grace":"0s"}`, nil); rec.Code != 201 {
		t.Errorf("admin rotation of the api+admin token: %d %s", rec.Code, rec.Body)
	}

	// Her own revocations and logouts she lifts; the audit names the
	// revocation lifted.
	mine := e.adminToken(t, "alice", "mine", token.ScopeAPI)
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+mine.ID+"/revoke", `{"reason":"lost"}`, nil, nil); rec.Code != 200 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	var tk Token
	if rec := selfDo(t, h, "alice", "GET", "/tokens/"+mine.ID, "", nil, &tk); rec.Code != 200 || tk.RevokedBy == nil || *tk.RevokedBy != "user:alice" ||
		!strings.Contains(rec.Body.String(), `"revoked_by":"user:alice"`) {
		t.Errorf("revoked_by after a self-service revoke: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+mine.ID+"/reapprove", "", nil, nil); rec.Code != 200 {
		t.Errorf("re-approving her own revocation: %d %s", rec.Code, rec.Body)
	}
	if ev, _ := e.store.Audit(ctx, "alice", 1); len(ev) != 1 || ev[0].Action != storage.ActionTokenReapprove || ev[0].Detail["revoked_by"] != "user:alice" {
		t.Errorf("re-approve event %+v", ev)
	}
	if _, _, err := e.store.Logout(ctx, mine.ID); err != nil {
		t.Fatal(err)
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+mine.ID+"/reapprove", "", nil, nil); rec.Code != 200 {
		t.Errorf("re-approving her token's logout: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, admin, "POST", "/tokens/"+mine.ID+"/revoke", testAdminKey, "", nil); rec.Code != 200 ||
		!strings.Contains(rec.Body.String(), `"revoked_by":"admin_key"`) {
		t.Fatalf("admin revoke: %d %s", rec.Code, rec.Body)
	}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+mine.ID+"/reapprove", "", nil, nil); rec.Code != 403 {
		t.Errorf("re-approving the admin's revocation of an api token: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, admin, "POST", "/tokens/"+mine.ID+"/reapprove", testAdminKey, "", nil); rec.Code != 200 {
		t.Errorf("the admin lifts it: %d %s", rec.Code, rec.Body)
	}

	// A leaked token stays revoked, for her and for the admin.
	leaked := e.adminToken(t, "alice", "leaked", token.ScopeAPI)
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorLeak("github"), leaked.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	eb = ErrorBody{}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+leaked.ID+"/reapprove", "", nil, &eb); rec.Code != 409 || eb.Error != "token_leaked" {
		t.Errorf("self re-approval of a leaked token: %d %s", rec.Code, rec.Body)
	}
	eb = ErrorBody{}
	if rec := do(t, admin, "POST", "/tokens/"+leaked.ID+"/reapprove", testAdminKey, "", &eb); rec.Code != 409 || eb.Error != "token_leaked" {
		t.Errorf("admin re-approval of a leaked token: %d %s", rec.Code, rec.Body)
	}

	// Rotation: never past max_token_lifetime from now; not again while
	// the predecessor is within its grace, on either mount.
	ci := e.adminToken(t, "alice", "ci", token.ScopeAPI)
	eb = ErrorBody{}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+ci.ID+"/rotate", `{"grace":"0s","expires_in":"25h"}`, nil, &eb); rec.Code != 400 ||
		eb.Error != "invalid_request" || !strings.Contains(eb.Message, "maximum token lifetime") {
		t.Errorf("self rotation past the maximum lifetime: %d %s", rec.Code, rec.Body)
	}
	var rot RotatedToken
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+ci.ID+"/rotate", `{"grace":"1h","expires_in":"24h"}`, nil, &rot); rec.Code != 201 {
		t.Fatalf("self rotation: %d %s", rec.Code, rec.Body)
	}
	if max := time.Now().Add(testLimits.MaxLifetime); rot.ExpiresAt.After(max) {
		t.Errorf("rotated token expires %v, after now + max lifetime %v", rot.ExpiresAt, max)
	}
	eb = ErrorBody{}
	if rec := selfDo(t, h, "alice", "POST", "/tokens/"+rot.ID+"/rotate", `{"grace":"0s"}`, nil, &eb); rec.Code != 409 || eb.Error != "rotation_pending" {
		t.Errorf("self rotation during the predecessor's grace: %d %s", rec.Code, rec.Body)
	}
	eb = ErrorBody{}
	if rec := do(t, admin, "POST", "/tokens/"+rot.ID+"/rotate", testAdminKey, `{"grace":"0s"}`, &eb); rec.Code != 409 || eb.Error != "rotation_pending" {
		t.Errorf("admin rotation during the predecessor's grace: %d %s", rec.Code, rec.Body)
	}
}
