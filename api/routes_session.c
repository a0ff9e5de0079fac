/*
 * routes_session.c - POST /session, DELETE /session, GET /session/results.
 *
 * A new session is validated whole, and the key's quotas checked, before
 * anything is written: a request refused with 4xx or 429 leaves no folder
 * and no row behind. Its folders are 0700 and its files 0600 (the api's
 * umask is 077, main.c): tenant files are private on disk.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "db.h"
#include "fsutil.h"
#include "http.h"
#include "layout.h"
#include "log.h"
#include "render.h"
#include "session_req.h"
#include "xalloc.h"

/* Writes the session's variables (env.json, 0600). Returns 0 or -errno. */
static int session_write_env(const struct cfg *cfg, const char *id, const cJSON *env)
{
    char path[LAYOUT_PATH_MAX];
    int rc = layout_env_file(cfg->data_dir, id, path, sizeof(path));
    if (rc != 0)
        return rc;
    char *text = cJSON_PrintUnformatted(env);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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

/* Creates the session folder and writes the validated files (and env)
 * into it, filling files[] (ns->count entries). Returns 0, or -errno (the
 * caller then removes the folder). */
static int session_write_files(const struct cfg *cfg, const char *id,
                               const struct session_req *ns, struct store_file *files)
{
    char root[LAYOUT_PATH_MAX], dir[LAYOUT_PATH_MAX], input[LAYOUT_PATH_MAX];
    int rc = layout_sessions_root(cfg->data_dir, root, sizeof(root));
    if (rc == 0)
        rc = layout_session_dir(cfg->data_dir, id, dir, sizeof(dir));
    if (rc == 0)
        rc = layout_input_dir(cfg->data_dir, id, input, sizeof(input));
    if (rc == 0)
        rc = fs_mkdir_in(root, dir, 0700);
    if (rc != 0)
        return rc;
    if (mkdir(input, 0700) != 0)
        return -errno;
    int dfd = open(input, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    size_t i = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, ns->files) {
        const char *path = cJSON_GetObjectItemCaseSensitive(f, "path")->valuestring;
        const char *content;
        size_t n;
        int owned;
        if (session_file_data(f, &content, &n, &owned) != 0) {
            rc = -ENOMEM;
            break;
        }
        rc = fs_write_beneath(dfd, path, content, n);
        if (owned)
            free((void *)content);
        if (rc != 0)
            break;
        files[i++] = (struct store_file){ path, (int64_t)n, NULL, 0 };
    }
    close(dfd);
    if (rc != 0 || ns->env == NULL)
        return rc;
    return session_write_env(cfg, id, ns->env);
}

/* Answers what session_req_check() found wrong. */
int api_session_refuse(struct api_req *r, int rc, const char *detail)
{
    static const enum errcode map[] = {
        [SREQ_INVALID] = ERR_VALIDATION,
        [SREQ_INVALID_PATH] = ERR_INVALID_PATH,
        [SREQ_TOO_MANY_FILES] = ERR_TOO_MANY_FILES,
        [SREQ_TOO_LARGE] = ERR_SESSION_TOO_LARGE,
        [SREQ_NO_MEMORY] = ERR_OUT_OF_MEMORY,
        [SREQ_INVALID_BASE64] = ERR_INVALID_BASE64,
        [SREQ_CONTENT_FIELDS] = ERR_BAD_REQUEST,
    };
    return api_fail(r, map[rc], "%s", detail);
}

/* Writes the files and records the session if the key's quotas allow it
 * (else removes them again: 429); answers the request. */
static int session_store(struct api_req *r, const struct session_req *ns, struct db *db)
{
    char id[ID_HEX_LEN + 1], dir[LAYOUT_PATH_MAX];
    if (id_new(id) != 0 || layout_session_dir(r->cfg->data_dir, id, dir, sizeof(dir)) != 0)
        return api_fail(r, ERR_INTERNAL, "could not create a session id");
    struct store_file *files = xcalloc((size_t)ns->count + 1, sizeof(*files));
    int rc = session_write_files(r->cfg, id, ns, files);
    if (rc != 0) {
        log_error("session.write_failed", "session=%s error=\"%s\"", id, strerror(-rc));
        fs_rm_rf(dir);
        free(files);
        return api_fail(r, ERR_INTERNAL, "could not store the session files");
    }
    struct store_new_session rec = { id, r->key_id, ns->ttl_s, files, (size_t)ns->count,
                                     ns->bytes };
    struct store_session s;
    const struct store_quota_limits def = api_quota_defaults(r->cfg);
    struct store_quota_hit hit;
    rc = store_session_create_fit(db, &rec, &def, &s, &hit);
    int status;
    if (rc != STORE_OK) {
        fs_rm_rf(dir);
        status = rc == STORE_LIMIT ? api_quota_answer(r, rc, &hit)
                                   : api_store_fail(r, rc, "Session not found");
    } else {
        log_info("session.created", "session=%s key=%s files=%ld bytes=%lld ttl=%ld", id,
                 r->key_id, ns->count, (long long)ns->bytes, ns->ttl_s);
        status = api_send(r, 200, render_session_created(&s, files, (size_t)ns->count));
    }
    free(files);
    return status;
}

/* 1 when the body is declared a gzip-compressed tar (Content-Type
 * application/gzip, or its older spelling application/x-gzip). */
static int session_body_is_gzip(const struct api_req *r)
{
    const char *ct = mg_get_header(r->conn, "Content-Type");
    if (ct == NULL)
        return 0;
    size_t n = strcspn(ct, "; \t");
    return (n == 16 && strncasecmp(ct, "application/gzip", n) == 0) ||
           (n == 18 && strncasecmp(ct, "application/x-gzip", n) == 0);
}

int api_session_create(struct api_req *r)
{
    const struct cfg *cfg = r->cfg;
    if (session_body_is_gzip(r))
        return api_session_create_archive(r);     /* routes_files.c */
    cJSON *req = NULL;
    int status = api_read_json(r, (size_t)cfg->max_body_bytes, &req);
    if (status != 0)
        return status;
    struct session_req ns;
    char detail[512];
    const struct session_limits lim = {
        cfg->max_files, cfg->max_session_bytes, cfg->default_ttl_s, cfg->max_ttl_s,
    };
    enum session_req_rc rc = session_req_check(req, &lim, &ns, detail, sizeof(detail));
    if (rc != SREQ_OK) {
        status = api_session_refuse(r, rc, detail);
    } else {
        /* The quota is checked with the insert, once the files are
         * written (as for an archive): one round trip fewer. */
        struct db *db = api_db(r);
        status = db ? session_store(r, &ns, db) : 503;
    }
    cJSON_Delete(req);
    return status;
}

int api_session_delete(struct api_req *r)
{
    char id[ID_HEX_LEN + 1], dir[LAYOUT_PATH_MAX];
    struct db *db;
    int status = api_session_param(r, id, &db);
    if (status != 0)
        return status;
    int running = 0;
    int rc = store_session_delete(db, id, r->key_id, &running);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");

    /* The row says deleted: from here on the API answers 404. If removing
     * the folder fails, the janitor retries (files_removed_at stays NULL);
     * while a job still runs (it was asked to stop), the janitor removes
     * the folder once it has stopped. */
    if (!running && layout_session_dir(r->cfg->data_dir, id, dir, sizeof(dir)) == 0 &&
        fs_rm_rf(dir) == 0)
        store_session_files_removed(db, id);
    log_info("session.deleted", "session=%s key=%s stopping_job=%d", id, r->key_id, running);
    return http_send_empty(r->conn, 204);
}

int api_session_results(struct api_req *r)
{
    char id[ID_HEX_LEN + 1];
    struct db *db;
    int status = api_session_param(r, id, &db);
    if (status != 0)
        return status;
    struct store_results res;
    int rc = store_session_results(db, id, r->key_id, &res);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    /* Files edited with PUT/DELETE /session/files since the latest
     * succeeded job: those are the current files (routes_files.c). */
    struct store_results edited;
    if (res.latest_job_id == NULL &&
        store_files_edited_results(db, id, r->key_id, &edited) == STORE_OK) {
        store_results_free(&res);
        res = edited;
    }
    status = api_send(r, 200, render_results(id, &res));
    store_results_free(&res);
    return status;
}
