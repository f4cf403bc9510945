package adminapi

import (
	"net/http"
	"testing"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// TestLogoutAnyState: POST /logout revokes the presented token in any state
// it exists in (204): a revoked one stays revoked with its first actor and
// reason, an expired one records revoked_at and stays expired, a
// deactivated user's token is revoked and stays revoked after the user's
// reactivation. Only a token that does not exist is 401.
func TestLogoutAnyState(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	h := e.admin(nil) // logout reads the store, never the verifier
	ctx := t.Context()
	e.user(t, "alice")
	e.user(t, "dave")
	logout := func(tok string) int {
		t.Helper()
		r, _ := http.NewRequest(http.MethodPost, "/logout", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return serveJSON(t, h, r, nil).Code
	}

	live, livePlain := e.token(t, "alice", "live")
	if c := logout(livePlain); c != http.StatusNoContent {
		t.Errorf("live: %d", c)
	}
	if got, _ := e.store.GetToken(ctx, live.ID); got.Status != token.Revoked || *got.RevokedBy != storage.ActorToken(live.ID) ||
		*got.RevokedReason != "logout" {
		t.Errorf("live token after logout: %+v", got)
	}
	if c := logout(livePlain); c != http.StatusNoContent {
		t.Errorf("second logout: %d", c)
	}

	revoked, revokedPlain := e.token(t, "alice", "revoked")
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorAdminKey, revoked.ID, "by the admin"); err != nil {
		t.Fatal(err)
	}
	if c := logout(revokedPlain); c != http.StatusNoContent {
		t.Errorf("revoked: %d", c)
	}
	if got, _ := e.store.GetToken(ctx, revoked.ID); got.Status != token.Revoked || *got.RevokedBy != storage.ActorAdminKey ||
		*got.RevokedReason != "by the admin" {
		t.Errorf("revoked token after logout: %+v (the first revocation stays)", got)
	}

	expired, expiredPlain := e.token(t, "alice", "expired")
	if _, err := e.pool.Exec(ctx, `UPDATE armgate.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, expired.ID); err != nil {
		t.Fatal(err)
	}
	if c := logout(expiredPlain); c != http.StatusNoContent {
		t.Errorf("expired: %d", c)
	}
	if got, _ := e.store.GetToken(ctx, expired.ID); got.Status != token.Expired || got.RevokedAt == nil {
		t.Errorf("expired token after logout: %+v, want expired with revoked_at", got)
	}

	deact, deactPlain := e.token(t, "dave", "d")
	if _, _, err := e.store.SetUserActive(ctx, storage.ActorAdminKey, "dave", false); err != nil {
		t.Fatal(err)
	}
	if c := logout(deactPlain); c != http.StatusNoContent {
		t.Errorf("deactivated user's token: %d", c)
	}
	if _, _, err := e.store.SetUserActive(ctx, storage.ActorAdminKey, "dave", true); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.GetToken(ctx, deact.ID); got.Status != token.Revoked {
		t.Errorf("deactivated user's token after reactivation: %s, want revoked", got.Status)
	}

	deleted, deletedPlain := e.token(t, "alice", "deleted")
	if _, err := e.store.DeleteToken(ctx, storage.ActorAdminKey, deleted.ID); err != nil {
		t.Fatal(err)
	}
	unknown, _ := token.Generate()
	for name, tok := range map[string]string{"deleted": deletedPlain, "unknown": unknown, "malformed": "arm_nope", "admin key": testAdminKey} {
		if c := logout(tok); c != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
}
