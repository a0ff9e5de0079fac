/*
 * routes_download.c - GET /download, GET /health and unknown paths.
 *
 * Files in a job's workspace were written by the agent, which can leave
 * symlinks pointing anywhere (/etc/passwd, another session). The file is
 * opened with fs_open_beneath(): no symlink is followed and nothing outside
 * the session's folder is reachable; only regular files are served. The
 * body is streamed in chunks, never held whole in memory.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "fsutil.h"
#include "http.h"
#include "layout.h"
#include "log.h"
#include "path.h"

#define DOWNLOAD_CHUNK (64 * 1024)

/* Streams fd (size bytes) as an attachment named after path's last part. */
static int download_send(struct mg_connection *conn, int fd, const char *path, off_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* RFC 6266 filename*: percent-encoded, so no name can break the header. */
    char enc[3 * 255 + 1];
    if (http_url_encode(base, enc, sizeof(enc)) != 0)
        enc[0] = '\0';
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              "Content-Disposition: attachment; filename*=UTF-8''%s\r\n"
              "X-Content-Type-Options: nosniff\r\nContent-Length: %lld\r\n\r\n",
              enc, (long long)size);

    /* CivetWeb's worker threads have small stacks: the buffer goes on the
     * heap. */
    char *buf = malloc(DOWNLOAD_CHUNK);
    if (buf == NULL)
        return 500;             /* headers went out: the client sees a short body */
    off_t sent = 0;
    while (sent < size) {
        ssize_t n = read(fd, buf, DOWNLOAD_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;              /* file shrank: the client sees a short body */
        if (mg_write(conn, buf, (size_t)n) <= 0)
            break;              /* client went away */
        sent += n;
    }
    free(buf);
    return 200;
}

int api_route_download(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    char key_id[STORE_KEY_ID_MAX], session_id[128], job_id[128], path[PATH_MAX_BYTES + 1];
    if (!http_method_is(conn, "GET"))
        return http_method_not_allowed(conn, "GET");
    if (api_authenticate(conn, api, key_id) != 0)
        return 401;

    int r = api_id_param(conn, "session_id", session_id, "Session not found");
    if (r != 0)
        return r;
    r = http_query(conn, "file_path", path, sizeof(path));
    if (r == 0)
        return http_send_error(conn, 422, "file_path: required query parameter");
    const char *why = "is too long or not a valid query value";
    if (r < 0 || path_validate(path, strlen(path), &why) != 0)
        return http_send_errorf(conn, 400, "Invalid file path: file_path %s", why);
    r = http_query(conn, "job_id", job_id, sizeof(job_id));
    if (r != 0 && (r < 0 || !id_valid(job_id)))
        return http_send_error(conn, 404, "Job not found");

    struct pg_conn *db = api_db(conn, api);
    if (db == NULL)
        return 503;
    char folder_job[ID_HEX_LEN + 1], dir[4096];
    int rc = store_job_folder(db, session_id, key_id, r ? job_id : NULL, folder_job);
    if (rc != STORE_OK)
        return api_store_fail(conn, rc, r ? "Job not found" : "Session not found");
    if (layout_files_dir(api->cfg->data_dir, session_id, folder_job, dir, sizeof(dir)) != 0)
        return http_send_error(conn, 500, "internal error");

    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return http_send_error(conn, 404, "File not found in session output");
    int fd = fs_open_beneath(dfd, path, O_RDONLY, 0);
    close(dfd);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd == -ELOOP || fd == -EXDEV)
            log_warn("download.refused", "session=%s reason=symlink", session_id);
        if (fd >= 0)
            close(fd);
        return http_send_error(conn, 404, "File not found in session output");
    }
    int status = download_send(conn, fd, path, st.st_size);
    close(fd);
    return status;
}

int api_route_health(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    if (!http_method_is(conn, "GET") && !http_method_is(conn, "HEAD"))
        return http_method_not_allowed(conn, "GET");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "healthy");
    return http_send_json(conn, 200, o);
}

int api_route_not_found(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    return http_send_error(conn, 404, "Not Found");
}
