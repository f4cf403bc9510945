-- Users are ARM accounts; a token belongs to exactly one user.
CREATE TABLE armgate.users (
	id             text PRIMARY KEY,
	email          text,
	display_name   text,
	deactivated_at timestamptz,
	created_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token and an 8-character hint are stored. A deleted
-- token is a deleted row: that frees its slot and its name.
CREATE TABLE armgate.tokens (
	id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id        text NOT NULL REFERENCES armgate.users (id),
	name           text NOT NULL,
	hash           bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
	hint           text NOT NULL,
	scopes         text[] NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	expires_at     timestamptz NOT NULL,
	last_used_at   timestamptz,
	revoked_at     timestamptz,
	revoked_reason text,
	UNIQUE (user_id, name)
);

CREATE TABLE armgate.audit (
	id      bigserial PRIMARY KEY,
	at      timestamptz NOT NULL DEFAULT clock_timestamp(),
	actor   text NOT NULL,
	action  text NOT NULL,
	target  text NOT NULL,
	-- the user the event concerns (for token events, the token's user), so
	-- that ?user_id= finds events on a user and on that user's tokens
	user_id text NOT NULL,
	detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_user_id ON armgate.audit (user_id, id DESC);
