/*
 * relay.c - the api's outbox relay thread.
 *
 * POST /job commits the job and its outbox row, wakes this thread and
 * answers at once; publishing happens here. While RabbitMQ is down the
 * rows wait in job_outbox and this thread retries with backoff, so a job
 * submitted during a broker outage is published once the broker is back.
 */
#include <errno.h>
#include <time.h>

#include "api.h"
#include "db.h"
#include "log.h"
#include "mq.h"
#include "outbox.h"

/* Rows per relay transaction. */
#define RELAY_BATCH 100
/* Even without a wake-up the outbox is polled this often: rows written
 * by workers and janitors (next job of a session, re-queued jobs) are
 * published by whichever relay gets there first. */
#define RELAY_POLL_MS 1000
#define RELAY_BACKOFF_MAX_MS 30000

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
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&api->relay_mu);
    while (!api->relay_wake && !api->relay_stop)
        if (pthread_cond_timedwait(&api->relay_cv, &api->relay_mu, &until) == ETIMEDOUT)
            break;
    api->relay_wake = 0;
    int stop = api->relay_stop;
    pthread_mutex_unlock(&api->relay_mu);
    return stop;
}

void *api_relay_main(void *arg)
{
    struct api *api = arg;
    const struct cfg *cfg = api->cfg;
    PGconn *db = NULL;
    struct mq *mq = NULL;
    long backoff = 0;

    while (!relay_wait(api, backoff > 0 ? backoff : RELAY_POLL_MS)) {
        if (db_ensure(&db, cfg->database_url, "opencode-api-relay") != DB_OK) {
            backoff = backoff ? (backoff * 2 > RELAY_BACKOFF_MAX_MS ? RELAY_BACKOFF_MAX_MS
                                                                   : backoff * 2) : 500;
            continue;
        }
        if (mq == NULL) {
            char err[256];
            mq = mq_open(cfg->amqp_url, cfg->amqp_queue, err, sizeof(err));
            if (mq == NULL) {
                log_warn("relay.broker_unavailable", "error=\"%s\" retry_ms=%ld", err,
                         backoff ? backoff : 500L);
                backoff = backoff ? (backoff * 2 > RELAY_BACKOFF_MAX_MS ? RELAY_BACKOFF_MAX_MS
                                                                       : backoff * 2) : 500;
                continue;
            }
            log_info("relay.broker_connected", "queue=%s", cfg->amqp_queue);
        }
        backoff = 0;
        int n;
        do {
            n = outbox_relay(db, mq, RELAY_BATCH);
        } while (n == RELAY_BATCH);
        if (n == -2) {
            mq_close(mq);
            mq = NULL;
            backoff = 500;
        } else if (n == -1) {
            backoff = 500;
        }
    }
    mq_close(mq);
    PQfinish(db);
    return NULL;
}
