/*
 * routes_live.c - live jobs: GET /job/events (Server-Sent Events), the
 * wait of GET /job/status?wait=N, and POST /job/cancel.
 *
 * A stream or a long-poll holds its server thread but no database
 * connection while it waits: it borrows one from the pool for each read
 * and sleeps on live.h's waiter in between, woken by the job's
 * NOTIFY job_events (from whichever host wrote the event).
 */
#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "render.h"
#include "timefmt.h"

/* Events read from the database per round trip of a stream. */
#define LIVE_PAGE 200
/* The longest long-poll (GET /job/status?wait=). */
#define LIVE_WAIT_MAX_S 60

/* Admits a stream or long-poll of the caller's key. Returns 0, or the
 * status after answering 429 too_many_streams. */
static int live_admit(struct api_req *r)
{
    switch (live_acquire(r->api->live, r->key_id)) {
    case LIVE_ADMITTED:
        return 0;
    case LIVE_KEY_FULL:
        return api_fail(r, ERR_TOO_MANY_STREAMS,
                        "this key already holds %ld open event streams and long-polls "
                        "(API_MAX_STREAMS_PER_KEY)", r->cfg->api_max_streams_per_key);
    default:
        return api_fail(r, ERR_TOO_MANY_STREAMS,
                        "the server holds its most open event streams and long-polls "
                        "(API_MAX_STREAMS); try again shortly");
    }
}

/* Checks that job_id is the caller's. Returns 0 with the job's current
 * status in v, or the status of the answer sent (404, 503). */
static int live_check(struct api_req *r, const char *job_id, struct store_job_version *v)
{
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    int rc = store_job_check(db, job_id, r->key_id, v);
    api_db_release(r);
    return rc == STORE_OK ? 0 : api_store_fail(r, rc, "Job not found");
}

/* ---- GET /job/events ---------------------------------------------------- */

/* Last-Event-ID (header) or last_event_id (query): resume after it.
 * Returns 0 with *after set, or the status after answering 422. */
static int live_resume_point(struct api_req *r, long long *after)
{
    char buf[32];
    const char *h = mg_get_header(r->conn, "Last-Event-ID");
    int found = http_query(r->conn, "last_event_id", buf, sizeof(buf));
    if (h == NULL && found <= 0) {
        *after = 0;
        return 0;
    }
    const char *s = h != NULL ? h : buf;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (found < 0 || end == s || *end != '\0' || v < 0)
        return api_fail(r, ERR_VALIDATION, "Last-Event-ID: must be an event id (a number >= 0)");
    *after = v;
    return 0;
}

static int live_write(struct api_req *r, const char *s)
{
    return mg_write(r->conn, s, strlen(s)) > 0 ? 0 : -1;
}

static int live_status_open(const char *status)
{
    return strcmp(status, "queued") == 0 || strcmp(status, "running") == 0;
}

/* Nothing new after the client's resume point: 1 when the job has ended,
 * 0 when it goes on, -1 when it is gone or the database is. */
static int live_ended_before(struct api_req *r, const char *job_id)
{
    struct db *db = api_db(r);
    if (db == NULL)
        return -1;
    struct store_job_version v;
    int rc = store_job_check(db, job_id, r->key_id, &v);
    api_db_release(r);
    if (rc != STORE_OK)
        return -1;
    return live_status_open(v.status) ? 0 : 1;
}

/* Sends the job's events after *after. Returns 1 when the final status
 * event went out, 0 when all there is was sent, -1 when the client or the
 * database went away. */
static int live_send_events(struct api_req *r, const char *job_id, long long *after)
{
    int ended = 0;
    for (;;) {
        struct db *db = api_db(r);
        if (db == NULL)
            return -1;
        struct store_events ev;
        int rc = store_events_list(db, job_id, *after, LIVE_PAGE, &ev);
        api_db_release(r);
        if (rc != STORE_OK)
            return -1;
        int final = 0, failed = 0;
        for (size_t i = 0; i < ev.n && !final && !failed; i++) {
            char *frame = render_event(&ev.v[i], &final);
            failed = frame == NULL || live_write(r, frame) != 0;
            free(frame);
            *after = ev.v[i].seq;
        }
        size_t n = ev.n;
        store_events_free(&ev);
        if (failed)
            return -1;
        if (final)
            return 1;
        if (n == 0 && ended)
            return 1;           /* its final event is behind the client */
        if (n == 0) {
            /* Ended meanwhile? Its final event committed with the status:
             * one more read sends it (or finds the client past it). */
            ended = live_ended_before(r, job_id);
            if (ended <= 0)
                return ended;
            continue;
        }
        if (n < LIVE_PAGE)
            return 0;
    }
}

/* Streams until the final status event, the client leaves or the server
 * stops. Returns the id of the last event sent. */
static long long live_stream(struct api_req *r, const char *job_id, long long after)
{
    mg_printf(r->conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n%s\r\n",
              http_common_headers(r->conn));
    struct live_waiter w;
    unsigned long seen = 0;
    live_watch(r->api->live, &w, job_id);
    /* The database is read again only when the job's events woke us (or
     * the listener reconnected and woke everyone): an idle stream costs
     * a keep-alive write, never a query. */
    int sent = live_send_events(r, job_id, &after);
    while (sent == 0) {
        int woke = live_wait(r->api->live, &w, &seen, r->cfg->api_sse_keepalive_ms);
        if (woke < 0 || (woke == 0 && live_write(r, ": keep-alive\n\n") != 0))
            break;
        if (woke > 0)
            sent = live_send_events(r, job_id, &after);
    }
    live_unwatch(r->api->live, &w);
    return after;
}

int api_job_events(struct api_req *r)
{
    char job_id[ID_HEX_LEN + 1];
    long long after = 0;
    struct store_job_version v;
    int status = api_id_param(r, "job_id", job_id, "Job not found");
    if (status == 0)
        status = live_resume_point(r, &after);
    if (status == 0)
        status = live_check(r, job_id, &v);
    if (status == 0)
        status = live_admit(r);
    if (status != 0)
        return status;
    http_close_after(r->conn);
    long long last = live_stream(r, job_id, after);
    live_release(r->api->live, r->key_id);
    log_info("job.events_closed", "job=%s key=%s last=%lld", job_id, r->key_id, last);
    return 200;
}

/* ---- GET /job/status?wait=N --------------------------------------------- */

int api_job_wait(struct api_req *r, const char *job_id, long wait_s)
{
    struct store_job_version v;
    int status = live_check(r, job_id, &v);
    if (status != 0 || !live_status_open(v.status) || wait_s <= 0)
        return status;
    if ((status = live_admit(r)) != 0)
        return status;
    struct live_waiter w;
    unsigned long seen = 0;
    int64_t deadline = time_mono_ms() + wait_s * 1000;
    live_watch(r->api->live, &w, job_id);
    for (;;) {
        status = live_check(r, job_id, &v);
        int64_t left = deadline - time_mono_ms();
        if (status != 0 || !live_status_open(v.status) || left <= 0 ||
            live_wait(r->api->live, &w, &seen, (long)left) < 0)
            break;
    }
    live_unwatch(r->api->live, &w);
    live_release(r->api->live, r->key_id);
    return status;
}

/* Reads ?wait= for api_job_status: 0 when absent. Returns 0 with *wait_s
 * set, or the status after answering 422. */
int api_wait_param(struct api_req *r, long *wait_s)
{
    char buf[16];
    *wait_s = 0;
    int found = http_query(r->conn, "wait", buf, sizeof(buf));
    if (found == 0)
        return 0;
    char *end;
    long v = found > 0 ? strtol(buf, &end, 10) : -1;
    if (found < 0 || end == buf || *end != '\0' || v < 0 || v > LIVE_WAIT_MAX_S)
        return api_fail(r, ERR_VALIDATION, "wait: must be a whole number of seconds from 0 to %d",
                        LIVE_WAIT_MAX_S);
    *wait_s = v;
    return 0;
}

/* ---- POST /job/cancel --------------------------------------------------- */

int api_job_cancel(struct api_req *r)
{
    char job_id[ID_HEX_LEN + 1];
    struct db *db;
    int status = api_job_param(r, job_id, &db);
    if (status != 0)
        return status;
    char now[16];
    int rc = store_job_cancel(db, job_id, r->key_id, now);
    if (rc == STORE_CONFLICT)
        return api_fail(r, ERR_JOB_ENDED, "the job already ended with status %s", now);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Job not found");
    log_info("job.cancel", "job=%s key=%s status=%s", job_id, r->key_id, now);
    struct store_job j;
    rc = store_job_get(db, job_id, r->key_id, &j);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Job not found");
    status = api_send(r, 202, render_job(&j));
    store_job_free(&j);
    return status;
}
