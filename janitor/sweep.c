/* sweep.c - one janitor pass (see janitor.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "fsutil.h"
#include "janitor.h"
#include "layout.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "outbox.h"
#include "store.h"
#include "timefmt.h"
#include "xalloc.h"

struct sweep_counts {
    long requeued, failed, expired, removed, remove_failed, pruned, republished;
    long outputs_pruned, published;
};

/* One pass: its configuration, its deadline and what it did so far. */
struct sweep {
    const struct cfg *cfg;
    struct db        *db;
    long              batch;          /* JANITOR_BATCH */
    int64_t           start_ms;
    int64_t           deadline_ms;    /* start + JANITOR_BUDGET_S */
    int               budget_spent;   /* a step stopped on the deadline */
    struct sweep_counts c;
};

/* Whether a step runs another batch after one that handled got rows:
 * only a full batch may leave more, and only while the budget lasts. A
 * step always runs its first batch, so a long step never starves the
 * others. */
static int sweep_again(struct sweep *s, int rc, long got)
{
    if (rc != STORE_OK || got < s->batch)
        return 0;
    if (time_mono_ms() >= s->deadline_ms) {
        s->budget_spent = 1;
        return 0;
    }
    return 1;
}

/* Re-queues or fails jobs with expired leases; announces stale queued
 * jobs again; marks expired sessions. */
static void sweep_jobs_and_expiry(struct sweep *s)
{
    long a, b, found;
    int rc;
    do {
        rc = store_reap_expired_leases(s->db, s->cfg->job_max_attempts, s->batch, &a, &b,
                                       &found);
        s->c.requeued += a;
        s->c.failed += b;
    } while (sweep_again(s, rc, found));
    do {
        rc = store_republish_stale(s->db, s->cfg->job_republish_s, s->batch, &a);
        s->c.republished += a;
    } while (sweep_again(s, rc, a));
    do {
        rc = store_expire_sessions(s->db, s->batch, &a);
        s->c.expired += a;
    } while (sweep_again(s, rc, a));
}

/* The folders of a batch, removed by JANITOR_REMOVE_THREADS threads that
 * take the next index in turn; err[i] gets fs_rm_rf()'s result. */
struct sweep_rm {
    const char *data_dir;
    char (*ids)[ID_HEX_LEN + 1];
    int        *err;
    long        n;
    atomic_long next;
};

static void *sweep_rm_main(void *arg)
{
    struct sweep_rm *rm = arg;
    for (long i; (i = atomic_fetch_add(&rm->next, 1)) < rm->n;) {
        char dir[LAYOUT_PATH_MAX];
        rm->err[i] = layout_session_dir(rm->data_dir, rm->ids[i], dir, sizeof(dir)) != 0
                         ? -ENAMETOOLONG : fs_rm_rf(dir);
    }
    return NULL;
}

static void sweep_rm_all(struct sweep *s, char (*ids)[ID_HEX_LEN + 1], long n, int *err)
{
    struct sweep_rm rm = { s->cfg->data_dir, ids, err, n, 0 };
    pthread_t t[64];
    long want = (s->cfg->janitor_remove_threads < n ? s->cfg->janitor_remove_threads : n) - 1;
    long started = 0;
    while (started < want && started < 64 &&
           pthread_create(&t[started], NULL, sweep_rm_main, &rm) == 0)
        started++;
    sweep_rm_main(&rm);          /* this thread helps, and finishes alone if none started */
    for (long i = 0; i < started; i++)
        pthread_join(t[i], NULL);
}

/* Removes the folders of one batch of ended sessions, oldest first, and
 * records those gone in one statement. A folder that fails to go is
 * logged with its error and backed off (JANITOR_RETRY_S, doubled per
 * failure up to a day) and the batch moves on: a poisoned folder never
 * keeps the others from going. *got gets the batch's size. */
static int sweep_remove_batch(struct sweep *s, char (*ids)[ID_HEX_LEN + 1], long *got)
{
    long n = 0, gone = 0, marked = 0;
    int rc = store_sessions_to_remove(s->db, s->batch, ids, &n);
    *got = n;
    if (rc != STORE_OK || n == 0)
        return rc;
    int *err = xcalloc((size_t)n, sizeof(*err));
    sweep_rm_all(s, ids, n, err);
    for (long i = 0; i < n; i++) {
        int e = err[i];
        if (e != 0) {
            long failures = 0, retry_in = 0;
            store_session_remove_failed(s->db, ids[i], s->cfg->janitor_retry_s, &failures,
                                        &retry_in);
            log_warn("janitor.remove_failed",
                     "session=%s error=\"%s\" failures=%ld retry_in_s=%ld", ids[i],
                     strerror(-e), failures, retry_in);
            s->c.remove_failed++;
            continue;
        }
        if (gone != i)
            memcpy(ids[gone], ids[i], sizeof(ids[0]));
        gone++;
    }
    free(err);
    rc = store_sessions_files_removed(s->db, ids, gone, &marked);
    s->c.removed += marked;
    return rc;
}

/* Removes the workspaces of one batch of old jobs of live sessions
 * (marked pruned first, so a download answers 410 rather than a partial
 * folder). A folder that fails to go stays until its session is removed.
 * *got gets the batch's size. */
static int sweep_prune_outputs(struct sweep *s, struct store_job_ref *refs, long *got)
{
    long n = 0;
    int rc = store_prune_job_outputs(s->db, s->cfg->session_keep_jobs, s->batch, refs, &n);
    *got = n;
    for (long i = 0; i < n; i++) {
        char dir[LAYOUT_PATH_MAX];
        if (layout_files_dir(s->cfg->data_dir, refs[i].session_id, refs[i].job_id, dir,
                             sizeof(dir)) != 0)
            continue;
        int e = fs_rm_rf(dir);
        if (e != 0)
            log_warn("janitor.prune_failed", "session=%s job=%s error=\"%s\"",
                     refs[i].session_id, refs[i].job_id, strerror(-e));
        s->c.outputs_pruned++;
    }
    return rc;
}

/* Removes folders, deletes old history, prunes old job workspaces. */
static void sweep_purge(struct sweep *s)
{
    long got;
    int rc;
    char (*ids)[ID_HEX_LEN + 1] = xcalloc((size_t)s->batch, sizeof(*ids));
    do {
        rc = sweep_remove_batch(s, ids, &got);
    } while (sweep_again(s, rc, got));
    free(ids);
    do {
        rc = store_prune_history(s->db, s->cfg->job_retention_s, s->batch, &got);
        s->c.pruned += got;
    } while (sweep_again(s, rc, got));
    struct store_job_ref *refs = xcalloc((size_t)s->batch, sizeof(*refs));
    do {
        rc = sweep_prune_outputs(s, refs, &got);
    } while (sweep_again(s, rc, got));
    free(refs);
    store_idem_purge(s->db, s->cfg->idempotency_ttl_s, s->batch, &got); /* Idempotency-Key */
}

/* Publishes the outbox, (re)opening the broker connection as needed. */
static void sweep_publish(struct sweep *s, struct mq **mq)
{
    int published, more;
    if (*mq == NULL) {
        char err[256];
        *mq = mq_open(s->cfg->amqp_url, s->cfg->amqp_queue, err, sizeof(err));
        if (*mq == NULL) {
            log_warn("janitor.broker_unavailable", "error=\"%s\"", err);
            return;
        }
    }
    int max = s->batch > 100000 ? 100000 : (int)s->batch;
    do {
        published = 0;
        int r = outbox_relay(s->db, *mq, max, &published);
        if (r == OUTBOX_BROKER_DOWN) {
            mq_close(*mq);
            *mq = NULL;
        }
        more = sweep_again(s, r == OUTBOX_OK ? STORE_OK : STORE_ERROR, published);
        s->c.published += published;
    } while (more);
}

/* The pass's counts and duration as metrics (README "Metrics"). */
static void sweep_metrics(const struct sweep *s)
{
    const struct sweep_counts *c = &s->c;
    const struct { const char *step; long n; } rows[] = {
        { "requeued", c->requeued },   { "failed", c->failed },
        { "expired", c->expired },     { "removed", c->removed },
        { "pruned", c->pruned },       { "republished", c->republished },
        { "published", c->published }, { "outputs_pruned", c->outputs_pruned },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        metric_add(ocm(OCM_JANITOR_ROWS), METRIC_LABELS(rows[i].step), (double)rows[i].n);
    metric_add(ocm(OCM_JANITOR_PASSES), METRIC_LABELS("leader"), 1);
    metric_observe(ocm(OCM_JANITOR_PASS_DURATION), NULL, ocm_since_s(s->start_ms));
}

enum sweep_rc janitor_sweep(const struct cfg *cfg, struct db *db, struct mq **mq)
{
    if (db_ensure(db, NULL, 0) != DB_OK)
        return SWEEP_DB_DOWN;
    int rc = store_janitor_lock(db);
    if (rc == STORE_CONFLICT) {
        log_debug("janitor.follower", "reason=\"another janitor leads this pass\"");
        metric_add(ocm(OCM_JANITOR_PASSES), METRIC_LABELS("follower"), 1);
        return SWEEP_FOLLOWER;
    }
    if (rc != STORE_OK)
        return SWEEP_DB_DOWN;

    struct sweep s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.db = db;
    s.batch = cfg->janitor_batch > 0 ? cfg->janitor_batch : 1;
    s.start_ms = time_mono_ms();
    s.deadline_ms = s.start_ms + (int64_t)cfg->janitor_budget_s * 1000;
    sweep_jobs_and_expiry(&s);
    sweep_purge(&s);
    sweep_publish(&s, mq);
    store_janitor_unlock(db);
    sweep_metrics(&s);
    const struct sweep_counts *c = &s.c;
    log_info("janitor.pass", "requeued=%ld failed=%ld expired=%ld removed=%ld "
             "remove_failed=%ld pruned=%ld outputs_pruned=%ld republished=%ld "
             "published=%ld duration_ms=%lld budget_spent=%d", c->requeued, c->failed,
             c->expired, c->removed, c->remove_failed, c->pruned, c->outputs_pruned,
             c->republished, c->published, (long long)(time_mono_ms() - s.start_ms),
             s.budget_spent);
    return SWEEP_DONE;
}
