/*
 * janitor.h - opencode-janitor: the service's periodic housekeeping.
 *
 * Every JANITOR_INTERVAL_S seconds one pass (janitor_sweep):
 *   1. takes back jobs whose lease expired (their worker died): re-queued,
 *      or failed after JOB_MAX_ATTEMPTS; announces again queued jobs whose
 *      message is older than JOB_REPUBLISH_S (the broker may have lost it);
 *   2. marks expired sessions with no queued or running job as expired;
 *   3. removes the folders of ended sessions (expired or deleted);
 *   4. deletes sessions (and their jobs) that ended more than
 *      JOB_RETENTION_S ago;
 *   5. publishes what waits in the outbox.
 * Several janitors may run: a PostgreSQL advisory lock lets one lead each
 * pass, and row locks keep them safe even without it.
 */
#ifndef OC_JANITOR_H
#define OC_JANITOR_H

#include "config.h"

struct pg_conn;
struct mq;

/* Runs one pass. *mq is opened or reset as needed. Returns 0, 1 when
 * another janitor holds the lead, or -1 when the database is unreachable. */
int janitor_sweep(const struct cfg *cfg, struct pg_conn **db, struct mq **mq);

#endif
