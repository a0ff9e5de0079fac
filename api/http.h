/*
 * http.h - JSON replies and request parsing on top of CivetWeb.
 *
 * Errors follow the seed service (FastAPI): a JSON body {"detail": "..."}
 * with a 4xx/5xx status. Handlers return the value of these functions,
 * which is what CivetWeb expects from a handler (the status code).
 */
#ifndef OC_HTTP_H
#define OC_HTTP_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct mg_connection;

/* Sends status with body as JSON and frees body. Returns status. */
int http_send_json(struct mg_connection *conn, int status, cJSON *body);

/* Sends {"detail": detail}. Returns status. */
int http_send_error(struct mg_connection *conn, int status, const char *detail);

/* Sends status with printf-formatted detail. */
int http_send_errorf(struct mg_connection *conn, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends a status with no body (204). */
int http_send_empty(struct mg_connection *conn, int status);

/*
 * Copies the URL-decoded query parameter name into buf. Returns 1 when
 * present, 0 when absent, -1 when longer than len-1 bytes.
 */
int http_query(const struct mg_connection *conn, const char *name, char *buf, size_t len);

/*
 * Reads the whole request body, refusing more than max bytes: from
 * Content-Length before reading anything, or while reading a chunked
 * body. Returns 0 with a malloc'd buffer in *out (caller frees), or an
 * HTTP status (413, 400) after answering it.
 */
int http_read_body(struct mg_connection *conn, size_t max, char **out, size_t *len);

/*
 * http_read_body() then json_parse_body(): returns 0 with the tree in
 * *out (caller cJSON_Delete()s it), or the status after answering 413 or
 * 400 naming the problem.
 */
int http_read_json(struct mg_connection *conn, size_t max, cJSON **out);

/* Percent-encodes s (RFC 3986 unreserved characters stay) into out.
 * Returns 0, or -1 when out_len is too small. */
int http_url_encode(const char *s, char *out, size_t out_len);

/* 1 when the request method equals m. */
int http_method_is(const struct mg_connection *conn, const char *m);

/* Answers 405 naming the allowed methods. */
int http_method_not_allowed(struct mg_connection *conn, const char *allow);

#endif
