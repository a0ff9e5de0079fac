/*
 * uidlease.h - one unprivileged uid per live sandbox, leased from
 * AGENT_UID_RANGE through a lock file per uid on this host.
 *
 * A lease is an open file description of <dir>/<uid>.lock holding
 * flock(LOCK_EX): several worker processes (and several slots of one
 * process: each lease opens the file anew, and flock locks belong to the
 * open file description) never hold the same uid at once, and a worker
 * that dies loses its locks with its descriptors. The folder must be
 * host-local (flock on NFS is not this). The descriptor is close-on-exec
 * and never reaches the agent.
 *
 * Ownership: the caller owns the lease until uidlease_release(). Thread
 * safe: no shared state besides an atomic counter that spreads the slots'
 * first guesses.
 */
#ifndef OC_WORKER_UIDLEASE_H
#define OC_WORKER_UIDLEASE_H

#include <sys/types.h>

struct uid_lease {
    int   fd;                /* -1: no lease */
    uid_t uid;
};

/* An empty lease (fd -1), safe to release. */
#define UID_LEASE_NONE { -1, 0 }

/*
 * Creates dir when missing (0700, parents too), then locks the first free
 * uid of [min, max]. Returns 0 with *out filled, -EAGAIN when every uid of
 * the range is leased, or another negative errno (dir cannot be created or
 * opened: the caller names AGENT_UID_LOCK_DIR).
 */
int uidlease_acquire(const char *dir, long min, long max, struct uid_lease *out);

/* Gives the uid back (closes the lock). Accepts an empty lease. */
void uidlease_release(struct uid_lease *l);

#endif
