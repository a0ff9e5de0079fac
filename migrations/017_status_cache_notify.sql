-- Tells api processes when an ended job's status document changes or
-- goes, so their caches of those documents (api/cache.h) need no query
-- per hit.
--
-- Each api process LISTENs on job_changed. A notification carries one job
-- id: the job's row was deleted (a session purge cascades here), or an
-- ended job's status, finished_at or outputs_pruned_at changed. Jobs that
-- have not ended are never cached, so their status changes stay quiet here
-- (job_events carries those). PostgreSQL folds duplicates within one
-- transaction.
CREATE FUNCTION job_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_changed', OLD.id);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_deleted_notify AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_changed_notify();

CREATE TRIGGER jobs_ended_changed_notify
    AFTER UPDATE OF status, finished_at, outputs_pruned_at ON jobs
    FOR EACH ROW
    WHEN (OLD.status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
          AND (OLD.status, OLD.finished_at, OLD.outputs_pruned_at)
              IS DISTINCT FROM (NEW.status, NEW.finished_at, NEW.outputs_pruned_at))
    EXECUTE FUNCTION job_changed_notify();
