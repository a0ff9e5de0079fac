-- Binary files and archives (README, "Files"): the execute bit of input
-- files (an uploaded .tar.gz keeps it), and when the client last edited a
-- session's files (PUT/DELETE /session/files).
--
-- Independent of migrations 008 to 010: only tables of 001 are named.

ALTER TABLE session_files ADD COLUMN mode integer NOT NULL DEFAULT 33188
    CHECK (mode IN (33188, 33261));
COMMENT ON COLUMN session_files.mode IS
    'The file''s mode as git writes it: 33188 (0100644) or 33261 (0100755: an archive member with an execute bit). Stored on disk as 0600 or 0700.';
COMMENT ON TABLE session_files IS
    'The session''s input files: uploaded with POST /session, or, after PUT/DELETE /session/files, the edited current files (then current_job_id is NULL and the input folder holds them).';

ALTER TABLE sessions ADD COLUMN files_edited_at timestamptz;
COMMENT ON COLUMN sessions.files_edited_at IS
    'When the client last changed the files with PUT or DELETE /session/files; NULL: never. An edit copies the current files (the latest succeeded job''s outputs or the input) plus the change into a new input folder, swapped in atomically, and sets current_job_id to NULL: the next job starts from it.';
COMMENT ON COLUMN sessions.input_file_count IS
    'Files in session_files: the upload, or the current files after the latest edit.';
COMMENT ON COLUMN sessions.input_bytes IS
    'Bytes of session_files (decoded): the upload, or the current files after the latest edit. Counted against max_stored_bytes.';
