/*
 * worker.h - state shared by the threads of opencode-worker.
 *
 * A worker runs WORKER_CONCURRENCY slots. Each slot is a thread with its
 * own PostgreSQL and RabbitMQ connections that takes one job at a time:
 *
 *   consume one delivery -> cancel the consumer -> claim the job in
 *   PostgreSQL -> ack -> run the agent (renewing the lease) -> record the
 *   outcome -> publish the session's next job -> consume again.
 *
 * Cancelling the consumer while a job runs means the broker never parks a
 * second message on a busy slot, and acking right after the claim means a
 * long job never meets RabbitMQ's consumer timeout: from the claim on, the
 * job's lease in PostgreSQL is what protects it.
 */
#ifndef OC_WORKER_H
#define OC_WORKER_H

#include <stdatomic.h>

#include "config.h"
#include "store.h"

struct worker {
    const struct cfg *cfg;
    atomic_int stopping;     /* SIGTERM: take no new job */
    atomic_int aborting;     /* grace period over: stop running agents */
};

/* Slot thread body; arg is the struct worker. */
void *worker_slot_main(void *arg);

/* Runs a claimed job to its end and records the outcome (job_run.c).
 * db is the slot's connection (it may be replaced on reconnect). */
void worker_job_run(struct worker *w, struct pg_conn **db, struct store_claim *claim);

/*
 * Builds the agent's environment (agent_env.c): a NULL-terminated array of
 * malloc'd "NAME=value" strings from an allowlist: PATH, HOME, locale,
 * opencode's settings and provider config, the provider keys named by
 * AGENT_ENV that the worker has, and the session's own variables (read
 * from env_file when it exists). Nothing else of the worker's environment
 * (database or broker credentials, API_KEY) gets in. Returns NULL when out
 * of memory or env_file is unreadable. Free with worker_env_free().
 */
char **worker_env_build(const struct cfg *cfg, const char *home, const char *env_file);
void worker_env_free(char **env);

#endif
