/* session_req.c - see session_req.h. */
#include "session_req.h"

#include <limits.h>
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

/*
 * A small strict decoder rather than OpenSSL's EVP_DecodeBlock: that one
 * skips leading and trailing whitespace, decodes padding as zero bytes
 * the caller must subtract, and accepts non-zero bits before the padding
 * (so several strings decode to the same bytes). Here every string has
 * one meaning or is refused.
 */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long session_b64_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 != 0 || len / 4 > (size_t)(LONG_MAX / 3))
        return -1;
    size_t pad = 0;
    if (len > 0 && in[len - 1] == '=')
        pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
    long n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t real = (i + 4 == len) ? 4 - pad : 4;
        for (size_t k = 0; k < 4; k++) {
            v[k] = k < real ? b64_value((unsigned char)in[i + k]) : 0;
            if (v[k] < 0)
                return -1;
        }
        unsigned long w = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
                          ((unsigned long)v[2] << 6) | (unsigned long)v[3];
        /* The bits the padding leaves unused must be zero. */
        if ((real == 3 && (w & 0xff) != 0) || (real == 2 && (w & 0xffff) != 0))
            return -1;
        unsigned char b[3] = { (unsigned char)(w >> 16), (unsigned char)(w >> 8),
                               (unsigned char)w };
        for (size_t k = 0; k + 1 < real; k++) {
            if (out != NULL)
                out[n] = b[k];
            n++;
        }
    }
    return n;
}

/* Checks files[i]: an object with a string path and exactly one of
 * content and content_base64. *size gets its decoded size. */
static enum session_req_rc session_check_entry(const cJSON *f, long i, int64_t *size,
                                               char *detail, size_t len)
{
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(f, "content");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(f, "content_base64");
    if (!cJSON_IsObject(f) || !cJSON_IsString(path))
        return session_fail(SREQ_INVALID, detail, len,
                            "files[%ld]: must be an object with a string path", i);
    if ((text != NULL) == (b64 != NULL))
        return session_fail(SREQ_CONTENT_FIELDS, detail, len,
                            "files[%ld] (%.200s): give exactly one of content and "
                            "content_base64, not %s", i, path->valuestring,
                            text != NULL ? "both" : "neither");
    if (!cJSON_IsString(text != NULL ? text : b64))
        return session_fail(SREQ_INVALID, detail, len, "files[%ld].%s: must be a string", i,
                            text != NULL ? "content" : "content_base64");
    const char *why;
    if (path_validate(path->valuestring, strlen(path->valuestring), &why) != 0)
        return session_fail(SREQ_INVALID_PATH, detail, len,
                            "Invalid file path: files[%ld].path %s", i, why);
    if (text != NULL) {
        *size = (int64_t)strlen(text->valuestring);
        return SREQ_OK;
    }
    long n = session_b64_decode(b64->valuestring, strlen(b64->valuestring), NULL);
    if (n < 0)
        return session_fail(SREQ_INVALID_BASE64, detail, len,
                            "files[%ld].content_base64 (%.200s): not valid base64 (standard "
                            "alphabet, padded, no whitespace)", i, path->valuestring);
    *size = n;
    return SREQ_OK;
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
        int64_t size = 0;
        status = session_check_entry(f, i, &size, detail, len);
        if (status != SREQ_OK)
            goto out;
        out->bytes += size;
        if (out->bytes > lim->max_session_bytes) {
            status = session_fail(SREQ_TOO_LARGE, detail, len,
                                  "Exceeded max session size of %ld bytes",
                                  lim->max_session_bytes);
            goto out;
        }
        paths[i++] = cJSON_GetObjectItemCaseSensitive(f, "path")->valuestring;
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

int session_file_data(const cJSON *file, const char **data, size_t *len, int *owned)
{
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(file, "content");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(file, "content_base64");
    *owned = 0;
    if (cJSON_IsString(text)) {
        *data = text->valuestring;
        *len = strlen(text->valuestring);
        return 0;
    }
    if (!cJSON_IsString(b64))
        return -1;
    size_t in = strlen(b64->valuestring);
    unsigned char *buf = malloc(in / 4 * 3 + 1);
    if (buf == NULL)
        return -1;
    long n = session_b64_decode(b64->valuestring, in, buf);
    if (n < 0) {
        free(buf);
        return -1;
    }
    *data = (const char *)buf;
    *len = (size_t)n;
    *owned = 1;
    return 0;
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
                            "files: required, must be an array of {path, content} or "
                            "{path, content_base64}");
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

enum session_req_rc session_req_check_files(const cJSON *req, const struct session_limits *lim,
                                            struct session_req *out, char *detail, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(req))
        return session_fail(SREQ_INVALID, detail, len, "request body must be a JSON object");
    const cJSON *m;
    cJSON_ArrayForEach(m, req) {
        if (strcmp(m->string, "files") != 0)
            return session_fail(SREQ_INVALID, detail, len,
                                "only files may be given here (not %.64s)", m->string);
    }
    out->files = cJSON_GetObjectItemCaseSensitive(req, "files");
    if (!cJSON_IsArray(out->files) || cJSON_GetArraySize(out->files) == 0)
        return session_fail(SREQ_INVALID, detail, len,
                            "files: required, must be a non-empty array of {path, content} "
                            "or {path, content_base64}");
    out->count = cJSON_GetArraySize(out->files);
    if (out->count > lim->max_files)
        return session_fail(SREQ_TOO_MANY_FILES, detail, len, "Exceeded max file count of %ld",
                            lim->max_files);
    return session_check_files(lim, out, detail, len);
}
