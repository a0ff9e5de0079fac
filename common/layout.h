/*
 * layout.h - where a session's files live on the shared volume.
 *
 *   DATA_DIR/sessions/<session>/input/        uploaded files (never changed)
 *   DATA_DIR/sessions/<session>/jobs/<job>/   a job's workspace: a copy of the
 *                                             session's current files that the
 *                                             agent changed; kept as its output
 *   DATA_DIR/sessions/<session>/run/<job>/    scratch of a running job: the
 *                                             agent's HOME, its prompt and
 *                                             logs; removed when the job ends
 *   DATA_DIR/sessions/<session>/env.json      per-session variables (0600)
 *
 * The session's current files are those of its latest succeeded job, or
 * its input when no job succeeded yet. Only a job's own workspace and
 * HOME are ever visible to its agent.
 *
 * Each function writes a path into buf and returns 0, or -1 when it does
 * not fit in len bytes.
 */
#ifndef OC_LAYOUT_H
#define OC_LAYOUT_H

#include <stddef.h>

int layout_sessions_root(const char *data_dir, char *buf, size_t len);
int layout_session_dir(const char *data_dir, const char *session, char *buf, size_t len);
int layout_input_dir(const char *data_dir, const char *session, char *buf, size_t len);
int layout_job_dir(const char *data_dir, const char *session, const char *job, char *buf,
                   size_t len);
int layout_run_dir(const char *data_dir, const char *session, const char *job, char *buf,
                   size_t len);
int layout_env_file(const char *data_dir, const char *session, char *buf, size_t len);

/* The folder holding a session's current files: its input when job is ""
 * or NULL, else that job's workspace. */
int layout_files_dir(const char *data_dir, const char *session, const char *job, char *buf,
                     size_t len);

#endif
