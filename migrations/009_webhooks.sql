-- Webhooks (README, "Webhooks"): a job submitted with a webhook_url (or
-- whose key has a default one) gets its status document POSTed there when
-- it ends, signed as Standard Webhooks says with its key's secret.
--
-- The delivery queue is filled by a trigger on jobs, in the transaction
-- that records the terminal status, whatever path ends the job (a worker,
-- the janitor, a cancel, a session deleted). The janitor delivers.
--
-- Independent of migrations 008 and 010: only tables of 001 are named,
-- and the trigger reads only jobs.status, jobs.webhook_url and
-- jobs.session_id.

ALTER TABLE jobs ADD COLUMN webhook_url text
    CHECK (webhook_url ~* '^https?://' AND length(webhook_url) <= 2048);
COMMENT ON COLUMN jobs.webhook_url IS
    'Where the job''s status document is POSTed when it ends (http or https): the webhook_url of POST /job, else its key''s default (api_keys.webhook_url) at submission; NULL: no webhook.';

ALTER TABLE api_keys ADD COLUMN webhook_url text
    CHECK (webhook_url ~* '^https?://' AND length(webhook_url) <= 2048);
COMMENT ON COLUMN api_keys.webhook_url IS
    'Default webhook URL of the key''s jobs that name none ("opencode-api keys set KEY_ID webhook_url=URL"); NULL: none.';

-- Secrets live in a table of their own so dashboards can be granted every
-- other table and view: never GRANT this one to a dashboard role.
CREATE TABLE webhook_secrets (
    key_id            text PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    secret            text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+=*$'),
    previous_secret   text CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]+=*$'),
    rotated_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_secrets IS
    'SECRET: the webhook signing secret of each API key. Anyone who reads it can forge webhooks: the dashboard role (README, "Dashboards") must NOT be granted SELECT on this table. Created by "opencode-api keys create", replaced by "opencode-api keys rotate-webhook-secret".';
COMMENT ON COLUMN webhook_secrets.key_id IS 'The API key (api_keys.id) whose jobs are signed with it.';
COMMENT ON COLUMN webhook_secrets.secret IS
    'Current secret: whsec_ + base64 of 32 random bytes (the HMAC key is the decoded bytes).';
COMMENT ON COLUMN webhook_secrets.previous_secret IS
    'The secret before the last rotation: deliveries are signed with it too (a second signature) until rotated_at + WEBHOOK_SECRET_GRACE_S.';
COMMENT ON COLUMN webhook_secrets.rotated_at IS 'When the secret was last rotated; NULL: never.';
COMMENT ON COLUMN webhook_secrets.created_at IS 'When the key got its first secret.';

CREATE TABLE webhook_deliveries (
    id                text PRIMARY KEY CHECK (id ~ '^msg_[0-9a-f]{32}$'),
    job_id            text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key_id            text NOT NULL,
    url               text NOT NULL,
    job_status        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz DEFAULT now(),
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_error        text,
    delivered_at      timestamptz,
    gave_up_at        timestamptz
);
COMMENT ON TABLE webhook_deliveries IS
    'One row per webhook to deliver: written by the trigger jobs_webhook when a job with a webhook_url ends, sent by the janitor (retried with exponential backoff from WEBHOOK_RETRY_BASE_S for WEBHOOK_RETRY_S). Holds no secret and no body: dashboards may read it. Deleted with its job.';
COMMENT ON COLUMN webhook_deliveries.id IS
    'The webhook-id header (msg_ + 32 hex): the same on every attempt, so receivers can drop duplicates.';
COMMENT ON COLUMN webhook_deliveries.job_id IS 'The job whose status document is delivered.';
COMMENT ON COLUMN webhook_deliveries.key_id IS 'The job''s API key (sessions.api_key_id): whose secret signs.';
COMMENT ON COLUMN webhook_deliveries.url IS 'Where it is POSTed (jobs.webhook_url when the job ended).';
COMMENT ON COLUMN webhook_deliveries.job_status IS 'The terminal status that triggered it: succeeded, failed, timed_out or cancelled.';
COMMENT ON COLUMN webhook_deliveries.created_at IS 'When the job ended (the retry window, WEBHOOK_RETRY_S, counts from here).';
COMMENT ON COLUMN webhook_deliveries.attempts IS 'Attempts started so far (counted when a janitor takes the row).';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS
    'When the next attempt is due; while an attempt runs, when the row may be taken again should its janitor die. NULL once delivered or given up.';
COMMENT ON COLUMN webhook_deliveries.last_attempt_at IS 'When the last attempt started; NULL before the first.';
COMMENT ON COLUMN webhook_deliveries.last_status_code IS 'HTTP status the receiver answered last; NULL when no answer came (see last_error).';
COMMENT ON COLUMN webhook_deliveries.last_error IS
    'Why the last attempt failed (a non-2xx status, a timeout, a refused address such as loopback or private without WEBHOOK_ALLOW_PRIVATE=1, ...); NULL after a success.';
COMMENT ON COLUMN webhook_deliveries.delivered_at IS 'When a receiver answered 2xx; NULL until then.';
COMMENT ON COLUMN webhook_deliveries.gave_up_at IS 'When retrying stopped (the next attempt would fall after created_at + WEBHOOK_RETRY_S); NULL otherwise.';

-- The janitor's query: due rows, oldest first.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_deliveries_job_idx ON webhook_deliveries (job_id);

CREATE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, job_id, key_id, url, job_status)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, s.api_key_id,
           NEW.webhook_url, NEW.status
    FROM sessions s WHERE s.id = NEW.session_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION webhook_enqueue() IS
    'Trigger function of jobs_webhook: queues the delivery of an ended job''s webhook.';

CREATE TRIGGER jobs_webhook AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.webhook_url IS NOT NULL)
    EXECUTE FUNCTION webhook_enqueue();
COMMENT ON TRIGGER jobs_webhook ON jobs IS
    'Queues a webhook delivery (webhook_deliveries) in the transaction that records a job''s terminal status, whichever path ends it.';
