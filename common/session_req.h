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
    const cJSON *files;     /* array of {path, content} or {path, content_base64} */
    const cJSON *env;       /* object of strings, or NULL */
    long ttl_s;
    long count;
    int64_t bytes;          /* sum of content lengths (decoded bytes) */
};

/* What is wrong with a body; the API maps each to its status and code. */
enum session_req_rc {
    SREQ_OK = 0,
    SREQ_INVALID,           /* a missing or mistyped field */
    SREQ_INVALID_PATH,      /* a path that breaks the path rules */
    SREQ_TOO_MANY_FILES,    /* more than max_files */
    SREQ_TOO_LARGE,         /* content over max_session_bytes */
    SREQ_NO_MEMORY,         /* could not check it: out of memory */
    SREQ_INVALID_BASE64,    /* content_base64 is not strict base64 */
    SREQ_CONTENT_FIELDS,    /* a file with both or neither of content, content_base64 */
};

/*
 * Checks a parsed body: files (count, each an object with a path and
 * exactly one of content (UTF-8 text) and content_base64 (strict RFC 4648
 * base64, see session_b64_decode), each path valid and distinct, total
 * decoded size), ttl_seconds, env (names valid and not reserved, values strings of
 * bounded size). Returns SREQ_OK with *out filled, or what is wrong with a
 * reason in detail. Messages name fields, variable names and file paths,
 * never contents or variable values.
 */
enum session_req_rc session_req_check(const cJSON *req, const struct session_limits *lim,
                                      struct session_req *out, char *detail,
                                      size_t detail_len);

/*
 * The same checks on the files alone: the body of PUT /session/files,
 * {"files": [...]} (other members are refused). *out gets files, count
 * and bytes; ttl_s and env stay 0/NULL.
 */
enum session_req_rc session_req_check_files(const cJSON *req, const struct session_limits *lim,
                                            struct session_req *out, char *detail,
                                            size_t detail_len);

/*
 * The bytes of one checked file entry: content's text, or content_base64
 * decoded into a malloc'd buffer. *data is owned by the caller when
 * *owned is 1 (free() it), else it points into the tree. Returns 0, or
 * -1 when the entry is not valid (never for an entry the check accepted)
 * or memory ran out.
 */
int session_file_data(const cJSON *file, const char **data, size_t *len, int *owned);

/*
 * Strict base64 (RFC 4648 section 4, the standard alphabet, padded): no
 * whitespace, no characters outside the alphabet, "=" only as the final
 * one or two characters of a length that is a multiple of 4, and the
 * unused bits before padding zero (one encoding per byte string). With
 * out NULL only checks. Returns the decoded length, or -1.
 */
long session_b64_decode(const char *in, size_t len, unsigned char *out);

#endif
