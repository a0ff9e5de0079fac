-- Live jobs (README, "Live jobs"): every job keeps an ordered log of
-- events (the agent's text, tool and step events, and every status change)
-- that GET /job/events streams and replays; POST /job/cancel and DELETE
-- /session stop a running job through cancel_requested_at.
--
-- Wake-ups travel by LISTEN/NOTIFY:
--   job_events  payload: job id  -- a job got new events (status included)
--   job_cancel  payload: job id  -- a client asked to stop a running job

ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;
COMMENT ON COLUMN jobs.cancel_requested_at IS
    'When a client asked to stop this running job (POST /job/cancel, or DELETE /session). It stays running until its worker has stopped the agent and recorded it cancelled, or the janitor does when the lease runs out.';

ALTER TABLE jobs ADD COLUMN last_event_seq bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN jobs.last_event_seq IS
    'Sequence number of the job''s latest row in job_events (0: none yet).';

ALTER TABLE jobs ADD COLUMN has_outputs boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN jobs.has_outputs IS
    'A worker recorded this job and published its workspace (sessions/<session>/jobs/<job>): every job that ran to an outcome, also a cancelled or timed-out one (its partial outputs). False for jobs that never ran or that the janitor ended.';
UPDATE jobs SET has_outputs = true WHERE finished_at IS NOT NULL AND status <> 'cancelled';

CREATE TABLE job_events (
    job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    attempt     integer NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('text', 'tool', 'step', 'status', 'error')),
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);
COMMENT ON TABLE job_events IS
    'What happened in a job, in order: the agent''s events as its worker read them (text, tool, step, error; at most JOB_MAX_EVENTS per job) and every status change (written by a trigger on jobs, never capped). Events of a lost attempt stay; the retry adds status queued, then running. Removed with the job.';
COMMENT ON COLUMN job_events.seq IS
    'Per-job sequence number from 1, without gaps: the SSE id of GET /job/events (Last-Event-ID resumes after it).';
COMMENT ON COLUMN job_events.attempt IS 'jobs.attempt when the event was written (0 before the first claim).';
COMMENT ON COLUMN job_events.kind IS
    'text: assistant text. tool: a tool call (tool, status). step: a model step finished (tokens, cost). status: the job''s status changed. error: the agent reported an error.';
COMMENT ON COLUMN job_events.data IS 'The event''s fields as GET /job/events sends them (without seq, attempt and time).';

-- Status changes, from whichever program makes them (API, worker,
-- janitor), become events in the same transaction. BEFORE takes the
-- sequence number, AFTER (once the row exists) writes the event.
CREATE FUNCTION job_status_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.last_event_seq := NEW.last_event_seq + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_status_seq BEFORE INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_status_seq();

CREATE FUNCTION job_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO job_events (job_id, seq, attempt, kind, data)
        VALUES (NEW.id, NEW.last_event_seq, NEW.attempt, 'status',
                jsonb_build_object('status', NEW.status, 'error', NEW.error,
                                   'error_code', NEW.error_code));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_status_event AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_status_event();

-- One notification per job and transaction (PostgreSQL folds duplicates).
CREATE FUNCTION job_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id);
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_notify();

CREATE FUNCTION job_cancel_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cancel_requested_at IS NOT NULL AND OLD.cancel_requested_at IS NULL
       AND NEW.status = 'running' THEN
        PERFORM pg_notify('job_cancel', NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_cancel_notify AFTER UPDATE OF cancel_requested_at ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_cancel_notify();

-- Jobs from before this migration get their current status as event 1, so
-- every job's stream ends with a status event.
-- (The UPDATE does not name status, so the status triggers stay quiet.)
UPDATE jobs SET last_event_seq = 1;
INSERT INTO job_events (job_id, seq, attempt, kind, data, created_at)
SELECT id, 1, attempt, 'status',
       jsonb_build_object('status', status, 'error', error, 'error_code', error_code),
       coalesce(finished_at, started_at, created_at)
FROM jobs;
