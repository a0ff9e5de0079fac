/*
 * cache.c - see cache.h.
 *
 * Jobs: API_CACHE_JOB_SETS sets of API_CACHE_JOB_WAYS entries, each set
 * behind its own mutex; a job id (random hex) picks its set by its first
 * digits, and a full set evicts its least recently used entry. The bytes
 * of all bodies are counted atomically and bounded by API_CACHE_MAX_BYTES.
 * Keys: API_CACHE_KEY_SLOTS direct-mapped slots (by the key hash's first
 * bytes), each with its own mutex.
 *
 * Each set has an epoch. A drop bumps its set's epoch before it takes the
 * set's mutex, and a put compares that epoch under the mutex: either the
 * put sees the bump and keeps nothing, or the drop finds the new entry
 * and removes it. Per set, so the thousands of drops of a janitor purge
 * only hold back puts of jobs that share a set with a dropped one.
 */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "xalloc.h"

#define API_CACHE_JOB_SETS 1024
#define API_CACHE_JOB_WAYS 4
/* Bound on the bytes of all cached bodies, and on one body. */
#define API_CACHE_MAX_BYTES ((size_t)64 * 1024 * 1024)
#define API_CACHE_MAX_BODY  ((size_t)1024 * 1024)
#define API_CACHE_KEY_SLOTS 256

struct api_job_entry {
    char                   job_id[ID_HEX_LEN + 1];   /* "" = free */
    struct store_job_version version;
    char                   key_id[STORE_KEY_ID_MAX];
    char                   etag[API_ETAG_LEN];
    char                  *body;
    size_t                 len;
    uint64_t               used;                      /* LRU tick */
};

struct api_job_set {
    pthread_mutex_t      mu;
    atomic_uint_fast64_t epoch;
    uint64_t             tick;
    struct api_job_entry e[API_CACHE_JOB_WAYS];
};

struct api_key_slot {
    pthread_mutex_t mu;
    unsigned char   hash[APIKEY_HASH_LEN];
    char            key_id[STORE_KEY_ID_MAX];
    int64_t         expires_ms;                      /* 0 = free */
};

struct api_cache {
    struct api_job_set  sets[API_CACHE_JOB_SETS];
    struct api_key_slot keys[API_CACHE_KEY_SLOTS];
    atomic_size_t       bytes;
    atomic_int_fast64_t fresh_as_of;                 /* 0 = not fresh */
    atomic_ullong       counts[API_CACHE_RESULTS_];   /* since the last scrape */
};

struct api_cache *api_cache_new(void)
{
    struct api_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < API_CACHE_JOB_SETS; i++) {
        pthread_mutex_init(&c->sets[i].mu, NULL);
        atomic_init(&c->sets[i].epoch, 0);
    }
    for (size_t i = 0; i < API_CACHE_KEY_SLOTS; i++)
        pthread_mutex_init(&c->keys[i].mu, NULL);
    atomic_init(&c->bytes, 0);
    atomic_init(&c->fresh_as_of, 0);
    for (int i = 0; i < API_CACHE_RESULTS_; i++)
        atomic_init(&c->counts[i], 0);
    return c;
}

void api_cache_free(struct api_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < API_CACHE_JOB_SETS; i++) {
        for (size_t w = 0; w < API_CACHE_JOB_WAYS; w++)
            free(c->sets[i].e[w].body);
        pthread_mutex_destroy(&c->sets[i].mu);
    }
    for (size_t i = 0; i < API_CACHE_KEY_SLOTS; i++)
        pthread_mutex_destroy(&c->keys[i].mu);
    free(c);
}

void api_etag(const char *body, size_t len, char etag[API_ETAG_LEN])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= 0x100000001b3ULL;
    }
    snprintf(etag, API_ETAG_LEN, "\"%016llx\"", (unsigned long long)h);
}

/* The set of a job id: its first hex digits (ids are random). */
static struct api_job_set *api_job_set_of(struct api_cache *c, const char *job_id)
{
    unsigned v = 0;
    for (int i = 0; i < 8; i++) {
        char ch = job_id[i];
        unsigned d = (unsigned)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
        v = (v << 4) | (d & 0xfu);
    }
    return &c->sets[v % API_CACHE_JOB_SETS];
}

static struct api_job_entry *api_job_find(struct api_job_set *s, const char *job_id)
{
    for (size_t w = 0; w < API_CACHE_JOB_WAYS; w++)
        if (strcmp(s->e[w].job_id, job_id) == 0)
            return &s->e[w];
    return NULL;
}

/* Empties an entry; under its set's mutex. */
static void api_job_clear(struct api_cache *c, struct api_job_entry *e)
{
    if (e->body != NULL)
        atomic_fetch_sub(&c->bytes, e->len);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

int api_cache_job_get(struct api_cache *c, const char *job_id, struct api_cached_job *out)
{
    if (c == NULL || strlen(job_id) != ID_HEX_LEN)
        return 0;
    struct api_job_set *s = api_job_set_of(c, job_id);
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    struct api_job_entry *e = api_job_find(s, job_id);
    if (e != NULL) {
        e->used = ++s->tick;
        out->body = xmalloc(e->len + 1);
        memcpy(out->body, e->body, e->len);
        out->body[e->len] = '\0';
        out->len = e->len;
        memcpy(out->etag, e->etag, API_ETAG_LEN);
        out->version = e->version;
        memcpy(out->key_id, e->key_id, STORE_KEY_ID_MAX);
        hit = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

/* The entry a new job replaces: its own, a free one, else the least
 * recently used. Under the set's mutex. */
static struct api_job_entry *api_job_victim(struct api_job_set *s, const char *job_id)
{
    struct api_job_entry *v = api_job_find(s, job_id);
    if (v != NULL)
        return v;
    for (size_t w = 0; w < API_CACHE_JOB_WAYS; w++)
        if (s->e[w].job_id[0] == '\0')
            return &s->e[w];
    v = &s->e[0];
    for (size_t w = 1; w < API_CACHE_JOB_WAYS; w++)
        if (s->e[w].used < v->used)
            v = &s->e[w];
    return v;
}

uint64_t api_cache_epoch(struct api_cache *c, const char *job_id)
{
    if (c == NULL || strlen(job_id) != ID_HEX_LEN)
        return 0;
    return atomic_load(&api_job_set_of(c, job_id)->epoch);
}

void api_cache_job_put(struct api_cache *c, const char *job_id, const char *key_id,
                       uint64_t epoch, const struct store_job_version *v, const char *body,
                       size_t len, const char *etag)
{
    if (c == NULL || strlen(job_id) != ID_HEX_LEN || len > API_CACHE_MAX_BODY)
        return;
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    struct api_job_set *s = api_job_set_of(c, job_id);
    pthread_mutex_lock(&s->mu);
    int keep = atomic_load(&s->epoch) == epoch;
    struct api_job_entry *e = NULL;
    if (keep) {
        /* The victim goes first, so its bytes count as free: at the byte
         * bound, a document still replaces one at least as large. */
        e = api_job_victim(s, job_id);
        api_job_clear(c, e);
        if (atomic_fetch_add(&c->bytes, len) + len > API_CACHE_MAX_BYTES) {
            atomic_fetch_sub(&c->bytes, len);
            keep = 0;
        }
    }
    if (!keep) {
        pthread_mutex_unlock(&s->mu);
        free(copy);
        return;
    }
    memcpy(e->job_id, job_id, ID_HEX_LEN + 1);
    snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
    e->version = *v;
    memcpy(e->etag, etag, API_ETAG_LEN);
    e->body = copy;
    e->len = len;
    e->used = ++s->tick;
    pthread_mutex_unlock(&s->mu);
}

void api_cache_job_drop(struct api_cache *c, const char *job_id)
{
    if (c == NULL || strlen(job_id) != ID_HEX_LEN)
        return;
    struct api_job_set *s = api_job_set_of(c, job_id);
    atomic_fetch_add(&s->epoch, 1);
    pthread_mutex_lock(&s->mu);
    struct api_job_entry *e = api_job_find(s, job_id);
    if (e != NULL)
        api_job_clear(c, e);
    pthread_mutex_unlock(&s->mu);
}

void api_cache_fresh_as_of(struct api_cache *c, int64_t t)
{
    if (c != NULL)
        atomic_store(&c->fresh_as_of, t);
}

void api_cache_unfresh(struct api_cache *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->fresh_as_of, 0);
    for (size_t i = 0; i < API_CACHE_JOB_SETS; i++) {
        struct api_job_set *s = &c->sets[i];
        atomic_fetch_add(&s->epoch, 1);
        pthread_mutex_lock(&s->mu);
        for (size_t w = 0; w < API_CACHE_JOB_WAYS; w++)
            if (s->e[w].job_id[0] != '\0')
                api_job_clear(c, &s->e[w]);
        pthread_mutex_unlock(&s->mu);
    }
}

int api_cache_fresh(struct api_cache *c, int64_t now, int64_t max_age_ms)
{
    if (c == NULL || max_age_ms <= 0)
        return 0;
    int64_t t = atomic_load(&c->fresh_as_of);
    return t != 0 && now - t <= max_age_ms;
}

static struct api_key_slot *api_key_slot_of(struct api_cache *c,
                                            const unsigned char hash[APIKEY_HASH_LEN])
{
    return &c->keys[((unsigned)hash[0] | (unsigned)hash[1] << 8) % API_CACHE_KEY_SLOTS];
}

int api_cache_key_get(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                      int64_t now_ms, char key_id[STORE_KEY_ID_MAX])
{
    if (c == NULL)
        return 0;
    struct api_key_slot *k = api_key_slot_of(c, hash);
    int hit = 0;
    pthread_mutex_lock(&k->mu);
    if (k->expires_ms > now_ms && apikey_hash_equal(k->hash, hash)) {
        memcpy(key_id, k->key_id, STORE_KEY_ID_MAX);
        hit = 1;
    }
    pthread_mutex_unlock(&k->mu);
    return hit;
}

void api_cache_key_put(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                       int64_t now_ms, const char *key_id)
{
    if (c == NULL)
        return;
    struct api_key_slot *k = api_key_slot_of(c, hash);
    pthread_mutex_lock(&k->mu);
    memcpy(k->hash, hash, APIKEY_HASH_LEN);
    snprintf(k->key_id, sizeof(k->key_id), "%s", key_id);
    k->expires_ms = now_ms + KEY_CACHE_TTL_MS;
    pthread_mutex_unlock(&k->mu);
}

void api_cache_count(struct api_cache *c, enum api_cache_result what)
{
    if (c != NULL && (unsigned)what < API_CACHE_RESULTS_)
        atomic_fetch_add_explicit(&c->counts[what], 1, memory_order_relaxed);
}

/* Moves the counts into the registry (each count is taken once, also
 * when two scrapes run at once). */
static void api_cache_scrape(struct metrics *r, void *arg)
{
    (void)r;
    static const char *const names[API_CACHE_RESULTS_] = { "fresh", "checked", "miss" };
    struct api_cache *c = arg;
    for (int i = 0; i < API_CACHE_RESULTS_; i++)
        metric_add(ocm(OCM_STATUS_CACHE), METRIC_LABELS(names[i]),
                   (double)atomic_exchange(&c->counts[i], 0));
}

void api_cache_export_metrics(struct api_cache *c)
{
    if (c != NULL)
        metrics_on_scrape(metrics_default(), api_cache_scrape, c);
}
