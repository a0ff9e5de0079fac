/*
 * metrics_http.h - the /metrics endpoint of a program: a CivetWeb server
 * of its own on METRICS_LISTEN (never the public API port) that answers
 * GET /metrics with the default registry (metrics.h) in the Prometheus
 * text format 0.0.4, and 404 to anything else.
 *
 * It also keeps the service-wide gauges read from PostgreSQL
 * (opencode_outbox_backlog, opencode_outbox_oldest_age_seconds,
 * opencode_jobs_queued, opencode_jobs_running) fresh: on a scrape, when
 * the last read is older than METRICS_DB_REFRESH_MS, through a database
 * connection of its own (store_queue_stats()); faster scrapes get the
 * cached values.
 *
 * Ownership: the server is the caller's until metrics_server_stop().
 * Threading: one CivetWeb thread serves scrapes; start and stop from the
 * program's main thread.
 */
#ifndef OC_METRICS_HTTP_H
#define OC_METRICS_HTTP_H

#include "config.h"

#define METRICS_DB_REFRESH_MS 5000

struct metrics_server;

/*
 * Declares the program's metrics (ocm_declare(program, for_program)) and,
 * when cfg->metrics_listen is set, starts serving them. Returns 0 with
 * *out set (NULL when METRICS_LISTEN is unset), or -1 (logged) when it
 * could not listen.
 */
int metrics_server_start(const struct cfg *cfg, const char *program, unsigned for_program,
                         struct metrics_server **out);

/* Stops serving and frees the server (NULL: nothing). */
void metrics_server_stop(struct metrics_server *s);

#endif
