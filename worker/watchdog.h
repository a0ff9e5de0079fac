/*
 * watchdog.h - samples what one job uses while its agent runs, and says
 * when a limit is passed.
 *
 * Every process of the job runs as the job's leased uid (uidlease.h), and
 * nothing else does, so one pass over /proc filtered by real uid finds
 * them all, whatever process group or PID namespace they are in:
 *   memory: the sum of VmRSS (pages shared between processes count once
 *           per process: an over-estimate, never an under-estimate);
 *   CPU:    utime+stime+cutime+cstime, so children that ended and were
 *           reaped inside the job still count; the largest sum seen is
 *           kept (a parent that exits takes its children's time along);
 *   tasks:  the sum of Threads (what RLIMIT_NPROC counts);
 * and, every disk_every samples, the apparent size of the workspace and
 * HOME (fs_usage, bounded walk).
 *
 * Used by one slot thread per job (struct watchdog is not shared);
 * watchdog_scan() keeps no state.
 */
#ifndef OC_WORKER_WATCHDOG_H
#define OC_WORKER_WATCHDOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "joberr.h"

/* One pass over /proc for one uid. */
struct wd_usage {
    uint64_t rss_kb;
    uint64_t cpu_ms;
    uint64_t tasks;          /* threads of live processes */
    uint64_t procs;          /* live (non-zombie) processes */
};

/* Sums the processes whose real uid is uid, from proc_root ("/proc").
 * Returns 0 or a negative errno (proc_root unreadable). */
int watchdog_scan(const char *proc_root, uid_t uid, struct wd_usage *out);

struct watchdog {
    /* set by the caller */
    int         by_uid;          /* 0: no uid of its own: disk only */
    uid_t       uid;
    long        max_memory_mb;   /* JOB_MAX_MEMORY_MB */
    long        max_procs;       /* JOB_MAX_PROCS */
    long        max_cpu_s;       /* JOB_MAX_CPU_S */
    long        max_disk_mb;     /* JOB_MAX_DISK_MB */
    uint64_t    max_disk_files;  /* bound of the disk walk */
    const char *dirs[2];         /* workspace and HOME; NULL entries skipped */
    unsigned    disk_every;      /* sample the disk every N checks (>= 1) */
    /* state */
    unsigned    checks;
    uint64_t    cpu_ms_max;
    uint64_t    rss_kb_max;      /* peaks, for the job's usage log line */
    uint64_t    tasks_max;
    uint64_t    disk_max;
    struct wd_usage last;
};

/*
 * One sample. Returns JOBERR_NONE, or the limit passed
 * (JOBERR_MEMORY_LIMIT, JOBERR_PROCESS_LIMIT, JOBERR_CPU_LIMIT,
 * JOBERR_DISK_LIMIT) with the job's error text in msg, naming the limit,
 * its value and its variable.
 */
enum joberr watchdog_check(struct watchdog *wd, char *msg, size_t len);

#endif
