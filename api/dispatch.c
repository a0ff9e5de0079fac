/*
 * dispatch.c - the route table and the one path every request takes
 * (see api.h): the checks every request passes (framing, duplicate query
 * parameters), CORS (the headers of every response, preflights), route
 * lookup, method check, authentication, the request's database
 * connection, quota answers, and the mapping of failures to statuses and
 * codes.
 */
#include <civetweb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cache.h"
#include "db.h"
#include "http.h"
#include "idempotency.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "render.h"
#include "timefmt.h"
#include "xalloc.h"

/* Longest X-API-Key looked at; real keys are 68 bytes. */
#define API_MAX_KEY_LEN 512
/* How long a request waits for a pooled database connection before it
 * answers 503: long enough to ride out a burst, short enough that a
 * stuck database does not pile up requests. */
#define API_DB_WAIT_MS 5000
/* How long a browser may cache a preflight's answer. */
#define API_CORS_MAX_AGE_S 600
/* Room for the CORS header lines of one response. */
#define API_CORS_HEADERS_MAX 768
/* Longest origin compared with CORS_ALLOW_ORIGINS' entries. */
#define API_CORS_ORIGIN_MAX 256

struct api_route {
    const char *method;
    const char *path;
    int         needs_key;    /* 1, or 1 | API_IDEMPOTENT */
    api_handler handler;
};

/* needs_key flag: the route honours Idempotency-Key (idempotency.c). */
#define API_IDEMPOTENT 2

/* Adding an endpoint = one row here + one handler. HEAD rows are left out
 * of the Allow header (HEAD is implied by GET). */
static const struct api_route api_routes[] = {
    { "GET",    "/health",          0, api_health },
    { "HEAD",   "/health",          0, api_health },
    { "GET",    "/ready",           0, api_ready },
    { "HEAD",   "/ready",           0, api_ready },
    { "GET",    "/openapi.json",    0, api_openapi },
    { "GET",    "/docs",            0, api_docs },
    { "POST",   "/session",         1 | API_IDEMPOTENT, api_session_create },
    { "DELETE", "/session",         1, api_session_delete },
    { "GET",    "/session",         1, api_session_get },
    { "GET",    "/session/jobs",    1, api_session_jobs },
    { "GET",    "/sessions",        1, api_sessions_list },
    { "GET",    "/session/results", 1, api_session_results },
    { "POST",   "/job",             1 | API_IDEMPOTENT, api_job_create },
    { "GET",    "/job/status",      1, api_job_status },
    { "GET",    "/job/events",      1, api_job_events },
    { "GET",    "/job/diff",        1, api_job_diff },
    { "POST",   "/job/cancel",      1, api_job_cancel },
    { "GET",    "/download",        1, api_download },
    { "GET",    "/download/archive", 1, api_download_archive },
    { "PUT",    "/session/files",   1, api_session_files_put },
    { "DELETE", "/session/files",   1, api_session_files_delete },
};
#define API_NROUTES (sizeof(api_routes) / sizeof(api_routes[0]))

/* ---- Replies ------------------------------------------------------------ */

/* Keeps a copy of the answer when the request asks for one
 * (r->capture, Idempotency-Key). */
static void api_capture_keep(struct api_req *r, int status, const char *text, size_t len)
{
    if (r->capture == NULL)
        return;
    free(r->capture->body);
    r->capture->body = xmalloc(len + 1);
    memcpy(r->capture->body, text, len + 1);
    r->capture->len = len;
    r->capture->status = status;
    if (r->capture->kept != NULL)
        r->capture->kept(r);
}

int api_send(struct api_req *r, int status, cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    api_capture_keep(r, status, text, strlen(text));
    http_send(r->conn, status, "application/json", NULL, text, strlen(text));
    free(text);
    return status;
}

/* 1 when the If-None-Match header lists etag (or is "*"). A weak
 * validator W/"..." matches too (RFC 9110 compares If-None-Match weakly). */
static int api_etag_matches(const char *inm, const char *etag)
{
    if (inm == NULL)
        return 0;
    size_t n = strlen(etag);
    for (const char *p = inm; *p != '\0';) {
        p += strspn(p, " \t,");
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        size_t m = strcspn(p, " \t,");
        if ((m == 1 && *p == '*') || (m == n && memcmp(p, etag, n) == 0))
            return 1;
        p += m;
    }
    return 0;
}

int api_send_etag(struct api_req *r, const char *body, size_t len, const char *etag)
{
    char headers[64];
    snprintf(headers, sizeof(headers), "ETag: %s\r\n", etag);
    if (!api_etag_matches(mg_get_header(r->conn, "If-None-Match"), etag))
        return http_send(r->conn, 200, "application/json", headers, body, len);
    /* 304 carries no body and no Content-Length (RFC 9110 15.4.5). */
    mg_printf(r->conn, "HTTP/1.1 304 Not Modified\r\nCache-Control: no-store\r\n%s%s\r\n",
              headers, http_common_headers(r->conn));
    return 304;
}

static int api_send_error(struct mg_connection *conn, enum errcode e, const char *headers,
                          const char *detail)
{
    cJSON *body = render_error(e, detail);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    int status = http_send(conn, errcode_status(e), "application/json", headers, text,
                           strlen(text));
    free(text);
    return status;
}

int api_fail(struct api_req *r, enum errcode e, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (r->capture != NULL)   /* the same bytes, kept (api_send) */
        return api_send(r, errcode_status(e), render_error(e, detail));
    return api_send_error(r->conn, e, NULL, detail);
}

int api_store_fail(struct api_req *r, int store_rc, const char *not_found)
{
    switch (store_rc) {
    case STORE_NOT_FOUND:
        return api_fail(r, ERR_NOT_FOUND, "%s", not_found);
    case STORE_UNAVAILABLE:
        return api_fail(r, ERR_DB_UNAVAILABLE, "database unavailable, try again shortly");
    case STORE_CONFLICT:
        return api_fail(r, ERR_CONFLICT, "conflicting state, try again");
    default:
        return api_fail(r, ERR_INTERNAL, "internal error");
    }
}

/* ---- Request helpers ---------------------------------------------------- */

struct db *api_db(struct api_req *r)
{
    if (r->db != NULL)
        return r->db;
    int rc;
    r->db = db_pool_get(r->api->pool, API_DB_WAIT_MS, &rc);
    if (r->db == NULL)
        api_fail(r, ERR_DB_UNAVAILABLE, "database unavailable, try again shortly");
    return r->db;
}

void api_db_release(struct api_req *r)
{
    db_pool_put(r->api->pool, r->db);
    r->db = NULL;
}

int api_id_param(struct api_req *r, const char *name, char id[ID_HEX_LEN + 1],
                 const char *not_found)
{
    char buf[128];
    int found = http_query(r->conn, name, buf, sizeof(buf));
    if (found == 0)
        return api_fail(r, ERR_VALIDATION, "%s: required query parameter", name);
    if (found < 0 || !id_valid(buf))
        return api_fail(r, ERR_NOT_FOUND, "%s", not_found);
    memcpy(id, buf, ID_HEX_LEN + 1);
    return 0;
}

static int api_id_param_db(struct api_req *r, const char *name, const char *not_found,
                           char id[ID_HEX_LEN + 1], struct db **db)
{
    int status = api_id_param(r, name, id, not_found);
    if (status != 0)
        return status;
    *db = api_db(r);
    return *db != NULL ? 0 : 503;
}

int api_session_param(struct api_req *r, char id[ID_HEX_LEN + 1], struct db **db)
{
    return api_id_param_db(r, "session_id", "Session not found", id, db);
}

int api_job_param(struct api_req *r, char id[ID_HEX_LEN + 1], struct db **db)
{
    return api_id_param_db(r, "job_id", "Job not found", id, db);
}

int api_read_body(struct api_req *r, size_t max, char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    if (r->body_read) {   /* read (and hashed) before the handler ran */
        if (r->body == NULL || r->body_len > max)
            return api_fail(r, ERR_BODY_TOO_LARGE,
                            "request body is larger than the limit of %zu bytes", max);
        *body = r->body;
        *len = r->body_len;
        r->body = NULL;
        return 0;
    }
    switch (http_read_body(r->conn, max, r->cfg->api_request_timeout_ms, body, len)) {
    case HTTP_BODY_OK:
        return 0;
    case HTTP_BODY_TIMEOUT:
        http_close_after(r->conn);
        return api_fail(r, ERR_BAD_REQUEST, "request body not received within %ld ms",
                        r->cfg->api_request_timeout_ms);
    case HTTP_BODY_TOO_LARGE:
        return api_fail(r, ERR_BODY_TOO_LARGE,
                        "request body is larger than the limit of %zu bytes", max);
    case HTTP_BODY_SHORT:
        return api_fail(r, ERR_BAD_REQUEST, "request body is shorter than Content-Length");
    case HTTP_BODY_NO_MEMORY:
        return api_fail(r, ERR_OUT_OF_MEMORY, "out of memory reading the request body");
    default:
        return api_fail(r, ERR_BAD_REQUEST, "could not read the request body");
    }
}

int api_read_json(struct api_req *r, size_t max, cJSON **out)
{
    char *body = NULL;
    size_t len = 0;
    *out = NULL;
    int status = api_read_body(r, max, &body, &len);
    if (status != 0)
        return status;
    const char *why = NULL;
    *out = json_parse_body(body, len, &why);
    free(body);
    return *out != NULL ? 0 : api_fail(r, ERR_INVALID_JSON, "%s", why);
}

/* ---- Quotas ------------------------------------------------------------- */

/* Retry-After (seconds) of a refusal, by enum store_quota: a queued job
 * frees its slot within a job's run, sessions and bytes only when the
 * client deletes a session or one expires. */
static const int api_quota_retry_s[STORE_QUOTA_COUNT_] = {
    [STORE_QUOTA_ACTIVE_SESSIONS] = 60,
    [STORE_QUOTA_QUEUED_JOBS]     = 5,
    [STORE_QUOTA_STORED_BYTES]    = 60,
};

/* The KEY_MAX_* defaults as store_quota_limits. */
struct store_quota_limits api_quota_defaults(const struct cfg *cfg)
{
    struct store_quota_limits d;
    d.max[STORE_QUOTA_ACTIVE_SESSIONS] = cfg->key_max_active_sessions;
    d.max[STORE_QUOTA_QUEUED_JOBS] = cfg->key_max_queued_jobs;
    d.max[STORE_QUOTA_STORED_BYTES] = (int64_t)cfg->key_max_stored_mb * 1024 * 1024;
    return d;
}

int api_quota_answer(struct api_req *r, int rc, const struct store_quota_hit *hit)
{
    if (rc == STORE_OK)
        return 0;
    if (rc != STORE_LIMIT)
        return api_store_fail(r, rc, "Key not found");
    const char *name = store_quota_name(hit->quota);
    char detail[256], headers[64];
    snprintf(detail, sizeof(detail), "quota %s of this key reached: limit %lld, in use %lld",
             name, (long long)hit->limit, (long long)hit->used);
    snprintf(headers, sizeof(headers), "Retry-After: %d\r\n", api_quota_retry_s[hit->quota]);
    cJSON *body = render_error(ERR_QUOTA_EXCEEDED, detail);
    cJSON_AddStringToObject(body, "quota", name);
    cJSON_AddNumberToObject(body, "limit", (double)hit->limit);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    int status = http_send(r->conn, errcode_status(ERR_QUOTA_EXCEEDED), "application/json",
                           headers, text, strlen(text));
    free(text);
    log_info("quota.refused", "key=%s quota=%s limit=%lld used=%lld", r->key_id, name,
             (long long)hit->limit, (long long)hit->used);
    return status;
}

int api_quota_session(struct api_req *r, int new_sessions, int64_t new_bytes)
{
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    struct store_quota_limits def = api_quota_defaults(r->cfg);
    struct store_quota_hit hit;
    return api_quota_answer(r, store_quota_session(db, r->key_id, &def, new_sessions, new_bytes,
                                                     &hit), &hit);
}

int api_quota_job(struct api_req *r)
{
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    struct store_quota_limits def = api_quota_defaults(r->cfg);
    struct store_quota_hit hit;
    return api_quota_answer(r, store_quota_job(db, r->key_id, &def, &hit), &hit);
}

/* ---- Authentication ----------------------------------------------------- */

/* Checks X-API-Key; fills r->key_id ("bootstrap" for API_KEY). Returns 0,
 * or the status after answering 401 (or 503). */
static int api_authenticate(struct api_req *r)
{
    const char *key = mg_get_header(r->conn, "X-API-Key");
    size_t len = key ? strlen(key) : 0;
    unsigned char hash[APIKEY_HASH_LEN];
    if (len == 0 || len > API_MAX_KEY_LEN)
        return api_fail(r, ERR_UNAUTHORIZED, "Invalid or missing API key");
    /* Hash first, then compare in constant time: the time taken does not
     * depend on how much of the key was right. */
    if (apikey_hash(key, len, hash) != 0)
        return api_fail(r, ERR_INTERNAL, "could not hash the API key");
    if (apikey_hash_equal(hash, r->api->bootstrap_hash)) {
        memcpy(r->key_id, "bootstrap", sizeof("bootstrap"));
        return 0;
    }
    /* A key seen within KEY_CACHE_TTL_MS needs no lookup. */
    int64_t now = time_mono_ms();
    if (api_cache_key_get(r->api->cache, hash, now, r->key_id))
        return 0;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    int rc = store_key_lookup(db, hash, r->key_id);
    if (rc == STORE_NOT_FOUND)
        return api_fail(r, ERR_UNAUTHORIZED, "Invalid or missing API key");
    if (rc != STORE_OK)
        return api_fail(r, ERR_DB_UNAVAILABLE, "database unavailable, try again shortly");
    api_cache_key_put(r->api->cache, hash, now, r->key_id);
    return 0;
}

/* ---- Dispatch ----------------------------------------------------------- */

/* Writes the methods of path's rows ("GET, HEAD") into buf; HEAD only
 * when with_head. */
static void api_path_methods(const char *path, int with_head, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < API_NROUTES; i++) {
        if (strcmp(api_routes[i].path, path) != 0 ||
            (!with_head && strcmp(api_routes[i].method, "HEAD") == 0))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "",
                         api_routes[i].method);
        if (n > 0 && (size_t)n < len - used)
            used += (size_t)n;
    }
}

/* 405 with the methods the path allows. */
static int api_method_not_allowed(struct mg_connection *conn, const char *path)
{
    char methods[96], headers[128];
    api_path_methods(path, 0, methods, sizeof(methods));
    snprintf(headers, sizeof(headers), "Allow: %s\r\n", methods);
    return api_send_error(conn, ERR_METHOD_NOT_ALLOWED, headers, "Method Not Allowed");
}

/* ---- CORS --------------------------------------------------------------- */

/* What CORS_ALLOW_ORIGINS says. */
enum api_cors_mode {
    API_CORS_OFF,      /* "none" (or empty): no CORS headers at all */
    API_CORS_ANY,      /* "*": every origin */
    API_CORS_LIST,     /* a comma-separated list of origins */
};

static enum api_cors_mode api_cors_mode(const struct cfg *cfg)
{
    const char *o = cfg->cors_allow_origins;
    if (o == NULL || *o == '\0' || strcmp(o, "none") == 0)
        return API_CORS_OFF;
    return strcmp(o, "*") == 0 ? API_CORS_ANY : API_CORS_LIST;
}

/* 1 when origin is an entry of the comma-separated list (spaces around
 * entries ignored; compared exactly, as browsers send it). */
static int api_cors_listed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);
    for (const char *p = list; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && p[m - 1] == ' ')
            m--;
        if (m > 0 && m == olen && memcmp(p, origin, m) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/*
 * Writes the CORS header lines every response to this request carries
 * into buf ("" when none): Access-Control-Allow-Origin (* or the listed
 * origin) with Access-Control-Expose-Headers, and Vary: Origin when the
 * answer depends on the origin. Returns 1 when the request's origin may
 * call the API.
 */
static int api_cors_headers(const struct cfg *cfg, const struct mg_connection *conn,
                            char *buf, size_t len)
{
    static const char expose[] =
        "Access-Control-Expose-Headers: Retry-After, Content-Disposition\r\n";
    const char *origin = mg_get_header(conn, "Origin");
    buf[0] = '\0';
    switch (api_cors_mode(cfg)) {
    case API_CORS_ANY:
        snprintf(buf, len, "Access-Control-Allow-Origin: *\r\n%s", expose);
        return 1;
    case API_CORS_LIST:
        if (origin == NULL || strlen(origin) >= API_CORS_ORIGIN_MAX ||
            !api_cors_listed(cfg->cors_allow_origins, origin)) {
            snprintf(buf, len, "Vary: Origin\r\n");
            return 0;
        }
        /* origin equals a configured entry: no client text goes out unchecked. */
        snprintf(buf, len, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n%s", origin,
                 expose);
        return 1;
    default:
        return 0;
    }
}

/* 1 for a CORS preflight: OPTIONS with Origin and
 * Access-Control-Request-Method (the Fetch standard's definition). */
static int api_is_preflight(const struct mg_connection *conn)
{
    return strcmp(http_method(conn), "OPTIONS") == 0 &&
           mg_get_header(conn, "Origin") != NULL &&
           mg_get_header(conn, "Access-Control-Request-Method") != NULL;
}

/* Answers a preflight on a known path: 204 without a key, with the
 * path's methods and the headers a client may send (CORS headers only
 * when the origin may call). */
static int api_preflight(struct mg_connection *conn, const char *path, int allowed)
{
    if (!allowed)
        return http_send_empty(conn, 204);
    char methods[96], headers[384];
    api_path_methods(path, 1, methods, sizeof(methods));
    snprintf(headers, sizeof(headers),
             "Access-Control-Allow-Methods: %s\r\n"
             "Access-Control-Allow-Headers: X-API-Key, Idempotency-Key, Content-Type\r\n"
             "Access-Control-Max-Age: %d\r\n",
             methods, API_CORS_MAX_AGE_S);
    return http_send_empty_with(conn, 204, headers);
}

/* The row for method and path; NULL with *path_known set when only the
 * method is wrong. */
static const struct api_route *api_route_find(const char *method, const char *path,
                                              int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < API_NROUTES; i++) {
        if (strcmp(api_routes[i].path, path) != 0)
            continue;
        *path_known = 1;
        if (strcmp(api_routes[i].method, method) == 0)
            return &api_routes[i];
    }
    return NULL;
}

/* The checks every request passes before its route is looked at: framing
 * (400, connection closed) and duplicate query parameters (400). Returns
 * 0, or the status after answering. */
static int api_request_checks(struct mg_connection *conn)
{
    if (http_framing_ambiguous(conn)) {
        log_info("http.ambiguous_framing", "path=\"%s\"", LOG_ESC(http_path(conn)));
        http_close_after(conn);
        return api_send_error(conn, ERR_BAD_REQUEST, "Connection: close\r\n",
                              "a request may not carry both Content-Length and "
                              "Transfer-Encoding, nor either twice");
    }
    char name[64], detail[128];
    if (http_query_duplicate(conn, name, sizeof(name))) {
        log_debug("http.duplicate_parameter", "path=\"%s\" name=\"%s\"",
                  LOG_ESC(http_path(conn)), LOG_ESC(name));
        snprintf(detail, sizeof(detail), "query parameter %s given more than once", name);
        return api_send_error(conn, ERR_DUPLICATE_PARAMETER, NULL, detail);
    }
    return 0;
}

/* Everything after the CORS headers are set: checks, preflight, route,
 * method, key, handler. Returns the status sent; *label gets the route
 * table's path when the path is one of it (the metrics' route label). */
static int api_route_request(struct api *api, struct mg_connection *conn, int cors_allowed,
                             const char **label)
{
    int status = api_request_checks(conn);
    if (status != 0)
        return status;
    const char *path = http_path(conn);
    int path_known;
    const struct api_route *route = api_route_find(http_method(conn), path, &path_known);
    for (size_t i = 0; path_known && i < API_NROUTES; i++)
        if (strcmp(api_routes[i].path, path) == 0)
            *label = api_routes[i].path;
    if (route == NULL) {
        if (path_known && api_cors_mode(api->cfg) != API_CORS_OFF && api_is_preflight(conn))
            return api_preflight(conn, path, cors_allowed);
        /* The path is URL-decoded: whatever the client put in it is escaped. */
        log_debug("http.no_route", "method=\"%s\" path=\"%s\"", LOG_ESC(http_method(conn)),
                  LOG_ESC(path));
        return path_known ? api_method_not_allowed(conn, path)
                          : api_send_error(conn, ERR_NOT_FOUND, NULL, "Not Found");
    }

    struct api_req r = { .conn = conn, .api = api, .cfg = api->cfg };
    status = route->needs_key ? api_authenticate(&r) : 0;
    if (status == 0)
        status = (route->needs_key & API_IDEMPOTENT) ? api_idem_run(&r, route->handler) : route->handler(&r);
    api_db_release(&r);
    free(r.body);
    return status;
}

/* The method as a metrics label: the methods HTTP defines, else "other"
 * (never the client's text, so the label's values stay few). */
static const char *api_method_label(const char *method)
{
    static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                         "OPTIONS" };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "other";
}

/* Counts the request and its latency (README "Metrics"). */
static void api_record_metrics(struct mg_connection *conn, const char *route, int status,
                               int64_t start_ms)
{
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    metric_add(ocm(OCM_HTTP_REQUESTS),
               METRIC_LABELS(route, api_method_label(http_method(conn)), code), 1);
    metric_observe(ocm(OCM_HTTP_DURATION), METRIC_LABELS(route), ocm_since_s(start_ms));
}

int api_dispatch(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    int64_t start_ms = time_mono_ms();
    const char *route = "unknown";
    char cors[API_CORS_HEADERS_MAX];
    int allowed = api_cors_headers(api->cfg, conn, cors, sizeof(cors));
    http_set_common_headers(conn, cors);
    int status = api_route_request(api, conn, allowed, &route);
    http_set_common_headers(conn, NULL);
    api_record_metrics(conn, route, status, start_ms);
    return status;
}
