-- Retention deletes token_usage rows by day alone (older than the
-- retention). The primary key leads with token_id, so without this index
-- every purge batch would read the whole table.
CREATE INDEX IF NOT EXISTS token_usage_day ON armgate.token_usage (day);
