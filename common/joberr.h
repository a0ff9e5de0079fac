/*
 * joberr.h - why a job ended without success: the stable error_code of a
 * job, beside its human-readable error.
 *
 * The names are part of the API (GET /job/status "error_code") and of the
 * database (jobs.error_code), listed in README. Add new ones at the end;
 * never rename one.
 */
#ifndef OC_JOBERR_H
#define OC_JOBERR_H

enum joberr {
    JOBERR_NONE = 0,
    JOBERR_TIMEOUT,          /* "timeout": killed at its timeout_s */
    JOBERR_AGENT_FAILED,     /* "agent_failed": opencode exited non-zero or reported an error */
    JOBERR_AGENT_KILLED,     /* "agent_killed": the agent died of a signal it did not get from us */
    JOBERR_AGENT_START,      /* "agent_start_failed": the agent (or its sandbox) could not start */
    JOBERR_WORKSPACE,        /* "workspace_failed": the workspace could not be prepared */
    JOBERR_OUTPUT,           /* "output_failed": the outputs could not be listed or published */
    JOBERR_WORKER_LOST,      /* "worker_lost": its worker stopped renewing the lease, too often */
    JOBERR_CANCELLED,        /* "cancelled": a client cancelled it (POST /job/cancel, DELETE /session) */
    JOBERR_INTERNAL,         /* "internal_error": a bug or an unexpected failure of the worker */
    JOBERR_MEMORY_LIMIT,     /* "memory_limit": over JOB_MAX_MEMORY_MB */
    JOBERR_PROCESS_LIMIT,    /* "process_limit": over JOB_MAX_PROCS */
    JOBERR_CPU_LIMIT,        /* "cpu_limit": over JOB_MAX_CPU_S */
    JOBERR_DISK_LIMIT,       /* "disk_limit": workspace and HOME over JOB_MAX_DISK_MB */
    JOBERR_OUTPUT_LIMIT,     /* "output_limit": over JOB_MAX_OUTPUT_FILES or JOB_MAX_OUTPUT_BYTES */
    JOBERR_BUDGET_EXCEEDED,  /* "budget_exceeded": its key's max_tokens_per_job or max_usd_per_day */
    JOBERR_COUNT_
};

/* The wire name of e ("timeout", ...); NULL for JOBERR_NONE. */
const char *joberr_name(enum joberr e);

#endif
