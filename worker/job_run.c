/*
 * job_run.c - runs one attempt of a claimed job: prepare -> run ->
 * collect -> record (see job.h).
 *
 * The workspace is rebuilt from the session's current files on every
 * attempt, in a folder of the attempt's own, so a re-run after a worker
 * died starts from the state before the lost attempt, never from its
 * half-written files, and the lost attempt (its agent maybe still
 * writing) never shares a folder with the re-run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attempt.h"
#include "conversation.h"
#include "db.h"
#include "fsutil.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "timefmt.h"
#include "xalloc.h"

enum job_ran {
    JOB_NOT_RUN,             /* failed before or while starting: outcome set */
    JOB_RAN,                 /* the agent ended: collect and record */
    JOB_LEASE_LOST,          /* another attempt owns the job now */
    JOB_ABORTED,             /* shutdown grace over: hand the job back */
};

int job_fail(struct job_attempt *ja, enum joberr code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ja->error, sizeof(ja->error), fmt, ap);
    va_end(ap);
    ja->o.status = "failed";
    ja->o.error_code = code;
    ja->o.error = ja->error;
    return -1;
}

void job_remove_dir(struct job_attempt *ja)
{
    if (!ja->own_dir)
        return;
    int rc = attempt_remove(&ja->a);
    if (rc != 0)
        log_warn("job.cleanup_failed", "job=%s errno=%d", ja->c->job_id, -rc);
    ja->own_dir = 0;
}

/*
 * Not renewed for two thirds of the lease: stop now, before the lease can
 * run out and the janitor hand the job to another worker (README: a
 * partitioned worker never keeps working next to a re-run). lease_ok_ms is
 * taken before each renewal is sent, and a renewal blocks at most a third
 * of the lease (db_set_io_timeout() in slot.c), so the database's lease
 * outlives this point by about a third of it.
 */
static int job_lease_overdue(struct job_attempt *ja, int64_t lease_ms)
{
    if (time_mono_ms() - ja->lease_ok_ms < lease_ms - lease_ms / 3)
        return 0;
    log_warn("job.lease_expired", "job=%s reason=\"not renewed for 2/3 of JOB_LEASE_S\"",
             ja->c->job_id);
    metric_add(ocm(OCM_LEASES_LOST), NULL, 1);
    ja->lease_lost = 1;
    return 1;
}

int job_lease_keep(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    const int64_t lease_ms = cfg->job_lease_s * 1000;
    int64_t now = time_mono_ms();
    if (ja->lease_lost || job_lease_overdue(ja, lease_ms))
        return 1;
    if (now >= ja->next_renew_ms) {
        /* Renew every third of the lease; a database outage shorter than
         * two renewals costs nothing. A failed try is retried sooner. */
        int rc = STORE_UNAVAILABLE, cancel = 0;
        if (db_ensure(ja->db, NULL, 0) == DB_OK)
            rc = store_job_renew(ja->db, ja->c->job_id, ja->c->lease_token, cfg->job_lease_s,
                                 &cancel);
        if (cancel && !ja->cancel) {
            log_info("job.cancel_requested", "job=%s via=lease", ja->c->job_id);
            ja->cancel = 1;
        }
        if (rc == STORE_NOT_FOUND) {
            log_warn("job.lease_lost", "job=%s", ja->c->job_id);
            metric_add(ocm(OCM_LEASES_LOST), NULL, 1);
            ja->lease_lost = 1;
            return 1;
        }
        if (rc == STORE_OK) {
            ja->lease_ok_ms = now;
            metric_add(ocm(OCM_LEASE_RENEWALS), NULL, 1);
        }
        int64_t again = rc == STORE_OK ? lease_ms / 3 : (lease_ms / 3 < 1000 ? lease_ms / 3 : 1000);
        ja->next_renew_ms = time_mono_ms() + again;
    }
    return job_lease_overdue(ja, lease_ms);
}

int job_walk_progress(void *arg)
{
    return job_lease_keep(arg);
}

/* prepare. Returns 0, -1 with the outcome set, or 1 when the lease was
 * lost meanwhile. */
static int job_prepare(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    const struct store_claim *c = ja->c;
    if (layout_attempt(cfg->data_dir, c->session_id, c->job_id, c->lease_token,
                       c->base_job_id, &ja->a) != 0 ||
        conversation_from(&ja->a, cfg->data_dir, c, ja->conv_session,
                          sizeof(ja->conv_session)) != 0)
        return job_fail(ja, JOBERR_INTERNAL, "internal error: data path too long");
    struct fs_walk walk = { .progress = job_walk_progress, .arg = ja };
    int rc = attempt_prepare_walk(&ja->a, c->prompt, &walk, &ja->own_dir);
    if (rc == -ECANCELED && ja->lease_lost)
        return 1;
    if (rc == 0)
        rc = attempt_seed_models(ja->a.home, cfg->agent_models_json);
    if (rc == 0) {
        ja->env = job_gateway_env(ja);
        if (ja->env == NULL)
            rc = -ENOMEM;
    }
    if (rc != 0)
        return job_fail(ja, JOBERR_WORKSPACE, "could not prepare the workspace: %s",
                        strerror(-rc));
    return job_contain_begin(ja);
}

/* Called every JOB_WATCHDOG_MS while the agent runs. */
static int job_tick(void *arg)
{
    struct job_attempt *ja = arg;
    if (atomic_load(&ja->w->aborting)) {
        ja->aborted = 1;
        return 1;
    }
    if (job_lease_keep(ja) != 0)
        return 1;
    enum joberr e = watchdog_check(&ja->wd, ja->limit_msg, sizeof(ja->limit_msg));
    if (e != JOBERR_NONE) {
        ja->limit = e;
        log_warn("job.limit", "job=%s code=%s rss_kb=%llu cpu_ms=%llu tasks=%llu", ja->c->job_id,
                 joberr_name(e), (unsigned long long)ja->wd.last.rss_kb,
                 (unsigned long long)ja->wd.cpu_ms_max, (unsigned long long)ja->wd.last.tasks);
        return 1;
    }
    if (job_live_tick(ja) != 0) {
        log_info("job.cancel_requested", "job=%s", ja->c->job_id);
        return 1;
    }
    return job_gateway_budget(ja);
}

/*
 * opencode_agent_startup_seconds: from just before the agent is started
 * (spawn_us, wall clock) to the "timestamp" (ms since the epoch) of the
 * first event it wrote to the event stream. Read after the run, with the
 * agent's files taken back; nothing is observed when the first line has
 * no timestamp. The file is opened without following links or blocking,
 * regular files only (the agent could have replaced it).
 */
static void job_agent_startup(const char *events, int64_t spawn_us)
{
    char buf[4096];
    int fd = open(events, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl != NULL)
        *nl = '\0';
    const char *ts = strstr(buf, "\"timestamp\":");
    if (ts == NULL)
        return;
    char *end;
    long long ms = strtoll(ts + strlen("\"timestamp\":"), &end, 10);
    double s = (double)(ms - spawn_us / 1000) / 1000.0;
    if (end != ts + strlen("\"timestamp\":") && s >= 0 && s < 86400)
        metric_observe(ocm(OCM_AGENT_STARTUP), NULL, s);
}

/* run: the agent in the attempt's workspace, with its HOME. *spawn_us
 * gets the wall-clock time the agent was started. */
static enum job_ran job_run_agent(struct job_attempt *ja, int64_t *spawn_us)
{
    const struct cfg *cfg = ja->w->cfg;
    const struct layout_attempt *a = &ja->a;
    struct agent_spec spec = {
        .opencode_bin = cfg->opencode_bin,
        .bwrap_bin = cfg->sandbox == CFG_SANDBOX_BWRAP ? cfg->bwrap_bin : NULL,
        .workspace = a->work,
        .home = a->home,
        .model = ja->c->model,
        .prompt_path = a->prompt,
        .stdout_path = a->events,
        .stderr_path = a->log,
        .env = ja->env,
        .timeout_s = (int)ja->c->timeout_s,
        .session = ja->conv_session[0] != '\0' ? ja->conv_session : NULL,
    };
    struct agent_limits limits;
    char procs[LAYOUT_PATH_MAX + 64];
    job_contain_spec(ja, &spec, &limits, procs, sizeof(procs));
    job_gateway_spec(ja, &spec);
    *spawn_us = time_now_usec();
    job_live_begin(ja);
    int rc = agent_run(&spec, job_tick, ja, &ja->res);
    job_live_end(ja);
    job_gateway_usage(ja);
    if (rc != 0) {
        job_fail(ja, JOBERR_AGENT_START, "could not start the agent: %s", strerror(-rc));
        return JOB_NOT_RUN;
    }
    if (ja->lease_lost)
        return JOB_LEASE_LOST;
    if (ja->aborted)
        return JOB_ABORTED;
    return JOB_RAN;
}

static void job_release(struct job_attempt *ja)
{
    if (db_ensure(ja->db, NULL, 0) == DB_OK && store_job_release(ja->db, ja->c) == STORE_OK)
        log_info("job.released", "job=%s reason=shutdown", ja->c->job_id);
    /* Otherwise the lease runs out and the janitor re-queues it. */
}

/* Removes what the attempt left on disk and frees it. */
static void job_attempt_end(struct job_attempt *ja)
{
    job_gateway_end(ja);
    job_remove_dir(ja);
    if (ja->trash_entry[0] != '\0') {
        int rc = fs_rm_rf(ja->trash_entry);
        if (rc != 0)
            log_warn("job.cleanup_failed", "job=%s errno=%d", ja->c->job_id, -rc);
    }
    worker_env_free(ja->env);
    agent_report_free(&ja->rep);
    job_files_free(&ja->files);
    free(ja->events);
    free(ja->stderr_tail);
    free(ja->summary);
    free(ja);
}

void worker_job_run(struct worker *w, struct db *db, const struct store_claim *c)
{
    struct job_attempt *ja = xcalloc(1, sizeof(*ja));
    ja->w = w;
    ja->db = db;
    ja->c = c;
    ja->lease.fd = -1;
    /* The claim just renewed the lease. */
    ja->lease_ok_ms = time_mono_ms();
    ja->next_renew_ms = ja->lease_ok_ms + w->cfg->job_lease_s * 1000 / 3;
    log_info("job.started", "job=%s session=%s attempt=%d model=%s", c->job_id, c->session_id,
             c->attempt, c->model);

    enum job_ran r = JOB_NOT_RUN;
    int64_t spawn_us = 0;
    int prep = job_prepare(ja);
    if (prep == 0)
        r = job_run_agent(ja, &spawn_us);
    else if (prep > 0)
        r = JOB_LEASE_LOST;
    job_contain_end(ja);
    if (r == JOB_RAN) {
        job_agent_startup(ja->a.events, spawn_us);
        job_collect(ja);
        if (ja->lease_lost)
            r = JOB_LEASE_LOST;
    }
    if (r == JOB_ABORTED)
        job_release(ja);
    /* Lease lost or aborted: only the attempt's own folder goes. */
    if (r == JOB_RAN || r == JOB_NOT_RUN)
        job_record(ja);
    job_attempt_end(ja);
}
