-- Core schema: API keys, sessions, their input files, jobs, job outputs and
-- the outbox that carries "job X is ready" to RabbitMQ.
--
-- PostgreSQL is the source of truth for every job; the broker only wakes
-- workers. Ops dashboards read these tables directly, so every table and
-- column that is not self-evident carries a COMMENT.

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    key_sha256  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
COMMENT ON TABLE api_keys IS
    'API keys issued with "opencode-api keys create". Only the SHA-256 of a key is stored; the key itself is shown once.';
COMMENT ON COLUMN api_keys.id IS
    'Public key id (key_ + 16 hex). The bootstrap key from the API_KEY variable has the id "bootstrap" and no row.';
COMMENT ON COLUMN api_keys.revoked_at IS
    'Set by "keys revoke": the key no longer authenticates. Sessions it created stay until they expire.';

CREATE TABLE sessions (
    id                text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    api_key_id        text NOT NULL,
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'deleted', 'expired')),
    ttl_seconds       integer NOT NULL CHECK (ttl_seconds > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    input_file_count  integer NOT NULL,
    input_bytes       bigint NOT NULL,
    current_job_id    text,
    ended_at          timestamptz,
    files_removed_at  timestamptz
);
COMMENT ON TABLE sessions IS
    'One row per session. Files live under DATA_DIR/sessions/<id>/. Rows of deleted or expired sessions are kept (status, ended_at) so job history stays readable until JOB_RETENTION_S.';
COMMENT ON COLUMN sessions.api_key_id IS
    'The key that created the session (api_keys.id or "bootstrap"); no other key can see it.';
COMMENT ON COLUMN sessions.status IS
    'active: usable. deleted: removed by DELETE /session. expired: purged by the janitor after expires_at.';
COMMENT ON COLUMN sessions.expires_at IS
    'The API answers 404 from this instant on; the janitor purges the files on its next pass (never while a job is queued or running).';
COMMENT ON COLUMN sessions.current_job_id IS
    'Latest succeeded job: its workspace is the session''s current state and the base of the next job. NULL: the input files are.';
COMMENT ON COLUMN sessions.files_removed_at IS
    'When the session folder was removed from disk; NULL on an ended session means removal is still pending (the janitor retries).';
CREATE INDEX sessions_expiry_idx ON sessions (expires_at) WHERE status = 'active';
CREATE INDEX sessions_cleanup_idx ON sessions (ended_at) WHERE status <> 'active';

CREATE TABLE session_files (
    session_id  text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    path        text NOT NULL,
    size_bytes  bigint NOT NULL,
    PRIMARY KEY (session_id, path)
);
COMMENT ON TABLE session_files IS 'Input files uploaded with POST /session.';

CREATE TABLE jobs (
    id                  text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    seq                 bigserial NOT NULL UNIQUE,
    session_id          text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded',
                                          'failed', 'timed_out', 'cancelled')),
    prompt              text NOT NULL,
    model               text NOT NULL,
    timeout_s           integer NOT NULL CHECK (timeout_s > 0),
    attempt             integer NOT NULL DEFAULT 0,
    worker_id           text,
    lease_token         text,
    lease_expires_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    error               text,
    exit_code           integer,
    stdout              text,
    result              text,
    result_json         jsonb,
    tokens_input        bigint,
    tokens_output       bigint,
    tokens_reasoning    bigint,
    tokens_cache_read   bigint,
    tokens_cache_write  bigint,
    cost_usd            double precision,
    CHECK ((status = 'running') = (lease_token IS NOT NULL))
);
COMMENT ON TABLE jobs IS
    'One row per POST /job. Jobs of one session run one at a time in seq order; jobs of different sessions run in parallel.';
COMMENT ON COLUMN jobs.seq IS 'Submission order (per session ordering uses it).';
COMMENT ON COLUMN jobs.status IS
    'queued -> running -> succeeded | failed | timed_out; cancelled when the session was deleted before the job started. A running job whose lease ran out goes back to queued (or failed after JOB_MAX_ATTEMPTS).';
COMMENT ON COLUMN jobs.attempt IS 'How many times a worker has claimed the job (1 on a normal run).';
COMMENT ON COLUMN jobs.worker_id IS 'WORKER_ID of the worker that runs or last ran the job.';
COMMENT ON COLUMN jobs.lease_token IS
    'Random token of the current claim. A worker may only renew or finish the job while its token is still here, so a late duplicate cannot overwrite a newer attempt.';
COMMENT ON COLUMN jobs.lease_expires_at IS
    'The running worker renews this every JOB_LEASE_S/3 seconds. Past it, the janitor assumes the worker died and re-queues the job.';
COMMENT ON COLUMN jobs.stdout IS 'opencode''s JSON event stream (capped; the tail is kept).';
COMMENT ON COLUMN jobs.result IS 'The agent''s final text answer.';
COMMENT ON COLUMN jobs.result_json IS
    'Summary of the run: final text, tool calls, token usage, cost, error.';
COMMENT ON COLUMN jobs.cost_usd IS 'Cost as reported by opencode for the whole run.';
CREATE INDEX jobs_session_idx ON jobs (session_id, seq);
CREATE INDEX jobs_active_idx ON jobs (status, lease_expires_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

ALTER TABLE sessions ADD FOREIGN KEY (current_job_id)
    REFERENCES jobs (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE job_files (
    job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    path        text NOT NULL,
    size_bytes  bigint NOT NULL,
    sha256      text NOT NULL,
    PRIMARY KEY (job_id, path)
);
COMMENT ON TABLE job_files IS
    'Files in a job''s workspace when it ended (regular files only: symlinks and special files are left out).';

CREATE TABLE job_outbox (
    id          bigserial PRIMARY KEY,
    job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE job_outbox IS
    'Jobs to announce on RabbitMQ. Written in the same transaction as the job change; a relay (in the api, workers and janitor) publishes each row with publisher confirms, then deletes it. Rows piling up here mean the broker is unreachable.';
