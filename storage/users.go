package storage

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// countsTowardLimit selects the tokens (t) the per-user limit counts: neither
// expired nor rotated away (deleted ones are gone). A token rotated away
// whose successor was deleted counts again until it expires, so that
// deleting successors cannot pile up live predecessors beyond the limit.
const countsTowardLimit = `t.expires_at > now() AND (t.rotated_at IS NULL OR t.rotated_to IS NULL)`

// userColumns are the columns of User, by name (see collectUser).
const userColumns = `u.id, u.email, u.display_name,
	CASE WHEN u.deactivated_at IS NULL THEN '` + string(UserActive) + `' ELSE '` + string(UserDeactivated) + `' END AS status,
	(SELECT count(*) FROM armgate.tokens t WHERE t.user_id = u.id AND ` + countsTowardLimit + `) AS token_count,
	u.created_at, u.rate_limit_requests AS rl_requests, u.rate_limit_window AS rl_window`

func collectUser(row pgx.CollectableRow) (User, error) {
	u, err := pgx.RowToStructByName[User](row)
	u.CreatedAt = u.CreatedAt.UTC()
	if l := limitOf(u.RLRequests, u.RLWindow); !l.IsZero() {
		u.RateLimit = &l
	}
	return u, err
}

// getUser reads the user id with q; ErrNotFound when there is none.
func getUser(ctx context.Context, q querier, id string) (User, error) {
	rows, _ := q.Query(ctx, `SELECT `+userColumns+` FROM armgate.users u WHERE u.id = $1`, id)
	u, err := pgx.CollectExactlyOneRow(rows, collectUser)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// GetUser returns the user with id.
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	return getUser(ctx, s.pool, id)
}

// UserPatch is the body of an upsert; nil fields are left unchanged on update.
type UserPatch struct {
	Email       *string
	DisplayName *string
}

// UpsertUser creates the user id or updates it; created reports which.
// Concurrent upserts of a new id create it once.
func (s *Store) UpsertUser(ctx context.Context, actor, id string, p UserPatch) (u User, created bool, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO armgate.users (id, email, display_name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
			id, p.Email, p.DisplayName)
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		action := ActionUserCreate
		if !created {
			action = ActionUserUpdate
			// Only a real change is written and audited: a PUT that repeats
			// the current values is a no-op, like the other idempotent calls.
			tag, err := tx.Exec(ctx, `UPDATE armgate.users SET
				email = coalesce($2, email), display_name = coalesce($3, display_name), updated_at = now()
				WHERE id = $1 AND (email IS DISTINCT FROM coalesce($2, email)
					OR display_name IS DISTINCT FROM coalesce($3, display_name))`, id, p.Email, p.DisplayName)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				action = ""
			}
		}
		detail := map[string]any{}
		if p.Email != nil {
			detail["email"] = *p.Email
		}
		if p.DisplayName != nil {
			detail["display_name"] = *p.DisplayName
		}
		if action != "" {
			if err := audit(ctx, tx, actor, action, id, id, detail); err != nil {
				return err
			}
		}
		u, err = getUser(ctx, tx, id)
		return err
	})
	return u, created, err
}

// ListUsers returns up to limit users with id > after, ordered by id, and
// whether more follow. status ("", or a UserStatus) filters when not empty.
func (s *Store) ListUsers(ctx context.Context, status, after string, limit int) ([]User, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM armgate.users u
		WHERE u.id > $1 AND ($2 = '' OR ($2 = '`+string(UserActive)+`') = (u.deactivated_at IS NULL))
		ORDER BY u.id LIMIT $3`, after, status, limit+1)
	if err != nil {
		return nil, false, err
	}
	users, err := pgx.CollectRows(rows, collectUser)
	if err != nil {
		return nil, false, err
	}
	more := len(users) > limit
	if more {
		users = users[:limit]
	}
	return users, more, nil
}

// SetUserActive deactivates (active=false) or reactivates a user. The user's
// token rows are not touched, so reactivation restores exactly the tokens
// that are neither revoked nor expired. It is idempotent.
func (s *Store) SetUserActive(ctx context.Context, actor, id string, active bool) (User, Invalidation, error) {
	var u User
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		q := `UPDATE armgate.users SET deactivated_at = now(), updated_at = now() WHERE id = $1 AND deactivated_at IS NULL`
		action := ActionUserDeactivate
		if active {
			q = `UPDATE armgate.users SET deactivated_at = NULL, updated_at = now() WHERE id = $1 AND deactivated_at IS NOT NULL`
			action = ActionUserReactivate
		}
		tag, err := tx.Exec(ctx, q, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			rows, _ := tx.Query(ctx, `SELECT hash FROM armgate.tokens WHERE user_id = $1 AND expires_at > now()`, id)
			if inv.Hashes, err = pgx.CollectRows(rows, pgx.RowTo[[]byte]); err != nil {
				return err
			}
			if err := audit(ctx, tx, actor, action, id, id, nil); err != nil {
				return err
			}
			if err := notify(ctx, tx, inv); err != nil {
				return err
			}
		}
		u, err = getUser(ctx, tx, id)
		return err
	})
	return u, inv, err
}
