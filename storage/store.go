package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/token"
)

// Channel is the LISTEN/NOTIFY channel that carries cache invalidations.
const Channel = "armgate"

// maxNotifyHashes bounds the hashes in one notification (payloads must stay
// under 8000 bytes); beyond it the notification says "drop everything".
const maxNotifyHashes = 100

// Invalidation names the cache entries a change made stale. It is sent with
// pg_notify in the changing transaction and applied by every instance.
type Invalidation struct {
	Hashes [][]byte `json:"h,omitempty"`
	All    bool     `json:"all,omitempty"`
}

// Store runs armgate's queries on a pgx pool.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, now: time.Now}
}

// Pool returns the underlying pool (for health checks and listeners).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const credentialQuery = `
SELECT t.id::text, t.user_id, t.name, t.scopes, t.created_at, t.expires_at,
       t.revoked_at IS NOT NULL, u.deactivated_at IS NOT NULL
FROM armgate.tokens t JOIN armgate.users u ON u.id = t.user_id
WHERE t.hash = $1`

// LookupCredential reads the token with hash h; pgx.ErrNoRows maps to
// ErrNotFound.
func (s *Store) LookupCredential(ctx context.Context, h token.Hash) (token.Credential, error) {
	var c token.Credential
	err := s.pool.QueryRow(ctx, credentialQuery, h[:]).Scan(
		&c.TokenID, &c.UserID, &c.Name, &c.Scopes, &c.CreatedAt, &c.ExpiresAt, &c.Revoked, &c.UserDeactivated)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	return c, err
}

// tx runs fn in a transaction.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// audit records one event in tx.
func audit(ctx context.Context, tx pgx.Tx, actor, action, target, userID string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	_, err := tx.Exec(ctx,
		`INSERT INTO armgate.audit (actor, action, target, user_id, detail) VALUES ($1, $2, $3, $4, $5)`,
		actor, action, target, userID, detail)
	return err
}

// notify sends inv in tx; PostgreSQL delivers it only if tx commits.
func notify(ctx context.Context, tx pgx.Tx, inv Invalidation) error {
	if len(inv.Hashes) > maxNotifyHashes {
		inv = Invalidation{All: true}
	}
	if len(inv.Hashes) == 0 && !inv.All {
		return nil
	}
	payload, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload))
	return err
}

func isUniqueViolation(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == pgerrcode.UniqueViolation
}

// ---- users

const userColumns = `u.id, u.email, u.display_name,
	CASE WHEN u.deactivated_at IS NULL THEN 'active' ELSE 'deactivated' END,
	(SELECT count(*) FROM armgate.tokens t WHERE t.user_id = u.id AND t.expires_at > now()),
	u.created_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.DisplayName, &u.Status, &u.TokenCount, &u.CreatedAt)
	u.CreatedAt = u.CreatedAt.UTC()
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// GetUser returns the user with id.
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM armgate.users u WHERE u.id = $1`, id))
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
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM armgate.users u WHERE u.id = $1`, id))
		return err
	})
	return u, created, err
}

// ListUsers returns up to limit users with id > after, ordered by id, and
// whether more follow. status filters when not empty.
func (s *Store) ListUsers(ctx context.Context, status, after string, limit int) ([]User, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM armgate.users u
		WHERE u.id > $1 AND ($2 = '' OR ($2 = 'active') = (u.deactivated_at IS NULL))
		ORDER BY u.id LIMIT $3`, after, status, limit+1)
	if err != nil {
		return nil, false, err
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
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
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM armgate.users u WHERE u.id = $1`, id))
		return err
	})
	return u, inv, err
}

// ---- tokens

const tokenColumns = `t.id::text, t.user_id, t.name, t.hint, t.scopes, t.created_at, t.expires_at,
	t.last_used_at, t.revoked_at, t.revoked_reason, u.deactivated_at IS NOT NULL`

const tokenFrom = ` FROM armgate.tokens t JOIN armgate.users u ON u.id = t.user_id `

func (s *Store) scanToken(row pgx.Row) (Token, error) {
	var t Token
	var deactivated bool
	err := row.Scan(&t.ID, &t.UserID, &t.Name, &t.Hint, &t.Scopes, &t.CreatedAt, &t.ExpiresAt,
		&t.LastUsedAt, &t.RevokedAt, &t.RevokedReason, &deactivated)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	t.Status = token.StatusAt(s.now(), t.ExpiresAt, t.RevokedAt != nil, deactivated).String()
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	t.LastUsedAt, t.RevokedAt = utcPtr(t.LastUsedAt), utcPtr(t.RevokedAt)
	return t, err
}

// NewToken describes a token to create.
type NewToken struct {
	UserID    string
	Name      string // already trimmed and validated
	Scopes    []string
	ExpiresAt time.Time
	// MaxPerUser is the limit on tokens that are neither deleted nor expired.
	MaxPerUser int
	// CreateUser creates the user when missing (command-line bootstrap).
	CreateUser bool
}

// CreateToken creates a token and returns it with its plaintext, the only
// time the plaintext exists outside the client. The user row is locked so
// that concurrent creates never exceed the limit.
func (s *Store) CreateToken(ctx context.Context, actor string, n NewToken) (Token, string, error) {
	if !n.ExpiresAt.After(s.now()) {
		return Token{}, "", ErrExpiryPassed
	}
	plain, err := token.Generate()
	if err != nil {
		return Token{}, "", err
	}
	h := token.Sum(plain)
	var t Token
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if n.CreateUser {
			tag, err := tx.Exec(ctx, `INSERT INTO armgate.users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, n.UserID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				if err := audit(ctx, tx, actor, ActionUserCreate, n.UserID, n.UserID, nil); err != nil {
					return err
				}
			}
		}
		var deactivated bool
		err := tx.QueryRow(ctx, `SELECT deactivated_at IS NOT NULL FROM armgate.users WHERE id = $1 FOR UPDATE`, n.UserID).Scan(&deactivated)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if deactivated {
			return ErrUserDeactivated
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM armgate.tokens WHERE user_id = $1 AND expires_at > now()`, n.UserID).Scan(&live); err != nil {
			return err
		}
		if live >= n.MaxPerUser {
			return ErrTokenLimit
		}
		var id string
		err = tx.QueryRow(ctx, `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text`,
			n.UserID, n.Name, h[:], token.Hint(plain), n.Scopes, n.ExpiresAt).Scan(&id)
		if isUniqueViolation(err) {
			return ErrNameTaken
		} else if err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, ActionTokenCreate, id, n.UserID, map[string]any{
			"name": n.Name, "scopes": n.Scopes, "expires_at": n.ExpiresAt.UTC().Format(time.RFC3339),
		}); err != nil {
			return err
		}
		t, err = s.scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1`, id))
		return err
	})
	if err != nil {
		return Token{}, "", err
	}
	return t, plain, nil
}

// GetToken returns the token with id (a UUID).
func (s *Store) GetToken(ctx context.Context, id string) (Token, error) {
	return s.scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1`, id))
}

// ListTokens returns every token of a user that is not deleted, expired ones
// included, oldest first. ErrNotFound when the user does not exist.
func (s *Store) ListTokens(ctx context.Context, userID string) ([]Token, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM armgate.users WHERE id = $1)`, userID).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, ErrNotFound
	}
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.user_id = $1 ORDER BY t.created_at, t.id`, userID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return s.scanToken(r) })
}

// changeToken runs fn on the locked token row and then notifies, audits and
// reads the token back. fn returns the audit detail, or skip=true when
// nothing changed (idempotent calls write no event).
func (s *Store) changeToken(ctx context.Context, actor, action, id string,
	fn func(tx pgx.Tx, cur Token) (detail map[string]any, skip bool, err error)) (Token, Invalidation, error) {
	var t Token
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var h []byte
		cur, err := s.scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1 FOR UPDATE OF t`, id))
		if err != nil {
			return err
		}
		detail, skip, err := fn(tx, cur)
		if err != nil || skip {
			t = cur
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT hash FROM armgate.tokens WHERE id = $1`, id).Scan(&h); err != nil {
			return err
		}
		inv.Hashes = [][]byte{h}
		if err := audit(ctx, tx, actor, action, id, cur.UserID, detail); err != nil {
			return err
		}
		if err := notify(ctx, tx, inv); err != nil {
			return err
		}
		t, err = s.scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1`, id))
		return err
	})
	return t, inv, err
}

// RevokeToken revokes a token in any status. It is idempotent: a revoked
// token keeps its first revocation time and reason.
func (s *Store) RevokeToken(ctx context.Context, actor, id, reason string) (Token, Invalidation, error) {
	return s.revoke(ctx, actor, ActionTokenRevoke, id, reason)
}

// Logout revokes a token on behalf of its holder, with reason "logout".
func (s *Store) Logout(ctx context.Context, id string) (Token, Invalidation, error) {
	return s.revoke(ctx, ActorToken(id), ActionTokenLogout, id, "logout")
}

func (s *Store) revoke(ctx context.Context, actor, action, id, reason string) (Token, Invalidation, error) {
	return s.changeToken(ctx, actor, action, id, func(tx pgx.Tx, cur Token) (map[string]any, bool, error) {
		if cur.RevokedAt != nil {
			return nil, true, nil
		}
		var r *string
		if reason != "" {
			r = &reason
		}
		_, err := tx.Exec(ctx, `UPDATE armgate.tokens SET revoked_at = now(), revoked_reason = $2 WHERE id = $1`, id, r)
		return map[string]any{"reason": reason}, false, err
	})
}

// ReapproveToken lifts a revocation before the token expires. An expired
// token is ErrTokenExpired (even if its user is deactivated too); a token of
// a deactivated user is ErrUserDeactivated; an active token is a no-op.
func (s *Store) ReapproveToken(ctx context.Context, actor, id string) (Token, Invalidation, error) {
	return s.changeToken(ctx, actor, ActionTokenReapprove, id, func(tx pgx.Tx, cur Token) (map[string]any, bool, error) {
		switch cur.Status {
		case token.StatusExpired:
			return nil, false, ErrTokenExpired
		case token.StatusDeactivated:
			return nil, false, ErrUserDeactivated
		case token.StatusActive:
			return nil, true, nil
		}
		// A revoked token shows "revoked" even when its user is also
		// deactivated (first match wins), so ask the user row directly; the
		// share lock keeps a concurrent deactivation from slipping past.
		var deactivated bool
		if err := tx.QueryRow(ctx, `SELECT deactivated_at IS NOT NULL FROM armgate.users WHERE id = $1 FOR SHARE`,
			cur.UserID).Scan(&deactivated); err != nil {
			return nil, false, err
		}
		if deactivated {
			return nil, false, ErrUserDeactivated
		}
		_, err := tx.Exec(ctx, `UPDATE armgate.tokens SET revoked_at = NULL, revoked_reason = NULL WHERE id = $1`, id)
		return nil, false, err
	})
}

// DeleteToken deletes a token, which frees its slot and its name.
func (s *Store) DeleteToken(ctx context.Context, actor, id string) (Invalidation, error) {
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var userID, name string
		var h []byte
		err := tx.QueryRow(ctx, `DELETE FROM armgate.tokens WHERE id = $1 RETURNING user_id, name, hash`, id).Scan(&userID, &name, &h)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		inv.Hashes = [][]byte{h}
		if err := audit(ctx, tx, actor, ActionTokenDelete, id, userID, map[string]any{"name": name}); err != nil {
			return err
		}
		return notify(ctx, tx, inv)
	})
	return inv, err
}

// Audit returns up to limit events, newest first; userID filters to events
// on that user and on that user's tokens when not empty.
func (s *Store) Audit(ctx context.Context, userID string, limit int) ([]AuditEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, actor, action, target, detail FROM armgate.audit
		WHERE $1 = '' OR user_id = $1 ORDER BY id DESC LIMIT $2`, userID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEvent, error) {
		var e AuditEvent
		err := r.Scan(&e.At, &e.Actor, &e.Action, &e.Target, &e.Detail)
		e.At = e.At.UTC()
		return e, err
	})
}

// RecordLastUsed stores last-use times collected in memory, in one statement.
func (s *Store) RecordLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	ats := make([]time.Time, 0, len(used))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := s.pool.Exec(ctx, `UPDATE armgate.tokens t SET last_used_at = v.at
		FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
		WHERE t.id = v.id AND (t.last_used_at IS NULL OR t.last_used_at < v.at)`, ids, ats)
	if err != nil {
		return fmt.Errorf("record last use: %w", err)
	}
	return nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
