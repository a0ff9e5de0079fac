/* auth.c - X-API-Key checks and the per-thread database connection. */
#include <civetweb.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "http.h"

/* Longest X-API-Key looked at; real keys are 68 bytes. */
#define AUTH_MAX_KEY_LEN 512

PGconn *api_db(struct mg_connection *conn, const struct api *api)
{
    struct api_thread *t = mg_get_thread_pointer(conn);
    if (t == NULL || db_ensure(&t->db, api->cfg->database_url, "opencode-api") != DB_OK) {
        http_send_error(conn, 503, "database unavailable, try again shortly");
        return NULL;
    }
    return t->db;
}

int api_authenticate(struct mg_connection *conn, const struct api *api,
                     char key_id[STORE_KEY_ID_MAX])
{
    const char *key = mg_get_header(conn, "X-API-Key");
    size_t len = key ? strlen(key) : 0;
    if (len == 0 || len > AUTH_MAX_KEY_LEN) {
        http_send_error(conn, 401, "Invalid or missing API key");
        return -1;
    }

    /* Hash first, then compare in constant time: the time taken does not
     * depend on how much of the key was right. */
    unsigned char hash[APIKEY_HASH_LEN];
    if (apikey_hash(key, len, hash) != 0) {
        http_send_error(conn, 500, "could not hash the API key");
        return -1;
    }
    if (apikey_hash_equal(hash, api->bootstrap_hash)) {
        memcpy(key_id, "bootstrap", sizeof("bootstrap"));
        return 0;
    }

    PGconn *db = api_db(conn, api);
    if (db == NULL)
        return -1;
    int rc = store_key_lookup(db, hash, key_id);
    if (rc == STORE_OK)
        return 0;
    if (rc == STORE_NOT_FOUND)
        http_send_error(conn, 401, "Invalid or missing API key");
    else
        http_send_error(conn, 503, "database unavailable, try again shortly");
    return -1;
}

int api_id_param(struct mg_connection *conn, const char *name, char id[ID_HEX_LEN + 1],
                 const char *not_found)
{
    char buf[128];
    int r = http_query(conn, name, buf, sizeof(buf));
    if (r == 0)
        return http_send_errorf(conn, 422, "%s: required query parameter", name);
    if (r < 0 || !id_valid(buf))
        return http_send_error(conn, 404, not_found);
    memcpy(id, buf, ID_HEX_LEN + 1);
    return 0;
}

int api_store_fail(struct mg_connection *conn, int rc, const char *not_found)
{
    switch (rc) {
    case STORE_NOT_FOUND:
        return http_send_error(conn, 404, not_found);
    case STORE_UNAVAILABLE:
        return http_send_error(conn, 503, "database unavailable, try again shortly");
    case STORE_CONFLICT:
        return http_send_error(conn, 409, "conflicting state, try again");
    default:
        return http_send_error(conn, 500, "internal error");
    }
}

int api_add_download_urls(cJSON *files, const char *session_id, const char *job_id)
{
    cJSON *f;
    cJSON_ArrayForEach(f, files) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
        char enc[3 * 1024 + 1], url[3 * 1024 + 200];
        if (!cJSON_IsString(path) || http_url_encode(path->valuestring, enc, sizeof(enc)) != 0)
            continue;
        if (job_id != NULL)
            snprintf(url, sizeof(url), "/download?session_id=%s&file_path=%s&job_id=%s",
                     session_id, enc, job_id);
        else
            snprintf(url, sizeof(url), "/download?session_id=%s&file_path=%s", session_id, enc);
        if (cJSON_AddStringToObject(f, "download_url", url) == NULL)
            return -1;
    }
    return 0;
}
