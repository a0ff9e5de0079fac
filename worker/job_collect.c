/*
 * job_collect.c - collect: what an ended agent leaves behind, turned into
 * the job's outcome (see job.h).
 *
 * The status and error come from how the agent ended, its event stream
 * and its error log; the outputs are the regular files of the attempt's
 * workspace, listed (with SHA-256) before they are published. A listing
 * that fails is never recorded as a success.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "job.h"
#include "jsonutil.h"
#include "log.h"
#include "path.h"
#include "xalloc.h"

/* The agent's event stream is read whole for parsing up to this size;
 * past it only the tail is parsed (the final text and usage are there). */
#define JOB_MAX_EVENTS_BYTES (64L * 1024 * 1024)
/* opencode's error log read back for the job's error message. */
#define JOB_STDERR_TAIL (64 * 1024)

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

/* Status, error code and error text from how the agent ended. */
static void job_map_end(struct job_attempt *ja)
{
    const struct agent_result *res = &ja->res;
    struct store_outcome *o = &ja->o;
    o->has_exit_code = res->end == AGENT_EXITED;
    o->exit_code = res->exit_code;
    if (ja->limit != JOBERR_NONE) {
        /* The watchdog (or the kernel, through the cgroup) stopped it:
         * whatever else the agent reported follows from that. */
        job_fail(ja, ja->limit, "%s", ja->limit_msg);
    } else if (ja->cancel && res->end == AGENT_STOPPED) {
        /* Partial outputs are kept, as for a timeout. */
        job_fail(ja, JOBERR_CANCELLED, "cancelled by the client while it ran");
        o->status = "cancelled";
    } else if (res->end == AGENT_TIMED_OUT) {
        job_fail(ja, JOBERR_TIMEOUT, "Job exceeded the timeout of %ld seconds.",
                 ja->c->timeout_s);
        o->status = "timed_out";
    } else if (res->end == AGENT_SIGNALED) {
        job_fail(ja, JOBERR_AGENT_KILLED, "the agent was killed by signal %d", res->signal);
    } else if (res->exit_code != 0 || ja->rep.error != NULL) {
        const char *rep_error = ja->rep.error;
        char cause[JOB_CAUSE_MAX + 1];
        int has_cause = job_log_cause(ja->stderr_tail, cause, sizeof(cause));
        if (rep_error != NULL && has_cause && strncmp(rep_error, "UnknownError", 12) == 0)
            job_fail(ja, JOBERR_AGENT_FAILED, "%s", cause);
        else if (rep_error != NULL)
            job_fail(ja, JOBERR_AGENT_FAILED, "%s", rep_error);
        else
            job_fail(ja, JOBERR_AGENT_FAILED, "opencode exited with status %d%s%s",
                     res->exit_code, has_cause ? ": " : "", has_cause ? cause : "");
    } else {
        o->status = "succeeded";
        o->error_code = JOBERR_NONE;
    }
}

/* result_json.resources: what the agent's processes took, as the watchdog
 * sampled it (every JOB_WATCHDOG_MS; nothing when it never sampled). */
static void job_add_resources(const struct job_attempt *ja, cJSON *summary)
{
    if (ja->wd.checks == 0 || !cJSON_IsObject(summary))
        return;
    cJSON *r = cJSON_AddObjectToObject(summary, "resources");
    cJSON_AddNumberToObject(r, "cpu_s", (double)ja->wd.cpu_ms_max / 1000.0);
    cJSON_AddNumberToObject(r, "peak_rss_bytes", (double)ja->wd.rss_kb_max * 1024.0);
}

/* The stream's tail, final text, summary and usage into the outcome. */
static void job_keep_report(struct job_attempt *ja, size_t events_len)
{
    const struct cfg *cfg = ja->w->cfg;
    struct store_outcome *o = &ja->o;
    struct agent_report *rep = &ja->rep;
    if (ja->events != NULL) {
        /* The database keeps the tail of the stream; text columns must be
         * valid UTF-8 without NULs. */
        char *keep = events_len > (size_t)cfg->max_stdout_bytes
                         ? ja->events + events_len - (size_t)cfg->max_stdout_bytes
                         : ja->events;
        json_sanitize_utf8(keep, strlen(keep));
        o->stdout_text = keep;
    }
    if (rep->text != NULL) {
        json_sanitize_utf8(rep->text, strlen(rep->text));
        o->result = rep->text;
    }
    if (rep->summary != NULL) {
        job_add_resources(ja, rep->summary);
        ja->summary = cJSON_PrintUnformatted(rep->summary);
    }
    o->result_json = ja->summary;
    if (rep->has_usage) {
        o->has_usage = 1;
        o->tokens_input = rep->tokens_input;
        o->tokens_output = rep->tokens_output;
        o->tokens_reasoning = rep->tokens_reasoning;
        o->tokens_cache_read = rep->tokens_cache_read;
        o->tokens_cache_write = rep->tokens_cache_write;
        o->cost_usd = rep->cost;
    }
}

void job_files_free(struct job_files *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free((char *)f->v[i].path);
        free((char *)f->v[i].sha256);
    }
    for (size_t i = 0; i < f->ndeleted; i++)
        free(f->deleted[i]);
    free(f->deleted);
    free(f->change);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

static int job_manifest_add(void *arg, const char *rel, int64_t size, const char *sha256,
                            unsigned mode)
{
    struct job_files *f = arg;
    const char *why;
    /* Names the API could never serve (control characters, bad UTF-8)
     * are left out of the manifest rather than stored. */
    if (path_validate(rel, strlen(rel), &why) != 0) {
        f->skipped++;
        return 0;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
    }
    f->v[f->n].path = xstrdup(rel);
    f->v[f->n].size_bytes = size;
    f->v[f->n].sha256 = xstrdup(sha256);
    f->v[f->n].mode = mode;
    f->n++;
    return 0;
}

/* A listing stopped by the output caps: nothing is published. */
static void job_outputs_over(struct job_attempt *ja, int rc)
{
    const struct cfg *cfg = ja->w->cfg;
    log_warn("job.output_limit", "job=%s errno=%d", ja->c->job_id, -rc);
    if (ja->o.error_code != JOBERR_NONE)
        return;               /* the first reason stays the job's error */
    if (rc == -EMFILE)
        job_fail(ja, JOBERR_OUTPUT_LIMIT, "the job left more than %ld files "
                 "(JOB_MAX_OUTPUT_FILES); its outputs were not kept", cfg->job_max_output_files);
    else
        job_fail(ja, JOBERR_OUTPUT_LIMIT, "the job left more than %ld bytes of files "
                 "(JOB_MAX_OUTPUT_BYTES); its outputs were not kept", cfg->job_max_output_bytes);
}

/* Lists the workspace into the outcome. Outputs of every ended run are
 * kept, partial ones of a timed-out, failed or limited run included,
 * within JOB_MAX_OUTPUT_FILES and JOB_MAX_OUTPUT_BYTES. A failed or
 * capped listing publishes nothing and turns a success into a failure;
 * one cancelled because the lease is gone records nothing. */
static void job_list_outputs(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    if (ja->reclaim_failed) {
        if (ja->o.error_code == JOBERR_NONE)
            job_fail(ja, JOBERR_OUTPUT, "could not take back the outputs from the agent's uid");
        return;
    }
    struct fs_walk walk = {
        .max_files = (uint64_t)cfg->job_max_output_files,
        .max_bytes = (uint64_t)cfg->job_max_output_bytes,
        .progress = job_walk_progress,
        .arg = ja,
    };
    int rc = fs_manifest(ja->a.work, job_manifest_add, &ja->files, &walk);
    if (ja->files.skipped > 0)
        log_warn("job.outputs_skipped", "job=%s count=%ld reason=\"unservable names\"",
                 ja->c->job_id, ja->files.skipped);
    if (rc != 0) {
        job_files_free(&ja->files);
        if (rc == -ECANCELED && ja->lease_lost)
            return;
        if (rc == -EMFILE || rc == -EFBIG) {
            job_outputs_over(ja, rc);
            return;
        }
        log_warn("job.outputs_unlisted", "job=%s errno=%d", ja->c->job_id, -rc);
        if (ja->o.error_code == JOBERR_NONE)
            job_fail(ja, JOBERR_OUTPUT, "could not list the outputs: %s", strerror(-rc));
        return;
    }
    ja->o.files = ja->files.v;
    ja->o.nfiles = ja->files.n;
    ja->publish = 1;
    job_diff(ja);
}

void job_collect(struct job_attempt *ja)
{
    size_t len = 0, elen = 0;
    ja->events = job_read_tail(ja->a.events, JOB_MAX_EVENTS_BYTES, &len);
    if (ja->events != NULL && agent_report_parse(ja->events, len, &ja->rep) != 0)
        memset(&ja->rep, 0, sizeof(ja->rep));
    ja->stderr_tail = job_read_tail(ja->a.log, JOB_STDERR_TAIL, &elen);
    if (ja->stderr_tail != NULL)
        json_sanitize_utf8(ja->stderr_tail, elen);

    job_map_end(ja);
    job_keep_report(ja, len);
    job_list_outputs(ja);
}
