/*
 * store_outbox.c - the database half of the outbox relay (see store.h and
 * outbox.h).
 *
 * Ownership: struct store_outbox is a view into its result plus two
 * malloc'd arrays, freed by store_outbox_end(). Threading: runs on the
 * caller's struct db, inside the transaction store_outbox_take() opens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

DB_STMT(st_outbox_take, "outbox.take", 1,
    "SELECT id, job_id FROM job_outbox ORDER BY id LIMIT $1::int "
    "FOR UPDATE SKIP LOCKED");
DB_STMT(st_outbox_done, "outbox.done", 1,
    "WITH d AS (DELETE FROM job_outbox WHERE id = $1 RETURNING job_id) "
    "UPDATE jobs SET published_at = now() FROM d WHERE jobs.id = d.job_id");

static void store_outbox_free(struct store_outbox *o)
{
    db_clear(o->res);
    free((void *)o->job_ids);
    free(o->ids);
    memset(o, 0, sizeof(*o));
}

int store_outbox_take(struct db *db, int max, struct store_outbox *out)
{
    memset(out, 0, sizeof(*out));
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", max);
    const char *p[] = { lim };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);
    struct pg_result *res = db_run(db, &st_outbox_take, p, &rc);
    if (res == NULL) {
        db_rollback(db);
        return store_from_db(rc);
    }
    size_t n = (size_t)db_rows(res);
    const char **job_ids = xcalloc(n, sizeof(*job_ids));
    out->ids = xcalloc(n, sizeof(*out->ids));
    for (size_t i = 0; i < n; i++) {
        job_ids[i] = db_get(res, (int)i, "job_id");
        out->ids[i] = db_get(res, (int)i, "id");
    }
    out->job_ids = job_ids;
    out->n = n;
    out->res = res;
    return STORE_OK;
}

int store_outbox_done(struct db *db, const struct store_outbox *o, size_t i)
{
    if (i >= o->n)
        return STORE_NOT_FOUND;
    const char *p[] = { o->ids[i] };
    return store_from_db(db_run_exec(db, &st_outbox_done, p));
}

int store_outbox_end(struct db *db, struct store_outbox *o, int commit)
{
    int rc = STORE_OK;
    if (commit) {
        int r = db_commit(db);
        if (r != DB_OK) {
            db_rollback(db);
            rc = store_from_db(r);
        }
    } else {
        db_rollback(db);
    }
    store_outbox_free(o);
    return rc;
}
