-- Conversations (README, "Conversations"): a follow-up job continues the
-- agent's conversation of the session's latest succeeded job, unless it
-- was queued with "fresh": true. The conversation itself (opencode's
-- session database) lives on the shared volume next to the session's
-- files (sessions/<session>/conversations/<job>/), never in the database.
--
-- Jobs queued before this migration get false: they continue.
-- Independent of migrations 008 to 012: only tables of 001 are named.

ALTER TABLE jobs ADD COLUMN fresh boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN jobs.fresh IS
    'POST /job "fresh": true: the job''s agent starts a new conversation instead of continuing the one of the session''s latest succeeded job; when the job succeeds, its conversation becomes the session''s. false: it continues (a session''s first job starts a new one anyway).';
