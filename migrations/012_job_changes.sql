-- What changed (README, "What changed"): each output file's change against
-- the files the job started from, the files the agent deleted, and the
-- job's unified diff (GET /job/diff).
--
-- Jobs recorded before this migration keep NULL in every new column and
-- have no job_diffs row: the API shows change null and deleted_files null.
-- Independent of migrations 008 to 011: only tables of 001 are named.

ALTER TABLE job_files ADD COLUMN change text
    CHECK (change IN ('added', 'modified', 'unchanged'));
COMMENT ON COLUMN job_files.change IS
    'added, modified (content or execute bit) or unchanged, against the regular files the job''s workspace started from (hashed by the worker when the attempt was prepared); NULL for jobs recorded before migration 012.';

ALTER TABLE jobs ADD COLUMN deleted_files text[];
COMMENT ON COLUMN jobs.deleted_files IS
    'Paths of the files the job started from that its outputs no longer hold (the agent deleted them), sorted bytewise; {} when none. NULL while no outputs were recorded, and for jobs recorded before migration 012.';

CREATE TABLE job_diffs (
    job_id      text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    diff        bytea NOT NULL,
    size_bytes  bigint NOT NULL,
    truncated   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE job_diffs IS
    'The unified diff (git diff --no-index, git style) of a job''s outputs against the files it started from, written by the worker holding the job''s lease just before it records the outcome; served by GET /job/diff. One row per job with outputs.';
COMMENT ON COLUMN job_diffs.job_id IS 'The job (jobs.id); the row goes with it.';
COMMENT ON COLUMN job_diffs.diff IS
    'The diff''s bytes as git wrote them (not necessarily UTF-8), at most JOB_MAX_DIFF_BYTES.';
COMMENT ON COLUMN job_diffs.size_bytes IS 'Bytes of the whole diff git wrote (more than length(diff) when truncated).';
COMMENT ON COLUMN job_diffs.truncated IS
    'The diff was longer than JOB_MAX_DIFF_BYTES and was cut at a line end: the API adds a trailer line saying so.';
COMMENT ON COLUMN job_diffs.created_at IS 'When the worker stored it.';
