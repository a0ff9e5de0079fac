/*
 * main.c - opencode-api: the HTTP API (CivetWeb), its outbox relay, and
 * the operator commands in admin.c.
 *
 * Threads: CivetWeb's server threads (API_THREADS) run api_dispatch() and
 * borrow database connections from one pool of API_DB_POOL; the relay
 * thread publishes the outbox; live.c's listener thread LISTENs for job
 * events (one connection of its own); the main thread waits for
 * SIGTERM/SIGINT.
 *
 * Connections under abuse: CivetWeb gives each connection one server
 * thread for as long as it is open, from the first byte of the request
 * to the end of the response (api_listen() says how that is bounded). An
 * idle thread costs little (its stack's touched pages and a 16 KiB request
 * buffer), so API_THREADS can be large enough to outnumber the idle or
 * slow connections one client can open within API_REQUEST_TIMEOUT_MS.
 */
#include <civetweb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "api.h"
#include "cache.h"
#include "db.h"
#include "fsutil.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "migrate.h"
#include "prog.h"
#include "render.h"

/* How long start-up waits for the database before giving up. */
#define API_DB_WAIT_S 60

/* Errors CivetWeb raises itself (bad request line, headers too large...)
 * get the same JSON shape as ours. */
static int api_http_error(struct mg_connection *conn, int status, const char *msg)
{
    cJSON *body = render_error(status == 413 ? ERR_BODY_TOO_LARGE : ERR_BAD_REQUEST,
                               msg && *msg ? msg : "bad request");
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
              "Content-Length: %zu\r\n\r\n%s",
              status, mg_get_response_code_text(NULL, status), strlen(text), text);
    free(text);
    return 0;
}

/* CivetWeb's own messages may quote the request (its URI, a header):
 * escaped, they stay one field of one line. */
static int api_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    log_warn("http.error", "message=\"%s\"", LOG_ESC(message));
    return 1;
}

static int api_migrate_with_retry(const struct cfg *cfg)
{
    char err[512];
    struct db *db = db_new(cfg->database_url, "opencode-api");
    int rc = -1;
    for (int waited = 0; waited <= API_DB_WAIT_S; waited++) {
        if (db_ensure(db, err, sizeof(err)) == DB_OK) {
            rc = migrate_run(db, err, sizeof(err)) >= 0 ? 0 : -1;
            if (rc != 0)
                log_error("api.migrate_failed", "error=\"%s\"", err);
            else if ((rc = api_bootstrap_row(db)) != 0)
                log_error("api.start_failed", "error=\"could not record the bootstrap key\"");
            db_free(db);
            return rc;
        }
        if (waited % 5 == 0)
            log_warn("api.waiting_for_db", "error=\"%s\"", err);
        prog_sleep_ms(1000);
    }
    log_error("api.db_unreachable", "error=\"%s\"", err);
    db_free(db);
    return rc;
}

/* Every server thread may hold a connection, and the pool its own: raises
 * the soft limit on open files to the hard one, so accept() does not
 * fail with EMFILE before API_THREADS connections are open. */
static void api_raise_nofile(long threads)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t)threads + 64)
        log_warn("api.nofile_low", "limit=%llu threads=%ld",
                 (unsigned long long)rl.rlim_cur, threads);
}

/* Stack of each CivetWeb thread. They would take the process default
 * (RLIMIT_STACK, 8 MiB or more) and API_THREADS of them reserve that much
 * address space each (committed memory under strict overcommit); a
 * request's deepest path (CivetWeb's 8 KiB print buffer, our log and JSON
 * buffers, libpq) uses well under a tenth of this. */
#define API_THREAD_STACK (1024 * 1024)

/* Makes threads created from now on (CivetWeb's) get API_THREAD_STACK. */
static void api_thread_stack(void)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return;
    if (pthread_attr_setstacksize(&attr, API_THREAD_STACK) != 0 ||
        pthread_setattr_default_np(&attr) != 0)
        log_warn("api.thread_stack", "error=\"could not set the default stack size\"");
    pthread_attr_destroy(&attr);
}

/*
 * Starts CivetWeb with every path going to the dispatcher. How a thread
 * held by a connection comes back:
 *   - request_timeout_ms (API_REQUEST_TIMEOUT_MS): the whole request head
 *     must arrive within it from the connection's start (CivetWeb counts
 *     from then, not per read), else the connection is closed, with a 400
 *     when part of a request came; it also bounds each read of a body and
 *     each write of a response (http_read_body() bounds a whole body);
 *   - keep_alive_timeout_ms: an idle kept-alive connection is closed after
 *     5 s (or the request timeout, when shorter);
 *   - linger is left unset: close() never waits for a client that does
 *     not read.
 * Beyond API_THREADS connections, accepted ones wait in CivetWeb's queue
 * (connection_queue) and then in the kernel's (listen_backlog, sized for
 * bursts: a dropped SYN costs the client a 1 s retransmit).
 */
static struct mg_context *api_listen(struct api *api)
{
    const struct cfg *cfg = api->cfg;
    char threads[24], request_ms[24], keep_alive_ms[24];
    snprintf(threads, sizeof(threads), "%ld", cfg->api_threads);
    snprintf(request_ms, sizeof(request_ms), "%ld", cfg->api_request_timeout_ms);
    snprintf(keep_alive_ms, sizeof(keep_alive_ms), "%ld",
             cfg->api_request_timeout_ms < 5000 ? cfg->api_request_timeout_ms : 5000);
    const char *options[] = {
        "listening_ports", cfg->api_listen,
        "num_threads", threads,
        "request_timeout_ms", request_ms,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", keep_alive_ms,
        "listen_backlog", "1024",
        "connection_queue", "64",
        /* The request head (line and headers) CivetWeb buffers: a query
         * with a 1024-byte file path, percent-encoded, fits many times. */
        "max_request_size", "16384",
        /* Headers and body go out in separate writes: without this the
         * body waits for the client's delayed ACK (~40 ms per response). */
        "tcp_nodelay", "1",
        /* CORS is the dispatcher's (CORS_ALLOW_ORIGINS): CivetWeb's own
         * preflight answer (200 with "*", before any handler) is off. */
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.http_error = api_http_error;
    cb.log_message = api_log_message;
    api_raise_nofile(cfg->api_threads);
    api_thread_stack();
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cb, api, options);
    if (ctx != NULL)
        mg_set_request_handler(ctx, "/", api_dispatch, api);
    return ctx;
}

static void api_relay_stop(struct api *api, pthread_t relay)
{
    pthread_mutex_lock(&api->relay_mu);
    api->relay_stop = 1;
    pthread_cond_signal(&api->relay_cv);
    pthread_mutex_unlock(&api->relay_mu);
    pthread_join(relay, NULL);
}

/* Serves until SIGTERM/SIGINT. Returns the exit code. */
static int api_run(struct api *api)
{
    const struct cfg *cfg = api->cfg;
    if (apikey_hash(cfg->api_key, strlen(cfg->api_key), api->bootstrap_hash) != 0 ||
        fs_mkdir_p(cfg->data_dir, 0700) != 0) {
        log_error("api.start_failed", "error=\"could not prepare DATA_DIR or the key hash\"");
        return 1;
    }
    if (api_migrate_with_retry(cfg) != 0)
        return 1;
    sigset_t sigs;
    prog_signals(&sigs);
    /* METRICS_LISTEN: its own listener, never the API's port. */
    struct metrics_server *metrics = NULL;
    if (metrics_server_start(cfg, "opencode-api", OCM_FOR_API, &metrics) != 0)
        return 1;
    pthread_t relay;
    if (pthread_create(&relay, NULL, api_relay_main, api) != 0) {
        metrics_server_stop(metrics);
        return 1;
    }
    int rc = 1;
    api->live = live_start(cfg, api->cache);
    struct mg_context *ctx = api->live != NULL ? api_listen(api) : NULL;
    if (ctx == NULL) {
        log_error("api.start_failed", "listen=%s error=\"could not listen\"", cfg->api_listen);
    } else {
        log_info("api.started", "listen=%s threads=%ld db_pool=%ld request_timeout_ms=%ld "
                 "data_dir=%s", cfg->api_listen, cfg->api_threads, cfg->api_db_pool,
                 cfg->api_request_timeout_ms, cfg->data_dir);
        log_info("api.stopping", "signal=%d", prog_wait_signal(&sigs, -1));
        live_close(api->live);       /* streams end, so mg_stop() can */
        mg_stop(ctx);
        rc = 0;
    }
    live_stop(api->live);
    api_relay_stop(api, relay);
    metrics_server_stop(metrics);
    return rc;
}

static int api_serve(void)
{
    /* Tenant files and folders are private (0600 / 0700), whatever mode a
     * helper asks for. */
    umask(077);
    struct cfg cfg;
    int rc = prog_init("opencode-api", CFG_ROLE_API, &cfg);
    if (rc != 0)
        return rc;
    struct api api;
    memset(&api, 0, sizeof(api));
    api.cfg = &cfg;
    atomic_init(&api.broker_up, 0);
    api.pool = db_pool_new(cfg.database_url, "opencode-api", (int)cfg.api_db_pool);
    api.cache = api_cache_new();
    api_cache_export_metrics(api.cache);
    pthread_mutex_init(&api.relay_mu, NULL);
    prog_cond_init(&api.relay_cv);
    rc = api_run(&api);
    pthread_cond_destroy(&api.relay_cv);
    pthread_mutex_destroy(&api.relay_mu);
    api_cache_free(api.cache);
    db_pool_free(api.pool);
    cfg_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "migrate") == 0 || strcmp(argv[1], "keys") == 0))
        return api_admin_main(argc - 1, argv + 1);
    if (argc >= 2) {
        fprintf(stderr, "usage: opencode-api [migrate | keys create NAME | keys list | "
                        "keys revoke KEY_ID | keys set KEY_ID NAME=VALUE...]\n");
        return 2;
    }
    return api_serve();
}
