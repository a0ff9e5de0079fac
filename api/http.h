/*
 * http.h - the few things the API needs from CivetWeb: sending a response,
 * reading query parameters and a bounded body. Knows nothing of JSON,
 * routes or error codes (dispatch.c and render.c do).
 */
#ifndef OC_HTTP_H
#define OC_HTTP_H

#include <stddef.h>

struct mg_connection;

/* Sends a complete response: status, Content-Type, Content-Length, any
 * extra header lines (each ending in \r\n; NULL for none), the request's
 * common header lines (http_set_common_headers()), the body. Returns
 * status. */
int http_send(struct mg_connection *conn, int status, const char *content_type,
              const char *extra_headers, const char *body, size_t len);

/* Sends a status with no body (204) and the request's common header
 * lines; http_send_empty_with() adds extra header lines (NULL for none).
 * Returns status. */
int http_send_empty(struct mg_connection *conn, int status);
int http_send_empty_with(struct mg_connection *conn, int status, const char *extra_headers);

/*
 * Header lines (each ending in \r\n) that every response to the current
 * request carries (the dispatcher's CORS headers). lines must outlive the
 * request; the dispatcher sets them before anything is sent and clears
 * them (NULL) when the request is done. A handler that writes its own
 * response head adds http_common_headers() to it ("" when none).
 */
void http_set_common_headers(struct mg_connection *conn, const char *lines);
const char *http_common_headers(const struct mg_connection *conn);

/*
 * Copies the URL-decoded query parameter name into buf. Returns 1 when
 * present, 0 when absent, -1 when longer than len-1 bytes or when it
 * decodes to a NUL byte.
 */
int http_query(const struct mg_connection *conn, const char *name, char *buf, size_t len);

/*
 * 1 when a query parameter name occurs more than once (compared as
 * CivetWeb's mg_get_var() finds them: URL-decoded, case-insensitive), with
 * that name copied into name (name_len bytes, cut to fit; characters other
 * than letters, digits, _ . - shown as ?). 0 when every name is unique.
 */
int http_query_duplicate(const struct mg_connection *conn, char *name, size_t name_len);

/*
 * 1 when the request's framing is ambiguous: both Content-Length and
 * Transfer-Encoding, or either one more than once. A proxy in front could
 * read such a request's body differently from us (request smuggling), so
 * it is refused and its connection closed (RFC 9112 section 6.3).
 */
int http_framing_ambiguous(const struct mg_connection *conn);

/* Closes the connection once the current response is sent (no keep-alive). */
void http_close_after(struct mg_connection *conn);

enum http_body_rc {
    HTTP_BODY_OK = 0,
    HTTP_BODY_TOO_LARGE,       /* over max: from Content-Length, or while reading */
    HTTP_BODY_SHORT,           /* the client sent less than Content-Length */
    HTTP_BODY_READ_FAILED,     /* the connection failed mid-body */
    HTTP_BODY_NO_MEMORY,       /* the body (sized by the client) did not fit in memory */
    HTTP_BODY_TIMEOUT,         /* the body took longer than timeout_ms to arrive */
};

/*
 * Reads the whole request body, refusing more than max bytes: from
 * Content-Length before reading anything, or while reading a chunked
 * body. CivetWeb bounds each read by request_timeout_ms, not the whole
 * body; the body as a whole gets timeout_ms from the first read, so a
 * client trickling a byte at a time holds the thread for at most about
 * twice timeout_ms. On HTTP_BODY_OK *out is a malloc'd, NUL-terminated
 * buffer of *len bytes (caller frees); otherwise *out is NULL.
 */
enum http_body_rc http_read_body(struct mg_connection *conn, size_t max, long timeout_ms,
                                 char **out, size_t *len);

/* Percent-encodes s (RFC 3986 unreserved characters stay) into out.
 * Returns 0, or -1 when out_len is too small. */
int http_url_encode(const char *s, char *out, size_t out_len);

/* The request's method and path (without the query string). */
const char *http_method(const struct mg_connection *conn);
const char *http_path(const struct mg_connection *conn);

#endif
