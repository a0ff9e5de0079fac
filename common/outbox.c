/*
 * outbox.c - see outbox.h.
 *
 * Ownership: nothing outlives a call. Threading: runs on the caller's
 * struct db and struct mq (both belong to the calling thread).
 */
#include "outbox.h"
#include "log.h"
#include "mq.h"
#include "store.h"

/* How long the broker may take to confirm one message. */
#define OUTBOX_CONFIRM_MS 5000

int outbox_relay(struct db *db, struct mq *mq, int max, int *published)
{
    struct store_outbox o;
    *published = 0;
    if (store_outbox_take(db, max, &o) != STORE_OK)
        return OUTBOX_DB_DOWN;

    int broker_failed = 0, done = 0;
    for (size_t i = 0; i < o.n; i++) {
        const char *job = o.job_ids[i];
        if (mq_publish(mq, job, OUTBOX_CONFIRM_MS) != 0) {
            broker_failed = 1;
            break;
        }
        if (store_outbox_done(db, &o, i) != STORE_OK) {
            /* Rolled back: the rows stay and go out again (duplicates are
             * no-ops for workers). */
            store_outbox_end(db, &o, 0);
            return OUTBOX_DB_DOWN;
        }
        log_debug("outbox.published", "job=%s", job);
        done++;
    }
    if (store_outbox_end(db, &o, 1) != STORE_OK)
        return OUTBOX_DB_DOWN;
    *published = done;
    return broker_failed ? OUTBOX_BROKER_DOWN : OUTBOX_OK;
}
