/*
 * errcode.h - the API's error vocabulary: every error body is
 * {"detail": "<for people>", "code": "<for programs>"}, and each code has
 * one HTTP status. The codes are part of the API (listed in README); add
 * new ones at the end, never rename one.
 */
#ifndef OC_ERRCODE_H
#define OC_ERRCODE_H

enum errcode {
    ERR_BAD_REQUEST,         /* 400 bad_request: malformed HTTP or body */
    ERR_INVALID_JSON,        /* 400 invalid_json: the body is not acceptable JSON */
    ERR_INVALID_PATH,        /* 400 invalid_path: a file path breaks the path rules */
    ERR_TOO_MANY_FILES,      /* 400 too_many_files: over MAX_FILES */
    ERR_SESSION_TOO_LARGE,   /* 400 session_too_large: over MAX_SESSION_BYTES */
    ERR_UNAUTHORIZED,        /* 401 unauthorized: bad or missing X-API-Key */
    ERR_NOT_FOUND,           /* 404 not_found: unknown, not yours, or expired */
    ERR_METHOD_NOT_ALLOWED,  /* 405 method_not_allowed */
    ERR_SESSION_BUSY,        /* 409 session_busy: a job of the session is running */
    ERR_CONFLICT,            /* 409 conflict: the state changed meanwhile, retry */
    ERR_BODY_TOO_LARGE,      /* 413 body_too_large: over MAX_BODY_BYTES */
    ERR_VALIDATION,          /* 422 validation_error: a missing or mistyped field */
    ERR_INTERNAL,            /* 500 internal_error */
    ERR_DB_UNAVAILABLE,      /* 503 database_unavailable: retry shortly */
    ERR_OUT_OF_MEMORY,       /* 503 out_of_memory: this request alone could not be served */
    ERR_DUPLICATE_PARAMETER, /* 400 duplicate_parameter: a query parameter given twice */
    ERR_QUOTA_EXCEEDED,      /* 429 quota_exceeded: a per-key quota is reached */
    ERR_NOT_READY,           /* 503 not_ready: /ready, a dependency is down */
    ERR_GONE,                /* 410 job_pruned: the job's outputs were pruned */
    ERR_JOB_ENDED,           /* 409 job_ended: the job already ended (cancel) */
    ERR_TOO_MANY_STREAMS,    /* 429 too_many_streams: per-key cap on open streams */
    ERR_IDEMPOTENCY_REUSED,  /* 422 idempotency_key_reused: same key, other body */
    ERR_IDEMPOTENCY_IN_FLIGHT, /* 409 idempotency_in_flight: first request still running */
    ERR_INVALID_ARCHIVE,     /* 400 invalid_archive: an uploaded .tar.gz is refused */
    ERR_INVALID_BASE64,      /* 400 invalid_base64: content_base64 does not decode */
    ERR_COUNT_
};

/* The HTTP status and the wire name of e. */
int errcode_status(enum errcode e);
const char *errcode_name(enum errcode e);

#endif
