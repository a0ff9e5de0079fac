/*
 * routes_download.c - GET /download and GET /health (GET /download/archive
 * is in routes_files.c).
 *
 * Files in a job's workspace were written by the agent, which can leave
 * symlinks pointing anywhere (/etc/passwd, another session). The file is
 * opened with fs_open_beneath(): no symlink is followed and nothing outside
 * the session's folder is reachable. It is opened O_NONBLOCK and checked
 * S_ISREG on the descriptor, so a FIFO, socket or device the agent left
 * answers 404 at once and never blocks a server thread. The body is
 * streamed in chunks, never held whole in memory. A job whose outputs the
 * janitor pruned (older than the session's newest SESSION_KEEP_JOBS ended
 * jobs) answers 410 job_pruned.
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
#include "path.h"
#include "render.h"
#include "xalloc.h"

#define DOWNLOAD_CHUNK (64 * 1024)

/* The Content-Type of a download, by the file name's extension (case
 * insensitive); anything else is application/octet-stream. Served with
 * X-Content-Type-Options: nosniff and as an attachment, so an .html or
 * .svg file is saved, never rendered in the API's origin. */
static const char *download_content_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        { "txt", "text/plain; charset=utf-8" },  { "md", "text/plain; charset=utf-8" },
        { "json", "application/json" },          { "html", "text/html; charset=utf-8" },
        { "htm", "text/html; charset=utf-8" },   { "css", "text/css; charset=utf-8" },
        { "js", "text/javascript; charset=utf-8" }, { "png", "image/png" },
        { "jpg", "image/jpeg" },                 { "jpeg", "image/jpeg" },
        { "gif", "image/gif" },                  { "svg", "image/svg+xml" },
        { "pdf", "application/pdf" },            { "zip", "application/zip" },
        { "gz", "application/gzip" },            { "tgz", "application/gzip" },
        { "tar", "application/x-tar" },
    };
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot == name)
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Streams fd (size bytes, exactly as stored) as an attachment named after
 * path's last part, with its Content-Type and Content-Length. */
static int download_send(struct mg_connection *conn, int fd, const char *path, off_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* RFC 6266 filename*: percent-encoded, so no name can break the header. */
    char enc[3 * 255 + 1];
    if (http_url_encode(base, enc, sizeof(enc)) != 0)
        enc[0] = '\0';
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
              "Content-Disposition: attachment; filename*=UTF-8''%s\r\n"
              "X-Content-Type-Options: nosniff\r\nContent-Length: %lld\r\n%s\r\n",
              download_content_type(base), enc, (long long)size, http_common_headers(conn));
    /* CivetWeb's worker threads have small stacks: the buffer goes on the
     * heap. */
    char *buf = xmalloc(DOWNLOAD_CHUNK);
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

/* Reads file_path and the optional job_id. Returns 0, or the status after
 * answering. */
static int download_params(struct api_req *r, char path[PATH_MAX_BYTES + 1],
                           char job_id[ID_HEX_LEN + 1], int *has_job)
{
    char buf[128];
    int found = http_query(r->conn, "file_path", path, PATH_MAX_BYTES + 1);
    if (found == 0)
        return api_fail(r, ERR_VALIDATION, "file_path: required query parameter");
    const char *why = "is too long or not a valid query value";
    if (found < 0 || path_validate(path, strlen(path), &why) != 0)
        return api_fail(r, ERR_INVALID_PATH, "Invalid file path: file_path %s", why);
    *has_job = http_query(r->conn, "job_id", buf, sizeof(buf));
    if (*has_job != 0 && (*has_job < 0 || !id_valid(buf)))
        return api_fail(r, ERR_NOT_FOUND, "Job not found");
    if (*has_job)
        memcpy(job_id, buf, ID_HEX_LEN + 1);
    return 0;
}

/* Opens path below dir as a regular file. Returns the fd or -errno. */
static int download_open(const char *dir, const char *path, struct stat *st)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    /* O_NONBLOCK: opening a FIFO with no writer returns at once. */
    int fd = fs_open_beneath(dfd, path, O_RDONLY | O_NONBLOCK, 0);
    close(dfd);
    if (fd >= 0 && (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))) {
        close(fd);
        return -EINVAL;
    }
    /* A regular file ignores O_NONBLOCK; clear it all the same so a read
     * never answers EAGAIN. */
    if (fd >= 0 && fcntl(fd, F_SETFL, 0) != 0) {
        close(fd);
        return -EIO;
    }
    return fd;
}

int api_download(struct api_req *r)
{
    char session_id[ID_HEX_LEN + 1], job_id[ID_HEX_LEN + 1], path[PATH_MAX_BYTES + 1];
    char folder_job[ID_HEX_LEN + 1], dir[LAYOUT_PATH_MAX];
    int has_job = 0;
    int status = api_id_param(r, "session_id", session_id, "Session not found");
    if (status == 0)
        status = download_params(r, path, job_id, &has_job);
    if (status != 0)
        return status;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    int rc = store_job_folder(db, session_id, r->key_id, has_job ? job_id : NULL, folder_job);
    if (rc == STORE_GONE)
        return api_fail(r, ERR_GONE,
                        "The outputs of job %s were pruned: a session keeps those of its "
                        "newest %ld ended jobs (SESSION_KEEP_JOBS) and its current files",
                        job_id, r->cfg->session_keep_jobs);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, has_job ? "Job not found" : "Session not found");
    api_db_release(r);      /* a slow client must not hold a pooled connection */
    if (layout_files_dir(r->cfg->data_dir, session_id, folder_job, dir, sizeof(dir)) != 0)
        return api_fail(r, ERR_INTERNAL, "internal error");
    struct stat st;
    int fd = download_open(dir, path, &st);
    if (fd < 0) {
        if (fd == -ELOOP || fd == -EXDEV)
            log_warn("download.refused", "session=%s reason=symlink", session_id);
        return api_fail(r, ERR_NOT_FOUND, "File not found in session output");
    }
    status = download_send(r->conn, fd, path, st.st_size);
    close(fd);
    return status;
}

int api_health(struct api_req *r)
{
    return api_send(r, 200, render_health());
}
