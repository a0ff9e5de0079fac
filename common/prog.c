/* prog.c - see prog.h. */
#include "prog.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "log.h"
#include "xalloc.h"

#define PROG_BACKOFF_FIRST_MS 500
#define PROG_BACKOFF_MAX_MS   30000

int prog_init(const char *program, unsigned roles, struct cfg *cfg)
{
    char err[512];
    xalloc_init_cjson();
    if (cfg_load(cfg, roles, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", program, err);
        return 2;
    }
    log_init(program, cfg->log_level);
    log_set_format(cfg->log_format == CFG_LOG_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    return 0;
}

void prog_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int prog_wait_signal(const sigset_t *set, long ms)
{
    if (ms < 0) {
        int sig = 0;
        return sigwait(set, &sig) == 0 ? sig : 0;
    }
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

long prog_backoff(long cur_ms)
{
    if (cur_ms <= 0)
        return PROG_BACKOFF_FIRST_MS;
    return cur_ms * 2 > PROG_BACKOFF_MAX_MS ? PROG_BACKOFF_MAX_MS : cur_ms * 2;
}

void prog_sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void prog_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

int prog_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cv, mu, &until);
}
