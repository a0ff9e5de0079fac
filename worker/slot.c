/*
 * slot.c - one worker slot: connect, consume, claim, run, repeat (see
 * worker.h). Each state is one function that returns the next state.
 */
#include <string.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "outbox.h"
#include "prog.h"
#include "timefmt.h"
#include "worker.h"

/* How long one wait for a delivery lasts, so a stop request is seen soon. */
#define SLOT_POLL_MS 1000
/* Rows of the outbox a slot publishes after each job. */
#define SLOT_RELAY_BATCH 20

enum slot_state {
    SLOT_CONNECT,     /* make the connections usable, start consuming */
    SLOT_CONSUME,     /* wait for one delivery, stop consuming */
    SLOT_CLAIM,       /* claim the delivered job, ack the message */
    SLOT_RUN,         /* run the claimed job, relay the outbox */
    SLOT_STOP,
};

struct slot {
    struct worker *w;
    struct db *db;
    struct mq *mq;               /* NULL: to be opened */
    int consuming;
    long backoff_ms;             /* wait before the next connect; 0: none */
    char job_id[ID_HEX_LEN + 8]; /* the delivery */
    uint64_t tag;
    struct store_claim claim;
    int64_t claimed_ms;          /* monotonic time of the claim */
};

static void slot_drop_mq(struct slot *s)
{
    mq_close(s->mq);             /* unacked deliveries go back to the queue */
    s->mq = NULL;
    s->consuming = 0;
}

/* Steps back to connect after a failure, waiting longer each time. */
static enum slot_state slot_retry(struct slot *s)
{
    s->backoff_ms = prog_backoff(s->backoff_ms);
    return SLOT_CONNECT;
}

static enum slot_state slot_connect(struct slot *s)
{
    const struct cfg *cfg = s->w->cfg;
    if (s->backoff_ms > 0) {
        prog_sleep_ms(s->backoff_ms);
        if (atomic_load(&s->w->stopping))
            return SLOT_STOP;
    }
    if (db_ensure(s->db, NULL, 0) != DB_OK)
        return slot_retry(s);
    if (s->mq == NULL) {
        char err[256];
        s->mq = mq_open(cfg->amqp_url, cfg->amqp_queue, err, sizeof(err));
        if (s->mq == NULL) {
            log_warn("worker.broker_unavailable", "error=\"%s\"", err);
            return slot_retry(s);
        }
        s->consuming = 0;
    }
    if (!s->consuming) {
        /* Publish what is waiting first (e.g. jobs queued while the
         * broker was down), then take work. */
        int published = 0;
        if (outbox_relay(s->db, s->mq, SLOT_RELAY_BATCH, &published) == OUTBOX_BROKER_DOWN ||
            mq_consume_start(s->mq, 1) != 0) {
            slot_drop_mq(s);
            return slot_retry(s);
        }
        s->consuming = 1;
    }
    s->backoff_ms = 0;
    return SLOT_CONSUME;
}

static enum slot_state slot_consume(struct slot *s)
{
    s->tag = 0;
    switch (mq_next(s->mq, SLOT_POLL_MS, s->job_id, sizeof(s->job_id), &s->tag)) {
    case MQ_IDLE:
        return SLOT_CONNECT;         /* connections checked, stop request seen */
    case MQ_FAILED:
        slot_drop_mq(s);
        return slot_retry(s);
    case MQ_DELIVERY:
        break;
    }
    /* A delivery that raced SIGTERM goes back for another worker. */
    if (atomic_load(&s->w->stopping)) {
        mq_nack(s->mq, s->tag, 1);
        return SLOT_STOP;
    }
    /* One job at a time: stop the consumer before working. */
    s->consuming = 0;
    if (mq_consume_stop(s->mq) != 0) {
        slot_drop_mq(s);
        return SLOT_CONNECT;
    }
    if (!id_valid(s->job_id)) {
        log_warn("worker.bad_message", "reason=\"not a job id\"");
        mq_ack(s->mq, s->tag);
        return SLOT_CONNECT;
    }
    return SLOT_CLAIM;
}

/* opencode_job_queue_wait_seconds of a first attempt: started_at (its
 * claim, just now) - created_at, read back by primary key. A re-run's
 * started_at is still its first claim's, so re-runs are left out. */
static void slot_queue_wait(struct slot *s)
{
    double wait_s = 0;
    if (s->claim.attempt == 1 &&
        store_job_queue_wait(s->db, s->claim.job_id, &wait_s) == STORE_OK)
        metric_observe(ocm(OCM_JOB_QUEUE_WAIT), NULL, wait_s > 0 ? wait_s : 0);
}

static enum slot_state slot_claim(struct slot *s)
{
    const struct cfg *cfg = s->w->cfg;
    memset(&s->claim, 0, sizeof(s->claim));
    int rc = store_job_claim(s->db, s->job_id, cfg->worker_id, cfg->job_lease_s, &s->claim);
    if (rc == STORE_UNAVAILABLE || rc == STORE_ERROR) {
        /* Cannot tell whether it is ours: hand it back to the broker. */
        mq_nack(s->mq, s->tag, 1);
        store_claim_free(&s->claim);
        return slot_retry(s);
    }
    /* Claimed, or a duplicate / not yet runnable: either way the broker
     * is done with this message. A lost ack only means a redelivery,
     * which the claim turns into a no-op. */
    if (mq_ack(s->mq, s->tag) != 0)
        slot_drop_mq(s);
    if (rc == STORE_NOT_FOUND) {
        log_debug("worker.skip", "job=%s reason=\"not runnable now\"", s->job_id);
        store_claim_free(&s->claim);
        return SLOT_CONNECT;
    }
    s->claimed_ms = time_mono_ms();
    slot_queue_wait(s);
    return SLOT_RUN;
}

static enum slot_state slot_run(struct slot *s)
{
    metric_add(ocm(OCM_SLOTS_RUNNING), NULL, 1);
    worker_job_run(s->w, s->db, &s->claim);
    metric_add(ocm(OCM_SLOTS_RUNNING), NULL, -1);
    /* Claim to the attempt's end, however it ended. */
    metric_observe(ocm(OCM_JOB_DURATION), NULL, ocm_since_s(s->claimed_ms));
    store_claim_free(&s->claim);

    /* The session's next job was queued in the finishing transaction:
     * publish it now rather than at the api relay's next poll. */
    int published = 0;
    if (s->mq != NULL && db_ensure(s->db, NULL, 0) == DB_OK &&
        outbox_relay(s->db, s->mq, SLOT_RELAY_BATCH, &published) == OUTBOX_BROKER_DOWN)
        slot_drop_mq(s);
    return SLOT_CONNECT;
}

void *worker_slot_main(void *arg)
{
    struct slot s;
    memset(&s, 0, sizeof(s));
    s.w = arg;
    s.db = db_new(s.w->cfg->database_url, "opencode-worker");
    /* A renewal blocked on a partitioned link must fail in time for
     * job_lease_keep() to stop the agent before the lease can run out. */
    db_set_io_timeout(s.db, (int)(s.w->cfg->job_lease_s * 1000 / 3));

    enum slot_state st = SLOT_CONNECT;
    while (st != SLOT_STOP) {
        /* Checked between states, as the old loop did at its top. */
        if (st == SLOT_CONNECT && atomic_load(&s.w->stopping))
            break;
        switch (st) {
        case SLOT_CONNECT: st = slot_connect(&s); break;
        case SLOT_CONSUME: st = slot_consume(&s); break;
        case SLOT_CLAIM:   st = slot_claim(&s);   break;
        case SLOT_RUN:     st = slot_run(&s);     break;
        case SLOT_STOP:    break;
        }
    }
    mq_close(s.mq);
    db_free(s.db);
    return NULL;
}
