/*
 * job_live.c - the live side of a run (see job.h): the agent's events to
 * the job's log as they are written, and a client's cancel.
 *
 * The event file is the agent's stdout, opened by the worker in run/
 * (which the agent cannot reach): it is read as it grows, whole lines
 * only, each mapped by agent_event_live(). Events are best effort: a batch
 * the database refuses or cannot take now is dropped (and counted), never
 * retried in a way that could stall the run; the job's outcome does not
 * depend on them.
 *
 * Threading: runs on the slot's thread, on its struct db.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "job.h"
#include "log.h"
#include "xalloc.h"

/* Longest event line kept; longer ones (a tool's huge output) are skipped
 * whole. */
#define LIVE_LINE_MAX (1024 * 1024)
/* Bytes read from the event file per tick, so one tick stays short. */
#define LIVE_READ_MAX (4 * 1024 * 1024)
/* Events sent to the database in one statement. */
#define LIVE_BATCH 128

struct live_batch {
    const char *kinds[LIVE_BATCH];
    char       *data[LIVE_BATCH];
    size_t      n;
};

static void live_note_cancel(const char *channel, const char *payload, void *arg)
{
    struct job_attempt *ja = arg;
    if (strcmp(channel, "job_cancel") == 0 && strcmp(payload, ja->c->job_id) == 0)
        ja->cancel = 1;
}

void job_live_begin(struct job_attempt *ja)
{
    ja->live.fd = -1;
    if (db_listen(ja->db, "job_cancel") != DB_OK)
        return;                  /* the lease renewal still says it */
    /* Cancels of other jobs heard while this slot was idle. */
    db_notifies(ja->db, live_note_cancel, ja);
}

static void live_flush(struct job_attempt *ja, struct live_batch *b)
{
    if (b->n == 0)
        return;
    long stored = 0;
    int rc = store_events_add(ja->db, ja->c->job_id, ja->c->lease_token, b->kinds,
                              (const char *const *)b->data, b->n, ja->w->cfg->job_max_events,
                              &stored);
    if (rc != STORE_OK && rc != STORE_NOT_FOUND)
        log_warn("job.events_dropped", "job=%s count=%zu", ja->c->job_id, b->n);
    ja->live.stored += stored;
    ja->live.dropped += (long)b->n - stored;
    for (size_t i = 0; i < b->n; i++)
        free(b->data[i]);
    b->n = 0;
}

static void live_line(struct job_attempt *ja, struct live_batch *b, const char *line,
                      size_t len)
{
    const char *kind = NULL;
    cJSON *data = agent_event_live(line, len, &kind);
    if (data == NULL)
        return;
    char *text = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (text == NULL)
        return;
    b->kinds[b->n] = kind;
    b->data[b->n++] = text;
    if (b->n == LIVE_BATCH)
        live_flush(ja, b);
}

/* Adds n bytes to the current line; each completed line is handed on. */
static void live_feed(struct job_attempt *ja, struct live_batch *b, const char *buf, size_t n)
{
    struct job_live *l = &ja->live;
    while (n > 0) {
        const char *nl = memchr(buf, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - buf) : n;
        if (!l->skipping && l->len + take > LIVE_LINE_MAX) {
            l->skipping = 1;
            l->len = 0;
        }
        if (!l->skipping) {
            if (l->len + take + 1 > l->cap) {
                l->cap = l->len + take + 1 > 2 * l->cap ? l->len + take + 1 : 2 * l->cap;
                l->line = xrealloc(l->line, l->cap);
            }
            memcpy(l->line + l->len, buf, take);
            l->len += take;
        }
        if (nl == NULL)
            return;
        if (!l->skipping && l->len > 0)
            live_line(ja, b, l->line, l->len);
        l->len = 0;
        l->skipping = 0;
        buf += take + 1;
        n -= take + 1;
    }
}

/* The event file, opened once: a regular file, never through a link. */
static int live_open(struct job_attempt *ja)
{
    if (ja->live.fd >= 0)
        return 0;
    int fd = open(ja->a.events, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    ja->live.fd = fd;
    return fd >= 0 ? 0 : -1;
}

static void live_read(struct job_attempt *ja)
{
    if (live_open(ja) != 0)
        return;
    enum { LIVE_CHUNK = 64 * 1024 };
    char *buf = xmalloc(LIVE_CHUNK);
    struct live_batch b = { .n = 0 };
    for (size_t total = 0; total < LIVE_READ_MAX;) {
        ssize_t n = read(ja->live.fd, buf, LIVE_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        live_feed(ja, &b, buf, (size_t)n);
        total += (size_t)n;
    }
    free(buf);
    live_flush(ja, &b);
}

int job_live_tick(struct job_attempt *ja)
{
    /* A broken connection is the lease renewal's to notice and repair;
     * the renewal also reports a cancel this channel missed meanwhile. */
    if (!ja->cancel)
        db_notifies(ja->db, live_note_cancel, ja);
    live_read(ja);
    return ja->cancel;
}

void job_live_end(struct job_attempt *ja)
{
    /* What the agent wrote after the last tick (a final answer). */
    live_read(ja);
    if (ja->live.fd >= 0)
        close(ja->live.fd);
    ja->live.fd = -1;
    free(ja->live.line);
    ja->live.line = NULL;
    ja->live.len = ja->live.cap = 0;
    if (ja->live.dropped > 0)
        log_info("job.events", "job=%s stored=%ld dropped=%ld", ja->c->job_id, ja->live.stored,
                 ja->live.dropped);
}
