-- Lifecycle events (webhooks): a transactional outbox. An event row is
-- written by a trigger on the audit log, so in the same transaction as the
-- change it reports, and only when that transaction set armgate.events to
-- "on" (the gateway does when events are configured). The payload is the
-- Standard Webhooks body, built here once: it is what the sender signs and
-- posts, on every attempt. It never holds a token or its hash.
CREATE TABLE armgate.outbox (
	id              bigserial PRIMARY KEY,
	-- the webhook-id header: the same on every attempt, for the receiver's
	-- deduplication
	event_id        text NOT NULL UNIQUE DEFAULT 'evt_' || replace(gen_random_uuid()::text, '-', ''),
	type            text NOT NULL,
	user_id         text NOT NULL,
	payload         jsonb NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
	status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
	attempts        integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	-- retries end 24 h (the sender's setting) after this: the event's
	-- creation, or its last retry by hand
	window_start    timestamptz NOT NULL DEFAULT clock_timestamp(),
	last_error      text,
	sent_at         timestamptz
);
-- The sender's queue: pending events in order, and by user.
CREATE INDEX outbox_pending ON armgate.outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_pending_user ON armgate.outbox (user_id, id) WHERE status = 'pending';
CREATE INDEX outbox_failed ON armgate.outbox (id) WHERE status = 'failed';
CREATE INDEX outbox_sent ON armgate.outbox (sent_at) WHERE status = 'sent';

-- token.expiring is sent once per token: a token is recorded here in the
-- transaction that queues its event.
CREATE TABLE armgate.outbox_expiring (
	token_id uuid PRIMARY KEY REFERENCES armgate.tokens (id) ON DELETE CASCADE,
	at       timestamptz NOT NULL DEFAULT now()
);

-- outbox_time is a time as the payload shows it: RFC 3339 in UTC, whatever
-- the session's time zone.
CREATE FUNCTION armgate.outbox_time(ts timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- outbox_payload is the body of one event: type, timestamp, data. t is the
-- token's row (NULL for user events), u the user's.
CREATE FUNCTION armgate.outbox_payload(ev text, ts timestamptz, actor text, detail jsonb,
	t armgate.tokens, u armgate.users) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'type', ev,
		'timestamp', armgate.outbox_time(ts),
		'data', jsonb_strip_nulls(jsonb_build_object(
			'user_id', u.id,
			'user_email', u.email,
			'user_display_name', u.display_name,
			'user_deactivated_at', CASE WHEN ev = 'user.deactivated' THEN armgate.outbox_time(u.deactivated_at) END,
			'token_id', t.id,
			'token_name', t.name,
			'scopes', t.scopes,
			'created_at', armgate.outbox_time(t.created_at),
			'expires_at', armgate.outbox_time(t.expires_at),
			'revoked_at', armgate.outbox_time(t.revoked_at),
			'reason', CASE WHEN ev IN ('token.revoked', 'token.leaked')
				THEN coalesce(t.revoked_reason, detail ->> 'reason') END,
			-- revoked_by: the column if the schema has one, else the actor
			'revoked_by', CASE WHEN ev IN ('token.revoked', 'token.leaked')
				THEN coalesce(to_jsonb(t) ->> 'revoked_by', actor) END,
			'new_token_id', CASE WHEN ev = 'token.rotated' THEN coalesce(t.rotated_to::text, detail ->> 'new_token_id') END,
			'url', CASE WHEN ev = 'token.leaked' THEN detail ->> 'url' END,
			'source', CASE WHEN ev = 'token.leaked' THEN detail ->> 'source' END,
			'actor', actor)))
$$;

-- audit_to_outbox queues the events of the audit rows one statement added.
CREATE FUNCTION armgate.audit_to_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF coalesce(current_setting('armgate.events', true), '') <> 'on' THEN
		RETURN NULL;
	END IF;
	INSERT INTO armgate.outbox (type, user_id, payload)
	SELECT e.type, a.user_id, armgate.outbox_payload(e.type, a.at, a.actor, a.detail, t, u)
	FROM added a
	CROSS JOIN LATERAL (SELECT CASE a.action
		WHEN 'token.create' THEN 'token.created'
		WHEN 'token.revoke' THEN 'token.revoked'
		WHEN 'token.logout' THEN 'token.revoked'
		WHEN 'token.leaked' THEN 'token.leaked'
		WHEN 'token.rotate' THEN 'token.rotated'
		WHEN 'user.deactivate' THEN 'user.deactivated'
		END AS type) e
	LEFT JOIN armgate.tokens t ON e.type LIKE 'token.%' AND t.id = CASE WHEN e.type LIKE 'token.%' THEN a.target::uuid END
	JOIN armgate.users u ON u.id = a.user_id
	WHERE e.type IS NOT NULL
	ORDER BY a.id;
	RETURN NULL;
END
$$;

CREATE TRIGGER audit_to_outbox AFTER INSERT ON armgate.audit
	REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION armgate.audit_to_outbox();
