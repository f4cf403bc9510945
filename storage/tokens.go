package storage

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/token"
)

const credentialQuery = `
SELECT t.id::text, t.user_id, t.name, t.scopes, t.created_at, t.expires_at,
       t.revoked_at IS NOT NULL, u.deactivated_at IS NOT NULL,
       ` + rateLimitColumns + `
FROM armgate.tokens t JOIN armgate.users u ON u.id = t.user_id
WHERE t.hash = $1`

// LookupCredential reads the token with hash h; pgx.ErrNoRows maps to
// ErrNotFound.
func (s *Store) LookupCredential(ctx context.Context, h token.Hash) (token.Credential, error) {
	var c token.Credential
	var q controlColumns
	err := s.pool.QueryRow(ctx, credentialQuery, h[:]).Scan(
		&c.TokenID, &c.UserID, &c.Name, &c.Scopes, &c.CreatedAt, &c.ExpiresAt, &c.Revoked, &c.UserDeactivated,
		&q.tokReq, &q.tokWin, &q.userReq, &q.userWin, &q.ips)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, err
	}
	return c, q.apply(&c)
}

// tokenColumns are the columns of tokenRow, by name (see collectToken).
const tokenColumns = `t.id::text AS id, t.user_id, t.name, t.hint, t.scopes, t.created_at, t.expires_at,
	t.last_used_at, t.revoked_at, t.revoked_reason, t.revoked_by, t.rotated_to::text AS rotated_to,
	t.leaked_at, t.leak_url,
	u.deactivated_at IS NOT NULL AS deactivated,
	t.rate_limit_requests AS rl_requests, t.rate_limit_window AS rl_window, coalesce(t.allowed_ips, '{}') AS ip_list`

const tokenFrom = ` FROM armgate.tokens t JOIN armgate.users u ON u.id = t.user_id `

// tokenRow is a token as read, before its status is worked out.
type tokenRow struct {
	Token
	Deactivated bool
	// The token's controls, see controlColumns.
	RLRequests *int64         `db:"rl_requests"`
	RLWindow   *int64         `db:"rl_window"`
	IPList     []netip.Prefix `db:"ip_list"`
}

// lockedTokenRow is a token read for a change: its hash names the cache
// entry to invalidate.
type lockedTokenRow struct {
	tokenRow
	Hash []byte
}

// token finishes r: the status at s.now() and times in UTC.
func (s *Store) token(r tokenRow) Token {
	t := r.Token
	t.Status = token.StatusAt(s.now(), t.ExpiresAt, t.RevokedAt != nil, r.Deactivated)
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	t.LastUsedAt, t.RevokedAt = utcPtr(t.LastUsedAt), utcPtr(t.RevokedAt)
	c := controlsOf(r.RLRequests, r.RLWindow, r.IPList, nil)
	t.RateLimit, t.AllowedIPs = c.RateLimit, c.AllowedIPs
	t.LeakedAt = utcPtr(t.LeakedAt)
	return t
}

func (s *Store) collectToken(row pgx.CollectableRow) (Token, error) {
	r, err := pgx.RowToStructByName[tokenRow](row)
	return s.token(r), err
}

// getToken reads the token id with q; ErrNotFound when there is none.
func (s *Store) getToken(ctx context.Context, q querier, id string) (Token, error) {
	rows, _ := q.Query(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1`, id)
	t, err := pgx.CollectExactlyOneRow(rows, s.collectToken)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

// lockToken reads the token id and its hash in tx and locks its row until
// tx ends; ErrNotFound when there is none.
func (s *Store) lockToken(ctx context.Context, tx pgx.Tx, id string) (Token, []byte, error) {
	rows, _ := tx.Query(ctx, `SELECT `+tokenColumns+`, t.hash`+tokenFrom+`WHERE t.id = $1 FOR UPDATE OF t`, id)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[lockedTokenRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, nil, ErrNotFound
	}
	return s.token(r.tokenRow), r.Hash, err
}

// NewToken describes a token to create.
type NewToken struct {
	UserID    string
	Name      string // already trimmed and validated
	Scopes    []string
	ExpiresAt time.Time
	// MaxPerUser is the limit on tokens that are neither deleted, expired
	// nor rotated away.
	MaxPerUser int
	// CreateUser creates the user when missing (command-line bootstrap).
	CreateUser bool
	// RateLimit and AllowedIPs are the token's controls (zero: none).
	RateLimit  quota.Limit
	AllowedIPs ipallow.List
}

// CreateToken creates a token and returns it with its plaintext, the only
// time the plaintext exists outside the client. The user row is locked so
// that concurrent creates never exceed the limit.
func (s *Store) CreateToken(ctx context.Context, actor string, n NewToken) (Token, string, error) {
	if err := mayCreate(actor, n); err != nil {
		return Token{}, "", err
	}
	if !n.ExpiresAt.After(s.now()) {
		return Token{}, "", ErrExpiryPassed
	}
	plain, h, err := newPlaintext()
	if err != nil {
		return Token{}, "", err
	}
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
		id, err := insertToken(ctx, tx, n, plain, h, true)
		if err != nil {
			return err
		}
		detail := map[string]any{
			"name": n.Name, "scopes": n.Scopes, "expires_at": n.ExpiresAt.UTC().Format(time.RFC3339),
		}
		if !n.RateLimit.IsZero() {
			detail["rate_limit"] = n.RateLimit.String()
		}
		if !n.AllowedIPs.Empty() {
			detail["allowed_ips"] = n.AllowedIPs.Strings()
		}
		if err := audit(ctx, tx, actor, ActionTokenCreate, id, n.UserID, detail); err != nil {
			return err
		}
		if err := notify(ctx, tx, Invalidation{Created: [][]byte{h[:]}}); err != nil {
			return err
		}
		t, err = s.getToken(ctx, tx, id)
		return err
	})
	if err != nil {
		return Token{}, "", err
	}
	return t, plain, nil
}

// insertToken stores the token n with plaintext plain and hash h in tx and
// returns its id. It locks the user row first, so that concurrent creates
// and rotations never exceed the limit, which it checks when checkLimit.
func insertToken(ctx context.Context, tx pgx.Tx, n NewToken, plain string, h token.Hash, checkLimit bool) (string, error) {
	deactivated, err := lockUser(ctx, tx, n.UserID, true)
	if err != nil {
		return "", err
	}
	if deactivated {
		return "", ErrUserDeactivated
	}
	if checkLimit {
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM armgate.tokens t WHERE t.user_id = $1 AND `+countsTowardLimit, n.UserID).Scan(&live); err != nil {
			return "", err
		}
		if live >= n.MaxPerUser {
			return "", ErrTokenLimit
		}
	}
	var id string
	req, win := limitArgs(n.RateLimit)
	var ips any
	if !n.AllowedIPs.Empty() {
		ips = n.AllowedIPs.Prefixes()
	}
	err = tx.QueryRow(ctx, `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at,
			rate_limit_requests, rate_limit_window, allowed_ips)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::cidr[]) RETURNING id::text`,
		n.UserID, n.Name, h[:], token.Hint(plain), n.Scopes, n.ExpiresAt, req, win, ips).Scan(&id)
	if isUniqueViolation(err) {
		return "", ErrNameTaken
	}
	return id, err
}

// RotateToken replaces the active token id with a new one of the same user,
// name and scopes that expires at expiresAt, and returns the new token with
// its plaintext. The old token keeps working for grace at most (its expiry
// becomes the earliest of its own, now + grace and the new token's) and from
// now on counts neither toward the per-user limit nor toward name
// uniqueness, so the count is unchanged and a user at the limit can rotate.
// A token that is revoked, expired, of a deactivated user or already rotated
// is ErrTokenNotActive; one whose predecessor is still within its grace is
// ErrRotationPending. A user (actor user:<id>) rotates only their own tokens
// whose scopes are all self-service scopes (else ErrNotSelfService). The
// user row is locked first, as revoke-all does, so that the two are
// serialised. inv names the old token, whose expiry changed.
func (s *Store) RotateToken(ctx context.Context, actor, id string, grace time.Duration, expiresAt time.Time) (newTok Token, plaintext string, inv Invalidation, err error) {
	if !expiresAt.After(s.now()) {
		return Token{}, "", Invalidation{}, ErrExpiryPassed
	}
	plain, h, err := newPlaintext()
	if err != nil {
		return Token{}, "", Invalidation{}, err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		userID, err := tokenUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := mayTouch(actor, userID); err != nil {
			return err
		}
		if _, err := lockUser(ctx, tx, userID, true); err != nil {
			return err
		}
		old, oldHash, err := s.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := mayRotate(actor, old); err != nil {
			return err
		}
		if old.RotatedTo != nil {
			return &AlreadyRotatedError{To: *old.RotatedTo}
		}
		if old.Status != token.Active {
			return ErrTokenNotActive
		}
		if pending, err := rotationPending(ctx, tx, id); err != nil {
			return err
		} else if pending {
			return ErrRotationPending
		}
		// Out of the limit and of the name's way before the successor is
		// inserted. The old token never outlives its successor.
		tag, err := tx.Exec(ctx, `UPDATE armgate.tokens SET rotated_at = now(),
			expires_at = least(expires_at, now() + $2::bigint * interval '1 microsecond', $3)
			WHERE id = $1 AND rotated_at IS NULL`, id, grace.Microseconds(), expiresAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 { // rotated before, its successor since deleted
			return ErrTokenNotActive
		}
		// The successor keeps the quota and the allow-list.
		ips, err := ipallow.Parse(old.AllowedIPs)
		if err != nil {
			return err
		}
		succ := NewToken{UserID: old.UserID, Name: old.Name, Scopes: old.Scopes, ExpiresAt: expiresAt, AllowedIPs: ips}
		if old.RateLimit != nil {
			succ.RateLimit = *old.RateLimit
		}
		newID, err := insertToken(ctx, tx, succ, plain, h, false)
		if errors.Is(err, ErrUserDeactivated) {
			return ErrTokenNotActive
		} else if err != nil {
			return err
		}
		var oldExpires time.Time
		if err := tx.QueryRow(ctx, `UPDATE armgate.tokens SET rotated_to = $2 WHERE id = $1 RETURNING expires_at`,
			id, newID).Scan(&oldExpires); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, ActionTokenRotate, id, old.UserID, map[string]any{
			"new_token_id": newID, "scopes": old.Scopes,
			"expires_at":     expiresAt.UTC().Format(time.RFC3339),
			"old_expires_at": oldExpires.UTC().Format(time.RFC3339),
		}); err != nil {
			return err
		}
		inv.Hashes, inv.Created = [][]byte{oldHash}, [][]byte{h[:]}
		if err := notify(ctx, tx, inv); err != nil {
			return err
		}
		newTok, err = s.getToken(ctx, tx, newID)
		return err
	})
	if err != nil {
		return Token{}, "", Invalidation{}, err
	}
	return newTok, plain, inv, nil
}

// RevokeAllTokens revokes every token of the user that is not revoked yet,
// whatever its status (as RevokeToken does one by one), with one audit event
// per token revoked, and returns how many it revoked. ErrNotFound when the
// user does not exist.
func (s *Store) RevokeAllTokens(ctx context.Context, actor, userID, reason string) (count int, inv Invalidation, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		// The user row first, as rotation does: a rotation that got it
		// before has committed its successor, which this statement's
		// snapshot (taken after the lock) then sees and revokes; one that
		// comes after finds its token revoked.
		if _, err := lockUser(ctx, tx, userID, true); err != nil {
			return err
		}
		r := nullIfEmpty(reason)
		// The rows are locked in id order so that two revoke-alls of one
		// user cannot deadlock.
		rows, _ := tx.Query(ctx, `UPDATE armgate.tokens SET revoked_at = now(), revoked_reason = $2, revoked_by = $3
			WHERE id IN (SELECT id FROM armgate.tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE)
			RETURNING id::text, hash`, userID, r, actor)
		type revoked struct {
			ID   string
			Hash []byte
		}
		done, err := pgx.CollectRows(rows, pgx.RowToStructByName[revoked])
		if err != nil {
			return err
		}
		if len(done) == 0 {
			return nil
		}
		ids := make([]string, len(done))
		for i, d := range done {
			ids[i] = d.ID
			inv.Hashes = append(inv.Hashes, d.Hash)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO armgate.audit (actor, action, target, user_id, detail)
			SELECT $1, $2, id, $3, $4 FROM unnest($5::text[]) AS id`,
			actor, ActionTokenRevoke, userID, map[string]any{"reason": reason, "revoked_by": actor}, ids); err != nil {
			return err
		}
		count = len(done)
		return notify(ctx, tx, inv)
	})
	if err != nil {
		return 0, Invalidation{}, err
	}
	return count, inv, nil
}

// GetToken returns the token with id (a UUID).
func (s *Store) GetToken(ctx context.Context, id string) (Token, error) {
	return s.getToken(ctx, s.pool, id)
}

// ListTokens returns every token of a user that is not deleted, expired ones
// included, oldest first. ErrNotFound when the user does not exist.
func (s *Store) ListTokens(ctx context.Context, userID string) ([]Token, error) {
	if _, err := userDeactivated(ctx, s.pool, userID, ""); err != nil {
		return nil, err // ErrNotFound when the user does not exist
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.user_id = $1 ORDER BY t.created_at, t.id`, userID)
	return pgx.CollectRows(rows, s.collectToken)
}

// changeToken runs fn on the locked token row and then notifies, audits and
// reads the token back. fn returns the audit detail, or skip=true when
// nothing changed (idempotent calls write no event). A user (actor
// user:<id>) changes only their own tokens: another user's is ErrNotFound.
// With lockUser, the token's user row is locked (FOR SHARE) before the
// token row, the order every change that locks both keeps.
func (s *Store) changeToken(ctx context.Context, actor, action, id string, lockUserRow bool,
	fn func(tx pgx.Tx, cur Token) (detail map[string]any, skip bool, err error)) (Token, Invalidation, error) {
	var t Token
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if lockUserRow {
			userID, err := tokenUser(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := mayTouch(actor, userID); err != nil {
				return err
			}
			if _, err := lockUser(ctx, tx, userID, false); err != nil {
				return err
			}
		}
		cur, h, err := s.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := mayTouch(actor, cur.UserID); err != nil {
			return err
		}
		detail, skip, err := fn(tx, cur)
		if err != nil || skip {
			t = cur
			return err
		}
		inv.Hashes = [][]byte{h}
		if err := audit(ctx, tx, actor, action, id, cur.UserID, detail); err != nil {
			return err
		}
		if err := notify(ctx, tx, inv); err != nil {
			return err
		}
		t, err = s.getToken(ctx, tx, id)
		return err
	})
	return t, inv, err
}

// RevokeToken revokes a token in any status and records actor as its
// revoked_by. It is idempotent: a revoked token keeps its first revocation
// time, reason and actor. A user (actor user:<id>) revokes only their own
// tokens.
func (s *Store) RevokeToken(ctx context.Context, actor, id, reason string) (Token, Invalidation, error) {
	return s.revoke(ctx, actor, ActionTokenRevoke, id, reason)
}

// Logout revokes a token on behalf of its holder, with reason "logout" and
// actor token:<id>, in any status.
func (s *Store) Logout(ctx context.Context, id string) (Token, Invalidation, error) {
	return s.revoke(ctx, ActorToken(id), ActionTokenLogout, id, "logout")
}

func (s *Store) revoke(ctx context.Context, actor, action, id, reason string) (Token, Invalidation, error) {
	return s.changeToken(ctx, actor, action, id, false, func(tx pgx.Tx, cur Token) (map[string]any, bool, error) {
		if cur.RevokedAt != nil {
			return nil, true, nil
		}
		r := nullIfEmpty(reason)
		_, err := tx.Exec(ctx, `UPDATE armgate.tokens SET revoked_at = now(), revoked_reason = $2, revoked_by = $3 WHERE id = $1`,
			id, r, actor)
		return map[string]any{"reason": reason, "revoked_by": actor}, false, err
	})
}

// ReapproveToken lifts a revocation before the token expires. A token
// revoked as leaked is ErrTokenLeaked, for every actor; an expired token is
// ErrTokenExpired (even if its user is deactivated too); a token of a
// deactivated user is ErrUserDeactivated; an active token is a no-op. A
// user (actor user:<id>) lifts only a revocation of their own token that
// they made themselves or that was its logout (else ErrRevokedByOther).
// The audit detail names the actor of the revocation lifted.
func (s *Store) ReapproveToken(ctx context.Context, actor, id string) (Token, Invalidation, error) {
	return s.changeToken(ctx, actor, ActionTokenReapprove, id, true, func(tx pgx.Tx, cur Token) (map[string]any, bool, error) {
		if cur.RevokedAt != nil && cur.RevokedBy != nil && IsLeakActor(*cur.RevokedBy) {
			return nil, false, ErrTokenLeaked
		}
		switch cur.Status {
		case token.Expired:
			return nil, false, ErrTokenExpired
		case token.Deactivated:
			return nil, false, ErrUserDeactivated
		case token.Active:
			return nil, true, nil
		}
		if err := mayLift(actor, cur); err != nil {
			return nil, false, err
		}
		// A revoked token shows "revoked" even when its user is also
		// deactivated (first match wins), so ask the user row directly; it
		// is share-locked, so a concurrent deactivation cannot slip past.
		deactivated, err := userDeactivated(ctx, tx, cur.UserID, "")
		if err != nil {
			return nil, false, err
		}
		if deactivated {
			return nil, false, ErrUserDeactivated
		}
		_, err = tx.Exec(ctx, `UPDATE armgate.tokens SET revoked_at = NULL, revoked_reason = NULL, revoked_by = NULL WHERE id = $1`, id)
		detail := map[string]any{"revoked_by": deref(cur.RevokedBy)}
		if cur.RevokedReason != nil {
			detail["revoked_reason"] = *cur.RevokedReason
		}
		return detail, false, err
	})
}

// DeleteToken deletes a token, which frees its slot and its name. A user
// (actor user:<id>) deletes only their own tokens. The user row is locked
// first (FOR SHARE): deleting a successor updates its predecessor's row,
// which must not be taken in the other order than revoke-all takes it.
func (s *Store) DeleteToken(ctx context.Context, actor, id string) (Invalidation, error) {
	var inv Invalidation
	err := s.tx(ctx, func(tx pgx.Tx) error {
		owner, err := tokenUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := mayTouch(actor, owner); err != nil {
			return err
		}
		if _, err := lockUser(ctx, tx, owner, false); err != nil {
			return err
		}
		var userID, name string
		var h []byte
		err = tx.QueryRow(ctx, `DELETE FROM armgate.tokens WHERE id = $1 RETURNING user_id, name, hash`, id).Scan(&userID, &name, &h)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		inv.Hashes, inv.Deleted = [][]byte{h}, [][]byte{h}
		if err := audit(ctx, tx, actor, ActionTokenDelete, id, userID, map[string]any{"name": name}); err != nil {
			return err
		}
		return notify(ctx, tx, inv)
	})
	return inv, err
}
