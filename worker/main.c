/*
 * main.c - opencode-worker: runs queued jobs (see worker.h).
 *
 * SIGTERM or SIGINT: stop taking jobs, let running ones finish for
 * WORKER_GRACE_S seconds, then stop their agents and hand the jobs back
 * (queued again, attempt not counted) before exiting.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "log.h"
#include "worker.h"

struct worker_threads {
    pthread_t *ids;
    long count;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long running;
};

static struct worker_threads threads = {
    .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
};


static void *worker_slot_wrapper(void *arg)
{
    worker_slot_main(arg);
    pthread_mutex_lock(&threads.mu);
    threads.running--;
    pthread_cond_broadcast(&threads.cv);
    pthread_mutex_unlock(&threads.mu);
    return NULL;
}

/* Waits until every slot thread returned or seconds passed; returns 1
 * when all are done. */
static int worker_wait_slots(long seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&threads.mu);
    while (threads.running > 0)
        if (pthread_cond_timedwait(&threads.cv, &threads.mu, &until) != 0)
            break;
    int done = threads.running == 0;
    pthread_mutex_unlock(&threads.mu);
    return done;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: opencode-worker (configured by environment variables)\n");
        return 2;
    }
    struct cfg cfg;
    char err[512];
    if (cfg_load(&cfg, CFG_ROLE_WORKER, err, sizeof(err)) != 0) {
        fprintf(stderr, "opencode-worker: %s\n", err);
        return 2;
    }
    log_init("opencode-worker", cfg.log_level);
    if (fs_mkdir_p(cfg.data_dir, 0755) != 0) {
        fprintf(stderr, "opencode-worker: could not create DATA_DIR %s\n", cfg.data_dir);
        cfg_free(&cfg);
        return 1;
    }
    if (cfg.sandbox == CFG_SANDBOX_NONE)
        log_warn("worker.unsandboxed", "reason=\"AGENT_SANDBOX=none: the agent can read "
                                       "everything this user can\"");

    struct worker w;
    memset(&w, 0, sizeof(w));
    w.cfg = &cfg;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    threads.ids = calloc((size_t)cfg.worker_concurrency, sizeof(pthread_t));
    if (threads.ids == NULL) {
        cfg_free(&cfg);
        return 1;
    }
    for (long i = 0; i < cfg.worker_concurrency; i++) {
        pthread_mutex_lock(&threads.mu);
        threads.running++;
        pthread_mutex_unlock(&threads.mu);
        if (pthread_create(&threads.ids[i], NULL, worker_slot_wrapper, &w) != 0) {
            pthread_mutex_lock(&threads.mu);
            threads.running--;
            pthread_mutex_unlock(&threads.mu);
            break;
        }
        threads.count++;
    }
    log_info("worker.started", "worker=%s slots=%ld sandbox=%s queue=%s", cfg.worker_id,
             threads.count, cfg.sandbox == CFG_SANDBOX_BWRAP ? "bwrap" : "none",
             cfg.amqp_queue);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("worker.stopping", "signal=%d grace_s=%ld", sig, cfg.worker_grace_s);
    atomic_store(&w.stopping, 1);
    if (!worker_wait_slots(cfg.worker_grace_s)) {
        log_warn("worker.grace_over", "reason=\"handing running jobs back\"");
        atomic_store(&w.aborting, 1);
    }
    for (long i = 0; i < threads.count; i++)
        pthread_join(threads.ids[i], NULL);
    free(threads.ids);
    log_info("worker.stopped", "worker=%s", cfg.worker_id);
    cfg_free(&cfg);
    return 0;
}
