/* http.c - see http.h. */
#include "http.h"

#include <civetweb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "timefmt.h"
#include "xalloc.h"

/* Largest single mg_read(). */
#define HTTP_READ_CHUNK (1 << 20)
/* First buffer for a chunked body; it doubles up to the limit. */
#define HTTP_CHUNKED_FIRST (64 * 1024)

int http_send(struct mg_connection *conn, int status, const char *content_type,
              const char *extra_headers, const char *body, size_t len)
{
    const char *reason = mg_get_response_code_text(NULL, status);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
              "%s%sContent-Length: %zu\r\n\r\n",
              status, reason ? reason : "", content_type,
              extra_headers ? extra_headers : "", http_common_headers(conn), len);
    if (len > 0)
        mg_write(conn, body, len);
    return status;
}

int http_send_empty(struct mg_connection *conn, int status)
{
    return http_send_empty_with(conn, status, NULL);
}

int http_send_empty_with(struct mg_connection *conn, int status, const char *extra_headers)
{
    const char *reason = mg_get_response_code_text(NULL, status);
    mg_printf(conn, "HTTP/1.1 %d %s\r\n%s%sContent-Length: 0\r\n\r\n", status,
              reason ? reason : "", extra_headers ? extra_headers : "",
              http_common_headers(conn));
    return status;
}

/* Kept in CivetWeb's per-connection user pointer: one request at a time
 * runs on a connection, and the dispatcher clears it after each. */
void http_set_common_headers(struct mg_connection *conn, const char *lines)
{
    mg_set_user_connection_data(conn, (void *)(uintptr_t)lines);
}

const char *http_common_headers(const struct mg_connection *conn)
{
    const char *lines = mg_get_user_connection_data(conn);
    return lines != NULL ? lines : "";
}

int http_query(const struct mg_connection *conn, const char *name, char *buf, size_t len)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->query_string == NULL)
        return 0;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, buf, len);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;          /* -2: does not fit; -3: malformed */
    /* A decoded %00 would silently cut the value short here. */
    if (strlen(buf) != (size_t)n)
        return -1;
    return 1;
}

static int http_name_cmp(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* Copies a parameter name for a message: cut to fit, and only characters
 * that cannot break anything shown as they are. */
static void http_name_copy(char *out, size_t out_len, const char *name)
{
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < out_len; i++) {
        char c = name[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        out[i] = plain ? c : '?';
    }
    out[i] = '\0';
}

int http_query_duplicate(const struct mg_connection *conn, char *name, size_t name_len)
{
    const char *q = mg_get_request_info(conn)->query_string;
    if (q == NULL || *q == '\0')
        return 0;
    /* The query string is part of the request head, so it is bounded by
     * CivetWeb's max_request_size (16 KiB): these are small allocations. */
    size_t len = strlen(q), nparts = 1;
    for (const char *p = q; *p; p++)
        nparts += *p == '&';
    char *buf = xmalloc(len + nparts + 1);
    char **names = xcalloc(nparts, sizeof(*names));
    size_t n = 0, used = 0;
    for (const char *part = q; part != NULL && *part != '\0';) {
        const char *amp = strchr(part, '&');
        size_t plen = amp ? (size_t)(amp - part) : strlen(part);
        const char *eq = memchr(part, '=', plen);
        size_t nlen = eq ? (size_t)(eq - part) : plen;
        int d = mg_url_decode(part, (int)nlen, buf + used, (int)(len + nparts + 1 - used), 1);
        if (plen > 0 && d >= 0) {
            names[n++] = buf + used;
            used += (size_t)d + 1;
        }
        part = amp ? amp + 1 : NULL;
    }
    qsort(names, n, sizeof(*names), http_name_cmp);
    int dup = 0;
    for (size_t i = 1; i < n && !dup; i++) {
        if (strcasecmp(names[i - 1], names[i]) == 0) {
            dup = 1;
            http_name_copy(name, name_len, names[i]);
        }
    }
    free(names);
    free(buf);
    return dup;
}

int http_framing_ambiguous(const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int cl = 0, te = 0;
    for (int i = 0; i < ri->num_headers; i++) {
        cl += strcasecmp(ri->http_headers[i].name, "Content-Length") == 0;
        te += strcasecmp(ri->http_headers[i].name, "Transfer-Encoding") == 0;
    }
    return (cl > 0 && te > 0) || cl > 1 || te > 1;
}

void http_close_after(struct mg_connection *conn)
{
    mg_disable_connection_keep_alive(conn);
}

/* Grows *buf to hold at least need bytes plus a NUL, up to limit. */
static int http_grow(char **buf, size_t *cap, size_t limit)
{
    size_t ncap = *cap * 2 > limit ? limit : *cap * 2;
    char *nb = realloc(*buf, ncap + 1);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

enum http_body_rc http_read_body(struct mg_connection *conn, size_t max, long timeout_ms,
                                 char **out, size_t *len)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    long long declared = mg_get_request_info(conn)->content_length;
    *out = NULL;
    *len = 0;
    if (declared > (long long)max)
        return HTTP_BODY_TOO_LARGE;
    /* Known length: one allocation. Chunked (-1): grow up to max + 1
     * bytes; reaching max + 1 proves the body is too large. */
    size_t limit = declared >= 0 ? (size_t)declared : max + 1;
    size_t cap = declared >= 0 ? limit : (limit < HTTP_CHUNKED_FIRST ? limit : HTTP_CHUNKED_FIRST);
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return HTTP_BODY_NO_MEMORY;
    size_t used = 0;
    enum http_body_rc rc = HTTP_BODY_OK;
    while (declared < 0 || used < (size_t)declared) {
        if (used > max) {
            rc = HTTP_BODY_TOO_LARGE;
            break;
        }
        if (time_mono_ms() > deadline) {
            rc = HTTP_BODY_TIMEOUT;
            break;
        }
        if (used == cap && http_grow(&buf, &cap, limit) != 0) {
            rc = HTTP_BODY_NO_MEMORY;
            break;
        }
        size_t want = cap - used > HTTP_READ_CHUNK ? HTTP_READ_CHUNK : cap - used;
        int n = mg_read(conn, buf + used, want);
        if (n < 0)
            rc = HTTP_BODY_READ_FAILED;
        else if (n == 0 && declared >= 0)
            rc = HTTP_BODY_SHORT;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    if (rc != HTTP_BODY_OK) {
        free(buf);
        return rc;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return HTTP_BODY_OK;
}

int http_url_encode(const char *s, char *out, size_t out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                    *p == '~';
        if (o + (plain ? 1 : 3) >= out_len)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= out_len)
        return -1;
    out[o] = '\0';
    return 0;
}

const char *http_method(const struct mg_connection *conn)
{
    return mg_get_request_info(conn)->request_method;
}

const char *http_path(const struct mg_connection *conn)
{
    return mg_get_request_info(conn)->local_uri;
}
