package storage

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/token"
)

// ActionTokenLeaked is the audit action of a token revoked because a leak
// report named it.
const ActionTokenLeaked = "token.leaked"

// Leak actors: who reported a token as leaked. Every leak actor starts with
// LeakActorPrefix, which is how a revocation as leaked is told apart.
const (
	LeakActorPrefix = "leak:"
	ActorLeakGitHub = LeakActorPrefix + "github"
	ActorLeakGitLab = LeakActorPrefix + "gitlab"
	ActorLeakAdmin  = LeakActorPrefix + "admin"
	// ReasonLeaked is the revocation reason of a leaked token.
	ReasonLeaked = "leaked"
)

// IsLeakActor reports whether actor is one of a leak report.
func IsLeakActor(actor string) bool { return strings.HasPrefix(actor, LeakActorPrefix) }

// Leak is one token a report names, by its hash: the plaintext never
// reaches the store.
type Leak struct {
	Hash token.Hash
	// URL is where the token was found; may be empty.
	URL string
	// FoundIn is the reporter's kind of location (GitHub's "source", e.g.
	// "content" or "commit"); may be empty.
	FoundIn string
	// ReportedBy is who submitted a report by hand (the admin's own
	// actor, e.g. "admin_key" or "cli"); empty for scanners.
	ReportedBy string
}

// LeakOutcome is what a report did to one token that exists.
type LeakOutcome struct {
	TokenID string
	// Revoked: this report revoked it as leaked. False when it was
	// revoked as leaked before (a report repeated).
	Revoked bool
}

// RevokeLeaked revokes the tokens that leaks names, for a leak report by
// actor (ActorLeakGitHub, ...), in one transaction with one notification.
// Each token is revoked with reason "leaked", revoked_by actor and the URL
// where it was found, with one audit event token.leaked per token (detail:
// the source, the URL, where it was found; never the token). A token
// revoked before for another reason becomes revoked as leaked (its
// revocation time stays), so that it can never be re-approved; one already
// revoked as leaked is left as it is, so a repeated report changes nothing.
// Expired tokens and tokens of deactivated users are marked too. The answer
// maps the hash of every token that exists to its outcome; hashes absent
// from it name no token.
func (s *Store) RevokeLeaked(ctx context.Context, actor string, leaks []Leak) (map[token.Hash]LeakOutcome, Invalidation, error) {
	out := make(map[token.Hash]LeakOutcome, len(leaks))
	var inv Invalidation
	if len(leaks) == 0 {
		return out, inv, nil
	}
	// The first mention of a token decides its URL.
	byHash := make(map[token.Hash]Leak, len(leaks))
	hashes := make([][]byte, 0, len(leaks))
	for _, l := range leaks {
		if _, dup := byHash[l.Hash]; dup {
			continue
		}
		byHash[l.Hash] = l
		hashes = append(hashes, l.Hash[:])
	}
	source := strings.TrimPrefix(actor, LeakActorPrefix)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// The rows are locked in id order, as revoke-all locks them, so
		// that concurrent reports and revocations cannot deadlock.
		rows, _ := tx.Query(ctx, `SELECT id::text, hash, user_id, revoked_reason, revoked_by
			FROM armgate.tokens WHERE hash = ANY($1::bytea[]) ORDER BY id FOR UPDATE`, hashes)
		type found struct {
			ID            string
			Hash          []byte
			UserID        string
			RevokedReason *string
			RevokedBy     *string
		}
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[found])
		if err != nil {
			return err
		}
		var ids, users, urls []string
		var details []map[string]any
		for _, f := range rs {
			h := token.Hash(f.Hash)
			if f.RevokedBy != nil && IsLeakActor(*f.RevokedBy) {
				out[h] = LeakOutcome{TokenID: f.ID}
				continue
			}
			out[h] = LeakOutcome{TokenID: f.ID, Revoked: true}
			l := byHash[h]
			detail := map[string]any{"reason": ReasonLeaked, "source": source}
			if l.URL != "" {
				detail["url"] = l.URL
			}
			if l.FoundIn != "" {
				detail["found_in"] = l.FoundIn
			}
			if l.ReportedBy != "" {
				detail["reported_by"] = l.ReportedBy
			}
			if f.RevokedReason != nil {
				detail["previous_reason"] = *f.RevokedReason
			}
			if f.RevokedBy != nil {
				detail["previous_revoked_by"] = *f.RevokedBy
			}
			ids, users, urls = append(ids, f.ID), append(users, f.UserID), append(urls, l.URL)
			details = append(details, detail)
			inv.Hashes = append(inv.Hashes, f.Hash)
		}
		if len(ids) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE armgate.tokens t SET revoked_at = coalesce(t.revoked_at, now()),
			revoked_reason = $1, revoked_by = $2, leaked_at = now(), leak_url = nullif(v.url, '')
			FROM unnest($3::uuid[], $4::text[]) AS v(id, url) WHERE t.id = v.id`,
			ReasonLeaked, actor, ids, urls); err != nil {
			return err
		}
		// One statement for all the audit events: token.leaked, target the
		// token, on the token's user.
		if _, err := tx.Exec(ctx, `INSERT INTO armgate.audit (actor, action, target, user_id, detail)
			SELECT $1, $2, v.id, v.user_id, v.detail FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS v(id, user_id, detail)`,
			actor, ActionTokenLeaked, ids, users, details); err != nil {
			return err
		}
		return notify(ctx, tx, inv)
	})
	if err != nil {
		return nil, Invalidation{}, err
	}
	return out, inv, nil
}
