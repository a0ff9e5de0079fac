/* errcode.c - see errcode.h. */
#include "errcode.h"

static const struct {
    int         status;
    const char *name;
} errcode_table[ERR_COUNT_] = {
    [ERR_BAD_REQUEST]        = { 400, "bad_request" },
    [ERR_INVALID_JSON]       = { 400, "invalid_json" },
    [ERR_INVALID_PATH]       = { 400, "invalid_path" },
    [ERR_TOO_MANY_FILES]     = { 400, "too_many_files" },
    [ERR_SESSION_TOO_LARGE]  = { 400, "session_too_large" },
    [ERR_UNAUTHORIZED]       = { 401, "unauthorized" },
    [ERR_NOT_FOUND]          = { 404, "not_found" },
    [ERR_METHOD_NOT_ALLOWED] = { 405, "method_not_allowed" },
    [ERR_SESSION_BUSY]       = { 409, "session_busy" },
    [ERR_CONFLICT]           = { 409, "conflict" },
    [ERR_BODY_TOO_LARGE]     = { 413, "body_too_large" },
    [ERR_VALIDATION]         = { 422, "validation_error" },
    [ERR_INTERNAL]           = { 500, "internal_error" },
    [ERR_DB_UNAVAILABLE]     = { 503, "database_unavailable" },
    [ERR_OUT_OF_MEMORY]      = { 503, "out_of_memory" },
    [ERR_DUPLICATE_PARAMETER] = { 400, "duplicate_parameter" },
    [ERR_QUOTA_EXCEEDED]     = { 429, "quota_exceeded" },
    [ERR_NOT_READY]          = { 503, "not_ready" },
    [ERR_GONE]               = { 410, "job_pruned" },
    [ERR_JOB_ENDED]          = { 409, "job_ended" },
    [ERR_TOO_MANY_STREAMS]   = { 429, "too_many_streams" },
    [ERR_IDEMPOTENCY_REUSED] = { 422, "idempotency_key_reused" },
    [ERR_IDEMPOTENCY_IN_FLIGHT] = { 409, "idempotency_in_flight" },
    [ERR_INVALID_ARCHIVE]    = { 400, "invalid_archive" },
    [ERR_INVALID_BASE64]     = { 400, "invalid_base64" },
};

int errcode_status(enum errcode e)
{
    return (unsigned)e < ERR_COUNT_ ? errcode_table[e].status : 500;
}

const char *errcode_name(enum errcode e)
{
    return (unsigned)e < ERR_COUNT_ ? errcode_table[e].name : "internal_error";
}
