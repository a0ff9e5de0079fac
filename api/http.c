/* http.c - see http.h. */
#include "http.h"
#include "jsonutil.h"

#include <civetweb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *http_reason(int status)
{
    const char *r = mg_get_response_code_text(NULL, status);
    return r ? r : "";
}

int http_send_json(struct mg_connection *conn, int status, cJSON *body)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (text == NULL) {
        static const char oom[] = "{\"detail\":\"out of memory\"}";
        mg_printf(conn,
                  "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n%s", sizeof(oom) - 1, oom);
        return 500;
    }
    size_t n = strlen(text);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
              "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
              status, http_reason(status), n);
    mg_write(conn, text, n);
    free(text);
    return status;
}

int http_send_error(struct mg_connection *conn, int status, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && cJSON_AddStringToObject(o, "detail", detail) == NULL) {
        cJSON_Delete(o);
        o = NULL;
    }
    return http_send_json(conn, status, o);
}

int http_send_errorf(struct mg_connection *conn, int status, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return http_send_error(conn, status, detail);
}

int http_send_empty(struct mg_connection *conn, int status)
{
    mg_printf(conn, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status,
              http_reason(status));
    return status;
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

int http_read_body(struct mg_connection *conn, size_t max, char **out, size_t *len)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    long long declared = ri->content_length;
    *out = NULL;
    *len = 0;
    if (declared > (long long)max)
        return http_send_errorf(conn, 413, "request body is larger than the limit of %zu bytes",
                                max);

    /* Known length: one allocation. Chunked (-1): grow up to max + 1
     * bytes; reaching max + 1 proves the body is too large. */
    size_t limit = declared >= 0 ? (size_t)declared : max + 1;
    size_t cap = declared >= 0 ? (size_t)declared : (limit < 64 * 1024 ? limit : 64 * 1024);
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return http_send_error(conn, 500, "out of memory");
    size_t used = 0;
    for (;;) {
        if (declared >= 0 && used == (size_t)declared)
            break;
        if (used > max) {
            free(buf);
            return http_send_errorf(conn, 413, "request body is larger than the limit of %zu bytes",
                                    max);
        }
        if (used == cap) {
            size_t ncap = cap * 2 > limit ? limit : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                free(buf);
                return http_send_error(conn, 500, "out of memory");
            }
            buf = nb;
            cap = ncap;
        }
        int want = (cap - used) > (1 << 20) ? (1 << 20) : (int)(cap - used);
        int n = mg_read(conn, buf + used, (size_t)want);
        if (n < 0) {
            free(buf);
            return http_send_error(conn, 400, "could not read the request body");
        }
        if (n == 0) {
            if (declared >= 0) {
                free(buf);
                return http_send_error(conn, 400, "request body is shorter than Content-Length");
            }
            break;
        }
        used += (size_t)n;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return 0;
}

int http_read_json(struct mg_connection *conn, size_t max, cJSON **out)
{
    char *body = NULL;
    size_t len = 0;
    *out = NULL;
    int status = http_read_body(conn, max, &body, &len);
    if (status != 0)
        return status;
    const char *why = NULL;
    *out = json_parse_body(body, len, &why);
    free(body);
    return *out != NULL ? 0 : http_send_error(conn, 400, why);
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

int http_method_is(const struct mg_connection *conn, const char *m)
{
    return strcmp(mg_get_request_info(conn)->request_method, m) == 0;
}

int http_method_not_allowed(struct mg_connection *conn, const char *allow)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "detail", "Method Not Allowed");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = text ? strlen(text) : 0;
    mg_printf(conn,
              "HTTP/1.1 405 Method Not Allowed\r\nAllow: %s\r\n"
              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
              allow, n);
    if (text)
        mg_write(conn, text, n);
    free(text);
    return 405;
}
