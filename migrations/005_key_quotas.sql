-- Per-key quotas (README, "Security"): how many active sessions, queued
-- and running jobs, and input bytes of active sessions one key may hold.
-- NULL in a column means the default from the api's environment
-- (KEY_MAX_ACTIVE_SESSIONS, KEY_MAX_QUEUED_JOBS, KEY_MAX_STORED_MB);
-- "opencode-api keys set KEY_ID NAME=VALUE" changes them. Later settings
-- of a key are added the same way: a nullable column here, a row in the
-- settings table of common/store_key.c.

ALTER TABLE api_keys
    ADD COLUMN max_active_sessions bigint CHECK (max_active_sessions >= 0),
    ADD COLUMN max_queued_jobs bigint CHECK (max_queued_jobs >= 0),
    ADD COLUMN max_stored_bytes bigint CHECK (max_stored_bytes >= 0);

COMMENT ON COLUMN api_keys.id IS
    'Public key id (key_ + 16 hex). The bootstrap key from the API_KEY variable has the id "bootstrap"; the api creates its row at start so its settings can be changed.';
COMMENT ON COLUMN api_keys.name IS 'Operator''s label, given to "keys create".';
COMMENT ON COLUMN api_keys.key_sha256 IS
    'SHA-256 of the key, the only form of it stored. The bootstrap row holds the hash of random bytes that no key matches: that key authenticates by API_KEY.';
COMMENT ON COLUMN api_keys.created_at IS 'When the key was issued.';
COMMENT ON COLUMN api_keys.max_active_sessions IS
    'Active (not deleted or expired) sessions this key may hold; POST /session beyond answers 429 quota_exceeded. NULL: KEY_MAX_ACTIVE_SESSIONS.';
COMMENT ON COLUMN api_keys.max_queued_jobs IS
    'Queued plus running jobs this key may have; POST /job beyond answers 429 quota_exceeded. NULL: KEY_MAX_QUEUED_JOBS.';
COMMENT ON COLUMN api_keys.max_stored_bytes IS
    'Input bytes (sessions.input_bytes) this key''s active sessions may hold together; a POST /session that would go beyond answers 429 quota_exceeded. NULL: KEY_MAX_STORED_MB MiB.';

-- The quota check counts a key's active sessions on every POST /session.
CREATE INDEX sessions_key_active_idx ON sessions (api_key_id) WHERE status = 'active';
