-- key_usage without one hot row per key.
--
-- Every creation or deletion of a key's sessions and every job that opens
-- or closes updated that key's one key_usage row, and held its lock until
-- commit: a busy key's POST /session requests queued one behind the other
-- on it. The counters now live in up to 16 rows per key
-- (key_usage_shards), each database connection adding to the row of its
-- own backend's shard, so concurrent requests on different connections
-- never wait for each other. key_usage stays, as a view with the same
-- columns and one row per key, for the quota checks and for dashboards.

CREATE TABLE key_usage_shards (
    key_id           text NOT NULL,
    shard            smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    active_sessions  bigint NOT NULL DEFAULT 0,
    stored_bytes     bigint NOT NULL DEFAULT 0,
    open_jobs        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, shard)
);
COMMENT ON TABLE key_usage_shards IS
    'What each key holds now, in up to 16 partial counts per key that add up to key_usage; maintained by triggers on sessions and jobs. A row alone means nothing (a session created through one shard and deleted through another leaves -1 in the second): read key_usage.';
COMMENT ON COLUMN key_usage_shards.key_id IS 'The key (api_keys.id, sessions.api_key_id).';
COMMENT ON COLUMN key_usage_shards.shard IS
    'The writing connection''s backend pid modulo 16: which partial count a change went to.';
COMMENT ON COLUMN key_usage_shards.active_sessions IS 'This part of key_usage.active_sessions.';
COMMENT ON COLUMN key_usage_shards.stored_bytes IS 'This part of key_usage.stored_bytes.';
COMMENT ON COLUMN key_usage_shards.open_jobs IS 'This part of key_usage.open_jobs.';

INSERT INTO key_usage_shards (key_id, shard, active_sessions, stored_bytes, open_jobs)
SELECT key_id, 0, active_sessions, stored_bytes, open_jobs FROM key_usage;

DROP FUNCTION key_usage_add(text, bigint, bigint, bigint);
DROP TABLE key_usage;

CREATE VIEW key_usage AS
SELECT key_id, sum(active_sessions)::bigint AS active_sessions,
       sum(stored_bytes)::bigint AS stored_bytes, sum(open_jobs)::bigint AS open_jobs
FROM key_usage_shards GROUP BY key_id;
COMMENT ON VIEW key_usage IS
    'Per key (sessions.api_key_id): what it holds now, the sum of its key_usage_shards rows. Sessions past expires_at that the janitor has not marked expired yet are still counted here; the quota check subtracts them.';
COMMENT ON COLUMN key_usage.key_id IS 'The key (api_keys.id, sessions.api_key_id).';
COMMENT ON COLUMN key_usage.active_sessions IS 'Sessions with status active.';
COMMENT ON COLUMN key_usage.stored_bytes IS 'Sum of input_bytes of those sessions.';
COMMENT ON COLUMN key_usage.open_jobs IS 'Jobs of the key''s sessions that are queued or running.';

-- PL/pgSQL rather than SQL: its statement is planned once per connection,
-- not parsed again on every call from a trigger.
CREATE FUNCTION key_usage_add(k text, sessions bigint, bytes bigint, jobs bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_usage_shards AS u (key_id, shard, active_sessions, stored_bytes, open_jobs)
    VALUES (k, pg_backend_pid() % 16, sessions, bytes, jobs)
    ON CONFLICT (key_id, shard) DO UPDATE SET
        active_sessions = u.active_sessions + EXCLUDED.active_sessions,
        stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
        open_jobs = u.open_jobs + EXCLUDED.open_jobs;
END $$;

-- The triggers of migration 014 call key_usage_add by name (a call in a
-- PL/pgSQL body is no dependency), so they use the new one from here on.
