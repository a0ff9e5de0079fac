/*
 * routes_session.c - POST /session, DELETE /session, GET /session/results.
 *
 * A new session is validated whole before anything is written: a request
 * refused with 4xx leaves no folder and no row behind.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "fsutil.h"
#include "http.h"
#include "jsonutil.h"
#include "layout.h"
#include "log.h"
#include "path.h"
#include "session_req.h"

/* Writes the validated files (and env) into a new session folder. Returns
 * 0, or -errno (the folder is then removed by the caller). */
static int session_write_files(const struct cfg *cfg, const char *id,
                               const struct session_req *ns, cJSON *manifest)
{
    char root[4096], dir[4096], input[4096];
    if (layout_sessions_root(cfg->data_dir, root, sizeof(root)) ||
        layout_session_dir(cfg->data_dir, id, dir, sizeof(dir)) ||
        layout_input_dir(cfg->data_dir, id, input, sizeof(input)))
        return -ENAMETOOLONG;
    int rc = fs_mkdir_p(root, 0755);
    if (rc != 0)
        return rc;
    if (mkdir(dir, 0755) != 0 || mkdir(input, 0755) != 0)
        return -errno;
    int dfd = open(input, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;

    const cJSON *f;
    cJSON_ArrayForEach(f, ns->files) {
        const char *path = cJSON_GetObjectItemCaseSensitive(f, "path")->valuestring;
        const char *content = cJSON_GetObjectItemCaseSensitive(f, "content")->valuestring;
        size_t n = strlen(content);
        rc = fs_write_beneath(dfd, path, content, n);
        if (rc != 0)
            break;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(manifest, m);
        cJSON_AddStringToObject(m, "path", path);
        cJSON_AddNumberToObject(m, "size_bytes", (double)n);
    }
    close(dfd);
    if (rc != 0 || ns->env == NULL)
        return rc;

    char env_path[4096];
    if (layout_env_file(cfg->data_dir, id, env_path, sizeof(env_path)))
        return -ENAMETOOLONG;
    char *text = cJSON_PrintUnformatted(ns->env);
    if (text == NULL)
        return -ENOMEM;
    int fd = open(env_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t len = strlen(text);
        if (write(fd, text, len) != (ssize_t)len)
            rc = -EIO;
        if (close(fd) != 0 && rc == 0)
            rc = -errno;
    }
    free(text);
    return rc;
}

static int session_create(struct mg_connection *conn, struct api *api, const char *key_id)
{
    const struct cfg *cfg = api->cfg;
    cJSON *req = NULL;
    int status = http_read_json(conn, (size_t)cfg->max_body_bytes, &req);
    if (status != 0)
        return status;

    struct session_req ns;
    cJSON *manifest = NULL;
    char id[ID_HEX_LEN + 1], dir[4096], detail[512];
    const struct session_limits lim = {
        cfg->max_files, cfg->max_session_bytes, cfg->default_ttl_s, cfg->max_ttl_s,
    };
    status = session_req_check(req, &lim, &ns, detail, sizeof(detail));
    if (status != 0) {
        status = http_send_error(conn, status, detail);
        goto out;
    }

    struct pg_conn *db = api_db(conn, api);
    if (db == NULL) {
        status = 503;
        goto out;
    }
    if (id_new(id) != 0 || layout_session_dir(cfg->data_dir, id, dir, sizeof(dir)) != 0) {
        status = http_send_error(conn, 500, "could not create a session id");
        goto out;
    }
    manifest = cJSON_CreateArray();
    int rc = manifest ? session_write_files(cfg, id, &ns, manifest) : -ENOMEM;
    if (rc != 0) {
        log_error("session.write_failed", "session=%s error=\"%s\"", id, strerror(-rc));
        fs_rm_rf(dir);
        status = http_send_error(conn, 500, "could not store the session files");
        goto out;
    }

    char *files_json = cJSON_PrintUnformatted(manifest);
    struct store_session s;
    rc = files_json ? store_session_create(db, id, key_id, ns.ttl_s, files_json, ns.count,
                                           ns.bytes, &s)
                    : STORE_ERROR;
    free(files_json);
    if (rc != STORE_OK) {
        fs_rm_rf(dir);
        status = api_store_fail(conn, rc, "Session not found");
        goto out;
    }
    log_info("session.created", "session=%s key=%s files=%ld bytes=%lld ttl=%ld", id, key_id,
             ns.count, (long long)ns.bytes, ns.ttl_s);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", id);
    json_add_time(o, "created_at", s.created_usec, 0);
    json_add_time(o, "expires_at", s.expires_usec, 0);
    cJSON_AddItemToObject(o, "input_files", manifest);
    manifest = NULL;
    status = http_send_json(conn, 200, o);

out:
    cJSON_Delete(manifest);
    cJSON_Delete(req);
    return status;
}

static int session_delete(struct mg_connection *conn, struct api *api, const char *key_id)
{
    char id[ID_HEX_LEN + 1], dir[4096];
    int status = api_id_param(conn, "session_id", id, "Session not found");
    if (status != 0)
        return status;
    struct pg_conn *db = api_db(conn, api);
    if (db == NULL)
        return 503;
    int rc = store_session_delete(db, id, key_id);
    if (rc == STORE_CONFLICT)
        return http_send_error(conn, 409, "a job of this session is running; delete it "
                                          "once the job has finished");
    if (rc != STORE_OK)
        return api_store_fail(conn, rc, "Session not found");

    /* The row says deleted: from here on the API answers 404. If removing
     * the folder fails, the janitor retries (files_removed_at stays NULL). */
    if (layout_session_dir(api->cfg->data_dir, id, dir, sizeof(dir)) == 0 &&
        fs_rm_rf(dir) == 0)
        store_session_files_removed(db, id);
    log_info("session.deleted", "session=%s key=%s", id, key_id);
    return http_send_empty(conn, 204);
}

int api_route_session(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    char key_id[STORE_KEY_ID_MAX];
    int post = http_method_is(conn, "POST"), del = http_method_is(conn, "DELETE");
    if (!post && !del)
        return http_method_not_allowed(conn, "POST, DELETE");
    if (api_authenticate(conn, api, key_id) != 0)
        return 401;
    return post ? session_create(conn, api, key_id) : session_delete(conn, api, key_id);
}

int api_route_session_results(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    char key_id[STORE_KEY_ID_MAX], id[ID_HEX_LEN + 1];
    if (!http_method_is(conn, "GET"))
        return http_method_not_allowed(conn, "GET");
    if (api_authenticate(conn, api, key_id) != 0)
        return 401;
    int status = api_id_param(conn, "session_id", id, "Session not found");
    if (status != 0)
        return status;
    struct pg_conn *db = api_db(conn, api);
    if (db == NULL)
        return 503;
    int rc;
    cJSON *o = store_session_results(db, id, key_id, &rc);
    if (o == NULL)
        return api_store_fail(conn, rc, "Session not found");
    api_add_download_urls(cJSON_GetObjectItemCaseSensitive(o, "output_files"), id, NULL);
    return http_send_json(conn, 200, o);
}
