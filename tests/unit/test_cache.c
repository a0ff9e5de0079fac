/*
 * test_cache.c - the api's status-document cache (api/cache.c) on its own:
 * the key that read an entry comes back with it; a drop between reading a
 * job and putting it keeps the stale copy out (the epoch of its set, so
 * other sets' puts go on); unfresh empties
 * the cache and is fresh as of nothing; freshness ages out; a full set
 * evicts its least recently used entry; at the byte bound a document
 * still replaces one as large; the counters reach the metrics registry
 * once each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "check.h"
#include "metrics.h"

static const char JOB[] = "0123456789abcdef0123456789abcdef";
static const char JOB2[] = "fedcba9876543210fedcba9876543210";

static void put(struct api_cache *c, const char *job, const char *key, uint64_t epoch)
{
    struct store_job_version v;
    memset(&v, 0, sizeof(v));
    snprintf(v.status, sizeof(v.status), "succeeded");
    v.finished_usec = 42;
    char etag[API_ETAG_LEN];
    api_etag("{\"a\":1}", 7, etag);
    api_cache_job_put(c, job, key, epoch, &v, "{\"a\":1}", 7, etag);
}

static int has(struct api_cache *c, const char *job, const char *key)
{
    struct api_cached_job got;
    if (!api_cache_job_get(c, job, &got))
        return 0;
    int ok = strcmp(got.key_id, key) == 0 && got.len == 7 && strcmp(got.body, "{\"a\":1}") == 0 &&
             got.version.finished_usec == 42;
    free(got.body);
    return ok;
}

static void test_put_get_drop(void)
{
    struct api_cache *c = api_cache_new();
    CHECK(!has(c, JOB, "k1"));
    put(c, JOB, "k1", api_cache_epoch(c, JOB));
    CHECK(has(c, JOB, "k1"));
    CHECK(!has(c, JOB, "k2"));               /* another key's copy is not this key's */
    api_cache_job_drop(c, JOB);
    CHECK(!has(c, JOB, "k1"));
    api_cache_free(c);
}

static void test_drop_between_read_and_put(void)
{
    struct api_cache *c = api_cache_new();
    uint64_t before = api_cache_epoch(c, JOB);    /* a request starts reading */
    api_cache_job_drop(c, JOB);              /* the job is deleted meanwhile */
    put(c, JOB, "k1", before);               /* its stale copy arrives */
    CHECK(!has(c, JOB, "k1"));
    put(c, JOB, "k1", api_cache_epoch(c, JOB));
    CHECK(has(c, JOB, "k1"));
    /* A drop holds back only puts into its own set (JOB2's is another). */
    before = api_cache_epoch(c, JOB2);
    api_cache_job_drop(c, JOB);
    put(c, JOB2, "k1", before);
    CHECK(has(c, JOB2, "k1"));
    api_cache_free(c);
}

static void test_fresh_and_unfresh(void)
{
    struct api_cache *c = api_cache_new();
    CHECK(!api_cache_fresh(c, 1000, 500));   /* no heartbeat yet */
    api_cache_fresh_as_of(c, 1000);
    CHECK(api_cache_fresh(c, 1400, 500));
    CHECK(api_cache_fresh(c, 1500, 500));
    CHECK(!api_cache_fresh(c, 1501, 500));   /* heartbeats stopped coming back */
    CHECK(!api_cache_fresh(c, 1000, 0));     /* 0: never fresh */
    put(c, JOB, "k1", api_cache_epoch(c, JOB));
    put(c, JOB2, "k1", api_cache_epoch(c, JOB2));
    uint64_t before = api_cache_epoch(c, JOB);
    api_cache_unfresh(c);                    /* the listener reconnected */
    CHECK(!api_cache_fresh(c, 1000, 500));
    CHECK(!has(c, JOB, "k1"));
    CHECK(!has(c, JOB2, "k1"));
    put(c, JOB, "k1", before);
    CHECK(!has(c, JOB, "k1"));
    CHECK(!api_cache_fresh(NULL, 1000, 500));
    api_cache_free(c);
}

/* A job id in set `set` (its first 8 hex digits modulo the 1024 sets),
 * told apart by n. */
static void job_in_set(char id[ID_HEX_LEN + 1], unsigned set, unsigned n)
{
    snprintf(id, ID_HEX_LEN + 1, "%08x%024x", set + 1024u * n, n);
}

static void put_len(struct api_cache *c, const char *job, size_t len)
{
    struct store_job_version v;
    memset(&v, 0, sizeof(v));
    char *body = malloc(len);
    memset(body, 'x', len);
    char etag[API_ETAG_LEN];
    api_etag(body, len, etag);
    api_cache_job_put(c, job, "k1", api_cache_epoch(c, job), &v, body, len, etag);
    free(body);
}

static int present(struct api_cache *c, const char *job)
{
    struct api_cached_job got;
    if (!api_cache_job_get(c, job, &got))
        return 0;
    free(got.body);
    return 1;
}

static void test_lru_eviction(void)
{
    struct api_cache *c = api_cache_new();
    char id[5][ID_HEX_LEN + 1];
    for (unsigned i = 0; i < 5; i++)
        job_in_set(id[i], 7, i);
    for (unsigned i = 0; i < 4; i++)
        put(c, id[i], "k1", api_cache_epoch(c, id[i]));
    CHECK(present(c, id[0]));                /* the oldest is now the newest read */
    put(c, id[4], "k1", api_cache_epoch(c, id[4])); /* the set is full: one goes */
    CHECK(present(c, id[0]));
    CHECK(!present(c, id[1]));               /* the least recently used */
    CHECK(present(c, id[2]) && present(c, id[3]) && present(c, id[4]));
    api_cache_free(c);
}

static void test_byte_bound(void)
{
    const size_t mib = 1024 * 1024;          /* the largest body kept */
    struct api_cache *c = api_cache_new();
    char id[ID_HEX_LEN + 1];
    for (unsigned i = 0; i < 4; i++) {       /* one full set ... */
        job_in_set(id, 3, i);
        put_len(c, id, mib);
    }
    for (unsigned set = 100; set < 160; set++) { /* ... and 60 more: 64 MiB */
        job_in_set(id, set, 0);
        put_len(c, id, mib);
    }
    job_in_set(id, 500, 0);                  /* a free way frees nothing */
    put_len(c, id, mib);
    CHECK(!present(c, id));
    job_in_set(id, 3, 4);                    /* the full set's LRU makes room */
    put_len(c, id, mib);
    CHECK(present(c, id));
    job_in_set(id, 3, 0);
    CHECK(!present(c, id));
    api_cache_free(c);
}

static void test_counts_exported_once(void)
{
    struct api_cache *c = api_cache_new();
    api_cache_export_metrics(c);
    api_cache_count(c, API_CACHE_FRESH);
    api_cache_count(c, API_CACHE_FRESH);
    api_cache_count(c, API_CACHE_MISS);
    for (int i = 0; i < 2; i++) {            /* a second scrape adds nothing */
        size_t len;
        free(metrics_render(metrics_default(), &len));
        CHECK(metric_value(ocm(OCM_STATUS_CACHE), METRIC_LABELS("fresh")) == 2);
        CHECK(metric_value(ocm(OCM_STATUS_CACHE), METRIC_LABELS("checked")) == 0);
        CHECK(metric_value(ocm(OCM_STATUS_CACHE), METRIC_LABELS("miss")) == 1);
    }
    /* The hook keeps c: it lives as long as the registry, like the api's. */
}

int main(void)
{
    test_put_get_drop();
    test_drop_between_read_and_put();
    test_fresh_and_unfresh();
    test_lru_eviction();
    test_byte_bound();
    test_counts_exported_once();
    return check_report();
}
