/*
 * metrics_http.c - serves /metrics on METRICS_LISTEN (see metrics_http.h).
 *
 * Ownership: struct metrics_server owns its CivetWeb context and its
 * database connection. Threading: CivetWeb runs the handler on its one
 * worker thread; the database refresh is also guarded by a mutex, so a
 * second thread would only wait.
 */
#include <civetweb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "store.h"
#include "timefmt.h"
#include "xalloc.h"

struct metrics_server {
    struct mg_context *ctx;
    struct db         *db;            /* NULL: no DATABASE_URL */
    pthread_mutex_t    mu;            /* db, last_ms */
    long long          last_ms;       /* last refresh try, monotonic; 0: never */
};

/* Scrape hook: re-reads the queue gauges when the cached ones are older
 * than METRICS_DB_REFRESH_MS. A failed read keeps the last values. */
static void metrics_refresh_db(struct metrics *r, void *arg)
{
    (void)r;
    struct metrics_server *s = arg;
    pthread_mutex_lock(&s->mu);
    long long now = (long long)time_mono_ms();
    if (s->db == NULL || (s->last_ms != 0 && now - s->last_ms < METRICS_DB_REFRESH_MS)) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->last_ms = now;
    struct store_queue_stats st;
    int rc = STORE_UNAVAILABLE;
    if (db_ensure(s->db, NULL, 0) == DB_OK)
        rc = store_queue_stats(s->db, &st);
    pthread_mutex_unlock(&s->mu);
    if (rc != STORE_OK) {
        log_debug("metrics.db_refresh_failed", "rc=%d", rc);
        return;
    }
    metric_set(ocm(OCM_OUTBOX_BACKLOG), NULL, (double)st.outbox_backlog);
    metric_set(ocm(OCM_WEBHOOKS_PENDING), NULL, (double)st.webhooks_pending);
    metric_set(ocm(OCM_OUTBOX_OLDEST_AGE), NULL, st.outbox_oldest_age_s);
    metric_set(ocm(OCM_JOBS_QUEUED), NULL, (double)st.jobs_queued);
    metric_set(ocm(OCM_JOBS_RUNNING), NULL, (double)st.jobs_running);
}

static int metrics_send(struct mg_connection *conn, int status, const char *type,
                        const char *body, size_t len, int head)
{
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n\r\n",
              status, mg_get_response_code_text(NULL, status), type, len);
    if (!head && len > 0)
        mg_write(conn, body, len);
    return status;
}

static int metrics_handler(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int head = strcmp(ri->request_method, "HEAD") == 0;
    if (strcmp(ri->local_uri, "/metrics") != 0)
        return metrics_send(conn, 404, "text/plain; charset=utf-8", "not found\n", 10, head);
    if (!head && strcmp(ri->request_method, "GET") != 0)
        return metrics_send(conn, 405, "text/plain; charset=utf-8", "GET only\n", 9, 0);
    size_t len = 0;
    char *text = metrics_render(metrics_default(), &len);
    metrics_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, head);
    free(text);
    return 200;
}

static int metrics_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    log_warn("metrics.http_error", "message=\"%s\"", LOG_ESC(message));
    return 1;
}

/* The CivetWeb context on listen, or NULL. */
static struct mg_context *metrics_listen(const char *listen, struct metrics_server *s)
{
    const char *options[] = {
        "listening_ports", listen,
        "num_threads", "1",
        "request_timeout_ms", "10000",
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "5000",
        "max_request_size", "8192",
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.log_message = metrics_log_message;
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cb, s, options);
    if (ctx != NULL)
        mg_set_request_handler(ctx, "/", metrics_handler, s);
    return ctx;
}

int metrics_server_start(const struct cfg *cfg, const char *program, unsigned for_program,
                         struct metrics_server **out)
{
    *out = NULL;
    ocm_declare(program, for_program);
    if (cfg->metrics_listen == NULL || cfg->metrics_listen[0] == '\0')
        return 0;
    struct metrics_server *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    if (cfg->database_url != NULL && cfg->database_url[0] != '\0')
        s->db = db_new(cfg->database_url, program);
    s->ctx = metrics_listen(cfg->metrics_listen, s);
    if (s->ctx == NULL) {
        log_error("metrics.listen_failed", "listen=%s", cfg->metrics_listen);
        db_free(s->db);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    /* Registered once per process: programs start one server. */
    metrics_on_scrape(metrics_default(), metrics_refresh_db, s);
    log_info("metrics.started", "listen=%s", cfg->metrics_listen);
    *out = s;
    return 0;
}

void metrics_server_stop(struct metrics_server *s)
{
    if (s == NULL)
        return;
    mg_stop(s->ctx);
    /* The hook stays registered with a server that no longer exists: the
     * default registry is rendered only by this server, now stopped. */
    db_free(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
