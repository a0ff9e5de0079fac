/*
 * cgroup.h - the optional cgroup v2 folder of one job, below a subtree
 * the operator delegated to the worker (CGROUP_ROOT). Without
 * CGROUP_ROOT nothing here runs: the worker never creates or touches a
 * cgroup it was not given.
 *
 * <root>/job-<job>-<token> gets memory.max, memory.oom.group, pids.max
 * and cpu.max; the agent's first process moves itself in (writes "0" to
 * cgroup.procs from the forked child, before exec: sandbox.h) so
 * everything it starts is charged there; memory.events and pids.events
 * tell afterwards whether the kernel enforced a limit; the folder is
 * removed when the job's processes are gone.
 *
 * Only plain file operations, so the unit test runs it against a fake
 * folder of plain files. Used by one slot thread per job.
 */
#ifndef OC_WORKER_CGROUP_H
#define OC_WORKER_CGROUP_H

#include <limits.h>

#include "joberr.h"

/* The CPU bandwidth given to one job's cgroup (cpu.max), in CPUs. */
#define CGROUP_JOB_CPUS 2

struct cgroup_job {
    char dir[PATH_MAX];      /* "": none */
};

struct cgroup_limits {
    long memory_mb;          /* memory.max */
    long procs;              /* pids.max */
    long cpus;               /* cpu.max: this many CPUs' worth of time */
};

/* Creates <root>/<name> (exclusively, 0755) and writes the limits.
 * Returns 0, or a negative errno with nothing left behind. */
int cgroup_job_create(const char *root, const char *name, const struct cgroup_limits *l,
                      struct cgroup_job *cg);

/* Opens the job's cgroup.procs for writing (close-on-exec): the fd the
 * agent's child writes "0" to. Returns the fd or a negative errno. */
int cgroup_job_procs_fd(const struct cgroup_job *cg);

/* What the kernel enforced: JOBERR_MEMORY_LIMIT when memory.events
 * counts an oom_kill, JOBERR_PROCESS_LIMIT when pids.events counts a
 * refused fork, else JOBERR_NONE. */
enum joberr cgroup_job_outcome(const struct cgroup_job *cg);

/* Removes the job's folder (its processes must be gone) and empties cg.
 * Returns 0 or a negative errno. */
int cgroup_job_remove(struct cgroup_job *cg);

#endif
