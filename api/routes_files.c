/*
 * routes_files.c - a session's files beyond POST /session's JSON:
 * POST /session with a .tar.gz body, PUT and DELETE /session/files, and
 * GET /download/archive.
 *
 * Where a session's current files live (common/layout.h): its input
 * folder until a job succeeds, then that job's published outputs
 * (sessions.current_job_id). An edit (PUT or DELETE /session/files) never
 * changes a job's outputs, which stay what the job left (its output_files
 * and /download?job_id= keep their meaning). Instead, one transaction:
 *   1. locks the session row (store.h lock order) and refuses with 409
 *      session_busy while a job of it is queued or running; submitting and
 *      claiming a job lock the row too, so none can start meanwhile;
 *   2. copies the current files (input or jobs/<current>) into a staging
 *      folder of the session (edit-<random>), applies the change there and
 *      takes its manifest (fs_manifest: regular files only, modes);
 *   3. records that manifest as session_files, the totals as
 *      input_file_count and input_bytes, current_job_id = NULL;
 *   4. swaps the staging folder with input/ in one renameat2
 *      (RENAME_EXCHANGE), then commits; if the commit fails the swap is
 *      undone. The old folder (now at the staging name) is removed.
 * So the next job starts from input/ (its base is the input when
 * current_job_id is NULL), /download and /download/archive serve it, and
 * GET /session/results lists it (with the latest succeeded job's result).
 * A reader sees the old folder or the new one, never a mix. A crash
 * between the swap and the commit can leave input/ ahead of the database
 * only while the input was current: the janitor does not mend that.
 *
 * Threading: handlers run on CivetWeb threads; nothing here is shared.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "archive_io.h"
#include "db.h"
#include "fsutil.h"
#include "http.h"
#include "layout.h"
#include "log.h"
#include "path.h"
#include "render.h"
#include "session_req.h"
#include "timefmt.h"
#include "xalloc.h"

/* ---- POST /session with a .tar.gz body ---------------------------------- */

/* Where the archive's bytes come from: the body the dispatcher already
 * read (Idempotency-Key), or the connection, read as it is unpacked. */
struct files_body {
    struct mg_connection *conn;
    const char           *mem;
    size_t                mem_len, mem_off;
    int64_t               deadline_ms;
    int                   timed_out;
};

static ssize_t files_body_read(void *arg, void *buf, size_t len)
{
    struct files_body *b = arg;
    if (b->conn == NULL) {
        size_t n = b->mem_len - b->mem_off < len ? b->mem_len - b->mem_off : len;
        memcpy(buf, b->mem + b->mem_off, n);
        b->mem_off += n;
        return (ssize_t)n;
    }
    if (time_mono_ms() > b->deadline_ms) {
        b->timed_out = 1;
        return -1;
    }
    int n = mg_read(b->conn, buf, len);
    return n < 0 ? -1 : n;
}

/* Reads what libarchive left of the body (the end of the gzip stream and
 * any padding), so a kept-alive connection starts its next request where
 * this body ends. Returns 0, or -1 when more than max bytes remain or the
 * read failed (the caller then closes the connection). */
static int files_body_drain(struct files_body *b, long max)
{
    char buf[4096];
    long left = max;
    for (;;) {
        ssize_t n = files_body_read(b, buf, sizeof(buf));
        if (n == 0)
            return 0;
        if (n < 0 || (left -= n) < 0)
            return -1;
    }
}

/* Answers a refused archive. */
static int files_archive_refuse(struct api_req *r, enum archive_rc rc, const char *detail,
                                const struct files_body *b)
{
    if (b->conn != NULL)
        http_close_after(r->conn);   /* the rest of the body is left unread */
    switch (rc) {
    case ARCHIVE_X_TOO_MANY:
        return api_fail(r, ERR_TOO_MANY_FILES, "%s", detail);
    case ARCHIVE_X_TOO_LARGE:
        return api_fail(r, ERR_SESSION_TOO_LARGE, "%s", detail);
    case ARCHIVE_X_BODY_TOO_LARGE:
        return api_fail(r, ERR_BODY_TOO_LARGE, "%s", detail);
    case ARCHIVE_X_READ_FAILED:
        return api_fail(r, ERR_BAD_REQUEST, "%s",
                        b->timed_out ? "request body not received in time" : detail);
    case ARCHIVE_X_IO:
        return api_fail(r, ERR_INTERNAL, "could not store the session files");
    default:
        return api_fail(r, ERR_INVALID_ARCHIVE, "%s", detail);
    }
}

/* Creates the session's folders and unpacks the body into input/. */
static int files_unpack(struct api_req *r, const char *id, struct archive_files *out)
{
    const struct cfg *cfg = r->cfg;
    char root[LAYOUT_PATH_MAX], dir[LAYOUT_PATH_MAX], input[LAYOUT_PATH_MAX];
    if (layout_sessions_root(cfg->data_dir, root, sizeof(root)) != 0 ||
        layout_session_dir(cfg->data_dir, id, dir, sizeof(dir)) != 0 ||
        layout_input_dir(cfg->data_dir, id, input, sizeof(input)) != 0 ||
        fs_mkdir_in(root, dir, 0700) != 0 || mkdir(input, 0700) != 0)
        return api_fail(r, ERR_INTERNAL, "could not create the session folder");
    int dfd = open(input, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return api_fail(r, ERR_INTERNAL, "could not create the session folder");
    struct files_body b = { r->conn, NULL, 0, 0,
                            time_mono_ms() + cfg->api_request_timeout_ms, 0 };
    if (r->body_read) {
        b.conn = NULL;
        b.mem = r->body ? r->body : "";
        b.mem_len = r->body ? r->body_len : 0;
    }
    const struct archive_limits lim = { cfg->max_files, cfg->max_session_bytes,
                                        cfg->max_body_bytes };
    char detail[512];
    enum archive_rc rc;
    if (r->body_read && r->body == NULL) {     /* the dispatcher found it too large */
        rc = ARCHIVE_X_BODY_TOO_LARGE;
        snprintf(detail, sizeof(detail), "request body is larger than the limit of %ld bytes",
                 cfg->max_body_bytes);
    } else {
        rc = archive_extract(files_body_read, &b, dfd, &lim, out, detail, sizeof(detail));
    }
    close(dfd);
    if (rc == ARCHIVE_X_OK && b.conn != NULL && files_body_drain(&b, cfg->max_body_bytes) != 0)
        http_close_after(r->conn);    /* trailing bytes past the archive's end */
    if (rc == ARCHIVE_X_OK)
        return 0;
    log_info("session.archive_refused", "session=%s key=%s", id, r->key_id);
    return files_archive_refuse(r, rc, detail, &b);
}

int api_session_create_archive(struct api_req *r)
{
    const struct cfg *cfg = r->cfg;
    char buf[32], id[ID_HEX_LEN + 1], dir[LAYOUT_PATH_MAX];
    long ttl = cfg->default_ttl_s;
    int found = http_query(r->conn, "ttl_seconds", buf, sizeof(buf));
    char *end = NULL;
    if (found != 0) {
        ttl = found > 0 ? strtol(buf, &end, 10) : 0;
        if (found < 0 || end == buf || *end != '\0' || ttl < 1 || ttl > cfg->max_ttl_s)
            return api_fail(r, ERR_VALIDATION, "ttl_seconds: must be an integer from 1 to %ld",
                            cfg->max_ttl_s);
    }
    if (id_new(id) != 0 || layout_session_dir(cfg->data_dir, id, dir, sizeof(dir)) != 0)
        return api_fail(r, ERR_INTERNAL, "could not create a session id");
    struct archive_files files;
    memset(&files, 0, sizeof(files));
    int status = files_unpack(r, id, &files);
    struct db *db = NULL;
    if (status == 0)
        status = api_quota_session(r, 1, files.bytes);
    if (status == 0 && (db = api_db(r)) == NULL)
        status = 503;
    if (status == 0) {
        struct store_new_session rec = { id, r->key_id, ttl, files.v, files.n, files.bytes };
        struct store_session s;
        int rc = store_files_session_create(db, &rec, &s);
        if (rc != STORE_OK) {
            status = api_store_fail(r, rc, "Session not found");
        } else {
            log_info("session.created", "session=%s key=%s files=%zu bytes=%lld ttl=%ld "
                     "from=archive", id, r->key_id, files.n, (long long)files.bytes, ttl);
            status = api_send(r, 200, render_session_created(&s, files.v, files.n));
        }
    }
    if (status != 200)
        fs_rm_rf(dir);
    archive_files_free(&files);
    return status;
}

/* ---- PUT and DELETE /session/files -------------------------------------- */

/* One edit: files to add or replace (put), or one path to remove (del). */
struct files_edit {
    const struct session_req *put;
    const char               *del;
};

/* Collects the new manifest (an fs_manifest_fn; arg: struct archive_files). */
static int files_list_add(void *arg, const char *rel, int64_t size, const char *sha256,
                          unsigned mode)
{
    (void)sha256;
    struct archive_files *f = arg;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        struct store_file *v = xcalloc(f->cap, sizeof(*v));
        if (f->n > 0)
            memcpy(v, f->v, f->n * sizeof(*v));
        free(f->v);
        f->v = v;
    }
    f->v[f->n++] = (struct store_file){ xstrdup(rel), size, NULL, mode };
    f->bytes += size;
    return 0;
}

/* Removes rel (a regular file) below dfd and its emptied parent folders.
 * The staging copy holds only folders and regular files (fs_copy_tree),
 * so no component is a link. Returns 0, -ENOENT or -errno. */
static int files_remove(int dfd, const char *rel)
{
    struct stat st;
    if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -ENOENT;
    if (unlinkat(dfd, rel, 0) != 0)
        return -errno;
    char buf[PATH_MAX_BYTES + 1];
    snprintf(buf, sizeof(buf), "%s", rel);
    for (char *s = strrchr(buf, '/'); s != NULL; s = strrchr(buf, '/')) {
        *s = '\0';
        if (unlinkat(dfd, buf, AT_REMOVEDIR) != 0)
            break;                    /* not empty: its files stay */
    }
    return 0;
}

/* Applies the edit to the staging folder. Returns 0 or the status after
 * answering. */
static int files_apply(struct api_req *r, int dfd, const struct files_edit *ed)
{
    if (ed->del != NULL) {
        int rc = files_remove(dfd, ed->del);
        if (rc == -ENOENT || rc == -ENOTDIR)
            return api_fail(r, ERR_NOT_FOUND, "File not found in session: %.200s", ed->del);
        return rc == 0 ? 0 : api_fail(r, ERR_INTERNAL, "could not remove the file");
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, ed->put->files) {
        const char *path = cJSON_GetObjectItemCaseSensitive(f, "path")->valuestring;
        const char *data;
        size_t n;
        int owned;
        if (session_file_data(f, &data, &n, &owned) != 0)
            return api_fail(r, ERR_OUT_OF_MEMORY, "out of memory");
        int rc = files_remove(dfd, path);
        if (rc == 0 || rc == -ENOENT)
            rc = fs_write_beneath(dfd, path, data, n);
        if (owned)
            free((void *)data);
        if (rc == -EEXIST || rc == -ENOTDIR || rc == -EISDIR || rc == -ELOOP)
            return api_fail(r, ERR_INVALID_PATH, "Invalid file path: %.200s clashes with a "
                            "folder or file of the session", path);
        if (rc != 0)
            return api_fail(r, ERR_INTERNAL, "could not write the session files");
    }
    return 0;
}

/* Checks the edited files against the session limits. */
static int files_check_totals(struct api_req *r, const struct archive_files *f)
{
    if ((long)f->n > r->cfg->max_files)
        return api_fail(r, ERR_TOO_MANY_FILES, "Exceeded max file count of %ld",
                        r->cfg->max_files);
    if (f->bytes > r->cfg->max_session_bytes)
        return api_fail(r, ERR_SESSION_TOO_LARGE, "Exceeded max session size of %ld bytes",
                        r->cfg->max_session_bytes);
    return 0;
}

/*
 * The tree walks of fsutil (copy, manifest) keep 64 KiB I/O buffers on the
 * stack, sized for the worker's threads; CivetWeb's server threads have
 * small stacks (libcivetweb's build sets their size), which a copy would
 * overflow into the next thread's stack. So an edit runs them on a thread
 * of its own with FILES_WALK_STACK of stack, the request's thread waiting
 * for it (edits are rare and short).
 */
#define FILES_WALK_STACK (4 * 1024 * 1024)

struct files_walk_job {
    const char            *src, *dst;     /* copy src to dst; or manifest of src */
    const struct fs_walk  *walk;
    struct archive_files  *list;          /* NULL: copy */
    int                    rc;
};

static void *files_walk_main(void *arg)
{
    struct files_walk_job *j = arg;
    j->rc = j->list == NULL ? fs_copy_tree(j->src, j->dst, j->walk)
                            : fs_manifest(j->src, files_list_add, j->list, j->walk);
    return NULL;
}

static int files_walk_run(struct files_walk_job *j)
{
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) != 0)
        return -ENOMEM;
    int e = pthread_attr_setstacksize(&attr, FILES_WALK_STACK);
    if (e == 0)
        e = pthread_create(&t, &attr, files_walk_main, j);
    pthread_attr_destroy(&attr);
    if (e != 0)
        return -e;
    pthread_join(t, NULL);
    return j->rc;
}

/* A walk stopped by its bounds (-EMFILE: files, -EFBIG: bytes). */
static int files_walk_over(struct api_req *r, int rc)
{
    struct archive_files over = { NULL, 0, 0, 0 };
    over.n = rc == -EMFILE ? (size_t)r->cfg->max_files + 1 : 0;
    over.bytes = rc == -EFBIG ? r->cfg->max_session_bytes + 1 : 0;
    return files_check_totals(r, &over);
}

/* Steps 2 and 3 of the header: copy, change, manifest, record. An edit
 * that grows the session past old_bytes must fit the key's stored-bytes
 * quota as a new session would (one that shrinks it always may). */
static int files_stage(struct api_req *r, struct db *db, const char *sid, const char *cur,
                       const char *staging, const struct files_edit *ed, int64_t old_bytes)
{
    /* The copy is not bounded by the session limits: a job's outputs may
     * exceed them (the worker has limits of its own), and a DELETE must be
     * able to bring them back under. The limits apply to the result; the
     * manifest walk stops soon after passing them. */
    struct files_walk_job copy = { cur, staging, NULL, NULL, 0 };
    int rc = files_walk_run(&copy);
    if (rc != 0) {
        log_error("files.copy_failed", "session=%s error=\"%s\"", sid, strerror(-rc));
        return api_fail(r, ERR_INTERNAL, "could not copy the session files");
    }
    int dfd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return api_fail(r, ERR_INTERNAL, "could not open the session files");
    int status = files_apply(r, dfd, ed);
    close(dfd);
    if (status != 0)
        return status;
    struct archive_files list;
    memset(&list, 0, sizeof(list));
    struct fs_walk walk = { (uint64_t)r->cfg->max_files + 1,
                            (uint64_t)r->cfg->max_session_bytes + 1, NULL, NULL };
    struct files_walk_job manifest = { staging, NULL, &walk, &list, 0 };
    rc = files_walk_run(&manifest);
    if (rc == -EMFILE || rc == -EFBIG)
        status = files_walk_over(r, rc);
    else if (rc != 0)
        status = api_fail(r, ERR_INTERNAL, "could not list the session files");
    else
        status = files_check_totals(r, &list);
    if (status == 0 && list.bytes > old_bytes)
        status = api_quota_session(r, 0, list.bytes - old_bytes);
    if (status == 0) {
        rc = store_files_edit_record(db, sid, list.v, list.n, list.bytes);
        if (rc != STORE_OK)
            status = api_store_fail(r, rc, "Session not found");
        else
            log_info("session.files_edited", "session=%s key=%s files=%zu bytes=%lld", sid,
                     r->key_id, list.n, (long long)list.bytes);
    }
    archive_files_free(&list);
    return status;
}

/* Step 4: swap staging and input/, commit, or undo the swap. */
static int files_publish(struct api_req *r, struct db *db, const char *staging,
                         const char *input)
{
    if (renameat2(AT_FDCWD, staging, AT_FDCWD, input, RENAME_EXCHANGE) != 0) {
        log_error("files.swap_failed", "error=\"%s\"", strerror(errno));
        store_files_edit_end(db, 0);
        return api_fail(r, ERR_INTERNAL, "could not store the session files");
    }
    int rc = store_files_edit_end(db, 1);
    if (rc != STORE_OK) {
        if (renameat2(AT_FDCWD, staging, AT_FDCWD, input, RENAME_EXCHANGE) != 0)
            log_error("files.unswap_failed", "error=\"%s\"", strerror(errno));
        return api_store_fail(r, rc, "Session not found");
    }
    return 0;
}

static int files_edit(struct api_req *r, const char *sid, const struct files_edit *ed)
{
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    char current[ID_HEX_LEN + 1], rnd[ID_HEX_LEN + 1];
    int64_t old_bytes = 0;
    int rc = store_files_edit_begin(db, sid, r->key_id, current, &old_bytes);
    if (rc == STORE_CONFLICT)
        return api_fail(r, ERR_SESSION_BUSY, "a job of this session is queued or running; "
                                             "change its files once the job has finished");
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    char cur[LAYOUT_PATH_MAX], input[LAYOUT_PATH_MAX], dir[LAYOUT_PATH_MAX];
    char staging[LAYOUT_PATH_MAX + 64];
    if (layout_files_dir(r->cfg->data_dir, sid, current, cur, sizeof(cur)) != 0 ||
        layout_input_dir(r->cfg->data_dir, sid, input, sizeof(input)) != 0 ||
        layout_session_dir(r->cfg->data_dir, sid, dir, sizeof(dir)) != 0 || id_new(rnd) != 0) {
        store_files_edit_end(db, 0);
        return api_fail(r, ERR_INTERNAL, "internal error");
    }
    snprintf(staging, sizeof(staging), "%s/edit-%s", dir, rnd);
    int status = files_stage(r, db, sid, cur, staging, ed, old_bytes);
    if (status == 0)
        status = files_publish(r, db, staging, input);
    else
        store_files_edit_end(db, 0);
    fs_rm_rf(staging);
    return status;
}

/* The session's files as GET /session/results shows them. */
static int files_answer(struct api_req *r, const char *sid)
{
    struct store_results res;
    int rc = store_files_edited_results(api_db(r), sid, r->key_id, &res);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    int status = api_send(r, 200, render_results(sid, &res));
    store_results_free(&res);
    return status;
}

int api_session_files_put(struct api_req *r)
{
    char sid[ID_HEX_LEN + 1];
    int status = api_id_param(r, "session_id", sid, "Session not found");
    if (status != 0)
        return status;
    cJSON *req = NULL;
    status = api_read_json(r, (size_t)r->cfg->max_body_bytes, &req);
    if (status != 0)
        return status;
    const struct session_limits lim = { r->cfg->max_files, r->cfg->max_session_bytes,
                                        r->cfg->default_ttl_s, r->cfg->max_ttl_s };
    struct session_req ns;
    char detail[512];
    enum session_req_rc rc = session_req_check_files(req, &lim, &ns, detail, sizeof(detail));
    if (rc != SREQ_OK) {
        status = api_session_refuse(r, rc, detail);
    } else {
        struct files_edit ed = { &ns, NULL };
        status = files_edit(r, sid, &ed);
        if (status == 0)
            status = files_answer(r, sid);
    }
    cJSON_Delete(req);
    return status;
}

int api_session_files_delete(struct api_req *r)
{
    char sid[ID_HEX_LEN + 1], path[PATH_MAX_BYTES + 1];
    int status = api_id_param(r, "session_id", sid, "Session not found");
    if (status != 0)
        return status;
    int found = http_query(r->conn, "file_path", path, sizeof(path));
    if (found == 0)
        return api_fail(r, ERR_VALIDATION, "file_path: required query parameter");
    const char *why = "is too long or not a valid query value";
    if (found < 0 || path_validate(path, strlen(path), &why) != 0)
        return api_fail(r, ERR_INVALID_PATH, "Invalid file path: file_path %s", why);
    struct files_edit ed = { NULL, path };
    status = files_edit(r, sid, &ed);
    if (status == 0)
        status = files_answer(r, sid);
    return status;
}

/* ---- GET /download/archive ---------------------------------------------- */

static int files_chunk_out(void *arg, const void *buf, size_t len)
{
    return mg_send_chunk(arg, buf, (unsigned int)len) > 0 ? 0 : -1;
}

/* Streams files[] below dir as a chunked application/gzip response. */
static int files_stream(struct api_req *r, const char *sid, const char *dir,
                        const struct store_files *files)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return api_fail(r, ERR_NOT_FOUND, "Session files not found");
    mg_printf(r->conn,
              "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n"
              "Content-Disposition: attachment; filename=\"%s.tar.gz\"\r\n"
              "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
              "Transfer-Encoding: chunked\r\n%s\r\n",
              sid, http_common_headers(r->conn));
    char ctx[64];
    snprintf(ctx, sizeof(ctx), "session=%s", sid);
    if (archive_stream(dfd, files->v, files->n, files_chunk_out, r->conn, ctx) == 0)
        mg_send_chunk(r->conn, "", 0);
    else
        http_close_after(r->conn);    /* cut short: no final chunk */
    close(dfd);
    return 200;
}

int api_download_archive(struct api_req *r)
{
    char sid[ID_HEX_LEN + 1], job[ID_HEX_LEN + 1], buf[128], folder[ID_HEX_LEN + 1];
    int status = api_id_param(r, "session_id", sid, "Session not found");
    if (status != 0)
        return status;
    int has_job = http_query(r->conn, "job_id", buf, sizeof(buf));
    if (has_job != 0 && (has_job < 0 || !id_valid(buf)))
        return api_fail(r, ERR_NOT_FOUND, "Job not found");
    if (has_job)
        memcpy(job, buf, ID_HEX_LEN + 1);
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    struct store_files files;
    int rc = store_files_current(db, sid, r->key_id, has_job ? job : NULL, folder, &files);
    if (rc == STORE_GONE)
        return api_fail(r, ERR_GONE,
                        "The outputs of job %s were pruned: a session keeps those of its "
                        "newest %ld ended jobs (SESSION_KEEP_JOBS) and its current files",
                        job, r->cfg->session_keep_jobs);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, has_job ? "Job not found" : "Session not found");
    api_db_release(r);      /* a slow client must not hold a pooled connection */
    char dir[LAYOUT_PATH_MAX];
    if (layout_files_dir(r->cfg->data_dir, sid, folder, dir, sizeof(dir)) != 0)
        status = api_fail(r, ERR_INTERNAL, "internal error");
    else
        status = files_stream(r, sid, dir, &files);
    store_files_free(&files);
    return status;
}
