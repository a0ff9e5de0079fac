/*
 * live.h - what event streams (GET /job/events) and long-polls (GET
 * /job/status?wait=) wait on, in one api process.
 *
 * One listener thread holds a database connection of its own that LISTENs
 * on channel job_events (a trigger notifies it with the job's id whenever
 * a job gets an event, status changes included, from any host). A waiting
 * request registers a struct live_waiter for its job and sleeps on the
 * waiter's own condition variable, holding no database connection; the
 * listener wakes exactly the waiters of the notified job. After the
 * listener reconnects (notifications sent meanwhile are lost) it wakes
 * every waiter, and each re-reads its job. Nothing polls the database.
 *
 * The same thread keeps the status cache fresh (cache.h): see live_start.
 *
 * Streams and long-polls each hold a CivetWeb thread while they wait, so
 * their number is capped (API_MAX_STREAMS, and API_MAX_STREAMS_PER_KEY
 * per key): live_acquire() admits one, live_release() ends it.
 *
 * Threading: every function may be called from any server thread; the
 * waiter list and the counters share one mutex.
 */
#ifndef OC_API_LIVE_H
#define OC_API_LIVE_H

#include <pthread.h>

#include "config.h"
#include "ids.h"

struct api_live;

struct live_waiter {
    char                job_id[ID_HEX_LEN + 1];
    unsigned long       gen;         /* bumped by each wake-up */
    pthread_cond_t      cv;
    struct live_waiter *prev, *next;
};

/* Starts the listener thread (on cfg->database_url). NULL when the thread
 * could not be created. With a cache and API_CACHE_STALE_MS > 0 it also
 * keeps that cache fresh: drops the jobs NOTIFY job_changed names, and
 * sends itself a heartbeat every API_CACHE_STALE_MS / 4 (cache.h). */
struct api_cache;
struct api_live *live_start(const struct cfg *cfg, struct api_cache *cache);
/* Shutting down: wakes every waiter, and live_wait() returns -1 from now
 * on, so streams end before the server stops. Accepts NULL. */
void live_close(struct api_live *live);
/* Stops the listener and frees; waiters must be gone. Accepts NULL. */
void live_stop(struct api_live *live);

enum live_admit {
    LIVE_ADMITTED = 0,
    LIVE_FULL,          /* API_MAX_STREAMS are open */
    LIVE_KEY_FULL,      /* API_MAX_STREAMS_PER_KEY of this key are open */
};
enum live_admit live_acquire(struct api_live *live, const char *key_id);
void live_release(struct api_live *live, const char *key_id);
/* Streams and long-polls open now (for metrics and tests). */
long live_open_count(struct api_live *live);

/* Registers w for job_id's wake-ups (w is the caller's, e.g. on its
 * stack, until live_unwatch()). */
void live_watch(struct api_live *live, struct live_waiter *w, const char *job_id);
void live_unwatch(struct api_live *live, struct live_waiter *w);
/*
 * Sleeps until w was woken since *seen (then *seen is updated and 1 is
 * returned) or timeout_ms passed (0); -1 once live_close() ran. Register
 * before reading the job's state, wait after: a wake-up in between is not
 * lost.
 */
int live_wait(struct api_live *live, struct live_waiter *w, unsigned long *seen,
              long timeout_ms);

#endif
