/*
 * session_req.h - the checks on a POST /session body, apart from HTTP.
 *
 * The route, the body fuzzer and the parse benchmark all run this one
 * function, so what is fuzzed and measured is what the API does.
 */
#ifndef OC_SESSION_REQ_H
#define OC_SESSION_REQ_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Per-session variables: a handful of tokens, not a data channel. */
#define SESSION_MAX_ENV       64
#define SESSION_MAX_ENV_VALUE (32 * 1024)

struct session_limits {
    long max_files;
    long max_session_bytes;
    long default_ttl_s;
    long max_ttl_s;
};

/* A validated body; pointers into the caller's tree. */
struct session_req {
    const cJSON *files;     /* array of {path, content} */
    const cJSON *env;       /* object of strings, or NULL */
    long ttl_s;
    long count;
    int64_t bytes;          /* sum of content lengths */
};

/* What is wrong with a body; the API maps each to its status and code. */
enum session_req_rc {
    SREQ_OK = 0,
    SREQ_INVALID,           /* a missing or mistyped field */
    SREQ_INVALID_PATH,      /* a path that breaks the path rules */
    SREQ_TOO_MANY_FILES,    /* more than max_files */
    SREQ_TOO_LARGE,         /* content over max_session_bytes */
    SREQ_NO_MEMORY,         /* could not check it: out of memory */
};

/*
 * Checks a parsed body: files (count, each path valid and distinct, total
 * size), ttl_seconds, env (names valid and not reserved, values strings of
 * bounded size). Returns SREQ_OK with *out filled, or what is wrong with a
 * reason in detail. Messages name fields and variable names, never values.
 */
enum session_req_rc session_req_check(const cJSON *req, const struct session_limits *lim,
                                      struct session_req *out, char *detail,
                                      size_t detail_len);

#endif
