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
#include <unistd.h>

#include "fsutil.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "prog.h"
#include "sandbox.h"
#include "timefmt.h"
#include "worker.h"
#include "xalloc.h"

struct worker_threads {
    pthread_t *ids;
    long count;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* monotonic: prog_cond_init() */
    long running;
};

static struct worker_threads threads = { .mu = PTHREAD_MUTEX_INITIALIZER };

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
    int64_t until = time_mono_ms() + seconds * 1000;
    pthread_mutex_lock(&threads.mu);
    while (threads.running > 0) {
        int64_t left = until - time_mono_ms();
        if (left <= 0 || prog_cond_wait_ms(&threads.cv, &threads.mu, (long)left) != 0)
            break;
    }
    int done = threads.running == 0;
    pthread_mutex_unlock(&threads.mu);
    return done;
}

/*
 * Containment set-up (sandbox.h): as root, each agent gets a uid of its
 * own (the lock folder must be usable now, not at the first job); as
 * another user, agents run as that user, without RLIMIT_NPROC and the
 * watchdog's per-uid sums. Returns 0, or 1 with a message.
 */
static int worker_containment(struct worker *w, const struct cfg *cfg)
{
    w->own_uids = geteuid() == 0;
    if (w->own_uids) {
        int rc = fs_mkdir_p(cfg->agent_uid_lock_dir, 0700);
        if (rc != 0) {
            fprintf(stderr, "opencode-worker: could not create AGENT_UID_LOCK_DIR %s: %s\n",
                    cfg->agent_uid_lock_dir, strerror(-rc));
            return 1;
        }
    } else {
        log_warn("worker.shared_uid", "reason=\"not root: agents run as this user, without "
                                      "their own uid, RLIMIT_NPROC or the memory, CPU and "
                                      "process watchdog\"");
    }
    if (cfg->sandbox == CFG_SANDBOX_BWRAP && cfg->egress != CFG_EGRESS_OPEN &&
        access(GATEWAY_BRIDGE_BIN, X_OK) != 0) {
        fprintf(stderr, "opencode-worker: %s is missing (Debian package socat): agents have "
                        "no network of their own (AGENT_EGRESS=%s), and it is their bridge "
                        "to the provider gateway\n", GATEWAY_BRIDGE_BIN,
                cfg->egress == CFG_EGRESS_NONE ? "none" : "allowlist");
        return 1;
    }
    if (cfg->sandbox == CFG_SANDBOX_BWRAP) {
        w->disable_userns = sandbox_probe_disable_userns(cfg->bwrap_bin);
        if (!w->disable_userns)
            log_warn("worker.userns_allowed", "reason=\"bwrap --disable-userns does not work "
                                              "here (nested user namespace?): agents may "
                                              "create user namespaces (seccomp still refuses "
                                              "unshare/clone of one)\"");
    }
    return 0;
}

/* Starts the slot threads; threads.count gets how many started. */
static void worker_start_slots(struct worker *w, long n)
{
    threads.ids = xcalloc((size_t)n, sizeof(pthread_t));
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&threads.mu);
        threads.running++;
        pthread_mutex_unlock(&threads.mu);
        if (pthread_create(&threads.ids[i], NULL, worker_slot_wrapper, w) != 0) {
            pthread_mutex_lock(&threads.mu);
            threads.running--;
            pthread_mutex_unlock(&threads.mu);
            break;
        }
        threads.count++;
    }
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: opencode-worker (configured by environment variables)\n");
        return 2;
    }
    struct cfg cfg;
    int rc = prog_init("opencode-worker", CFG_ROLE_WORKER, &cfg);
    if (rc != 0)
        return rc;
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
    if (worker_containment(&w, &cfg) != 0) {
        cfg_free(&cfg);
        return 1;
    }

    sigset_t sigs;
    prog_signals(&sigs);
    /* METRICS_LISTEN: started before the slots, so it never races them. */
    struct metrics_server *metrics = NULL;
    if (metrics_server_start(&cfg, "opencode-worker", OCM_FOR_WORKER, &metrics) != 0) {
        cfg_free(&cfg);
        return 1;
    }
    prog_cond_init(&threads.cv);
    worker_start_slots(&w, cfg.worker_concurrency);
    log_info("worker.started", "worker=%s slots=%ld sandbox=%s queue=%s own_uids=%s "
             "disable_userns=%s", cfg.worker_id, threads.count,
             cfg.sandbox == CFG_SANDBOX_BWRAP ? "bwrap" : "none", cfg.amqp_queue,
             w.own_uids ? "yes" : "no", w.disable_userns ? "yes" : "no");

    int sig = prog_wait_signal(&sigs, -1);
    log_info("worker.stopping", "signal=%d grace_s=%ld", sig, cfg.worker_grace_s);
    atomic_store(&w.stopping, 1);
    if (!worker_wait_slots(cfg.worker_grace_s)) {
        log_warn("worker.grace_over", "reason=\"handing running jobs back\"");
        atomic_store(&w.aborting, 1);
    }
    for (long i = 0; i < threads.count; i++)
        pthread_join(threads.ids[i], NULL);
    free(threads.ids);
    pthread_cond_destroy(&threads.cv);
    metrics_server_stop(metrics);
    log_info("worker.stopped", "worker=%s", cfg.worker_id);
    cfg_free(&cfg);
    return 0;
}
