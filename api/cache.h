/*
 * cache.h - the api process's in-memory caches (one struct api_cache per
 * process, created by main.c, shared by every server thread):
 *
 *   - rendered GET /job/status bodies of ended jobs, with their strong
 *     ETag and the key that read them: an ended job's document does not
 *     change, so a hit skips the two queries and the JSON work. Each hit
 *     is checked: another key never gets the entry, and the job must
 *     still be there in the same version. That second check is either a
 *     query (store_job_check) or, while the cache is "fresh", nothing: the
 *     listener (live.c) drops the entry of every job the database reports
 *     deleted or changed (NOTIFY job_changed) and stamps the cache fresh
 *     as of the time of a heartbeat that came back through the same queue,
 *     so a fresh cache holds no job deleted before that time.
 *     Bounded: API_CACHE_JOB_SETS x API_CACHE_JOB_WAYS entries
 *     (set-associative, LRU within a set) and API_CACHE_MAX_BYTES of bodies;
 *   - API key hash -> key id, each entry valid KEY_CACHE_TTL_MS, so a
 *     recently seen key needs no lookup and a revoked key stops working
 *     within that time.
 *
 * Ownership: the cache owns its copies; api_cache_job_get() hands the
 * caller a malloc'd copy of the body (free() it).
 * Threading: every function may be called from any thread (one mutex per
 * set or slot; nothing is held across a call).
 */
#ifndef OC_API_CACHE_H
#define OC_API_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "apikey.h"
#include "ids.h"
#include "store.h"

/* How long a key seen once is trusted without a lookup: a revoked key
 * keeps working at most this long (the promise is 5 s). */
#define KEY_CACHE_TTL_MS 2000
/* "\"" + 16 hex digits + "\"" + NUL */
#define API_ETAG_LEN 20

struct api_cache;

/* A hit: body is malloc'd for the caller. */
struct api_cached_job {
    char                   *body;
    size_t                  len;
    char                    etag[API_ETAG_LEN];
    struct store_job_version version;
    char                    key_id[STORE_KEY_ID_MAX];  /* the key that read it */
};

/* NULL when out of memory (the api then runs without caches). */
struct api_cache *api_cache_new(void);
void api_cache_free(struct api_cache *c);

/* Writes the strong ETag of body ("\"<16 hex>\"", FNV-1a 64). */
void api_etag(const char *body, size_t len, char etag[API_ETAG_LEN]);

/* 1 with out filled on a hit, else 0 (also when c is NULL). */
int api_cache_job_get(struct api_cache *c, const char *job_id, struct api_cached_job *out);

/* A count that changes with every drop of a job that shares job_id's set
 * (and with api_cache_unfresh): read it before reading the job from the
 * database, and hand it to api_cache_job_put(), which keeps nothing if
 * such a drop came in between (it may have been this job's). */
uint64_t api_cache_epoch(struct api_cache *c, const char *job_id);

/* Keeps a copy of an ended job's body, as read by key_id (too large, over
 * the byte bound or epoch outdated: not kept). */
void api_cache_job_put(struct api_cache *c, const char *job_id, const char *key_id,
                       uint64_t epoch, const struct store_job_version *v, const char *body,
                       size_t len, const char *etag);

/* Forgets job_id (its cached version is outdated). */
void api_cache_job_drop(struct api_cache *c, const char *job_id);

/* Freshness (times are time_mono_ms() values):
 *   api_cache_fresh_as_of: every job change committed before t has been
 *     dropped (the listener saw a heartbeat it sent at t come back);
 *   api_cache_unfresh: drops every job and is fresh as of nothing (the
 *     listener lost its connection: changes may have been missed);
 *   api_cache_fresh: 1 when fresh as of no earlier than now - max_age_ms. */
void api_cache_fresh_as_of(struct api_cache *c, int64_t t);
void api_cache_unfresh(struct api_cache *c);
int api_cache_fresh(struct api_cache *c, int64_t now, int64_t max_age_ms);

/* 1 with key_id filled when hash was seen within KEY_CACHE_TTL_MS of
 * now_ms, else 0. */
int api_cache_key_get(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                      int64_t now_ms, char key_id[STORE_KEY_ID_MAX]);
void api_cache_key_put(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                       int64_t now_ms, const char *key_id);

/* How GET /job/status of a job was answered, counted per process for
 * opencode_status_cache_total{result} (registered by
 * api_cache_export_metrics, counted by api_cache_count; lock-free). */
enum api_cache_result {
    API_CACHE_FRESH = 0,    /* from the cache, no query */
    API_CACHE_CHECKED,      /* from the cache, after the check query */
    API_CACHE_MISS,         /* read and rendered */
    API_CACHE_RESULTS_
};
void api_cache_count(struct api_cache *c, enum api_cache_result what);
/* Adds c's counts to the process's metrics at every scrape. */
void api_cache_export_metrics(struct api_cache *c);

#endif
