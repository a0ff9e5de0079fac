/*
 * store_metrics.c - the statements behind the metrics read from
 * PostgreSQL (see store.h): queue depth, the outbox backlog, a job's
 * queue wait.
 *
 * Threading: runs on the caller's struct db.
 */
#include <stdlib.h>

#include "store_internal.h"

/* One row; the counts use jobs_active_idx (status, ...), the outbox is
 * small unless the broker is down. */
DB_STMT(st_queue_stats, "metrics.queue_stats", 0,
    "SELECT (SELECT count(*) FROM job_outbox) AS backlog,"
    " coalesce((SELECT extract(epoch FROM now() - min(created_at)) FROM job_outbox), 0)"
    "   ::double precision AS oldest_s,"
    " (SELECT count(*) FROM jobs WHERE status = 'queued') AS queued,"
    " (SELECT count(*) FROM jobs WHERE status = 'running') AS running,"
    " (SELECT count(*) FROM webhook_deliveries"
    "   WHERE delivered_at IS NULL AND gave_up_at IS NULL) AS webhooks_pending");
DB_STMT(st_queue_wait, "metrics.queue_wait", 1,
    "SELECT extract(epoch FROM started_at - created_at)::double precision AS wait_s "
    "FROM jobs WHERE id = $1 AND started_at IS NOT NULL");

int store_queue_stats(struct db *db, struct store_queue_stats *out)
{
    int rc;
    struct pg_result *res = db_run(db, &st_queue_stats, NULL, &rc);
    if (res == NULL)
        return store_from_db(rc);
    if (db_rows(res) != 1) {
        db_clear(res);
        return STORE_ERROR;
    }
    const char *oldest = db_get(res, 0, "oldest_s");
    out->outbox_backlog = db_get_ll(res, 0, "backlog");
    out->outbox_oldest_age_s = oldest ? strtod(oldest, NULL) : 0;
    out->jobs_queued = db_get_ll(res, 0, "queued");
    out->jobs_running = db_get_ll(res, 0, "running");
    out->webhooks_pending = db_get_ll(res, 0, "webhooks_pending");
    db_clear(res);
    return STORE_OK;
}

int store_job_queue_wait(struct db *db, const char *job_id, double *wait_s)
{
    int rc;
    const char *p[] = { job_id };
    struct pg_result *res = db_run(db, &st_queue_wait, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found) {
        const char *v = db_get(res, 0, "wait_s");
        *wait_s = v ? strtod(v, NULL) : 0;
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}
