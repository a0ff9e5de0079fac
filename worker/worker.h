/*
 * worker.h - state shared by the threads of opencode-worker.
 *
 * A worker runs WORKER_CONCURRENCY slots. Each slot is a thread with its
 * own PostgreSQL and RabbitMQ connections that takes one job at a time,
 * going through four states (slot.c):
 *
 *   connect: make both connections usable, publish what waits in the
 *            outbox, start consuming;
 *   consume: wait for one delivery, then cancel the consumer;
 *   claim:   claim the job in PostgreSQL (a fresh lease token), ack;
 *   run:     run the attempt (job_run.c), then publish the session's next
 *            job from the outbox; back to connect.
 *
 * Cancelling the consumer while a job runs means the broker never parks a
 * second message on a busy slot, and acking right after the claim means a
 * long job never meets RabbitMQ's consumer timeout: from the claim on, the
 * job's lease in PostgreSQL is what protects it.
 *
 * One attempt (job_run.c: prepare -> run -> collect -> record) works only
 * in its own folder, attempts/<job>-<lease token> (layout.h): a copy of
 * the session's current files as the agent's workspace, and the scratch
 * (HOME, prompt, logs). On the way to recording its outcome it renews the
 * lease and publishes the workspace as jobs/<job> with a rename that never
 * replaces an existing folder (fs_publish_dir()), so an attempt that lost
 * its lease while its agent kept writing can never delete or overwrite
 * the files of the attempt that replaced it.
 *
 * Containment (job_contain.c, sandbox.h): when the worker runs as root,
 * each live agent runs as an unprivileged uid of its own, leased from
 * AGENT_UID_RANGE (uidlease.h), with rlimits, a seccomp filter and a
 * watchdog over that uid's processes and the job's folders (watchdog.h);
 * its files are taken back before anything is collected or published.
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
    int disable_userns;      /* bwrap accepts --disable-userns here (probed at start) */
    int own_uids;            /* running as root: each agent gets a leased uid */
};

/* Slot thread body; arg is the struct worker. */
void *worker_slot_main(void *arg);

/* Runs one attempt of a claimed job to its end and records the outcome
 * (job_run.c). db is the slot's connection (db_ensure() reconnects it). */
void worker_job_run(struct worker *w, struct db *db, const struct store_claim *claim);

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
/* The same with the gateway (gateway.h): agent_config is the agent's
 * rewritten provider configuration, and no variable gateway_env_hidden()
 * names (a provider key) is passed, from AGENT_ENV or the session. */
struct gw_routes;
char **worker_env_build_gw(const struct cfg *cfg, const char *home, const char *env_file,
                           const char *agent_config, const struct gw_routes *hide);
void worker_env_free(char **env);

#endif
