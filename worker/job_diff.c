/*
 * job_diff.c - what a job changed (see job.h: job_diff): each output's
 * change, the deleted paths, and the unified diff GET /job/diff serves.
 *
 * The files the job started from are the attempt's private copy of its
 * base (attempt_base_copy(): made while preparing, owned by the worker,
 * never visible to the agent), so neither the agent nor a later edit of
 * the session's input can change what the outputs are compared with.
 * Its manifest is taken like the outputs' (fs_manifest: regular files
 * only, names the API cannot serve left out, the lease renewed).
 *
 * The diff is git's (Debian's /usr/bin/git), never one of our own: the
 * changed files of both sides become two trees of a private bare
 * repository under the attempt's folder (hash-object --no-filters and
 * update-index --index-info, so no attribute, filter or ignore file the
 * agent wrote applies, and exactly the manifests' files with their
 * modes), then `git diff-tree -p` prints them git style. git runs with a
 * clean environment: HOME an empty folder, no system or global config,
 * no PATH lookup, discovery stopped at the attempt's folder. Hashing
 * large outputs can outlast a lease, so the lease is renewed while git
 * runs, and git is killed when the lease is lost.
 *
 * Threading: runs on the worker slot's thread, like the rest of an attempt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "attempt.h"
#include "fsutil.h"
#include "job.h"
#include "log.h"
#include "path.h"
#include "xalloc.h"

#define JOB_GIT_BIN "/usr/bin/git"
/* How often the lease is looked at while git runs (agent_wait_helper). */
#define JOB_GIT_TICK_MS 200
#define JOB_DIFF_DIR (LAYOUT_PATH_MAX + 16)
#define JOB_DIFF_PATH (JOB_DIFF_DIR + 128)

/* ---- The comparison (pure) ---------------------------------------------- */

static int job_cmp_path(const void *a, const void *b)
{
    const struct store_file *const *x = a, *const *y = b;
    return strcmp((*x)->path, (*y)->path);
}

/* Pointers to v's entries, sorted by path. */
static const struct store_file **job_sorted(const struct store_file *v, size_t n)
{
    const struct store_file **s = xcalloc(n + 1, sizeof(*s));
    for (size_t i = 0; i < n; i++)
        s[i] = &v[i];
    qsort(s, n, sizeof(*s), job_cmp_path);
    return s;
}

void job_changes_compare(const struct store_file *base, size_t nbase,
                         const struct store_file *out, size_t nout, const char **change,
                         char ***deleted, size_t *ndeleted)
{
    const struct store_file **b = job_sorted(base, nbase);
    const struct store_file **o = job_sorted(out, nout);
    *deleted = xcalloc(nbase + 1, sizeof(**deleted));
    *ndeleted = 0;
    size_t i = 0, j = 0;
    while (i < nbase || j < nout) {
        int c = i == nbase ? 1 : j == nout ? -1 : strcmp(b[i]->path, o[j]->path);
        if (c < 0) {
            (*deleted)[(*ndeleted)++] = xstrdup(b[i++]->path);
            continue;
        }
        const struct store_file *f = o[j++];
        size_t k = (size_t)(f - out);
        if (c > 0) {
            change[k] = "added";
            continue;
        }
        unsigned bm = b[i]->mode == 0100755 ? 0100755 : 0100644;
        unsigned om = f->mode == 0100755 ? 0100755 : 0100644;
        change[k] = bm == om && strcmp(b[i]->sha256, f->sha256) == 0 ? "unchanged"
                                                                       : "modified";
        i++;
    }
    free(b);
    free(o);
}

/* ---- The base's manifest ------------------------------------------------ */

static int job_base_add(void *arg, const char *rel, int64_t size, const char *sha256,
                        unsigned mode)
{
    struct job_files *f = arg;
    const char *why;
    if (path_validate(rel, strlen(rel), &why) != 0) {
        f->skipped++;         /* as the outputs: the API never showed it */
        return 0;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
    }
    f->v[f->n] = (struct store_file){ .path = xstrdup(rel), .size_bytes = size,
                                      .sha256 = xstrdup(sha256), .mode = mode };
    f->n++;
    return 0;
}

/* ---- git ---------------------------------------------------------------- */

/* Runs git in dir with args (after "git"), stdin from in (NULL:
 * /dev/null), stdout to out. Returns git's exit status, or -1. */
static int job_git(struct job_attempt *ja, const char *dir, const char *const *args,
                   const char *in, const char *out)
{
    char home[JOB_DIFF_PATH], ceil[JOB_DIFF_PATH], gitdir[JOB_DIFF_PATH], idx[JOB_DIFF_PATH];
    snprintf(home, sizeof(home), "HOME=%s/home", dir);
    snprintf(ceil, sizeof(ceil), "GIT_CEILING_DIRECTORIES=%s", dir);
    snprintf(gitdir, sizeof(gitdir), "GIT_DIR=%s/repo.git", dir);
    /* args[0] names the index ("a", "b"; "-": none) the command uses. */
    snprintf(idx, sizeof(idx), "GIT_INDEX_FILE=%s/%s.index", dir, args[0]);
    args++;
    char *const env[] = { home, ceil, gitdir, idx, "GIT_CONFIG_NOSYSTEM=1",
                          "GIT_CONFIG_GLOBAL=/dev/null", "GIT_ATTR_NOSYSTEM=1",
                          "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0",
                          "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };
    const char *argv[16] = { "git" };
    size_t n = 1;
    for (; args[n - 1] != NULL && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int i = open(in ? in : "/dev/null", O_RDONLY | O_CLOEXEC);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        int e = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (i < 0 || o < 0 || e < 0 || chdir(dir) != 0 || dup2(i, 0) < 0 ||
            dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        execve(JOB_GIT_BIN, (char *const *)argv, env);
        _exit(127);
    }
    int st = 0;
    if (agent_wait_helper(pid, JOB_GIT_TICK_MS, job_walk_progress, ja, &st) != 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Reads up to max bytes of path (malloc'd, NUL added); *size gets the
 * file's whole size. NULL when unreadable. */
static char *job_read_file(const char *path, size_t max, size_t *len, int64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    *size = st.st_size;
    size_t want = (size_t)st.st_size < max ? (size_t)st.st_size : max;
    char *buf = xmalloc(want + 1);
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

/* ---- The diff ----------------------------------------------------------- */

struct job_side {
    const char *name;                 /* "a" (the base) or "b" (the outputs) */
    const char *root;
    const struct store_file **v;      /* the side's changed files */
    size_t n;
};

/* Writes side's two input files: the paths to hash, then (after hashing)
 * the index lines. Returns 0 or -1. */
static int job_side_paths(const char *dir, const struct job_side *s)
{
    char path[JOB_DIFF_PATH];
    snprintf(path, sizeof(path), "%s/%s.paths", dir, s->name);
    FILE *f = fopen(path, "we");
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s/%s\n", s->root, s->v[i]->path);
    return fclose(f) == 0 ? 0 : -1;
}

/* A path as git's C-style quoted name, so one that begins with '"' is
 * read as it is (path_validate() leaves no control characters). */
static void job_put_quoted(FILE *f, const char *path)
{
    fputc('"', f);
    for (const char *c = path; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            fputc('\\', f);
        fputc(*c, f);
    }
    fputs("\"\n", f);
}

/* Hashes side's files into the repository and writes its tree; tree gets
 * the tree's id. Returns 0 or -1. */
static int job_side_tree(struct job_attempt *ja, const char *dir, const struct job_side *s,
                         char tree[64])
{
    char paths[JOB_DIFF_PATH], shas[JOB_DIFF_PATH], info[JOB_DIFF_PATH], out[JOB_DIFF_PATH];
    snprintf(paths, sizeof(paths), "%s/%s.paths", dir, s->name);
    snprintf(shas, sizeof(shas), "%s/%s.shas", dir, s->name);
    snprintf(info, sizeof(info), "%s/%s.info", dir, s->name);
    snprintf(out, sizeof(out), "%s/%s.tree", dir, s->name);
    const char *hash[] = { s->name, "hash-object", "-w", "--no-filters", "--stdin-paths", NULL };
    if (job_side_paths(dir, s) != 0 || job_git(ja, dir, hash, paths, shas) != 0)
        return -1;
    FILE *in = fopen(shas, "re"), *f = fopen(info, "we");
    char line[128];
    size_t i = 0;
    for (; in != NULL && f != NULL && i < s->n && fgets(line, sizeof(line), in) != NULL; i++) {
        fprintf(f, "%s %.40s\t", s->v[i]->mode == 0100755 ? "100755" : "100644", line);
        job_put_quoted(f, s->v[i]->path);
    }
    int ok = in != NULL && f != NULL && i == s->n;
    if (in != NULL)
        fclose(in);
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    const char *upd[] = { s->name, "update-index", "--add", "--index-info", NULL };
    const char *wt[] = { s->name, "write-tree", NULL };
    if (!ok || job_git(ja, dir, upd, info, shas) != 0 ||
        job_git(ja, dir, wt, NULL, out) != 0)
        return -1;
    size_t len = 0;
    int64_t size = 0;
    char *t = job_read_file(out, 63, &len, &size);
    ok = t != NULL && len >= 40;
    if (ok)
        snprintf(tree, 64, "%.40s", t);
    free(t);
    return ok ? 0 : -1;
}

/* The changed files of both sides: a gets the base's files that are not
 * unchanged outputs, b the added and modified outputs. */
static void job_sides(const struct job_files *base, const struct job_files *out,
                      struct job_side *a, struct job_side *b)
{
    const struct store_file **o = job_sorted(out->v, out->n);
    a->v = xcalloc(base->n + 1, sizeof(*a->v));
    b->v = xcalloc(out->n + 1, sizeof(*b->v));
    a->n = b->n = 0;
    for (size_t i = 0; i < base->n; i++) {
        const struct store_file *key = &base->v[i];
        const struct store_file **hit = bsearch(&key, o, out->n, sizeof(*o), job_cmp_path);
        if (hit == NULL || strcmp(out->change[*hit - out->v], "unchanged") != 0)
            a->v[a->n++] = key;
    }
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->change[i], "unchanged") != 0)
            b->v[b->n++] = &out->v[i];
    free(o);
}

/* Makes dir and runs git to write dir/diff.out. Returns 0 or -1. */
static int job_diff_run(struct job_attempt *ja, const char *dir, struct job_side *a,
                        struct job_side *b)
{
    char home[JOB_DIFF_PATH], out[JOB_DIFF_PATH], ta[64], tb[64];
    snprintf(home, sizeof(home), "%s/home", dir);
    snprintf(out, sizeof(out), "%s/diff.out", dir);
    const char *init[] = { "-", "init", "-q", "--bare", NULL };
    if (fs_mkdir_new(dir, 0700) != 0 || mkdir(home, 0700) != 0 ||
        job_git(ja, dir, init, NULL, out) != 0)
        return -1;
    if (job_side_tree(ja, dir, a, ta) != 0 || job_side_tree(ja, dir, b, tb) != 0)
        return -1;
    const char *diff[] = { "-", "diff-tree", "-p", "-r", "--no-color", "--no-ext-diff",
                           "--no-textconv", "--no-renames", ta, tb, NULL };
    return job_git(ja, dir, diff, NULL, out) == 0 ? 0 : -1;
}

/* Builds and stores the diff of base against the outputs. */
static void job_diff_store(struct job_attempt *ja, const char *base_root,
                           const struct job_files *base)
{
    char dir[JOB_DIFF_DIR], out[JOB_DIFF_PATH];
    snprintf(dir, sizeof(dir), "%s/diff", ja->a.dir);
    snprintf(out, sizeof(out), "%s/diff.out", dir);
    struct job_side a = { .name = "a", .root = base_root };
    struct job_side b = { .name = "b", .root = ja->a.work };
    job_sides(base, &ja->files, &a, &b);
    int rc = job_diff_run(ja, dir, &a, &b);
    free(a.v);
    free(b.v);
    size_t cap = (size_t)ja->w->cfg->job_max_diff_bytes, len = 0;
    int64_t size = 0;
    char *text = rc == 0 ? job_read_file(out, cap + 1, &len, &size) : NULL;
    if (text == NULL) {
        if (!ja->lease_lost)   /* else job.lease_expired said why */
            log_warn("job.diff_failed", "job=%s reason=\"git failed\"", ja->c->job_id);
        return;
    }
    int truncated = size > (int64_t)cap;
    if (truncated) {
        char *nl = memrchr(text, '\n', cap);
        len = nl != NULL ? (size_t)(nl - text) + 1 : 0;
    }
    rc = store_diff_put(ja->db, ja->c->job_id, ja->c->lease_token, text, len, size, truncated);
    if (rc != STORE_OK)
        log_warn("job.diff_unstored", "job=%s rc=%d", ja->c->job_id, rc);
    free(text);
}

void job_diff(struct job_attempt *ja)
{
    char root[LAYOUT_PATH_MAX + 16];
    struct job_files base = { 0 };
    struct fs_walk walk = { .progress = job_walk_progress, .arg = ja };
    int rc = attempt_base_copy(&ja->a, root, sizeof(root));
    if (rc == 0)
        rc = fs_manifest(root, job_base_add, &base, &walk);
    if (rc != 0) {
        if (!(rc == -ECANCELED && ja->lease_lost))
            log_warn("job.changes_unknown", "job=%s errno=%d", ja->c->job_id, -rc);
        job_files_free(&base);
        return;
    }
    ja->files.change = xcalloc(ja->files.n + 1, sizeof(*ja->files.change));
    job_changes_compare(base.v, base.n, ja->files.v, ja->files.n, ja->files.change,
                        &ja->files.deleted, &ja->files.ndeleted);
    ja->o.has_changes = 1;
    ja->o.changes = ja->files.change;
    ja->o.deleted = (const char *const *)ja->files.deleted;
    ja->o.ndeleted = ja->files.ndeleted;
    job_diff_store(ja, root, &base);
    job_files_free(&base);
}
