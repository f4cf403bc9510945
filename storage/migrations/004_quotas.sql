-- Per-token controls: quotas, IP allow-lists, usage per day.
-- A rate limit is a number of requests per window of whole seconds; both
-- columns are set or neither is. allowed_ips empty or NULL allows every
-- address.
ALTER TABLE armgate.tokens
	ADD COLUMN rate_limit_requests integer,
	ADD COLUMN rate_limit_window integer,
	ADD COLUMN allowed_ips cidr[],
	ADD COLUMN last_client_addr inet,
	ADD CONSTRAINT tokens_rate_limit_check CHECK (
		(rate_limit_requests IS NULL) = (rate_limit_window IS NULL)
		AND rate_limit_requests BETWEEN 1 AND 1000000000
		AND rate_limit_window BETWEEN 1 AND 86400),
	ADD CONSTRAINT tokens_allowed_ips_check CHECK (cardinality(allowed_ips) <= 32);

ALTER TABLE armgate.users
	ADD COLUMN rate_limit_requests integer,
	ADD COLUMN rate_limit_window integer,
	ADD CONSTRAINT users_rate_limit_check CHECK (
		(rate_limit_requests IS NULL) = (rate_limit_window IS NULL)
		AND rate_limit_requests BETWEEN 1 AND 1000000000
		AND rate_limit_window BETWEEN 1 AND 86400);

-- Cluster-wide request counts per quota window: every instance adds what it
-- counted since its last sync, in one statement per sync interval. The
-- counts matter only while their window runs, so the table is unlogged (no
-- WAL; after a crash the windows start again from zero) and old windows are
-- deleted with the last-use flush.
CREATE UNLOGGED TABLE armgate.quota_counters (
	kind         "char" NOT NULL,   -- 't' token, 'u' user
	subject      text NOT NULL,     -- the token id or the user id
	window_secs  integer NOT NULL,
	window_start bigint NOT NULL,   -- Unix seconds
	count        bigint NOT NULL,
	PRIMARY KEY (kind, subject, window_secs, window_start)
);
CREATE INDEX quota_counters_end ON armgate.quota_counters ((window_start + window_secs));

-- Requests per token and UTC day, written with the last-use flush.
CREATE TABLE armgate.token_usage (
	token_id      uuid NOT NULL REFERENCES armgate.tokens (id) ON DELETE CASCADE,
	day           date NOT NULL,
	allowed       bigint NOT NULL DEFAULT 0,
	quota_refused bigint NOT NULL DEFAULT 0,
	ip_refused    bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (token_id, day)
);
