/*
 * job_run.c - runs one claimed job and records how it ended.
 *
 * The job's workspace is rebuilt from the session's current files on every
 * attempt, so a re-run after a worker died starts from the state before
 * the lost attempt, never from its half-written files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent_events.h"
#include "db.h"
#include "fsutil.h"
#include "jsonutil.h"
#include "layout.h"
#include "log.h"
#include "path.h"
#include "timefmt.h"
#include "worker.h"

/* The agent's event stream is read whole for parsing up to this size;
 * past it only the tail is parsed (the final text and usage are there). */
#define JOB_MAX_EVENTS_BYTES (64L * 1024 * 1024)
/* opencode's error log read back for the job's error message. */
#define JOB_STDERR_TAIL (64 * 1024)
/* Longest cause taken from that log. */
#define JOB_CAUSE_MAX 500
/* How long a worker keeps trying to record an outcome while the database
 * is down; past this the lease has long expired and the janitor re-runs
 * the job, so the fenced update would fail anyway. */
#define JOB_FINISH_RETRY_S 300

struct job_tick {
    struct worker *w;
    struct pg_conn **db;
    const struct store_claim *claim;
    int64_t next_renew_ms;
    int lease_lost;
    int aborted;
};

/* Called about once a second while the agent runs. */
static int job_tick(void *arg)
{
    struct job_tick *t = arg;
    const struct cfg *cfg = t->w->cfg;
    if (atomic_load(&t->w->aborting)) {
        t->aborted = 1;
        return 1;
    }
    int64_t now = time_mono_ms();
    if (now < t->next_renew_ms)
        return 0;
    /* Renew every third of the lease; a database outage shorter than two
     * renewals costs nothing. */
    t->next_renew_ms = now + cfg->job_lease_s * 1000 / 3;
    if (db_ensure(t->db, cfg->database_url, "opencode-worker") != DB_OK)
        return 0;
    int rc = store_job_renew(*t->db, t->claim->job_id, t->claim->lease_token, cfg->job_lease_s);
    if (rc == STORE_NOT_FOUND) {
        log_warn("job.lease_lost", "job=%s", t->claim->job_id);
        t->lease_lost = 1;
        return 1;
    }
    return 0;
}

/* Reads up to max bytes from the end of path. NULL when unreadable. */
static char *job_read_tail(const char *path, long max, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    off_t start = st.st_size > max ? st.st_size - max : 0;
    size_t want = (size_t)(st.st_size - start);
    char *buf = malloc(want + 1);
    size_t got = 0;
    while (buf != NULL && got < want) {
        ssize_t n = pread(fd, buf + got, want - got, start + (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (buf != NULL) {
        buf[got] = '\0';
        *len = got;
    }
    return buf;
}

struct job_manifest {
    cJSON *files;
    long skipped;
};

static int job_manifest_add(void *arg, const char *rel, int64_t size, const char *sha256)
{
    struct job_manifest *m = arg;
    const char *why;
    /* Names the API could never serve (control characters, bad UTF-8)
     * are left out of the manifest rather than stored. */
    if (path_validate(rel, strlen(rel), &why) != 0) {
        m->skipped++;
        return 0;
    }
    cJSON *f = cJSON_CreateObject();
    if (f == NULL)
        return -ENOMEM;
    cJSON_AddItemToArray(m->files, f);
    cJSON_AddStringToObject(f, "path", rel);
    cJSON_AddNumberToObject(f, "size_bytes", (double)size);
    cJSON_AddStringToObject(f, "sha256", sha256);
    return 0;
}

/* Creates the workspace from the session's current files and the run
 * folder (HOME, prompt, logs). Returns 0 or -errno. */
static int job_prepare(const struct cfg *cfg, const struct store_claim *c, const char *work,
                       const char *run, const char *home, const char *prompt_path)
{
    char base[4096], jobs[4096];
    if (layout_files_dir(cfg->data_dir, c->session_id, c->base_job_id, base, sizeof(base)) ||
        snprintf(jobs, sizeof(jobs), "%s/sessions/%s/jobs", cfg->data_dir, c->session_id) >=
            (int)sizeof(jobs))
        return -ENAMETOOLONG;
    int rc = fs_rm_rf(work);
    if (rc == 0)
        rc = fs_rm_rf(run);
    if (rc == 0)
        rc = fs_mkdir_p(jobs, 0755);
    if (rc == 0)
        rc = fs_copy_tree(base, work);
    if (rc == 0)
        rc = fs_mkdir_p(home, 0700);
    if (rc != 0)
        return rc;
    int fd = open(prompt_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    size_t n = strlen(c->prompt);
    ssize_t w = write(fd, c->prompt, n);
    if (close(fd) != 0 || w != (ssize_t)n)
        return -EIO;
    return 0;
}

/*
 * Finds the first error="..." of an ERROR line in opencode's log: the real
 * cause behind a generic error event (e.g. "ProviderModelNotFoundError:
 * Model not found: nosuch/model."). Returns 1 with it in out, else 0.
 */
static int job_log_cause(const char *log, char *out, size_t len)
{
    const char *p = log ? strstr(log, " error=\"") : NULL;
    if (p == NULL || len == 0)
        return 0;
    p += strlen(" error=\"");
    size_t n = 0;
    for (; *p != '\0' && *p != '"' && *p != '\n' && n + 1 < len && n < JOB_CAUSE_MAX; p++)
        out[n++] = *p == '\\' && p[1] != '\0' ? *++p : *p;
    out[n] = '\0';
    return n > 0;
}

static void job_record(struct worker *w, struct pg_conn **db, const struct store_claim *c,
                       const struct store_outcome *o)
{
    const struct cfg *cfg = w->cfg;
    int64_t deadline = time_mono_ms() + JOB_FINISH_RETRY_S * 1000L;
    for (;;) {
        int rc = STORE_UNAVAILABLE;
        if (db_ensure(db, cfg->database_url, "opencode-worker") == DB_OK)
            rc = store_job_finish(*db, c, o);
        if (rc == STORE_OK) {
            log_info("job.finished", "job=%s session=%s status=%s attempt=%d", c->job_id,
                     c->session_id, o->status, c->attempt);
            return;
        }
        if (rc == STORE_NOT_FOUND) {
            log_warn("job.outcome_dropped", "job=%s reason=\"lease lost\"", c->job_id);
            return;
        }
        if (time_mono_ms() > deadline) {
            log_error("job.outcome_lost", "job=%s reason=\"database unreachable\"", c->job_id);
            return;
        }
        struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        nanosleep(&ts, NULL);
    }
}

static void job_release(struct worker *w, struct pg_conn **db, const struct store_claim *c)
{
    if (db_ensure(db, w->cfg->database_url, "opencode-worker") == DB_OK &&
        store_job_release(*db, c) == STORE_OK)
        log_info("job.released", "job=%s reason=shutdown", c->job_id);
    /* Otherwise the lease runs out and the janitor re-queues it. */
}

void worker_job_run(struct worker *w, struct pg_conn **db, struct store_claim *c)
{
    const struct cfg *cfg = w->cfg;
    char work[4096], run[4096], home[4096], prompt[4200], out[4200], err[4200], envf[4096];
    char error[2 * JOB_CAUSE_MAX + 512], cause[JOB_CAUSE_MAX + 1];
    run[0] = '\0';
    struct store_outcome o;
    memset(&o, 0, sizeof(o));
    struct agent_report rep;
    memset(&rep, 0, sizeof(rep));
    struct job_manifest man = { cJSON_CreateArray(), 0 };
    char *events = NULL, *stderr_tail = NULL, *files_json = NULL, *summary = NULL;
    char **env = NULL;

    log_info("job.started", "job=%s session=%s attempt=%d model=%s", c->job_id, c->session_id,
             c->attempt, c->model);
    if (layout_job_dir(cfg->data_dir, c->session_id, c->job_id, work, sizeof(work)) ||
        layout_run_dir(cfg->data_dir, c->session_id, c->job_id, run, sizeof(run)) ||
        layout_env_file(cfg->data_dir, c->session_id, envf, sizeof(envf)) ||
        snprintf(home, sizeof(home), "%s/home", run) >= (int)sizeof(home)) {
        o.status = "failed";
        o.error = "internal error: data path too long";
        goto record;
    }
    snprintf(prompt, sizeof(prompt), "%s/prompt", run);
    snprintf(out, sizeof(out), "%s/stdout.jsonl", run);
    snprintf(err, sizeof(err), "%s/stderr.log", run);

    int rc = job_prepare(cfg, c, work, run, home, prompt);
    if (rc == 0) {
        env = worker_env_build(cfg, home, envf);
        if (env == NULL)
            rc = -ENOMEM;
    }
    if (rc != 0) {
        snprintf(error, sizeof(error), "could not prepare the workspace: %s", strerror(-rc));
        o.status = "failed";
        o.error = error;
        goto record;
    }

    struct agent_spec spec = {
        .opencode_bin = cfg->opencode_bin,
        .bwrap_bin = cfg->sandbox == CFG_SANDBOX_BWRAP ? cfg->bwrap_bin : NULL,
        .workspace = work,
        .home = home,
        .model = c->model,
        .prompt_path = prompt,
        .stdout_path = out,
        .stderr_path = err,
        .env = env,
        .timeout_s = (int)c->timeout_s,
    };
    struct job_tick tick = { w, db, c, time_mono_ms() + cfg->job_lease_s * 1000 / 3, 0, 0 };
    struct agent_result res;
    rc = agent_run(&spec, job_tick, &tick, &res);
    if (rc != 0) {
        snprintf(error, sizeof(error), "could not start the agent: %s", strerror(-rc));
        o.status = "failed";
        o.error = error;
        goto record;
    }
    if (tick.lease_lost)
        goto done;                      /* another attempt owns the job now */
    if (tick.aborted) {
        job_release(w, db, c);
        goto done;
    }

    size_t len = 0, elen = 0;
    events = job_read_tail(out, JOB_MAX_EVENTS_BYTES, &len);
    if (events != NULL && agent_report_parse(events, len, &rep) != 0)
        memset(&rep, 0, sizeof(rep));
    stderr_tail = job_read_tail(err, JOB_STDERR_TAIL, &elen);
    if (stderr_tail != NULL)
        json_sanitize_utf8(stderr_tail, elen);

    o.has_exit_code = res.end == AGENT_EXITED;
    o.exit_code = res.exit_code;
    if (res.end == AGENT_TIMED_OUT) {
        o.status = "timed_out";
        snprintf(error, sizeof(error), "Job exceeded the timeout of %ld seconds.", c->timeout_s);
        o.error = error;
    } else if (res.end == AGENT_SIGNALED) {
        o.status = "failed";
        snprintf(error, sizeof(error), "the agent was killed by signal %d", res.signal);
        o.error = error;
    } else if (res.exit_code != 0 || rep.error != NULL) {
        o.status = "failed";
        int has_cause = job_log_cause(stderr_tail, cause, sizeof(cause));
        if (rep.error != NULL && has_cause && strncmp(rep.error, "UnknownError", 12) == 0)
            snprintf(error, sizeof(error), "%s", cause);
        else if (rep.error != NULL)
            snprintf(error, sizeof(error), "%s", rep.error);
        else
            snprintf(error, sizeof(error), "opencode exited with status %d%s%s", res.exit_code,
                     has_cause ? ": " : "", has_cause ? cause : "");
        o.error = error;
    } else {
        o.status = "succeeded";
    }

    if (events != NULL) {
        /* The database keeps the tail of the stream; text columns must be
         * valid UTF-8 without NULs. */
        char *keep = len > (size_t)cfg->max_stdout_bytes
                         ? events + len - (size_t)cfg->max_stdout_bytes : events;
        json_sanitize_utf8(keep, strlen(keep));
        o.stdout_text = keep;
    }
    if (rep.text != NULL) {
        json_sanitize_utf8(rep.text, strlen(rep.text));
        o.result = rep.text;
    }
    if (rep.summary != NULL)
        summary = cJSON_PrintUnformatted(rep.summary);
    o.result_json = summary;
    if (rep.has_usage) {
        o.has_usage = 1;
        o.tokens_input = rep.tokens_input;
        o.tokens_output = rep.tokens_output;
        o.tokens_reasoning = rep.tokens_reasoning;
        o.tokens_cache_read = rep.tokens_cache_read;
        o.tokens_cache_write = rep.tokens_cache_write;
        o.cost_usd = rep.cost;
    }

    /* Outputs of every ended run are kept, partial ones of a timed-out or
     * failed run included. */
    if (man.files != NULL && fs_manifest(work, job_manifest_add, &man) == 0)
        files_json = cJSON_PrintUnformatted(man.files);
    o.files_json = files_json;
    if (man.skipped > 0)
        log_warn("job.outputs_skipped", "job=%s count=%ld reason=\"unservable names\"",
                 c->job_id, man.skipped);

record:
    /* The scratch folder goes before the outcome becomes visible, so a
     * client that sees the job ended sees only its outputs on disk. */
    if (run[0] != '\0')
        fs_rm_rf(run);
    job_record(w, db, c, &o);
done:
    if (run[0] != '\0')
        fs_rm_rf(run);
    worker_env_free(env);
    agent_report_free(&rep);
    cJSON_Delete(man.files);
    free(events);
    free(stderr_tail);
    free(files_json);
    free(summary);
}
