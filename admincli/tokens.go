package admincli

import (
	"context"
	"fmt"
	"strings"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// TokenCreate creates a token for user from the admin API's own create
// body (so that both refuse the same values with the same messages),
// creating the user if missing (so that the first admin token can be made
// with nothing in the database), and prints only the plaintext, or with
// JSON the create response.
func (r *Runner) TokenCreate(ctx context.Context, user string, req request.CreateToken) error {
	if err := userID(user); err != nil {
		return err
	}
	if req.Name == "" {
		return Usagef("--name is required")
	}
	checked, err := req.Token(r.now(), r.Limits)
	if err != nil {
		return usage(err)
	}
	nt := adminapi.TokenToStore(user, checked, r.Limits.MaxPerUser)
	nt.CreateUser = true
	if r.Migrate != nil {
		if err := r.Migrate(ctx); err != nil {
			return err
		}
	}
	t, plain, err := r.Store.CreateToken(ctx, Actor, nt)
	if err != nil {
		return fmt.Errorf("creating token: %w", err)
	}
	if r.JSON {
		return r.printJSON(adminapi.CreatedTokenJSON(t, plain))
	}
	_, err = fmt.Fprintln(r.Out, plain)
	return err
}

// TokenList lists a user's tokens that are not deleted.
func (r *Runner) TokenList(ctx context.Context, user string) error {
	if err := userID(user); err != nil {
		return err
	}
	tokens, err := r.Store.ListTokens(ctx, user)
	if err != nil {
		return storeErr(err, fmt.Sprintf("user %q", user))
	}
	if r.JSON {
		return r.printJSON(adminapi.TokenListJSON(tokens))
	}
	return r.printTokens(tokens...)
}

// TokenGet shows a token.
func (r *Runner) TokenGet(ctx context.Context, id string) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	t, err := r.Store.GetToken(ctx, id)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	return r.printToken(t)
}

// TokenRevoke revokes a token (idempotent, any status).
func (r *Runner) TokenRevoke(ctx context.Context, id, reason string) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	reason, err = request.Revoke{Reason: reason}.CleanReason()
	if err != nil {
		return usage(err)
	}
	t, _, err := r.Store.RevokeToken(ctx, Actor, id, reason)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	return r.printToken(t)
}

// TokenRevokeAll revokes every token of a user and prints how many it
// revoked.
func (r *Runner) TokenRevokeAll(ctx context.Context, user, reason string) error {
	if err := userID(user); err != nil {
		return err
	}
	reason, err := request.Revoke{Reason: reason}.CleanReason()
	if err != nil {
		return usage(err)
	}
	n, _, err := r.Store.RevokeAllTokens(ctx, Actor, user, reason)
	if err != nil {
		return storeErr(err, fmt.Sprintf("user %q", user))
	}
	if r.JSON {
		return r.printJSON(adminapi.RevokedCount{Revoked: n})
	}
	_, err = fmt.Fprintln(r.Out, n)
	return err
}

// TokenReapprove makes a revoked token active again.
func (r *Runner) TokenReapprove(ctx context.Context, id string) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	t, _, err := r.Store.ReapproveToken(ctx, Actor, id)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	return r.printToken(t)
}

// TokenDelete deletes a token, freeing its slot. The API answers 204 with
// no body, so with JSON nothing is printed.
func (r *Runner) TokenDelete(ctx context.Context, id string) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	if _, err := r.Store.DeleteToken(ctx, Actor, id); err != nil {
		return storeErr(err, "token "+id)
	}
	if r.JSON {
		return nil
	}
	_, err = fmt.Fprintln(r.Out, "deleted", id)
	return err
}

// TokenRotate replaces an active token by a new one, checked as the admin
// API checks its rotate body, and prints only the new plaintext, or with
// JSON the rotate response.
func (r *Runner) TokenRotate(ctx context.Context, id string, req request.Rotate) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	grace, exp, err := req.Rotation(r.now(), r.Limits)
	if err != nil {
		return usage(err)
	}
	t, plain, _, err := r.Store.RotateToken(ctx, Actor, id, grace, exp)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	if r.JSON {
		return r.printJSON(adminapi.RotatedToken{CreatedToken: adminapi.CreatedTokenJSON(t, plain), RotatedFrom: id})
	}
	_, err = fmt.Fprintln(r.Out, plain)
	return err
}

func (r *Runner) printToken(t storage.Token) error {
	if r.JSON {
		return r.printJSON(adminapi.TokenJSON(t))
	}
	return r.printTokens(t)
}

// printTokens prints tokens as a table.
func (r *Runner) printTokens(tokens ...storage.Token) error {
	t := newTable(r.Out, "ID", "USER", "NAME", "HINT", "SCOPES", "STATUS", "CREATED", "EXPIRES", "LAST USED")
	for _, k := range tokens {
		t.row(k.ID, k.UserID, k.Name, k.Hint, strings.Join(k.Scopes, ","), k.Status.String(),
			stamp(&k.CreatedAt), stamp(&k.ExpiresAt), stamp(k.LastUsedAt))
	}
	return t.flush()
}

// MigrateSchema applies the embedded migrations and prints the schema version.
func (r *Runner) MigrateSchema(ctx context.Context) error {
	if err := r.Migrate(ctx); err != nil {
		return err
	}
	v, err := r.Store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if r.JSON {
		return r.printJSON(struct {
			SchemaVersion int `json:"schema_version"`
		}{v})
	}
	_, err = fmt.Fprintf(r.Out, "schema version %d\n", v)
	return err
}
