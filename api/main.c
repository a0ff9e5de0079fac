/*
 * main.c - opencode-api: the HTTP API (CivetWeb), its outbox relay, and
 * the operator commands in admin.c.
 */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "db.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "migrate.h"

/* How long start-up waits for the database before giving up. */
#define API_DB_WAIT_S 60

static void *api_init_thread(const struct mg_context *ctx, int thread_type)
{
    (void)ctx;
    if (thread_type != 1)
        return NULL;
    /* Connected lazily by api_db(), so start-up needs no database. */
    return calloc(1, sizeof(struct api_thread));
}

static void api_exit_thread(const struct mg_context *ctx, int thread_type, void *ptr)
{
    (void)ctx;
    (void)thread_type;
    struct api_thread *t = ptr;
    if (t != NULL) {
        PQfinish(t->db);
        free(t);
    }
}

/* Errors CivetWeb raises itself (bad request line, headers too large...)
 * get the same JSON shape as ours. */
static int api_http_error(struct mg_connection *conn, int status, const char *msg)
{
    http_send_error(conn, status, msg && *msg ? msg : "bad request");
    return 0;
}

static int api_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    log_warn("http.error", "message=\"%s\"", message);
    return 1;
}

static int api_migrate_with_retry(const struct cfg *cfg)
{
    char err[512];
    for (int waited = 0;; waited++) {
        PGconn *db = db_connect(cfg->database_url, "opencode-api", err, sizeof(err));
        if (db != NULL) {
            int n = migrate_run(db, err, sizeof(err));
            PQfinish(db);
            if (n >= 0)
                return 0;
            log_error("api.migrate_failed", "error=\"%s\"", err);
            return -1;
        }
        if (waited >= API_DB_WAIT_S) {
            log_error("api.db_unreachable", "error=\"%s\"", err);
            return -1;
        }
        if (waited % 5 == 0)
            log_warn("api.waiting_for_db", "error=\"%s\"", err);
        sleep(1);
    }
}

static int api_serve(void)
{
    struct cfg cfg;
    char err[512];
    if (cfg_load(&cfg, CFG_ROLE_API, err, sizeof(err)) != 0) {
        fprintf(stderr, "opencode-api: %s\n", err);
        return 2;
    }
    log_init("opencode-api", cfg.log_level);

    struct api api;
    memset(&api, 0, sizeof(api));
    api.cfg = &cfg;
    pthread_mutex_init(&api.relay_mu, NULL);
    pthread_cond_init(&api.relay_cv, NULL);
    int rc = 1;
    struct mg_context *ctx = NULL;
    pthread_t relay;
    int relay_started = 0;

    if (apikey_hash(cfg.api_key, strlen(cfg.api_key), api.bootstrap_hash) != 0 ||
        fs_mkdir_p(cfg.data_dir, 0755) != 0) {
        log_error("api.start_failed", "error=\"could not prepare DATA_DIR or the key hash\"");
        goto out;
    }
    if (api_migrate_with_retry(&cfg) != 0)
        goto out;

    /* Signals go to the main thread's sigwait(); every other thread,
     * CivetWeb's included, inherits the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (pthread_create(&relay, NULL, api_relay_main, &api) != 0)
        goto out;
    relay_started = 1;

    char threads[16];
    snprintf(threads, sizeof(threads), "%ld", cfg.api_threads);
    const char *options[] = {
        "listening_ports", cfg.api_listen,
        "num_threads", threads,
        /* Bounds a client that sends its request or body slowly. */
        "request_timeout_ms", "30000",
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "5000",
        /* Headers and body go out in separate writes: without this the
         * body waits for the client's delayed ACK (~40 ms per response). */
        "tcp_nodelay", "1",
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.init_thread = api_init_thread;
    cb.exit_thread = api_exit_thread;
    cb.http_error = api_http_error;
    cb.log_message = api_log_message;

    mg_init_library(0);
    ctx = mg_start(&cb, &api, options);
    if (ctx == NULL) {
        log_error("api.start_failed", "listen=%s error=\"could not listen\"", cfg.api_listen);
        goto out;
    }
    /* "$" anchors: without it "/session" would also match "/sessionX". */
    mg_set_request_handler(ctx, "/health$", api_route_health, &api);
    mg_set_request_handler(ctx, "/session$", api_route_session, &api);
    mg_set_request_handler(ctx, "/session/results$", api_route_session_results, &api);
    mg_set_request_handler(ctx, "/job$", api_route_job, &api);
    mg_set_request_handler(ctx, "/job/status$", api_route_job_status, &api);
    mg_set_request_handler(ctx, "/download$", api_route_download, &api);
    mg_set_request_handler(ctx, "/", api_route_not_found, &api);
    log_info("api.started", "listen=%s threads=%ld data_dir=%s", cfg.api_listen,
             cfg.api_threads, cfg.data_dir);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("api.stopping", "signal=%d", sig);
    rc = 0;

out:
    if (ctx != NULL)
        mg_stop(ctx);
    if (relay_started) {
        pthread_mutex_lock(&api.relay_mu);
        api.relay_stop = 1;
        pthread_cond_signal(&api.relay_cv);
        pthread_mutex_unlock(&api.relay_mu);
        pthread_join(relay, NULL);
    }
    pthread_cond_destroy(&api.relay_cv);
    pthread_mutex_destroy(&api.relay_mu);
    cfg_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "migrate") == 0 || strcmp(argv[1], "keys") == 0))
        return api_admin_main(argc - 1, argv + 1);
    if (argc >= 2) {
        fprintf(stderr, "usage: opencode-api [migrate | keys create NAME | keys list | "
                        "keys revoke KEY_ID]\n");
        return 2;
    }
    return api_serve();
}
