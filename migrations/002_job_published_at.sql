-- When a job was last announced on RabbitMQ, so the janitor can announce
-- a job again if the broker lost its message (its data wiped, the queue
-- deleted by hand): a queued job must never wait for a message that will
-- not come.

ALTER TABLE jobs ADD COLUMN published_at timestamptz;
COMMENT ON COLUMN jobs.published_at IS
    'When the outbox relay last published the job to RabbitMQ. The janitor announces a queued job again when this (or created_at) is older than JOB_REPUBLISH_S while it waits at the head of its session; a duplicate message is harmless.';
