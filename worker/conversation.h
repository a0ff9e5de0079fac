/*
 * conversation.h - carries the agent's conversation from one job of a
 * session to the next (README, "Conversations").
 *
 * opencode 1.18 keeps its sessions (every message and part) in one SQLite
 * database under its data folder, HOME/.local/share/opencode/opencode.db
 * (with its write-ahead log opencode.db-wal). Only those two files are
 * carried, and the id of the opencode session the job used (session_id,
 * taken by the worker from the agent's event stream and checked), so the
 * next run is `opencode run --session <id>`. Nothing else of the HOME
 * (configuration, plugins, caches, logs, snapshots, npm state) is ever
 * carried: a file the agent planted there dies with its attempt.
 *
 *   conversations/<job>/opencode.db       copies of the agent's files
 *   conversations/<job>/opencode.db-wal   (optional)
 *   conversations/<job>/session_id        written by the worker
 *
 * Lifecycle (layout.h has the folders):
 *   prepare  conversation_from(): which folder the attempt continues from:
 *            the session's latest succeeded job's (store_claim.conv_job_id),
 *            none when the job is fresh. conversation_seed() copies it into
 *            the fresh HOME (before HOME is handed to the agent's uid).
 *   record   only for a job about to be recorded succeeded:
 *            conversation_capture() copies the two files out of the HOME
 *            the agent controlled (regular files only, no link followed
 *            anywhere on the way, an SQLite header, at most
 *            CONVERSATION_MAX_BYTES) into the attempt's conv_stage, then
 *            conversation_publish() renames it to conversations/<job> with
 *            the lease-fenced protocol of attempt_publish() (attempt.h), and
 *            removes the conversations of other jobs except the one it
 *            continued from (still the session's until this job is
 *            recorded succeeded).
 * A failed, timed-out, cancelled or stale attempt never publishes one, and
 * the next job's claim names the latest SUCCEEDED job, so only a succeeded
 * job advances the conversation. A succeeded job whose conversation could
 * not be captured leaves none: the next job starts a new one (logged).
 * The session's folder goes whole when the session is removed, and the
 * conversations with it.
 *
 * Unsandboxed (AGENT_SANDBOX=none), opencode ties a session to its working
 * folder, which differs per attempt: the files are carried but no
 * --session is passed (agent.h), so each job starts a new conversation.
 *
 * Threading: plain functions on the caller's thread; no global state.
 */
#ifndef OC_WORKER_CONVERSATION_H
#define OC_WORKER_CONVERSATION_H

#include <stddef.h>

#include "attempt.h"
#include "layout.h"
#include "store.h"

/* Largest conversation carried (both files together). */
#define CONVERSATION_MAX_BYTES (256L * 1024 * 1024)
/* Longest opencode session id accepted ("ses_" and 26 characters today). */
#define CONVERSATION_ID_MAX 100

/* Sets a->conv_from for claim c (none when c->fresh) and reads the
 * recorded opencode session id into session ("" when none). Returns 0 or
 * -ENAMETOOLONG. */
int conversation_from(struct layout_attempt *a, const char *data_dir,
                      const struct store_claim *c, char *session, size_t len);

/* Copies a->conv_from's files into a->home (a fresh HOME). A missing
 * folder is no conversation. Returns 0 or a negative errno. */
int conversation_seed(const struct layout_attempt *a);

/* Copies the conversation out of a->home into a->conv_stage, with the
 * session id found in events (len bytes of the agent's event stream).
 * Returns 0, or a negative errno (-ENOENT: no database or session id,
 * -EFBIG: too large, -EINVAL: not a regular file or not SQLite). */
int conversation_capture(const struct layout_attempt *a, const char *events, size_t len);

/* Publishes a->conv_stage as a->conv_published (attempt.h's protocol),
 * then removes the other conversations but keep ("" : none). Returns an
 * enum attempt_publish_rc or a negative errno. */
int conversation_publish(const struct layout_attempt *a, const char *job, const char *keep,
                         attempt_lease_fn still_ours, void *arg);

/* 1 when id looks like an opencode session id (ses_ and letters or
 * digits), else 0. */
int conversation_id_valid(const char *id, size_t len);

#endif
