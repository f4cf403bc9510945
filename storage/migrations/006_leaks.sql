-- Leaked tokens. A token reported as leaked (by GitHub secret scanning,
-- GitLab's token revocation API or an administrator) is revoked with reason
-- "leaked" and an actor "leak:<source>" in revoked_by, and is never
-- re-approved: its value is public. leaked_at is when the report came in
-- (revoked_at keeps an earlier revocation's time), leak_url where the token
-- was found.
ALTER TABLE armgate.tokens
	ADD COLUMN IF NOT EXISTS revoked_by text,
	ADD COLUMN IF NOT EXISTS leaked_at timestamptz,
	ADD COLUMN IF NOT EXISTS leak_url text;
