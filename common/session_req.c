/* session_req.c - see session_req.h. */
#include "session_req.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jsonutil.h"
#include "path.h"

static enum session_req_rc session_fail(enum session_req_rc rc, char *detail, size_t len,
                                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum session_req_rc session_fail(enum session_req_rc rc, char *detail, size_t len,
                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return rc;
}

static enum session_req_rc session_check_files(const struct session_limits *lim, struct session_req *out,
                               char *detail, size_t len)
{
    const char **paths = calloc((size_t)out->count + 1, sizeof(*paths));
    if (paths == NULL)
        return session_fail(SREQ_NO_MEMORY, detail, len, "out of memory");
    enum session_req_rc status = SREQ_OK;
    long i = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, out->files) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(f, "content");
        const char *why;
        if (!cJSON_IsObject(f) || !cJSON_IsString(path) || !cJSON_IsString(content)) {
            status = session_fail(SREQ_INVALID, detail, len,
                                  "files[%ld]: must be an object with string path and content", i);
            goto out;
        }
        if (path_validate(path->valuestring, strlen(path->valuestring), &why) != 0) {
            status = session_fail(SREQ_INVALID_PATH, detail, len,
                                  "Invalid file path: files[%ld].path %s", i, why);
            goto out;
        }
        out->bytes += (int64_t)strlen(content->valuestring);
        if (out->bytes > lim->max_session_bytes) {
            status = session_fail(SREQ_TOO_LARGE, detail, len,
                                  "Exceeded max session size of %ld bytes",
                                  lim->max_session_bytes);
            goto out;
        }
        paths[i++] = path->valuestring;
    }
    size_t bad = 0;
    const char *why = NULL;
    int rc = path_list_check(paths, (size_t)out->count, &bad, &why);
    if (rc == -2)
        status = session_fail(SREQ_NO_MEMORY, detail, len, "out of memory");
    else if (rc != 0)
        status = session_fail(SREQ_INVALID_PATH, detail, len,
                              "Invalid file path: files[%zu].path %s", bad, why);
out:
    free(paths);
    return status;
}

static enum session_req_rc session_check_env(struct session_req *out, char *detail, size_t len)
{
    if (!cJSON_IsObject(out->env) || cJSON_GetArraySize(out->env) > SESSION_MAX_ENV)
        return session_fail(SREQ_INVALID, detail, len,
                            "env: must be an object of at most %d string values",
                            SESSION_MAX_ENV);
    const cJSON *e;
    cJSON_ArrayForEach(e, out->env) {
        if (!cfg_env_name_valid(e->string))
            return session_fail(SREQ_INVALID, detail, len,
                                "env: variable names must match [A-Za-z_][A-Za-z0-9_]*");
        if (cfg_env_name_reserved(e->string))
            return session_fail(SREQ_INVALID, detail, len, "env: %s is a reserved name", e->string);
        if (!cJSON_IsString(e) || strlen(e->valuestring) > SESSION_MAX_ENV_VALUE)
            return session_fail(SREQ_INVALID, detail, len,
                                "env: %s must be a string of at most %d bytes", e->string,
                                SESSION_MAX_ENV_VALUE);
    }
    return SREQ_OK;
}

enum session_req_rc session_req_check(const cJSON *req, const struct session_limits *lim,
                                      struct session_req *out, char *detail, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(req))
        return session_fail(SREQ_INVALID, detail, len, "request body must be a JSON object");

    out->files = cJSON_GetObjectItemCaseSensitive(req, "files");
    if (!cJSON_IsArray(out->files))
        return session_fail(SREQ_INVALID, detail, len,
                            "files: required, must be an array of {path, content}");
    out->count = cJSON_GetArraySize(out->files);
    if (out->count > lim->max_files)
        return session_fail(SREQ_TOO_MANY_FILES, detail, len, "Exceeded max file count of %ld",
                            lim->max_files);

    out->ttl_s = lim->default_ttl_s;
    if (json_get_int(req, "ttl_seconds", 1, lim->max_ttl_s, &out->ttl_s) != 0)
        return session_fail(SREQ_INVALID, detail, len,
                            "ttl_seconds: must be an integer from 1 to %ld", lim->max_ttl_s);

    enum session_req_rc status = session_check_files(lim, out, detail, len);
    if (status != SREQ_OK)
        return status;

    out->env = cJSON_GetObjectItemCaseSensitive(req, "env");
    if (cJSON_IsNull(out->env))
        out->env = NULL;
    return out->env != NULL ? session_check_env(out, detail, len) : SREQ_OK;
}
