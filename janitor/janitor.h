/*
 * janitor.h - opencode-janitor: the service's periodic housekeeping.
 *
 * Every JANITOR_INTERVAL_S seconds one pass (janitor_sweep), in steps:
 *   1. takes back jobs whose lease expired (their worker died): re-queued,
 *      or failed after JOB_MAX_ATTEMPTS; announces again queued jobs whose
 *      message is older than JOB_REPUBLISH_S (the broker may have lost it);
 *   2. marks expired sessions with no queued or running job as expired;
 *   3. removes the folders of ended sessions (expired or deleted), then
 *      records the batch's removals in one statement; a folder that fails
 *      to go is backed off (JANITOR_RETRY_S, doubling, up to a day);
 *   4. deletes sessions (and their jobs) that ended more than
 *      JOB_RETENTION_S ago;
 *   5. prunes the workspaces (sessions/<s>/jobs/<job>) of ended jobs of
 *      live sessions beyond their newest SESSION_KEEP_JOBS, never the
 *      session's current job: the job row is marked, then the folder goes;
 *   6. publishes what waits in the outbox.
 * Each step works in batches of JANITOR_BATCH rows (one bulk statement
 * each) and repeats until a batch comes back short or the pass has spent
 * JANITOR_BUDGET_S (monotonic clock); every step runs at least one batch,
 * so a long step never starves the next. What is left waits for the next
 * pass. The pass logs one janitor.pass line: the counts summed over
 * batches, duration_ms and budget_spent (1: work was left).
 * Several janitors may run: a PostgreSQL advisory lock lets one lead each
 * pass, and row locks keep them safe even without it.
 *
 * Threading: single-threaded; the db and mq handles belong to the caller.
 */
#ifndef OC_JANITOR_H
#define OC_JANITOR_H

#include "config.h"

struct db;
struct mq;

enum sweep_rc {
    SWEEP_DONE     = 0,     /* this janitor led a pass */
    SWEEP_FOLLOWER = 1,     /* another janitor holds the lead */
    SWEEP_DB_DOWN  = -1,    /* the database is unreachable */
};

/* Runs one pass. *mq is opened or reset as needed. */
enum sweep_rc janitor_sweep(const struct cfg *cfg, struct db *db, struct mq **mq);

#endif
