-- What each key holds, kept up to date by triggers, so the quota checks of
-- POST /session and POST /job read one row instead of counting a key's
-- sessions and jobs on every request (README, "Quotas").

CREATE TABLE key_usage (
    key_id           text PRIMARY KEY,
    active_sessions  bigint NOT NULL DEFAULT 0,
    stored_bytes     bigint NOT NULL DEFAULT 0,
    open_jobs        bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE key_usage IS
    'Per key (sessions.api_key_id): what it holds now, maintained by triggers on sessions and jobs. Sessions past expires_at that the janitor has not marked expired yet are still counted here; the quota check subtracts them.';
COMMENT ON COLUMN key_usage.active_sessions IS 'Sessions with status active.';
COMMENT ON COLUMN key_usage.stored_bytes IS 'Sum of input_bytes of those sessions.';
COMMENT ON COLUMN key_usage.open_jobs IS 'Jobs of the key''s sessions that are queued or running.';

CREATE FUNCTION key_usage_add(k text, sessions bigint, bytes bigint, jobs bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO key_usage AS u (key_id, active_sessions, stored_bytes, open_jobs)
    VALUES (k, sessions, bytes, jobs)
    ON CONFLICT (key_id) DO UPDATE SET
        active_sessions = u.active_sessions + EXCLUDED.active_sessions,
        stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
        open_jobs = u.open_jobs + EXCLUDED.open_jobs
$$;

CREATE FUNCTION sessions_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.status = 'active';
    now_active boolean := TG_OP <> 'DELETE' AND NEW.status = 'active';
BEGIN
    IF was THEN
        PERFORM key_usage_add(OLD.api_key_id, -1, -OLD.input_bytes, 0);
    END IF;
    IF now_active THEN
        PERFORM key_usage_add(NEW.api_key_id, 1, NEW.input_bytes, 0);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sessions_usage AFTER INSERT OR DELETE OR UPDATE OF status, input_bytes
    ON sessions FOR EACH ROW EXECUTE FUNCTION sessions_usage();

CREATE FUNCTION jobs_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.status IN ('queued', 'running');
    now_open boolean := TG_OP <> 'DELETE' AND NEW.status IN ('queued', 'running');
    k text;
BEGIN
    IF was = now_open THEN
        RETURN NULL;
    END IF;
    SELECT api_key_id INTO k FROM sessions
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.session_id ELSE NEW.session_id END;
    IF k IS NOT NULL THEN
        PERFORM key_usage_add(k, 0, 0, CASE WHEN now_open THEN 1 ELSE -1 END);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_usage AFTER INSERT OR DELETE OR UPDATE OF status
    ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_usage();

INSERT INTO key_usage (key_id, active_sessions, stored_bytes)
SELECT api_key_id, count(*), coalesce(sum(input_bytes), 0) FROM sessions
WHERE status = 'active' GROUP BY api_key_id;
SELECT key_usage_add(s.api_key_id, 0, 0, count(*)) FROM jobs j
JOIN sessions s ON s.id = j.session_id WHERE j.status IN ('queued', 'running')
GROUP BY s.api_key_id;

-- Active sessions of a key past their expiry, which the quota check
-- subtracts until the janitor marks them expired (a handful at most).
CREATE INDEX sessions_key_expiry_idx ON sessions (api_key_id, expires_at)
    WHERE status = 'active';
DROP INDEX sessions_key_active_idx;
