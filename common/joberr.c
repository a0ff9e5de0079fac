/* joberr.c - see joberr.h. */
#include "joberr.h"

#include <stddef.h>

static const char *const joberr_names[JOBERR_COUNT_] = {
    [JOBERR_NONE]         = NULL,
    [JOBERR_TIMEOUT]      = "timeout",
    [JOBERR_AGENT_FAILED] = "agent_failed",
    [JOBERR_AGENT_KILLED] = "agent_killed",
    [JOBERR_AGENT_START]  = "agent_start_failed",
    [JOBERR_WORKSPACE]    = "workspace_failed",
    [JOBERR_OUTPUT]       = "output_failed",
    [JOBERR_WORKER_LOST]  = "worker_lost",
    [JOBERR_CANCELLED]    = "cancelled",
    [JOBERR_INTERNAL]     = "internal_error",
    [JOBERR_MEMORY_LIMIT] = "memory_limit",
    [JOBERR_PROCESS_LIMIT] = "process_limit",
    [JOBERR_CPU_LIMIT]    = "cpu_limit",
    [JOBERR_DISK_LIMIT]   = "disk_limit",
    [JOBERR_OUTPUT_LIMIT] = "output_limit",
    [JOBERR_BUDGET_EXCEEDED] = "budget_exceeded",
};

const char *joberr_name(enum joberr e)
{
    return (e > JOBERR_NONE && e < JOBERR_COUNT_) ? joberr_names[e] : NULL;
}
