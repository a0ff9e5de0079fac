-- TRUNCATE removes rows without firing row triggers, so 017's
-- jobs_deleted_notify says nothing when jobs go that way (TRUNCATE jobs,
-- or TRUNCATE sessions CASCADE). This statement trigger sends job_changed
-- with the payload '*': every api process then drops all its cached
-- status documents and checks hits with a query until its next heartbeat.
-- (Writes made with session_replication_role = replica fire no trigger
-- at all; run those with the api stopped or API_CACHE_STALE_MS=0.)
CREATE FUNCTION jobs_truncated_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_changed', '*');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_truncated_notify AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_truncated_notify();
