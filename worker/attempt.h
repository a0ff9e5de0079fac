/*
 * attempt.h - one attempt's folders on disk: created new, published as
 * the job's outputs, removed. No database here: whether the attempt still
 * holds the job's lease is asked through a callback, so the protocol is
 * testable alone (tests/unit/test_attempt.c).
 *
 * Publishing a.work as a.published (jobs/<job>):
 *   1. ask still_ours() (the worker renews the lease); gone -> stop;
 *   2. rename a.work to a.published with RENAME_NOREPLACE (fs_publish_dir):
 *      a folder already there is never replaced;
 *   3. one is there: the outputs of an earlier attempt that published and
 *      then lost its lease before recording, or of the attempt that
 *      replaced this one. Ask still_ours() again: a lease still ours after
 *      that folder appeared proves it stale (whoever published it had
 *      lost the job before this renewal), so move it to a fresh trash/
 *      entry and rename again, once; gone -> stop.
 * A stale attempt thus only ever renames its own work/ onto a missing
 * jobs/<job>: it never overwrites or deletes the live attempt's files.
 */
#ifndef OC_WORKER_ATTEMPT_H
#define OC_WORKER_ATTEMPT_H

#include <stddef.h>

#include "layout.h"

/* Creates a.dir, which must not exist (-EEXIST: not ours, left alone;
 * *created stays 0), then a.jobs if missing, a.work as a copy of a.base,
 * a.home (seeded: attempt_seed_home(), plus the conversation of
 * a.conv_from when set: conversation.h), and a.prompt holding prompt.
 * *created is set to 1 once a.dir exists: from then on a.dir is the
 * caller's to remove, also on failure.
 * Returns 0 or a negative errno. */
int attempt_prepare(const struct layout_attempt *a, const char *prompt, int *created);

/* attempt_prepare() with the copy of a.base bounded and given a heartbeat
 * by walk (fsutil.h; NULL: none): -ECANCELED when walk->progress asked to
 * stop (the lease is gone). */
struct fs_walk;
int attempt_prepare_walk(const struct layout_attempt *a, const char *prompt,
                         const struct fs_walk *walk, int *created);

/* The folder holding the attempt's private copy of a.base (a.dir/base),
 * kept for the job's change list and diff (worker/job_diff.c): never
 * handed to the agent. Returns 0 or -ENAMETOOLONG. */
int attempt_base_copy(const struct layout_attempt *a, char *buf, size_t len);

/* Writes into a fresh agent HOME what keeps opencode from installing
 * packages into it on start (attempt.c). Returns 0 or a negative errno. */
int attempt_seed_home(const char *home);

/* Writes models (AGENT_MODELS_FILE's catalogue) where opencode looks for
 * its cached catalogue, HOME/.cache/opencode/models.json, so it need not
 * build its built-in one; models NULL: nothing. Returns 0 or a negative
 * errno. */
int attempt_seed_models(const char *home, const char *models);

/* 1 while the attempt holds the job's lease, 0 when it does not (or that
 * cannot be known). */
typedef int (*attempt_lease_fn)(void *arg);

enum attempt_publish_rc {
    ATTEMPT_PUBLISHED  = 0,
    ATTEMPT_LEASE_GONE = 1,    /* nothing published: stop the attempt */
};

/*
 * Publishes a.work as a.published (steps above). Returns an enum
 * attempt_publish_rc, or a negative errno when the rename failed (nothing
 * published). trash_entry (len bytes) gets the folder a stale attempt had
 * published and this one displaced, or "": the caller removes it.
 */
int attempt_publish(const struct layout_attempt *a, const char *job,
                    attempt_lease_fn still_ours, void *arg, char *trash_entry, size_t len);

/* Removes the attempt's folder (a.dir) and nothing else. */
int attempt_remove(const struct layout_attempt *a);

#endif
