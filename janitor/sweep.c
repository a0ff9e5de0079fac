/* sweep.c - one janitor pass (see janitor.h). */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "fsutil.h"
#include "janitor.h"
#include "layout.h"
#include "log.h"
#include "mq.h"
#include "outbox.h"
#include "store.h"

/* Sessions handled per pass; the rest wait for the next one. */
#define SWEEP_BATCH 100

static long sweep_remove_folders(const struct cfg *cfg, PGconn *db)
{
    static char ids[SWEEP_BATCH][ID_HEX_LEN + 1];
    long n = 0, removed = 0;
    if (store_sessions_to_remove(db, SWEEP_BATCH, ids, &n) != STORE_OK)
        return 0;
    for (long i = 0; i < n; i++) {
        char dir[4096];
        if (layout_session_dir(cfg->data_dir, ids[i], dir, sizeof(dir)) != 0)
            continue;
        int rc = fs_rm_rf(dir);
        if (rc != 0) {
            log_warn("janitor.remove_failed", "session=%s error=\"%s\"", ids[i], strerror(-rc));
            continue;
        }
        if (store_session_files_removed(db, ids[i]) == STORE_OK)
            removed++;
    }
    return removed;
}

int janitor_sweep(const struct cfg *cfg, PGconn **db, struct mq **mq)
{
    if (db_ensure(db, cfg->database_url, "opencode-janitor") != DB_OK)
        return -1;
    int rc = store_janitor_lock(*db);
    if (rc == STORE_CONFLICT) {
        log_debug("janitor.follower", "reason=\"another janitor leads this pass\"");
        return 1;
    }
    if (rc != STORE_OK)
        return -1;

    long requeued = 0, failed = 0, expired = 0, removed = 0, pruned = 0, republished = 0;
    int published = 0;
    store_reap_expired_leases(*db, cfg->job_max_attempts, &requeued, &failed);
    store_republish_stale(*db, cfg->job_republish_s, &republished);
    store_expire_sessions(*db, SWEEP_BATCH, &expired);
    removed = sweep_remove_folders(cfg, *db);
    store_prune_history(*db, cfg->job_retention_s, &pruned);

    if (*mq == NULL) {
        char err[256];
        *mq = mq_open(cfg->amqp_url, cfg->amqp_queue, err, sizeof(err));
        if (*mq == NULL)
            log_warn("janitor.broker_unavailable", "error=\"%s\"", err);
    }
    if (*mq != NULL) {
        published = outbox_relay(*db, *mq, SWEEP_BATCH);
        if (published == -2) {
            mq_close(*mq);
            *mq = NULL;
        }
    }
    store_janitor_unlock(*db);
    log_info("janitor.pass", "requeued=%ld failed=%ld expired=%ld removed=%ld pruned=%ld "
             "republished=%ld published=%d", requeued, failed, expired, removed, pruned,
             republished, published < 0 ? 0 : published);
    return 0;
}
