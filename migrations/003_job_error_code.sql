-- A stable, machine-readable reason beside a job's error text, so clients
-- and dashboards stop parsing prose (see README, "Job error codes").

ALTER TABLE jobs ADD COLUMN error_code text;
COMMENT ON COLUMN jobs.error_code IS
    'Why the job did not succeed, as a stable code: timeout, agent_failed, agent_killed, agent_start_failed, workspace_failed, output_failed, worker_lost, cancelled, internal_error. NULL while queued or running and on success.';

UPDATE jobs SET error_code = CASE
        WHEN status = 'timed_out' THEN 'timeout'
        WHEN status = 'cancelled' THEN 'cancelled'
        WHEN error LIKE 'worker lost:%' THEN 'worker_lost'
        ELSE 'agent_failed' END
    WHERE status IN ('failed', 'timed_out', 'cancelled');
CREATE INDEX jobs_error_code_idx ON jobs (error_code) WHERE error_code IS NOT NULL;
