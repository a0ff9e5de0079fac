-- Git's mode of each output file (its execute bit survives into the next
-- job), and a backoff for session folders the janitor fails to remove, so
-- a folder that cannot go never blocks the others.

ALTER TABLE job_files ADD COLUMN mode integer NOT NULL DEFAULT 33188
    CHECK (mode IN (33188, 33261));
COMMENT ON COLUMN job_files.mode IS
    'The file''s mode as git writes it: 33188 (0100644) or 33261 (0100755, it had an execute bit). Shown as "100644"/"100755" in output_files; the next job gets 0600 or 0700 accordingly.';

ALTER TABLE sessions ADD COLUMN remove_failures integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN sessions.remove_failures IS
    'How many times the janitor failed to remove the ended session''s folder (0 when it never failed). Each failure doubles the wait before the next try, from JANITOR_RETRY_S up to a day.';
ALTER TABLE sessions ADD COLUMN remove_after timestamptz;
COMMENT ON COLUMN sessions.remove_after IS
    'When the janitor may try again to remove the folder of an ended session after a failure; NULL: at its next pass.';
