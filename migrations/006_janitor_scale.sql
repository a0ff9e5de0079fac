-- The janitor at scale (README, "The janitor"): each pass drains what is
-- due in batches of JANITOR_BATCH rows, and prunes the workspaces of old
-- jobs of live sessions beyond the newest SESSION_KEEP_JOBS.

ALTER TABLE jobs ADD COLUMN outputs_pruned_at timestamptz;
COMMENT ON COLUMN jobs.outputs_pruned_at IS
    'When the janitor removed this ended job''s workspace (sessions/<session>/jobs/<job>) because its live session has SESSION_KEEP_JOBS newer ended jobs; GET /download with this job_id then answers 410 job_pruned. job_files keeps the manifest. NULL: the outputs are on disk (or went with the session).';

-- Ended sessions whose folder is still on disk, oldest ended first: the
-- removal batch reads this without walking the already removed ones.
CREATE INDEX sessions_remove_pending_idx ON sessions (ended_at)
    WHERE status <> 'active' AND files_removed_at IS NULL;

-- Ended jobs whose outputs are still on disk, per session, newest last:
-- what the workspace pruning ranks.
CREATE INDEX jobs_outputs_kept_idx ON jobs (session_id, seq)
    WHERE finished_at IS NOT NULL AND outputs_pruned_at IS NULL;

-- Deleting jobs (history pruning) cascades to the outbox, and the
-- republish check looks jobs up there: both by job_id.
CREATE INDEX job_outbox_job_idx ON job_outbox (job_id);
