package storage

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/token"
)

// Who may change a token. Every change is made by an actor, passed to the
// store explicitly; the store checks on the locked row that this actor may
// make this change to this token, so that no entry point (the admin API,
// self-service, the command line) can reach a change another actor is
// allowed and it is not:
//
//	change      admin (admin_key, token:<id>, cli)   user (user:<id>, own tokens)
//	create      any scopes                           scopes api only
//	revoke      yes                                  yes
//	delete      yes                                  yes
//	re-approve  yes, unless revoked as leaked        only a revocation by this user or a logout
//	rotate      yes                                  only tokens whose scopes are all api
//
// The holder revokes its own token at logout (actor token:<its id>), in any
// state. A token revoked as leaked (actor leak:<source>) is re-approved by
// nobody. Another user's token is ErrNotFound to a user, like an unknown id.

// Actors besides the admin key, admin tokens and users.
const (
	// ActorCLI is the command line's actor.
	ActorCLI = "cli"
	// ActorSystem is armgate's own actor (retention).
	ActorSystem = "system"
	// ActorUnknown is the recorded actor of a revocation made before
	// revocations recorded theirs; only an administrator lifts it.
	ActorUnknown = "unknown"
)

// ActorLeak is the actor of a revocation made on a leak report from source
// (github, gitlab, admin).
func ActorLeak(source string) string { return LeakActorPrefix + source }

// SelfServiceScopes returns the scopes a user may hold on tokens they
// create and rotate themselves (token.SelfServiceScopes).
func SelfServiceScopes() []string { return token.SelfServiceScopes() }

// Refusals of a change the actor may not make.
var (
	// ErrRevokedByOther: a user may lift only their own revocations and
	// logouts.
	ErrRevokedByOther = errors.New("this token was revoked by an administrator; only an administrator can re-approve it")
	// ErrNotSelfService: a user may create and rotate only tokens whose
	// scopes are all self-service scopes.
	ErrNotSelfService = errors.New("only tokens whose scopes are all self-service scopes (api) can be rotated or created here; ask an administrator")
	// ErrTokenLeaked: a token revoked as leaked is never re-approved; its
	// value is public.
	ErrTokenLeaked = errors.New("the token was revoked because it leaked and can never be re-approved; create a new one")
	// ErrRotationPending: a token whose predecessor is still within its
	// grace is not rotated again, so a user holds at most twice the
	// per-user limit of live tokens.
	ErrRotationPending = errors.New("the token's predecessor is still within its rotation grace; rotate again once the grace has ended")
)

// selfUser returns the user id of a self-service actor (user:<id>).
func selfUser(actor string) (string, bool) {
	return strings.CutPrefix(actor, actorUserPrefix)
}

// selfServiceOnly reports whether every scope is a self-service scope.
func selfServiceOnly(scopes []string) bool {
	self := token.SelfServiceScopes()
	for _, s := range scopes {
		if !slices.Contains(self, s) {
			return false
		}
	}
	return len(scopes) > 0
}

// mayTouch checks that actor may change a token of userID at all: a user
// only their own, and another user's token does not exist for them.
func mayTouch(actor, userID string) error {
	if u, ok := selfUser(actor); ok && u != userID {
		return ErrNotFound
	}
	return nil
}

// mayCreate checks that actor may create n.
func mayCreate(actor string, n NewToken) error {
	if u, ok := selfUser(actor); ok {
		if u != n.UserID {
			return ErrNotFound
		}
		if !selfServiceOnly(n.Scopes) {
			return ErrNotSelfService
		}
	}
	return nil
}

// mayRotate checks that actor may rotate cur (after mayTouch).
func mayRotate(actor string, cur Token) error {
	if _, ok := selfUser(actor); ok && !selfServiceOnly(cur.Scopes) {
		return ErrNotSelfService
	}
	return nil
}

// mayLift checks that actor may lift the revocation of cur (after mayTouch
// and the leak check): a user lifts only a revocation they made themselves
// on the self-service mount, or the token's own logout.
func mayLift(actor string, cur Token) error {
	if _, ok := selfUser(actor); !ok || cur.RevokedAt == nil {
		return nil
	}
	if by := cur.RevokedBy; by != nil && (*by == actor || *by == ActorToken(cur.ID)) {
		return nil
	}
	return ErrRevokedByOther
}

// tokenUser returns the user of the token id without locking anything (a
// token's user never changes), so that a change can lock the user row
// before the token row; ErrNotFound when there is no such token.
func tokenUser(ctx context.Context, tx pgx.Tx, id string) (string, error) {
	var userID string
	err := tx.QueryRow(ctx, `SELECT user_id FROM armgate.tokens WHERE id = $1`, id).Scan(&userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return userID, err
}

// lockUser locks the user row in tx (FOR UPDATE when exclusive, else FOR
// SHARE) and reports whether the user is deactivated. Changes that lock a
// user and some of their tokens lock the user first, so that they cannot
// deadlock, and so that revoke-all and rotation of one user are
// serialised: when revoke-all returns, no token of the user is live, a
// successor minted by a concurrent rotation included.
func lockUser(ctx context.Context, tx pgx.Tx, userID string, exclusive bool) (deactivated bool, err error) {
	lock := " FOR SHARE"
	if exclusive {
		lock = " FOR UPDATE"
	}
	return userDeactivated(ctx, tx, userID, lock)
}

// rowQuerier runs a query for one row: a pool, a connection or a
// transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// userDeactivated reports whether the user id is deactivated, reading its
// row with lock ("", " FOR SHARE" or " FOR UPDATE"); ErrNotFound when the
// user does not exist. The one query for "does the user exist" and "is
// the user deactivated".
func userDeactivated(ctx context.Context, q rowQuerier, id, lock string) (deactivated bool, err error) {
	err = q.QueryRow(ctx, `SELECT deactivated_at IS NOT NULL FROM armgate.users WHERE id = $1`+lock, id).Scan(&deactivated)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, ErrNotFound
	}
	return deactivated, err
}

// rotationPending reports whether the token id has a predecessor that is
// still within its grace (not expired).
func rotationPending(ctx context.Context, tx pgx.Tx, id string) (bool, error) {
	var pending bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM armgate.tokens
		WHERE rotated_to = $1 AND expires_at > now())`, id).Scan(&pending)
	return pending, err
}
