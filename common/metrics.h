/*
 * metrics.h - a small Prometheus metrics registry: counters, gauges and
 * histograms with fixed buckets, each with a short fixed list of label
 * names, rendered in the text exposition format 0.0.4.
 *
 * Two layers:
 *   - the registry (struct metrics, metric_*): generic; a test makes its
 *     own with metrics_new();
 *   - the service's catalogue (enum ocm, ocm()): every metric the three
 *     programs export, with its name, help, labels and buckets in one
 *     table in metrics.c, so names cannot drift between the places that
 *     record them. ocm() registers in the process's default registry.
 *
 * Ownership: a registry owns its metrics and series; handles stay valid
 * until metrics_free() (the default registry lives as long as the
 * process). Label values are copied. metrics_render() returns malloc'd
 * text the caller frees.
 *
 * Threading: every function may be called from any thread; one mutex per
 * registry guards its metrics and values (a record is a lock, a short
 * scan of the metric's series, and an add). Scrape hooks run on the
 * scraping thread, outside that lock.
 */
#ifndef OC_METRICS_H
#define OC_METRICS_H

#include <stddef.h>

#define METRIC_MAX_LABELS  4     /* label names per metric */
#define METRIC_MAX_BUCKETS 16    /* histogram buckets, +Inf not counted */
/* Series per metric (distinct label value tuples): beyond it, records of
 * new tuples are dropped (and logged once), so a bug cannot grow memory. */
#define METRIC_MAX_SERIES  512
#define METRIC_LABEL_MAX   128   /* longest label value kept (truncated) */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;
struct metric;

/* Label values of one record, in the order of the metric's label names. */
#define METRIC_LABELS(...) ((const char *const[]){ __VA_ARGS__ })

struct metrics *metrics_new(void);
void metrics_free(struct metrics *r);
/* The process's registry (created on first use, never freed). */
struct metrics *metrics_default(void);

/*
 * Registers a metric, or returns the one already registered under name
 * (same type expected). labels: comma-separated label names ("" or NULL:
 * none); buckets: the upper bounds, ascending (histograms only). A metric
 * without labels renders 0 from the start; one with labels renders a
 * series once recorded (or metric_touch()ed). NULL on a bad definition.
 */
struct metric *metrics_register(struct metrics *r, enum metric_type type, const char *name,
                                const char *help, const char *labels, const double *buckets,
                                size_t nbuckets);

/* values: one per label name (NULL when the metric has none). */
void metric_add(struct metric *m, const char *const *values, double v);   /* counter, gauge */
void metric_set(struct metric *m, const char *const *values, double v);   /* gauge */
void metric_observe(struct metric *m, const char *const *values, double v); /* histogram */
/* Creates the series at zero, so it renders before its first record. */
void metric_touch(struct metric *m, const char *const *values);
/* The current value of a counter or gauge series (tests); 0 when absent. */
double metric_value(struct metric *m, const char *const *values);

/* Called at the start of every metrics_render() (e.g. to refresh gauges
 * read from the database). At most 8 per registry. */
typedef void (*metrics_hook)(struct metrics *r, void *arg);
int metrics_on_scrape(struct metrics *r, metrics_hook fn, void *arg);

/* The registry as text format 0.0.4, metrics in registration order;
 * malloc'd, NUL-terminated, *len its length. */
char *metrics_render(struct metrics *r, size_t *len);

/* ---- The service's catalogue (README "Metrics") ------------------------ */

enum ocm {
    OCM_BUILD_INFO,              /* gauge {program,version} = 1 */
    OCM_HTTP_REQUESTS,           /* api: counter {route,method,status} */
    OCM_HTTP_DURATION,           /* api: histogram {route} */
    OCM_JOBS_FINISHED,           /* worker: counter {status,error_code} */
    OCM_JOB_DURATION,            /* worker: histogram */
    OCM_JOB_QUEUE_WAIT,          /* worker: histogram */
    OCM_AGENT_STARTUP,           /* worker: histogram */
    OCM_SLOTS_RUNNING,           /* worker: gauge */
    OCM_LEASE_RENEWALS,          /* worker: counter */
    OCM_LEASES_LOST,             /* worker: counter */
    OCM_JANITOR_PASS_DURATION,   /* janitor: histogram */
    OCM_JANITOR_ROWS,            /* janitor: counter {step} */
    OCM_JANITOR_PASSES,          /* janitor: counter {role} */
    OCM_OUTBOX_BACKLOG,          /* all: gauge (PostgreSQL, cached) */
    OCM_OUTBOX_OLDEST_AGE,       /* all: gauge */
    OCM_JOBS_QUEUED,             /* all: gauge */
    OCM_JOBS_RUNNING,            /* all: gauge */
    OCM_AGENT_CPU,               /* worker: histogram, CPU seconds of a job's agent */
    OCM_AGENT_PEAK_RSS,          /* worker: histogram, peak resident bytes of a job's agent */
    OCM_WEBHOOK_ATTEMPTS,        /* janitor: counter {result} */
    OCM_WEBHOOK_DURATION,        /* janitor: histogram, one attempt */
    OCM_WEBHOOKS_PENDING,        /* all: gauge (PostgreSQL, cached) */
    OCM_STATUS_CACHE,            /* api: counter {result} */
    OCM_COUNT_
};

/* Which programs export a catalogue entry. */
#define OCM_FOR_API     1u
#define OCM_FOR_WORKER  2u
#define OCM_FOR_JANITOR 4u

/* The catalogue entry's metric in the default registry (registered on
 * first use). */
struct metric *ocm(enum ocm id);

/*
 * Registers, in the default registry, every catalogue entry the program
 * (OCM_FOR_*) exports, so all of them render from the first scrape, and
 * sets opencode_build_info{program,version} to 1.
 */
void ocm_declare(const char *program, unsigned for_program);

/* Seconds since a time_mono_ms() value, for histograms. */
double ocm_since_s(long long start_mono_ms);

#endif
