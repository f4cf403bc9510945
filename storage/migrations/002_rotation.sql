-- Rotation. A rotated-away token keeps working until its (shortened) expiry,
-- but from the rotation on it counts neither toward the per-user limit nor
-- toward name uniqueness: its successor takes the same name. rotated_at marks
-- that for good; rotated_to links the successor and is cleared if the
-- successor is deleted (which must not bring the old token's name back into
-- play, hence the separate column).
ALTER TABLE armgate.tokens
	ADD COLUMN rotated_at timestamptz,
	ADD COLUMN rotated_to uuid REFERENCES armgate.tokens (id) ON DELETE SET NULL;

ALTER TABLE armgate.tokens DROP CONSTRAINT tokens_user_id_name_key;
CREATE UNIQUE INDEX tokens_user_id_name_key ON armgate.tokens (user_id, name) WHERE rotated_at IS NULL;
