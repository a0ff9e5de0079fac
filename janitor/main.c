/* main.c - opencode-janitor: runs janitor_sweep() on a schedule. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "fsutil.h"
#include "janitor.h"
#include "log.h"
#include "mq.h"

int main(int argc, char **argv)
{
    int once = argc == 2 && strcmp(argv[1], "--once") == 0;
    if (argc > 1 && !once) {
        fprintf(stderr, "usage: opencode-janitor [--once]\n");
        return 2;
    }
    struct cfg cfg;
    char err[512];
    if (cfg_load(&cfg, CFG_ROLE_JANITOR, err, sizeof(err)) != 0) {
        fprintf(stderr, "opencode-janitor: %s\n", err);
        return 2;
    }
    log_init("opencode-janitor", cfg.log_level);

    /* Signals are taken with sigtimedwait(), which doubles as the sleep
     * between passes. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    PGconn *db = NULL;
    struct mq *mq = NULL;
    log_info("janitor.started", "interval_s=%ld retention_s=%ld", cfg.janitor_interval_s,
             cfg.job_retention_s);
    int rc = 0;
    for (;;) {
        int r = janitor_sweep(&cfg, &db, &mq);
        if (once) {
            rc = r < 0 ? 1 : 0;
            break;
        }
        struct timespec ts = { .tv_sec = cfg.janitor_interval_s, .tv_nsec = 0 };
        if (sigtimedwait(&sigs, NULL, &ts) > 0)
            break;
    }
    log_info("janitor.stopped", "once=%d", once);
    mq_close(mq);
    PQfinish(db);
    cfg_free(&cfg);
    return rc;
}
