/*
 * metrics.c - the metrics registry and the service's catalogue (see
 * metrics.h).
 *
 * Ownership: a registry owns everything hanging off it (metrics, series,
 * copied label values). Threading: one mutex per registry around every
 * read and write of its metrics; scrape hooks are called without it.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "timefmt.h"
#include "xalloc.h"

#ifndef OC_VERSION
#define OC_VERSION "dev"
#endif

#define METRICS_MAX_HOOKS 8

struct series {
    char  *values[METRIC_MAX_LABELS];
    double value;                               /* counter, gauge */
    double counts[METRIC_MAX_BUCKETS + 1];      /* histogram, per bucket (+Inf last) */
    double sum;
    double count;
};

struct metric {
    struct metrics  *r;
    enum metric_type type;
    char            *name;
    char            *help;
    size_t           nlabels;
    char            *labels[METRIC_MAX_LABELS];
    double           bounds[METRIC_MAX_BUCKETS];
    size_t           nbounds;
    struct series   *series;
    size_t           nseries, cap;
    int              overflow_logged;
};

struct metrics {
    pthread_mutex_t mu;
    struct metric **m;
    size_t          n, cap;
    metrics_hook    hooks[METRICS_MAX_HOOKS];
    void           *hook_args[METRICS_MAX_HOOKS];
    size_t          nhooks;
};

struct metrics *metrics_new(void)
{
    struct metrics *r = xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void metric_free(struct metric *m)
{
    for (size_t i = 0; i < m->nseries; i++)
        for (size_t j = 0; j < m->nlabels; j++)
            free(m->series[i].values[j]);
    for (size_t j = 0; j < m->nlabels; j++)
        free(m->labels[j]);
    free(m->series);
    free(m->name);
    free(m->help);
    free(m);
}

void metrics_free(struct metrics *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        metric_free(r->m[i]);
    free(r->m);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static pthread_once_t metrics_default_once = PTHREAD_ONCE_INIT;
static struct metrics *metrics_default_r;

static void metrics_default_init(void)
{
    metrics_default_r = metrics_new();
}

struct metrics *metrics_default(void)
{
    pthread_once(&metrics_default_once, metrics_default_init);
    return metrics_default_r;
}

/* Splits "a,b,c" into m->labels. Returns 0, or -1 when there are too many
 * or one is empty. */
static int metric_parse_labels(struct metric *m, const char *labels)
{
    if (labels == NULL || *labels == '\0')
        return 0;
    for (const char *p = labels;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || m->nlabels == METRIC_MAX_LABELS)
            return -1;
        m->labels[m->nlabels] = xmalloc(n + 1);
        memcpy(m->labels[m->nlabels], p, n);
        m->labels[m->nlabels++][n] = '\0';
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

/* The series of values, created when absent (NULL past METRIC_MAX_SERIES).
 * Called with the registry locked. */
static struct series *metric_series(struct metric *m, const char *const *values)
{
    for (size_t i = 0; i < m->nseries; i++) {
        size_t j = 0;
        while (j < m->nlabels && strncmp(m->series[i].values[j], values[j],
                                         METRIC_LABEL_MAX - 1) == 0)
            j++;
        if (j == m->nlabels)
            return &m->series[i];
    }
    if (m->nseries == METRIC_MAX_SERIES) {
        if (!m->overflow_logged)
            log_warn("metrics.too_many_series", "metric=%s max=%d", m->name, METRIC_MAX_SERIES);
        m->overflow_logged = 1;
        return NULL;
    }
    if (m->nseries == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 4;
        m->series = xrealloc(m->series, m->cap * sizeof(*m->series));
    }
    struct series *s = &m->series[m->nseries++];
    memset(s, 0, sizeof(*s));
    for (size_t j = 0; j < m->nlabels; j++) {
        const char *v = values[j] ? values[j] : "";
        size_t n = strnlen(v, METRIC_LABEL_MAX - 1);
        s->values[j] = xmalloc(n + 1);
        memcpy(s->values[j], v, n);
        s->values[j][n] = '\0';
    }
    return s;
}

static struct metric *metrics_find(struct metrics *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i]->name, name) == 0)
            return r->m[i];
    return NULL;
}

/* A new metric from its definition, or NULL when the definition is bad. */
static struct metric *metric_build(enum metric_type type, const char *name, const char *help,
                                   const char *labels, const double *buckets, size_t nbuckets)
{
    if (name == NULL || *name == '\0' || nbuckets > METRIC_MAX_BUCKETS ||
        (type == METRIC_HISTOGRAM && nbuckets == 0))
        return NULL;
    struct metric *m = xcalloc(1, sizeof(*m));
    m->type = type;
    m->name = xstrdup(name);
    m->help = xstrdup(help ? help : "");
    int bad = metric_parse_labels(m, labels);
    if (type == METRIC_HISTOGRAM) {
        for (size_t i = 0; i < nbuckets; i++) {
            if (i > 0 && !(buckets[i] > buckets[i - 1]))
                bad = 1;
            m->bounds[i] = buckets[i];
        }
        m->nbounds = nbuckets;
    }
    if (bad) {
        metric_free(m);
        return NULL;
    }
    return m;
}

struct metric *metrics_register(struct metrics *r, enum metric_type type, const char *name,
                                const char *help, const char *labels, const double *buckets,
                                size_t nbuckets)
{
    pthread_mutex_lock(&r->mu);
    struct metric *m = metrics_find(r, name);
    if (m != NULL) {
        pthread_mutex_unlock(&r->mu);
        return m->type == type ? m : NULL;
    }
    m = metric_build(type, name, help, labels, buckets, nbuckets);
    if (m != NULL) {
        m->r = r;
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->m = xrealloc(r->m, r->cap * sizeof(*r->m));
        }
        r->m[r->n++] = m;
        if (m->nlabels == 0)
            metric_series(m, NULL);
    }
    pthread_mutex_unlock(&r->mu);
    return m;
}

/* What a record does to a series. */
enum metric_op { OP_ADD, OP_SET, OP_OBSERVE, OP_TOUCH };

static void metric_record(struct metric *m, const char *const *values, enum metric_op op,
                          double v)
{
    if (m == NULL || (m->nlabels > 0 && values == NULL))
        return;
    pthread_mutex_lock(&m->r->mu);
    struct series *s = metric_series(m, values);
    if (s != NULL) {
        switch (op) {
        case OP_ADD:
            s->value += v;
            break;
        case OP_SET:
            s->value = v;
            break;
        case OP_OBSERVE: {
            size_t b = 0;
            while (b < m->nbounds && v > m->bounds[b])
                b++;
            s->counts[b] += 1;
            s->sum += v;
            s->count += 1;
            break;
        }
        case OP_TOUCH:
            break;
        }
    }
    pthread_mutex_unlock(&m->r->mu);
}

void metric_add(struct metric *m, const char *const *values, double v)
{
    if (m != NULL && m->type != METRIC_HISTOGRAM && (m->type == METRIC_GAUGE || v >= 0))
        metric_record(m, values, OP_ADD, v);
}

void metric_set(struct metric *m, const char *const *values, double v)
{
    if (m != NULL && m->type == METRIC_GAUGE)
        metric_record(m, values, OP_SET, v);
}

void metric_observe(struct metric *m, const char *const *values, double v)
{
    if (m != NULL && m->type == METRIC_HISTOGRAM && !isnan(v))
        metric_record(m, values, OP_OBSERVE, v);
}

void metric_touch(struct metric *m, const char *const *values)
{
    metric_record(m, values, OP_TOUCH, 0);
}

double metric_value(struct metric *m, const char *const *values)
{
    double v = 0;
    if (m == NULL || (m->nlabels > 0 && values == NULL))
        return 0;
    pthread_mutex_lock(&m->r->mu);
    for (size_t i = 0; i < m->nseries; i++) {
        size_t j = 0;
        while (j < m->nlabels && strcmp(m->series[i].values[j], values[j]) == 0)
            j++;
        if (j == m->nlabels) {
            v = m->type == METRIC_HISTOGRAM ? m->series[i].count : m->series[i].value;
            break;
        }
    }
    pthread_mutex_unlock(&m->r->mu);
    return v;
}

int metrics_on_scrape(struct metrics *r, metrics_hook fn, void *arg)
{
    pthread_mutex_lock(&r->mu);
    int rc = -1;
    if (r->nhooks < METRICS_MAX_HOOKS) {
        r->hooks[r->nhooks] = fn;
        r->hook_args[r->nhooks++] = arg;
        rc = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- Rendering ---------------------------------------------------------- */

struct buf {
    char  *p;
    size_t len, cap;
};

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 1;
        b->p = xrealloc(b->p, b->cap);
    }
}

/* Appends s escaped: \ and newline always, " too in label values. */
static void buf_escaped(struct buf *b, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            buf_printf(b, "\\\\");
        else if (*s == '\n')
            buf_printf(b, "\\n");
        else if (*s == '"' && quote)
            buf_printf(b, "\\\"");
        else
            buf_printf(b, "%c", *s);
    }
}

/* A sample value: integers without a fraction, others in the shortest
 * of %.15g / %.17g that reads back the same; +Inf, -Inf, NaN. */
static void fmt_num(double v, char *out, size_t len)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, len, "%.0f", v);
    } else {
        snprintf(out, len, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, len, "%.17g", v);
    }
}

/* name{labels[,le="x"]} value\n */
static void render_sample(struct buf *b, const struct metric *m, const char *suffix,
                          const struct series *s, const char *le, double v)
{
    char num[40];
    buf_printf(b, "%s%s", m->name, suffix);
    if (m->nlabels > 0 || le != NULL) {
        buf_printf(b, "{");
        for (size_t j = 0; j < m->nlabels; j++) {
            buf_printf(b, "%s%s=\"", j > 0 ? "," : "", m->labels[j]);
            buf_escaped(b, s->values[j], 1);
            buf_printf(b, "\"");
        }
        if (le != NULL)
            buf_printf(b, "%sle=\"%s\"", m->nlabels > 0 ? "," : "", le);
        buf_printf(b, "}");
    }
    fmt_num(v, num, sizeof(num));
    buf_printf(b, " %s\n", num);
}

static void render_metric(struct buf *b, const struct metric *m)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };
    buf_printf(b, "# HELP %s ", m->name);
    buf_escaped(b, m->help, 0);
    buf_printf(b, "\n# TYPE %s %s\n", m->name, types[m->type]);
    for (size_t i = 0; i < m->nseries; i++) {
        const struct series *s = &m->series[i];
        if (m->type != METRIC_HISTOGRAM) {
            render_sample(b, m, "", s, NULL, s->value);
            continue;
        }
        double cum = 0;
        char le[40];
        for (size_t k = 0; k <= m->nbounds; k++) {
            cum += s->counts[k];
            if (k < m->nbounds)
                fmt_num(m->bounds[k], le, sizeof(le));
            else
                snprintf(le, sizeof(le), "+Inf");
            render_sample(b, m, "_bucket", s, le, cum);
        }
        render_sample(b, m, "_sum", s, NULL, s->sum);
        render_sample(b, m, "_count", s, NULL, s->count);
    }
}

char *metrics_render(struct metrics *r, size_t *len)
{
    metrics_hook hooks[METRICS_MAX_HOOKS];
    void *args[METRICS_MAX_HOOKS];
    pthread_mutex_lock(&r->mu);
    size_t nh = r->nhooks;
    memcpy(hooks, r->hooks, sizeof(hooks));
    memcpy(args, r->hook_args, sizeof(args));
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < nh; i++)
        hooks[i](r, args[i]);

    struct buf b = { xmalloc(4096), 0, 4096 };
    b.p[0] = '\0';
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        render_metric(&b, r->m[i]);
    pthread_mutex_unlock(&r->mu);
    if (len != NULL)
        *len = b.len;
    return b.p;
}

/* ---- The service's catalogue ------------------------------------------- */

static const double ocm_http_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                           5, 10 };
static const double ocm_job_buckets[] = { 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600 };
static const double ocm_wait_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                           1800 };
static const double ocm_startup_buckets[] = { 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60 };
static const double ocm_cpu_buckets[] = { 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600 };
static const double ocm_rss_buckets[] = { 128e6, 256e6, 512e6, 768e6, 1e9, 1.5e9, 2e9, 3e9,
                                          4e9, 8e9 };
static const double ocm_webhook_buckets[] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                              30 };
static const double ocm_pass_buckets[] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                           60, 300 };

struct ocm_def {
    enum metric_type type;
    const char      *name;
    const char      *help;
    const char      *labels;
    const double    *buckets;
    size_t           nbuckets;
    unsigned         for_program;
};

#define OCM_B(a) a, sizeof(a) / sizeof(a[0])
#define OCM_ALL (OCM_FOR_API | OCM_FOR_WORKER | OCM_FOR_JANITOR)

static const struct ocm_def ocm_defs[OCM_COUNT_] = {
    [OCM_AGENT_CPU] = { METRIC_HISTOGRAM, "opencode_job_agent_cpu_seconds",
        "CPU seconds the agent's processes of a recorded job used (the watchdog's sample).",
        NULL, OCM_B(ocm_cpu_buckets), OCM_FOR_WORKER },
    [OCM_AGENT_PEAK_RSS] = { METRIC_HISTOGRAM, "opencode_job_agent_peak_rss_bytes",
        "Peak summed resident memory of the agent's processes of a recorded job.", NULL,
        OCM_B(ocm_rss_buckets), OCM_FOR_WORKER },
    [OCM_BUILD_INFO] = { METRIC_GAUGE, "opencode_build_info",
        "Always 1: the program and its version.", "program,version", NULL, 0, OCM_ALL },
    [OCM_HTTP_REQUESTS] = { METRIC_COUNTER, "opencode_http_requests_total",
        "HTTP requests answered, by route (the route table's path, or unknown), method and "
        "status.", "route,method,status", NULL, 0, OCM_FOR_API },
    [OCM_HTTP_DURATION] = { METRIC_HISTOGRAM, "opencode_http_request_duration_seconds",
        "Time from dispatch to the response sent, by route.", "route",
        OCM_B(ocm_http_buckets), OCM_FOR_API },
    [OCM_JOBS_FINISHED] = { METRIC_COUNTER, "opencode_jobs_finished_total",
        "Job outcomes recorded by this worker, by status and error_code (\"none\" on success).",
        "status,error_code", NULL, 0, OCM_FOR_WORKER },
    [OCM_JOB_DURATION] = { METRIC_HISTOGRAM, "opencode_job_duration_seconds",
        "Time from claim to the recorded outcome of an attempt.", NULL,
        OCM_B(ocm_job_buckets), OCM_FOR_WORKER },
    [OCM_JOB_QUEUE_WAIT] = { METRIC_HISTOGRAM, "opencode_job_queue_wait_seconds",
        "Time from a job's submission to its first claim (first attempts only).", NULL,
        OCM_B(ocm_wait_buckets), OCM_FOR_WORKER },
    [OCM_AGENT_STARTUP] = { METRIC_HISTOGRAM, "opencode_agent_startup_seconds",
        "Time from starting the agent to the timestamp of its first output event.", NULL,
        OCM_B(ocm_startup_buckets), OCM_FOR_WORKER },
    [OCM_SLOTS_RUNNING] = { METRIC_GAUGE, "opencode_worker_slots_running",
        "Slots of this worker running a job now.", NULL, NULL, 0, OCM_FOR_WORKER },
    [OCM_LEASE_RENEWALS] = { METRIC_COUNTER, "opencode_lease_renewals_total",
        "Job lease renewals that succeeded.", NULL, NULL, 0, OCM_FOR_WORKER },
    [OCM_LEASES_LOST] = { METRIC_COUNTER, "opencode_leases_lost_total",
        "Attempts stopped because their job's lease was lost or ran out.", NULL, NULL, 0,
        OCM_FOR_WORKER },
    [OCM_JANITOR_PASS_DURATION] = { METRIC_HISTOGRAM, "opencode_janitor_pass_duration_seconds",
        "Duration of the passes this janitor led.", NULL, OCM_B(ocm_pass_buckets),
        OCM_FOR_JANITOR },
    [OCM_JANITOR_ROWS] = { METRIC_COUNTER, "opencode_janitor_rows_total",
        "Rows (jobs, sessions, outbox entries) the janitor's passes handled, by step.", "step",
        NULL, 0, OCM_FOR_JANITOR },
    [OCM_JANITOR_PASSES] = { METRIC_COUNTER, "opencode_janitor_passes_total",
        "Janitor passes, by role: leader (ran the pass) or follower (another janitor led).",
        "role", NULL, 0, OCM_FOR_JANITOR },
    [OCM_OUTBOX_BACKLOG] = { METRIC_GAUGE, "opencode_outbox_backlog",
        "Outbox rows not yet published to RabbitMQ (PostgreSQL, cached up to 5 s).", NULL,
        NULL, 0, OCM_ALL },
    [OCM_OUTBOX_OLDEST_AGE] = { METRIC_GAUGE, "opencode_outbox_oldest_age_seconds",
        "Age of the oldest outbox row; 0 when empty (PostgreSQL, cached up to 5 s).", NULL,
        NULL, 0, OCM_ALL },
    [OCM_JOBS_QUEUED] = { METRIC_GAUGE, "opencode_jobs_queued",
        "Jobs queued, service-wide (PostgreSQL, cached up to 5 s).", NULL, NULL, 0, OCM_ALL },
    [OCM_JOBS_RUNNING] = { METRIC_GAUGE, "opencode_jobs_running",
        "Jobs running, service-wide (PostgreSQL, cached up to 5 s).", NULL, NULL, 0, OCM_ALL },
    [OCM_WEBHOOK_ATTEMPTS] = { METRIC_COUNTER, "opencode_webhook_attempts_total",
        "Webhook delivery attempts this janitor made, by result: delivered, retry (failed, "
        "another attempt is due) or gave_up (failed, the retry window is over).", "result",
        NULL, 0, OCM_FOR_JANITOR },
    [OCM_WEBHOOK_DURATION] = { METRIC_HISTOGRAM, "opencode_webhook_attempt_duration_seconds",
        "Time one webhook attempt took, connection to answer or error.", NULL,
        OCM_B(ocm_webhook_buckets), OCM_FOR_JANITOR },
    [OCM_WEBHOOKS_PENDING] = { METRIC_GAUGE, "opencode_webhooks_pending",
        "Webhook deliveries neither delivered nor given up, service-wide (PostgreSQL, cached "
        "up to 5 s).", NULL, NULL, 0, OCM_ALL },
    [OCM_STATUS_CACHE] = { METRIC_COUNTER, "opencode_status_cache_total",
        "GET /job/status answers by result: fresh (from the cache, no query), checked (from "
        "the cache after one check query) or miss (read and rendered).", "result", NULL, 0,
        OCM_FOR_API },
};

struct metric *ocm(enum ocm id)
{
    static struct metric *cache[OCM_COUNT_];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    if ((unsigned)id >= OCM_COUNT_)
        return NULL;
    pthread_mutex_lock(&mu);
    if (cache[id] == NULL) {
        const struct ocm_def *d = &ocm_defs[id];
        cache[id] = metrics_register(metrics_default(), d->type, d->name, d->help, d->labels,
                                     d->buckets, d->nbuckets);
    }
    struct metric *m = cache[id];
    pthread_mutex_unlock(&mu);
    return m;
}

void ocm_declare(const char *program, unsigned for_program)
{
    for (int i = 0; i < OCM_COUNT_; i++)
        if (ocm_defs[i].for_program & for_program)
            ocm((enum ocm)i);
    metric_set(ocm(OCM_BUILD_INFO), METRIC_LABELS(program, OC_VERSION), 1);
}

double ocm_since_s(long long start_mono_ms)
{
    long long d = (long long)time_mono_ms() - start_mono_ms;
    return d > 0 ? (double)d / 1000.0 : 0.0;
}
