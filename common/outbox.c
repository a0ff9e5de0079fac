/* outbox.c - see outbox.h. */
#include "outbox.h"
#include "db.h"
#include "log.h"
#include "mq.h"

#include <stdio.h>

/* How long the broker may take to confirm one message. */
#define OUTBOX_CONFIRM_MS 5000

int outbox_relay(PGconn *db, struct mq *mq, int max)
{
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", max);
    const char *p[] = { lim };

    if (db_begin(db) != DB_OK)
        return -1;
    int rc;
    PGresult *res = db_query(db, "outbox.take",
        "SELECT id, job_id FROM job_outbox ORDER BY id LIMIT $1::int "
        "FOR UPDATE SKIP LOCKED", 1, p, &rc);
    if (res == NULL) {
        db_rollback(db);
        return -1;
    }

    int published = 0, broker_failed = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *job = db_get(res, i, "job_id");
        if (mq_publish(mq, job, OUTBOX_CONFIRM_MS) != 0) {
            broker_failed = 1;
            break;
        }
        const char *pd[] = { db_get(res, i, "id") };
        if (db_exec(db, "outbox.done",
                    "WITH d AS (DELETE FROM job_outbox WHERE id = $1 RETURNING job_id) "
                    "UPDATE jobs SET published_at = now() FROM d WHERE jobs.id = d.job_id",
                    1, pd) < 0) {
            PQclear(res);
            db_rollback(db);
            return -1;
        }
        log_debug("outbox.published", "job=%s", job);
        published++;
    }
    PQclear(res);
    if (db_commit(db) != DB_OK) {
        db_rollback(db);
        return -1;
    }
    return broker_failed ? -2 : published;
}
