/*
 * job_record.c - record: publish an attempt's outputs and store its
 * outcome, only while the attempt still holds the job's lease (see job.h).
 *
 * The outputs are published by attempt_publish() (attempt.h), which asks
 * for the lease to be renewed before it renames anything and again before
 * it displaces a folder it found at jobs/<job>. Then store_job_finish(),
 * fenced by the lease token, records the outcome, retrying while the
 * database is down. A lease found lost on the way stops the attempt: only
 * its own folder is removed.
 */
#include <errno.h>
#include <string.h>

#include "attempt.h"
#include "conversation.h"
#include "db.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "prog.h"
#include "timefmt.h"

/* Wait between two tries while the database is unreachable. */
#define JOB_RETRY_MS 1000

/* What attempt_publish()'s lease check needs. */
struct job_lease_check {
    struct job_attempt *ja;
    int64_t deadline;
};

/* Renews the lease, retrying while the database is unreachable until the
 * deadline. Returns 1 while the lease is ours; logs why when it is not. */
static int job_lease_held(void *arg)
{
    struct job_lease_check *l = arg;
    struct job_attempt *ja = l->ja;
    const struct cfg *cfg = ja->w->cfg;
    const struct store_claim *c = ja->c;
    for (;;) {
        int rc = STORE_UNAVAILABLE;
        if (db_ensure(ja->db, NULL, 0) == DB_OK)
            rc = store_job_renew(ja->db, c->job_id, c->lease_token, cfg->job_lease_s,
                                 &(int){ 0 });
        if (rc == STORE_OK) {
            metric_add(ocm(OCM_LEASE_RENEWALS), NULL, 1);
            return 1;
        }
        if (rc == STORE_NOT_FOUND) {
            log_warn("job.lease_lost", "job=%s", c->job_id);
            metric_add(ocm(OCM_LEASES_LOST), NULL, 1);
            return 0;
        }
        if (time_mono_ms() > l->deadline) {
            log_error("job.outcome_lost", "job=%s reason=\"database unreachable\"", c->job_id);
            return 0;
        }
        prog_sleep_ms(JOB_RETRY_MS);
    }
}

/* A publish that failed: nothing was published, so no outputs are
 * recorded, and a success becomes output_failed. */
static void job_publish_failed(struct job_attempt *ja, int rc)
{
    log_warn("job.publish_failed", "job=%s errno=%d", ja->c->job_id, -rc);
    ja->o.files = NULL;
    ja->o.nfiles = 0;
    if (ja->o.error_code == JOBERR_NONE)
        job_fail(ja, JOBERR_OUTPUT, "could not publish the outputs: %s", strerror(-rc));
}

/* Publishes work/ as jobs/<job>. Returns 0 when the outcome is to be
 * recorded (published, or the failure noted in it), -1 when the lease is
 * gone. */
static int job_publish(struct job_attempt *ja, int64_t deadline)
{
    struct job_lease_check l = { ja, deadline };
    int rc = attempt_publish(&ja->a, ja->c->job_id, job_lease_held, &l, ja->trash_entry,
                             sizeof(ja->trash_entry));
    if (rc == ATTEMPT_LEASE_GONE)
        return -1;
    if (rc != ATTEMPT_PUBLISHED)
        job_publish_failed(ja, rc);
    else if (ja->trash_entry[0] != '\0')
        log_warn("job.stale_outputs_displaced", "job=%s", ja->c->job_id);
    return 0;
}

/* store_job_finish(), retrying while the database is unreachable. */
/* What the agent took (result_json.resources), also as metrics. */
static void job_record_resources(const struct job_attempt *ja)
{
    if (ja->wd.checks == 0)
        return;
    metric_observe(ocm(OCM_AGENT_CPU), NULL, (double)ja->wd.cpu_ms_max / 1000.0);
    metric_observe(ocm(OCM_AGENT_PEAK_RSS), NULL, (double)ja->wd.rss_kb_max * 1024.0);
}

static void job_finish(struct job_attempt *ja, int64_t deadline)
{
    const struct store_claim *c = ja->c;
    const struct store_outcome *o = &ja->o;
    for (;;) {
        int rc = STORE_UNAVAILABLE;
        if (db_ensure(ja->db, NULL, 0) == DB_OK)
            rc = store_job_finish(ja->db, c, o);
        if (rc == STORE_OK) {
            log_info("job.finished", "job=%s session=%s status=%s attempt=%d", c->job_id,
                     c->session_id, o->status, c->attempt);
            const char *code = joberr_name(o->error_code);
            metric_add(ocm(OCM_JOBS_FINISHED), METRIC_LABELS(o->status, code ? code : "none"),
                       1);
            job_record_resources(ja);
            return;
        }
        if (rc == STORE_NOT_FOUND) {
            log_warn("job.outcome_dropped", "job=%s reason=\"lease lost\"", c->job_id);
            metric_add(ocm(OCM_LEASES_LOST), NULL, 1);
            return;
        }
        if (time_mono_ms() > deadline) {
            log_error("job.outcome_lost", "job=%s reason=\"database unreachable\"", c->job_id);
            return;
        }
        prog_sleep_ms(JOB_RETRY_MS);
    }
}

/* A job about to be recorded succeeded publishes its agent's conversation
 * next to its outputs (conversation.h), fenced by the lease as they are.
 * One that cannot be captured is logged and left out: the next job then
 * starts a new conversation. Returns 0, or -1 when the lease is gone. */
static int job_publish_conversation(struct job_attempt *ja, int64_t deadline)
{
    const struct store_claim *c = ja->c;
    if (!ja->publish || ja->o.status == NULL || strcmp(ja->o.status, "succeeded") != 0)
        return 0;
    int rc = conversation_capture(&ja->a, ja->events,
                                  ja->events != NULL ? strlen(ja->events) : 0);
    if (rc == 0) {
        struct job_lease_check l = { ja, deadline };
        rc = conversation_publish(&ja->a, c->job_id, c->conv_job_id, job_lease_held, &l);
        if (rc == ATTEMPT_LEASE_GONE)
            return -1;
    }
    if (rc != 0)
        log_warn("job.conversation_not_kept", "job=%s errno=%d", c->job_id, rc < 0 ? -rc : rc);
    return 0;
}

void job_record(struct job_attempt *ja)
{
    int64_t deadline = time_mono_ms() + JOB_FINISH_RETRY_S * 1000L;
    if (ja->publish && job_publish(ja, deadline) != 0)
        return;
    if (job_publish_conversation(ja, deadline) != 0)
        return;
    /* The scratch folder (and an unpublished workspace) goes before the
     * outcome becomes visible, so a client that sees the job ended sees
     * only its outputs on disk. */
    job_remove_dir(ja);
    job_finish(ja, deadline);
}
