/*
 * test_metrics.c - common/metrics.h: the exact text format 0.0.4 of a
 * counter with labels, a gauge and a histogram (cumulative buckets, _sum,
 * _count), escaping of label values and help text, and increments from
 * several threads adding up.
 */
#include "check.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_counter_gauge(void)
{
    struct metrics *r = metrics_new();
    struct metric *c = metrics_register(r, METRIC_COUNTER, "t_requests_total",
                                        "Requests.", "route,status", NULL, 0);
    struct metric *g = metrics_register(r, METRIC_GAUGE, "t_slots", "Slots\nnow \\ here.",
                                        NULL, NULL, 0);
    CHECK(c != NULL && g != NULL);
    /* Same name, same type: the same metric; another type: refused. */
    CHECK(metrics_register(r, METRIC_COUNTER, "t_requests_total", "x", "a", NULL, 0) == c);
    CHECK(metrics_register(r, METRIC_GAUGE, "t_requests_total", "x", NULL, NULL, 0) == NULL);
    metric_add(c, METRIC_LABELS("/job", "200"), 1);
    metric_add(c, METRIC_LABELS("/job", "200"), 2);
    metric_add(c, METRIC_LABELS("/health", "404"), 1);
    metric_add(c, METRIC_LABELS("/health", "404"), -5);      /* counters never go down */
    metric_set(g, NULL, 3);
    metric_add(g, NULL, -0.5);
    CHECK(metric_value(c, METRIC_LABELS("/job", "200")) == 3);
    size_t len = 0;
    char *text = metrics_render(r, &len);
    const char *want =
        "# HELP t_requests_total Requests.\n"
        "# TYPE t_requests_total counter\n"
        "t_requests_total{route=\"/job\",status=\"200\"} 3\n"
        "t_requests_total{route=\"/health\",status=\"404\"} 1\n"
        "# HELP t_slots Slots\\nnow \\\\ here.\n"
        "# TYPE t_slots gauge\n"
        "t_slots 2.5\n";
    CHECK_STR(text, want);
    CHECK(len == strlen(want));
    if (strcmp(text, want) != 0)
        fprintf(stderr, "got:\n%s", text);
    free(text);
    metrics_free(r);
}

static void test_histogram(void)
{
    struct metrics *r = metrics_new();
    static const double b[] = { 0.1, 1, 2.5 };
    struct metric *h = metrics_register(r, METRIC_HISTOGRAM, "t_duration_seconds", "Time.",
                                        "route", b, 3);
    static const double bad[] = { 1, 0.5 };
    CHECK(metrics_register(r, METRIC_HISTOGRAM, "t_bad", "x", NULL, bad, 2) == NULL);
    CHECK(metrics_register(r, METRIC_HISTOGRAM, "t_bad2", "x", NULL, NULL, 0) == NULL);
    metric_observe(h, METRIC_LABELS("/x"), 0.05);
    metric_observe(h, METRIC_LABELS("/x"), 0.1);     /* le is inclusive */
    metric_observe(h, METRIC_LABELS("/x"), 2);
    metric_observe(h, METRIC_LABELS("/x"), 7.25);
    char *text = metrics_render(r, NULL);
    const char *want =
        "# HELP t_duration_seconds Time.\n"
        "# TYPE t_duration_seconds histogram\n"
        "t_duration_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
        "t_duration_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
        "t_duration_seconds_bucket{route=\"/x\",le=\"2.5\"} 3\n"
        "t_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
        "t_duration_seconds_sum{route=\"/x\"} 9.4\n"
        "t_duration_seconds_count{route=\"/x\"} 4\n";
    CHECK_STR(text, want);
    if (strcmp(text, want) != 0)
        fprintf(stderr, "got:\n%s", text);
    free(text);

    /* Without labels: rendered (zero) before any observation. */
    struct metric *h2 = metrics_register(r, METRIC_HISTOGRAM, "t_wait_seconds", "W.", NULL, b, 1);
    CHECK(h2 != NULL);
    text = metrics_render(r, NULL);
    CHECK(strstr(text, "t_wait_seconds_bucket{le=\"0.1\"} 0\n"
                       "t_wait_seconds_bucket{le=\"+Inf\"} 0\n"
                       "t_wait_seconds_sum 0\n"
                       "t_wait_seconds_count 0\n") != NULL);
    free(text);
    metrics_free(r);
}

static void test_escaping(void)
{
    struct metrics *r = metrics_new();
    struct metric *c = metrics_register(r, METRIC_COUNTER, "t_esc_total", "E.", "v", NULL, 0);
    metric_add(c, METRIC_LABELS("a\"b\\c\nd"), 1);
    metric_touch(c, METRIC_LABELS("zero"));
    char *text = metrics_render(r, NULL);
    CHECK(strstr(text, "t_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n") != NULL);
    CHECK(strstr(text, "t_esc_total{v=\"zero\"} 0\n") != NULL);
    free(text);
    metrics_free(r);
}

#define THREADS 8
#define PER_THREAD 20000

struct worker_arg {
    struct metric *c, *h;
};

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        metric_add(a->c, METRIC_LABELS(i % 2 ? "odd" : "even"), 1);
        metric_observe(a->h, NULL, 0.5);
    }
    return NULL;
}

static void test_threads(void)
{
    struct metrics *r = metrics_new();
    static const double b[] = { 1 };
    struct worker_arg a = {
        metrics_register(r, METRIC_COUNTER, "t_hits_total", "H.", "parity", NULL, 0),
        metrics_register(r, METRIC_HISTOGRAM, "t_obs_seconds", "O.", NULL, b, 1),
    };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, hammer, &a) == 0);
    /* Rendering while they run must be safe too. */
    free(metrics_render(r, NULL));
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(metric_value(a.c, METRIC_LABELS("odd")) == THREADS * PER_THREAD / 2);
    CHECK(metric_value(a.c, METRIC_LABELS("even")) == THREADS * PER_THREAD / 2);
    CHECK(metric_value(a.h, NULL) == THREADS * PER_THREAD);
    metrics_free(r);
}

static void test_catalogue(void)
{
    ocm_declare("test", OCM_FOR_API | OCM_FOR_WORKER | OCM_FOR_JANITOR);
    for (int i = 0; i < OCM_COUNT_; i++)
        CHECK(ocm((enum ocm)i) != NULL);
    char *text = metrics_render(metrics_default(), NULL);
    CHECK(strstr(text, "opencode_build_info{program=\"test\",version=\"") != NULL);
    CHECK(strstr(text, "# TYPE opencode_http_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(text, "opencode_leases_lost_total 0\n") != NULL);
    free(text);
}

int main(void)
{
    test_counter_gauge();
    test_histogram();
    test_escaping();
    test_threads();
    test_catalogue();
    return check_report();
}
