/* live.c - see live.h. */
#include "live.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "db.h"
#include "ids.h"
#include "log.h"
#include "store.h"
#include "timefmt.h"
#include "xalloc.h"

/* Waiter lists by job id, and open-stream counts by key. */
#define LIVE_BUCKETS 256
/* How often the listener looks at its stop flag while idle. */
#define LIVE_POLL_MS 500

struct live_key {
    char             key_id[64];
    long             open;
    struct live_key *next;
};

struct api_live {
    const struct cfg   *cfg;
    pthread_mutex_t     mu;
    struct live_waiter *waiters[LIVE_BUCKETS];
    struct live_key    *keys[LIVE_BUCKETS];
    long                open;
    long                max_open;
    int                 closed;
    int                 stop;
    pthread_t           thread;
    struct db          *db;
    /* The status cache's freshness (cache.h): NULL or heartbeats off when
     * API_CACHE_STALE_MS is 0. */
    struct api_cache   *cache;
    long                hb_every_ms;
    int64_t             hb_due;
    long                hb_failures;      /* in a row; the first is logged */
    unsigned long       gen;              /* the connection handled */
    char                hb_channel[32];   /* this process's own */
};

static unsigned live_hash(const char *s)
{
    unsigned h = 5381;
    while (*s != '\0')
        h = h * 33 + (unsigned char)*s++;
    return h % LIVE_BUCKETS;
}

/* ---- Waking ------------------------------------------------------------- */

static void live_wake_job(struct api_live *live, const char *job_id)
{
    pthread_mutex_lock(&live->mu);
    for (struct live_waiter *w = live->waiters[live_hash(job_id)]; w != NULL; w = w->next) {
        if (strcmp(w->job_id, job_id) == 0) {
            w->gen++;
            pthread_cond_signal(&w->cv);
        }
    }
    pthread_mutex_unlock(&live->mu);
}

static void live_wake_all(struct api_live *live)
{
    pthread_mutex_lock(&live->mu);
    for (int b = 0; b < LIVE_BUCKETS; b++) {
        for (struct live_waiter *w = live->waiters[b]; w != NULL; w = w->next) {
            w->gen++;
            pthread_cond_signal(&w->cv);
        }
    }
    pthread_mutex_unlock(&live->mu);
}

/* Notifications arrive in commit order: when a heartbeat sent at t comes
 * back, every job_changed committed before t has been handled. One that
 * comes on a connection live_main() has not handled yet (the heartbeat's
 * statement reconnected) does not count: the cache is emptied first. */
static void live_on_notify(const char *channel, const char *payload, void *arg)
{
    struct api_live *live = arg;
    if (strcmp(channel, "job_events") == 0)
        live_wake_job(live, payload);
    else if (strcmp(channel, "job_changed") == 0 && strcmp(payload, "*") == 0)
        api_cache_unfresh(live->cache);   /* jobs truncated (migration 018) */
    else if (strcmp(channel, "job_changed") == 0)
        api_cache_job_drop(live->cache, payload);
    else if (strcmp(channel, live->hb_channel) == 0 && db_generation(live->db) == live->gen)
        api_cache_fresh_as_of(live->cache, strtoll(payload, NULL, 10));
}

/* Sends a heartbeat when one is due, and hands on what its round trip
 * brought in (libpq may have read the notification along with the
 * answer: the socket then shows nothing more). Returns the ms until the
 * next one (LIVE_POLL_MS when they are off), or -1 when it failed. Logs
 * the first failure of a run and the recovery, not every heartbeat in
 * between (four per API_CACHE_STALE_MS). */
static int live_heartbeat(struct api_live *live)
{
    if (live->hb_every_ms <= 0)
        return LIVE_POLL_MS;
    int64_t now = time_mono_ms();
    if (now >= live->hb_due) {
        char payload[24];
        snprintf(payload, sizeof(payload), "%lld", (long long)now);
        live->hb_due = now + live->hb_every_ms;
        if (store_notify(live->db, live->hb_channel, payload) != STORE_OK ||
            db_notifies(live->db, live_on_notify, live) < 0) {
            if (live->hb_failures++ == 0)
                log_warn("api.listen_lost", "reconnecting=1 heartbeat=1");
            return -1;
        }
        if (live->hb_failures > 0)
            log_info("api.listen_restored", "failed_heartbeats=%ld", live->hb_failures);
        live->hb_failures = 0;
    }
    int64_t left = live->hb_due - now;
    return left < LIVE_POLL_MS ? (int)left : LIVE_POLL_MS;
}

/* ---- The listener ------------------------------------------------------- */

static int live_stopping(struct api_live *live)
{
    pthread_mutex_lock(&live->mu);
    int stop = live->stop;
    pthread_mutex_unlock(&live->mu);
    return stop;
}

static void *live_main(void *arg)
{
    struct api_live *live = arg;
    while (!live_stopping(live)) {
        if (db_ensure(live->db, NULL, 0) != DB_OK) {
            struct timespec ts = { 1, 0 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (db_generation(live->db) != live->gen) {
            /* A new connection: whatever was sent before it is lost. */
            live->gen = db_generation(live->db);
            api_cache_unfresh(live->cache);
            live_wake_all(live);
        }
        /* db_ensure()'s liveness check may have read notifications into
         * libpq's queue: the socket would then not wake the poll. */
        if (db_notifies(live->db, live_on_notify, live) < 0) {
            log_warn("api.listen_lost", "reconnecting=1");
            continue;
        }
        int wait_ms = live_heartbeat(live);
        if (wait_ms < 0)
            continue;
        struct pollfd p = { .fd = db_socket(live->db), .events = POLLIN };
        int n = poll(&p, 1, wait_ms);
        if (n < 0 && errno != EINTR)
            log_warn("api.listen_poll", "errno=%d", errno);
        if (n > 0 && db_notifies(live->db, live_on_notify, live) < 0)
            log_warn("api.listen_lost", "reconnecting=1");
    }
    return NULL;
}

struct api_live *live_start(const struct cfg *cfg, struct api_cache *cache)
{
    struct api_live *live = xcalloc(1, sizeof(*live));
    live->cfg = cfg;
    live->cache = cache;
    char tag[17];
    if (cache != NULL && cfg->api_cache_stale_ms > 0 && id_random_hex(tag, sizeof(tag), 8) == 0) {
        snprintf(live->hb_channel, sizeof(live->hb_channel), "api_heartbeat_%s", tag);
        live->hb_every_ms = cfg->api_cache_stale_ms >= 4 ? cfg->api_cache_stale_ms / 4 : 1;
    }
    live->max_open = cfg->api_max_streams;
    if (live->max_open > cfg->api_threads - 32)
        live->max_open = cfg->api_threads > 32 ? cfg->api_threads - 32 : 0;
    pthread_mutex_init(&live->mu, NULL);
    live->db = db_new(cfg->database_url, "opencode-api-listen");
    db_listen(live->db, "job_events");   /* connects later if down now */
    if (live->hb_every_ms > 0) {
        db_listen(live->db, "job_changed");
        db_listen(live->db, live->hb_channel);
    }
    if (pthread_create(&live->thread, NULL, live_main, live) != 0) {
        db_free(live->db);
        pthread_mutex_destroy(&live->mu);
        free(live);
        return NULL;
    }
    return live;
}

void live_close(struct api_live *live)
{
    if (live == NULL)
        return;
    pthread_mutex_lock(&live->mu);
    live->closed = 1;
    pthread_mutex_unlock(&live->mu);
    live_wake_all(live);
}

void live_stop(struct api_live *live)
{
    if (live == NULL)
        return;
    pthread_mutex_lock(&live->mu);
    live->stop = 1;
    pthread_mutex_unlock(&live->mu);
    pthread_join(live->thread, NULL);
    db_free(live->db);
    for (int b = 0; b < LIVE_BUCKETS; b++) {
        while (live->keys[b] != NULL) {
            struct live_key *k = live->keys[b];
            live->keys[b] = k->next;
            free(k);
        }
    }
    pthread_mutex_destroy(&live->mu);
    free(live);
}

/* ---- Admission ---------------------------------------------------------- */

/* The key's counter, created when create is set (under mu). */
static struct live_key *live_key(struct api_live *live, const char *key_id, int create)
{
    struct live_key **head = &live->keys[live_hash(key_id)];
    for (struct live_key *k = *head; k != NULL; k = k->next)
        if (strcmp(k->key_id, key_id) == 0)
            return k;
    if (!create)
        return NULL;
    struct live_key *k = xcalloc(1, sizeof(*k));
    snprintf(k->key_id, sizeof(k->key_id), "%s", key_id);
    k->next = *head;
    *head = k;
    return k;
}

enum live_admit live_acquire(struct api_live *live, const char *key_id)
{
    enum live_admit a = LIVE_ADMITTED;
    pthread_mutex_lock(&live->mu);
    struct live_key *k = live_key(live, key_id, 1);
    if (live->open >= live->max_open || live->closed)
        a = LIVE_FULL;
    else if (k->open >= live->cfg->api_max_streams_per_key)
        a = LIVE_KEY_FULL;
    else {
        live->open++;
        k->open++;
    }
    pthread_mutex_unlock(&live->mu);
    return a;
}

void live_release(struct api_live *live, const char *key_id)
{
    pthread_mutex_lock(&live->mu);
    struct live_key *k = live_key(live, key_id, 0);
    if (k != NULL && k->open > 0)
        k->open--;
    if (live->open > 0)
        live->open--;
    pthread_mutex_unlock(&live->mu);
}

long live_open_count(struct api_live *live)
{
    pthread_mutex_lock(&live->mu);
    long n = live->open;
    pthread_mutex_unlock(&live->mu);
    return n;
}

/* ---- Waiting ------------------------------------------------------------ */

void live_watch(struct api_live *live, struct live_waiter *w, const char *job_id)
{
    snprintf(w->job_id, sizeof(w->job_id), "%s", job_id);
    w->gen = 0;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_lock(&live->mu);
    struct live_waiter **head = &live->waiters[live_hash(job_id)];
    w->prev = NULL;
    w->next = *head;
    if (*head != NULL)
        (*head)->prev = w;
    *head = w;
    pthread_mutex_unlock(&live->mu);
}

void live_unwatch(struct api_live *live, struct live_waiter *w)
{
    pthread_mutex_lock(&live->mu);
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        live->waiters[live_hash(w->job_id)] = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&live->mu);
    pthread_cond_destroy(&w->cv);
}

int live_wait(struct api_live *live, struct live_waiter *w, unsigned long *seen,
              long timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&live->mu);
    while (w->gen == *seen && !live->closed) {
        if (pthread_cond_timedwait(&w->cv, &live->mu, &until) == ETIMEDOUT)
            break;
    }
    if (live->closed)
        rc = -1;
    else if (w->gen != *seen)
        rc = 1;
    *seen = w->gen;
    pthread_mutex_unlock(&live->mu);
    return rc;
}
