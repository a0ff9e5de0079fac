/*
 * relay.c - the api's outbox relay thread.
 *
 * POST /job commits the job and its outbox row, wakes this thread and
 * answers at once; publishing happens here. While RabbitMQ is down the
 * rows wait in job_outbox and this thread retries with backoff, so a job
 * submitted during a broker outage is published once the broker is back.
 * The relay has its own database connection, outside the request pool.
 */
#include "api.h"
#include "db.h"
#include "log.h"
#include "mq.h"
#include "outbox.h"
#include "prog.h"

/* Rows per relay transaction. */
#define RELAY_BATCH 100
/* Even without a wake-up the outbox is polled this often: rows written
 * by workers and janitors (next job of a session, re-queued jobs) are
 * published by whichever relay gets there first. */
#define RELAY_POLL_MS 1000

void api_relay_wake(struct api *api)
{
    pthread_mutex_lock(&api->relay_mu);
    api->relay_wake = 1;
    pthread_cond_signal(&api->relay_cv);
    pthread_mutex_unlock(&api->relay_mu);
}

/* Sleeps up to ms or until woken; returns 1 when asked to stop. */
static int relay_wait(struct api *api, long ms)
{
    pthread_mutex_lock(&api->relay_mu);
    while (!api->relay_wake && !api->relay_stop)
        if (prog_cond_wait_ms(&api->relay_cv, &api->relay_mu, ms) != 0)
            break;
    api->relay_wake = 0;
    int stop = api->relay_stop;
    pthread_mutex_unlock(&api->relay_mu);
    return stop;
}

/* One relay round: connect what is missing, publish until the outbox is
 * empty. Returns the backoff before the next round (0: none). Keeps
 * api->broker_up up to date. */
static long relay_round(struct api *api, struct db *db, struct mq **mq, long backoff)
{
    const struct cfg *cfg = api->cfg;
    if (db_ensure(db, NULL, 0) != DB_OK)
        return prog_backoff(backoff);
    if (*mq == NULL) {
        char err[256];
        *mq = mq_open(cfg->amqp_url, cfg->amqp_queue, err, sizeof(err));
        atomic_store(&api->broker_up, *mq != NULL);
        if (*mq == NULL) {
            log_warn("relay.broker_unavailable", "error=\"%s\" retry_ms=%ld", err,
                     prog_backoff(backoff));
            return prog_backoff(backoff);
        }
        log_info("relay.broker_connected", "queue=%s", cfg->amqp_queue);
    }
    int n = 0;
    enum outbox_rc rc;
    do {
        rc = outbox_relay(db, *mq, RELAY_BATCH, &n);
    } while (rc == OUTBOX_OK && n == RELAY_BATCH);
    if (rc == OUTBOX_BROKER_DOWN) {
        atomic_store(&api->broker_up, 0);
        mq_close(*mq);
        *mq = NULL;
    }
    return rc == OUTBOX_OK ? 0 : prog_backoff(0);
}

void *api_relay_main(void *arg)
{
    struct api *api = arg;
    struct db *db = db_new(api->cfg->database_url, "opencode-api-relay");
    struct mq *mq = NULL;
    long backoff = 0;
    while (!relay_wait(api, backoff > 0 ? backoff : RELAY_POLL_MS))
        backoff = relay_round(api, db, &mq, backoff);
    atomic_store(&api->broker_up, 0);
    mq_close(mq);
    db_free(db);
    return NULL;
}
