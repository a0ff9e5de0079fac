-- Views for ops dashboards (README, "Dashboards"): one per question an
-- operator asks, so a dashboard (deploy/grafana/dashboards/opencode.json)
-- or psql reads answers instead of re-deriving them from the tables.
--
-- Conventions: durations in seconds (double precision), sizes in bytes,
-- money in USD, times as timestamptz, days in UTC. Windows ("last 24 h")
-- are relative to now(), so the views take no parameters. Every view and
-- column carries a COMMENT, like the tables.

-- Queue depth: one row per job status, also the statuses with no job.
CREATE VIEW ops_queue AS
SELECT s.status,
       count(j.id) AS job_count,
       min(j.created_at) AS oldest_created_at,
       CASE WHEN s.status IN ('queued', 'running')
            THEN extract(epoch FROM now() - min(j.created_at))::double precision
       END AS oldest_age_seconds,
       count(j.id) FILTER (WHERE j.status = 'running' AND j.lease_expires_at < now())
           AS lease_expired_count
FROM (VALUES ('queued', 1), ('running', 2), ('succeeded', 3),
             ('failed', 4), ('timed_out', 5), ('cancelled', 6)) AS s (status, ord)
LEFT JOIN jobs j ON j.status = s.status
GROUP BY s.status, s.ord
ORDER BY s.ord;
COMMENT ON VIEW ops_queue IS
    'How deep is the queue and how long has its oldest job waited? One row per job status (all six, zero when none), over every job still in the database (history is kept for JOB_RETENTION_S).';
COMMENT ON COLUMN ops_queue.status IS
    'Job status: queued, running, succeeded, failed, timed_out, cancelled.';
COMMENT ON COLUMN ops_queue.job_count IS 'Jobs in this status.';
COMMENT ON COLUMN ops_queue.oldest_created_at IS
    'Submission time (jobs.created_at) of the oldest job in this status; NULL when none.';
COMMENT ON COLUMN ops_queue.oldest_age_seconds IS
    'Seconds since the oldest job in this status was submitted; only for queued (how long the head of the queue has waited) and running (submitted that long ago, still unfinished); NULL otherwise.';
COMMENT ON COLUMN ops_queue.lease_expired_count IS
    'Running jobs whose lease has run out (their worker died or is cut off); the janitor re-queues them on its next pass. Always 0 on other statuses.';

-- Throughput: jobs finished per minute and status, last 24 h.
CREATE VIEW ops_throughput_per_minute AS
SELECT date_trunc('minute', finished_at) AS minute,
       status,
       count(*) AS jobs_finished
FROM jobs
WHERE finished_at >= now() - interval '24 hours'
  AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
GROUP BY 1, 2
ORDER BY 1, 2;
COMMENT ON VIEW ops_throughput_per_minute IS
    'How many jobs end per minute, and how? Jobs finished in the last 24 hours, counted per minute (by jobs.finished_at) and final status. Minutes in which no job of a status ended have no row.';
COMMENT ON COLUMN ops_throughput_per_minute.minute IS
    'Start of the minute (timestamptz, truncated finished_at).';
COMMENT ON COLUMN ops_throughput_per_minute.status IS
    'Final status: succeeded, failed, timed_out or cancelled.';
COMMENT ON COLUMN ops_throughput_per_minute.jobs_finished IS
    'Jobs that reached this status in this minute.';

-- Latency: duration and queue wait percentiles per model, last 24 h.
-- started_at is kept from the first claim (a re-run after a lost lease
-- does not reset it), so started_at - created_at is the first attempt's
-- wait and finished_at - started_at spans every attempt.
CREATE VIEW ops_job_latency_by_model AS
SELECT model,
       count(*) FILTER (WHERE finished_at >= now() - interval '24 hours')
           AS jobs_finished,
       count(*) FILTER (WHERE started_at >= now() - interval '24 hours')
           AS jobs_started,
       (percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM finished_at - started_at))
        FILTER (WHERE finished_at >= now() - interval '24 hours'))::double precision
           AS duration_p50_seconds,
       (percentile_cont(0.95) WITHIN GROUP (
            ORDER BY extract(epoch FROM finished_at - started_at))
        FILTER (WHERE finished_at >= now() - interval '24 hours'))::double precision
           AS duration_p95_seconds,
       (percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM started_at - created_at))
        FILTER (WHERE started_at >= now() - interval '24 hours'))::double precision
           AS queue_wait_p50_seconds,
       (percentile_cont(0.95) WITHIN GROUP (
            ORDER BY extract(epoch FROM started_at - created_at))
        FILTER (WHERE started_at >= now() - interval '24 hours'))::double precision
           AS queue_wait_p95_seconds
FROM jobs
WHERE started_at IS NOT NULL
  AND (started_at >= now() - interval '24 hours'
       OR finished_at >= now() - interval '24 hours')
GROUP BY model
ORDER BY model;
COMMENT ON VIEW ops_job_latency_by_model IS
    'How long do jobs run and wait, per model? Median and 95th percentile (percentile_cont) over the last 24 hours: duration over jobs finished in the window that had started (every final status; cancelled jobs never started), queue wait over jobs first started in the window (also those still running). Models without such jobs have no row.';
COMMENT ON COLUMN ops_job_latency_by_model.model IS 'The job''s model (provider/model), as submitted.';
COMMENT ON COLUMN ops_job_latency_by_model.jobs_finished IS
    'Jobs of this model that started and finished in the last 24 hours: the duration percentiles are over these.';
COMMENT ON COLUMN ops_job_latency_by_model.jobs_started IS
    'Jobs of this model first started in the last 24 hours: the queue wait percentiles are over these.';
COMMENT ON COLUMN ops_job_latency_by_model.duration_p50_seconds IS
    'Median of finished_at - started_at, in seconds (from the first claim to the outcome, so a re-run after a lost lease counts whole). NULL when no job finished.';
COMMENT ON COLUMN ops_job_latency_by_model.duration_p95_seconds IS
    '95th percentile of finished_at - started_at, in seconds. NULL when no job finished.';
COMMENT ON COLUMN ops_job_latency_by_model.queue_wait_p50_seconds IS
    'Median of started_at - created_at (submission to the first claim by a worker), in seconds. NULL when no job started.';
COMMENT ON COLUMN ops_job_latency_by_model.queue_wait_p95_seconds IS
    '95th percentile of started_at - created_at, in seconds. NULL when no job started.';

-- Failures by error class, last 24 h.
CREATE VIEW ops_failures_by_error AS
SELECT coalesce(error_code, 'unknown') AS error_code,
       count(*) AS job_count,
       count(*) FILTER (WHERE status = 'failed') AS failed_count,
       count(*) FILTER (WHERE status = 'timed_out') AS timed_out_count,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled_count,
       max(finished_at) AS last_finished_at
FROM jobs
WHERE status IN ('failed', 'timed_out', 'cancelled')
  AND finished_at >= now() - interval '24 hours'
GROUP BY 1
ORDER BY job_count DESC, error_code;
COMMENT ON VIEW ops_failures_by_error IS
    'Why do jobs fail? Jobs that ended failed, timed_out or cancelled in the last 24 hours (by finished_at), per error class (jobs.error_code; README, "Job error codes").';
COMMENT ON COLUMN ops_failures_by_error.error_code IS
    'jobs.error_code: timeout, agent_failed, agent_killed, agent_start_failed, workspace_failed, output_failed, worker_lost, cancelled, internal_error; "unknown" for a job that ended without one.';
COMMENT ON COLUMN ops_failures_by_error.job_count IS 'Jobs that ended with this code.';
COMMENT ON COLUMN ops_failures_by_error.failed_count IS 'Of those, jobs with status failed.';
COMMENT ON COLUMN ops_failures_by_error.timed_out_count IS 'Of those, jobs with status timed_out.';
COMMENT ON COLUMN ops_failures_by_error.cancelled_count IS 'Of those, jobs with status cancelled.';
COMMENT ON COLUMN ops_failures_by_error.last_finished_at IS
    'When the latest of them ended (jobs.finished_at).';

-- Tokens and cost per key and UTC day.
CREATE VIEW ops_usage_per_key_day AS
SELECT (j.finished_at AT TIME ZONE 'UTC')::date AS day,
       s.api_key_id,
       k.name AS key_name,
       count(*) AS jobs_finished,
       coalesce(sum(j.tokens_input), 0)::bigint AS tokens_input,
       coalesce(sum(j.tokens_output), 0)::bigint AS tokens_output,
       coalesce(sum(j.tokens_reasoning), 0)::bigint AS tokens_reasoning,
       coalesce(sum(j.tokens_cache_read), 0)::bigint AS tokens_cache_read,
       coalesce(sum(j.tokens_cache_write), 0)::bigint AS tokens_cache_write,
       coalesce(sum(j.cost_usd), 0)::double precision AS cost_usd
FROM jobs j
JOIN sessions s ON s.id = j.session_id
LEFT JOIN api_keys k ON k.id = s.api_key_id
WHERE j.finished_at IS NOT NULL
GROUP BY 1, 2, 3
ORDER BY 1, 2;
COMMENT ON VIEW ops_usage_per_key_day IS
    'What does each key spend? Tokens and cost of jobs per API key (the key that created the job''s session) and UTC day of jobs.finished_at, over every job still in the database (history is kept for JOB_RETENTION_S). Days without a finished job of a key have no row.';
COMMENT ON COLUMN ops_usage_per_key_day.day IS 'UTC calendar day on which the jobs finished.';
COMMENT ON COLUMN ops_usage_per_key_day.api_key_id IS
    'sessions.api_key_id: api_keys.id, or "bootstrap" for the API_KEY key.';
COMMENT ON COLUMN ops_usage_per_key_day.key_name IS
    'api_keys.name of the key; NULL when the key has no row.';
COMMENT ON COLUMN ops_usage_per_key_day.jobs_finished IS
    'Jobs of the key that ended that day, in any final status.';
COMMENT ON COLUMN ops_usage_per_key_day.tokens_input IS 'Sum of jobs.tokens_input (0 when none reported).';
COMMENT ON COLUMN ops_usage_per_key_day.tokens_output IS 'Sum of jobs.tokens_output.';
COMMENT ON COLUMN ops_usage_per_key_day.tokens_reasoning IS 'Sum of jobs.tokens_reasoning.';
COMMENT ON COLUMN ops_usage_per_key_day.tokens_cache_read IS 'Sum of jobs.tokens_cache_read.';
COMMENT ON COLUMN ops_usage_per_key_day.tokens_cache_write IS 'Sum of jobs.tokens_cache_write.';
COMMENT ON COLUMN ops_usage_per_key_day.cost_usd IS
    'Sum of jobs.cost_usd, in USD, as reported by opencode (0 when none reported).';

-- Active sessions and stored bytes per key.
CREATE VIEW ops_storage_per_key AS
SELECT s.api_key_id,
       k.name AS key_name,
       count(*) AS active_sessions,
       coalesce(sum(s.input_bytes), 0)::bigint AS input_bytes,
       coalesce(sum(cf.bytes), 0)::bigint AS current_job_bytes,
       (coalesce(sum(s.input_bytes), 0) + coalesce(sum(cf.bytes), 0))::bigint AS stored_bytes
FROM sessions s
LEFT JOIN api_keys k ON k.id = s.api_key_id
LEFT JOIN LATERAL (SELECT sum(f.size_bytes) AS bytes FROM job_files f
                   WHERE f.job_id = s.current_job_id) cf ON true
WHERE s.status = 'active'
GROUP BY s.api_key_id, k.name
ORDER BY stored_bytes DESC, s.api_key_id;
COMMENT ON VIEW ops_storage_per_key IS
    'Who holds what? Per API key with at least one active session: how many active sessions it has, and the bytes of their input files and of their current state (the files of each session''s current job). Outputs of older jobs and attempt folders are not counted.';
COMMENT ON COLUMN ops_storage_per_key.api_key_id IS
    'sessions.api_key_id: api_keys.id, or "bootstrap" for the API_KEY key.';
COMMENT ON COLUMN ops_storage_per_key.key_name IS 'api_keys.name of the key; NULL when the key has no row.';
COMMENT ON COLUMN ops_storage_per_key.active_sessions IS
    'Sessions of the key with status active (what the KEY_MAX_ACTIVE_SESSIONS quota counts).';
COMMENT ON COLUMN ops_storage_per_key.input_bytes IS
    'Sum of sessions.input_bytes of those sessions, in bytes (what the KEY_MAX_STORED_MB quota counts).';
COMMENT ON COLUMN ops_storage_per_key.current_job_bytes IS
    'Sum of job_files.size_bytes of the current job (sessions.current_job_id) of those sessions, in bytes.';
COMMENT ON COLUMN ops_storage_per_key.stored_bytes IS 'input_bytes + current_job_bytes, in bytes.';
