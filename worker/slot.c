/* slot.c - one worker slot: consume, claim, run, repeat (see worker.h). */
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "mq.h"
#include "outbox.h"
#include "worker.h"

/* How long one wait for a delivery lasts, so a stop request is seen soon. */
#define SLOT_POLL_MS 1000
#define SLOT_BACKOFF_MAX_MS 30000
/* Rows of the outbox a slot publishes after each job. */
#define SLOT_RELAY_BATCH 20

static void slot_sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static long slot_backoff(long cur)
{
    if (cur == 0)
        return 500;
    return cur * 2 > SLOT_BACKOFF_MAX_MS ? SLOT_BACKOFF_MAX_MS : cur * 2;
}

void *worker_slot_main(void *arg)
{
    struct worker *w = arg;
    const struct cfg *cfg = w->cfg;
    PGconn *db = NULL;
    struct mq *mq = NULL;
    int consuming = 0;
    long backoff = 0;

    while (!atomic_load(&w->stopping)) {
        if (backoff > 0) {
            slot_sleep_ms(backoff);
            if (atomic_load(&w->stopping))
                break;
        }
        if (db_ensure(&db, cfg->database_url, "opencode-worker") != DB_OK) {
            backoff = slot_backoff(backoff);
            continue;
        }
        if (mq == NULL) {
            char err[256];
            mq = mq_open(cfg->amqp_url, cfg->amqp_queue, err, sizeof(err));
            if (mq == NULL) {
                log_warn("worker.broker_unavailable", "error=\"%s\"", err);
                backoff = slot_backoff(backoff);
                continue;
            }
            consuming = 0;
        }
        if (!consuming) {
            /* Publish what is waiting first (e.g. jobs queued while the
             * broker was down), then take work. */
            if (outbox_relay(db, mq, SLOT_RELAY_BATCH) == -2 || mq_consume_start(mq, 1) != 0) {
                mq_close(mq);
                mq = NULL;
                backoff = slot_backoff(backoff);
                continue;
            }
            consuming = 1;
        }
        backoff = 0;

        char job_id[ID_HEX_LEN + 8];
        uint64_t tag = 0;
        int r = mq_next(mq, SLOT_POLL_MS, job_id, sizeof(job_id), &tag);
        if (r == 0)
            continue;
        if (r < 0) {
            mq_close(mq);
            mq = NULL;
            backoff = slot_backoff(backoff);
            continue;
        }

        /* A delivery that raced SIGTERM goes back for another worker. */
        if (atomic_load(&w->stopping)) {
            mq_nack(mq, tag, 1);
            break;
        }

        /* One job at a time: stop the consumer before working. */
        consuming = 0;
        if (mq_consume_stop(mq) != 0) {
            mq_close(mq);      /* unacked deliveries go back to the queue */
            mq = NULL;
            continue;
        }
        if (!id_valid(job_id)) {
            log_warn("worker.bad_message", "reason=\"not a job id\"");
            mq_ack(mq, tag);
            continue;
        }

        struct store_claim claim;
        int rc = store_job_claim(db, job_id, cfg->worker_id, cfg->job_lease_s, &claim);
        if (rc == STORE_UNAVAILABLE || rc == STORE_ERROR) {
            /* Cannot tell whether it is ours: hand it back to the broker. */
            mq_nack(mq, tag, 1);
            store_claim_free(&claim);
            backoff = slot_backoff(backoff);
            continue;
        }
        /* Claimed, or a duplicate / not yet runnable: either way the broker
         * is done with this message. A lost ack only means a redelivery,
         * which the claim turns into a no-op. */
        if (mq_ack(mq, tag) != 0) {
            mq_close(mq);
            mq = NULL;
        }
        if (rc == STORE_NOT_FOUND) {
            log_debug("worker.skip", "job=%s reason=\"not runnable now\"", job_id);
            continue;
        }

        worker_job_run(w, &db, &claim);
        store_claim_free(&claim);

        /* The session's next job was queued in the finishing transaction:
         * publish it now rather than at the api relay's next poll. */
        if (mq != NULL && db_ensure(&db, cfg->database_url, "opencode-worker") == DB_OK &&
            outbox_relay(db, mq, SLOT_RELAY_BATCH) == -2) {
            mq_close(mq);
            mq = NULL;
        }
    }
    mq_close(mq);
    PQfinish(db);
    return NULL;
}
