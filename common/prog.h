/*
 * prog.h - what the three programs share at start-up and in their loops:
 * configuration and log set-up, signal handling, reconnect backoff and
 * waits on the monotonic clock.
 */
#ifndef OC_PROG_H
#define OC_PROG_H

#include <pthread.h>
#include <signal.h>

#include "config.h"

/*
 * Loads the configuration for roles (enum cfg_role), starts the log under
 * program's name and routes cJSON's allocations through xalloc. Returns 0,
 * or 2 (the exit code) after printing "program: reason" on stderr.
 */
int prog_init(const char *program, unsigned roles, struct cfg *cfg);

/*
 * Blocks SIGINT and SIGTERM in the calling thread, and so in every thread
 * it starts afterwards, and ignores SIGPIPE. *set gets the two signals for
 * prog_wait_signal(). Call before starting threads.
 */
void prog_signals(sigset_t *set);

/* Waits for a signal of set for up to ms (< 0: forever). Returns the
 * signal, or 0 when the time passed. */
int prog_wait_signal(const sigset_t *set, long ms);

/* The next reconnect delay after cur (0 = none yet): 0.5 s, doubling up
 * to 30 s. */
long prog_backoff(long cur_ms);

/* Sleeps ms milliseconds (resumes after signals). */
void prog_sleep_ms(long ms);

/* A condition variable that times out on the monotonic clock. */
void prog_cond_init(pthread_cond_t *cv);

/* pthread_cond_wait() for at most ms. Returns 0 when woken, ETIMEDOUT. */
int prog_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);

#endif
