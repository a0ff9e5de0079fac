/*
 * cache.h - the api process's in-memory caches (one struct api_cache per
 * process, created by main.c, shared by every server thread):
 *
 *   - rendered GET /job/status bodies of ended jobs, with their strong
 *     ETag: an ended job's document does not change, so a hit skips the
 *     two queries and the JSON work; the caller still checks, on every
 *     hit, that the job is visible to its key (store_job_check), so a
 *     deleted job, another key or another api process's changes are never
 *     answered from here. Bounded: API_CACHE_JOB_SETS x API_CACHE_JOB_WAYS
 *     entries (set-associative, LRU within a set) and API_CACHE_MAX_BYTES
 *     of bodies;
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
};

/* NULL when out of memory (the api then runs without caches). */
struct api_cache *api_cache_new(void);
void api_cache_free(struct api_cache *c);

/* Writes the strong ETag of body ("\"<16 hex>\"", FNV-1a 64). */
void api_etag(const char *body, size_t len, char etag[API_ETAG_LEN]);

/* 1 with out filled on a hit, else 0 (also when c is NULL). */
int api_cache_job_get(struct api_cache *c, const char *job_id, struct api_cached_job *out);

/* Keeps a copy of an ended job's body (too large or over the byte bound:
 * not kept). */
void api_cache_job_put(struct api_cache *c, const char *job_id,
                       const struct store_job_version *v, const char *body, size_t len,
                       const char *etag);

/* Forgets job_id (its cached version is outdated). */
void api_cache_job_drop(struct api_cache *c, const char *job_id);

/* 1 with key_id filled when hash was seen within KEY_CACHE_TTL_MS of
 * now_ms, else 0. */
int api_cache_key_get(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                      int64_t now_ms, char key_id[STORE_KEY_ID_MAX]);
void api_cache_key_put(struct api_cache *c, const unsigned char hash[APIKEY_HASH_LEN],
                       int64_t now_ms, const char *key_id);

#endif
