-- Who revoked a token. Every revocation records its actor (admin_key,
-- token:<id>, cli, user:<id>, token:<own id> for a logout, leak:<source>,
-- system), and the rules of who may lift it read it: a user re-approves only
-- their own revocations and logouts, and nobody re-approves a leaked token.
ALTER TABLE armgate.tokens ADD COLUMN revoked_by text;

-- Existing revocations take the actor of their latest revoke or logout event;
-- one without such an event is 'unknown', which only an administrator may
-- lift.
UPDATE armgate.tokens t SET revoked_by = coalesce(last.actor, 'unknown')
FROM armgate.tokens r
LEFT JOIN (
	SELECT DISTINCT ON (target) target, actor
	FROM armgate.audit
	WHERE action IN ('token.revoke', 'token.logout')
	ORDER BY target, id DESC
) last ON last.target = r.id::text
WHERE t.id = r.id AND t.revoked_at IS NOT NULL;

ALTER TABLE armgate.tokens ADD CONSTRAINT tokens_revoked_by_check
	CHECK ((revoked_at IS NULL) = (revoked_by IS NULL));

-- A rotation's predecessor is found by its rotated_to: the pending-rotation
-- check reads it, and deleting a token sets it to NULL through the foreign key.
CREATE INDEX tokens_rotated_to ON armgate.tokens (rotated_to) WHERE rotated_to IS NOT NULL;
