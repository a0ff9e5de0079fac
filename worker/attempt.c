/* attempt.c - see attempt.h. */
#include "attempt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conversation.h"
#include "fsutil.h"

static int attempt_write_file(const char *path, const char *prompt)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    size_t n = strlen(prompt);
    ssize_t w = write(fd, prompt, n);
    if (close(fd) != 0 || w != (ssize_t)n)
        return -EIO;
    return 0;
}

/*
 * opencode's global configuration folder (~/.config/opencode) with its
 * dependencies marked installed. On every start opencode checks that each
 * configuration folder it can write lists @opencode-ai/plugin in its
 * package.json and package-lock.json and has a node_modules/; on a fresh
 * HOME it is missing, so opencode runs an npm install of that package (and
 * its dependency tree) into HOME in the background: a download from the
 * npm registry, about 5 MB written and CPU taken from the run, on every
 * job. The package only serves plugins and tools written into that folder,
 * which a fresh HOME has none of (a workspace's own .opencode/ is checked
 * and installed as before). Only the names are compared, never versions.
 */
static const char attempt_oc_package[] =
    "{\"dependencies\":{\"@opencode-ai/plugin\":\"*\"}}\n";
static const char attempt_oc_lock[] =
    "{\"lockfileVersion\":3,\"packages\":{\"\":{\"dependencies\":"
    "{\"@opencode-ai/plugin\":\"*\"}}}}\n";

/* Makes home's folders dirs (each inside the one before it) and writes
 * text as home + rel. */
static int attempt_home_write(const char *home, const char *const *dirs, size_t ndirs,
                              const char *rel, const char *text)
{
    char path[LAYOUT_PATH_MAX + 64];
    for (size_t i = 0; i < ndirs; i++) {
        if (snprintf(path, sizeof(path), "%s%s", home, dirs[i]) >= (int)sizeof(path))
            return -ENAMETOOLONG;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
    }
    if (snprintf(path, sizeof(path), "%s%s", home, rel) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return attempt_write_file(path, text);
}

int attempt_seed_home(const char *home)
{
    static const char *const dirs[] = { "/.config", "/.config/opencode",
                                        "/.config/opencode/node_modules" };
    int rc = attempt_home_write(home, dirs, sizeof(dirs) / sizeof(dirs[0]),
                                "/.config/opencode/package.json", attempt_oc_package);
    return rc != 0 ? rc : attempt_home_write(home, dirs, 0,
                                             "/.config/opencode/package-lock.json",
                                             attempt_oc_lock);
}

int attempt_seed_models(const char *home, const char *models)
{
    static const char *const dirs[] = { "/.cache", "/.cache/opencode" };
    if (models == NULL)
        return 0;
    return attempt_home_write(home, dirs, sizeof(dirs) / sizeof(dirs[0]),
                              "/.cache/opencode/models.json", models);
}

int attempt_base_copy(const struct layout_attempt *a, char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/base", a->dir) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}

/* A second copy of a.base, the files the attempt starts from, which the
 * agent never sees: what the job changed is measured against it. */
static int attempt_keep_base(const struct layout_attempt *a, const struct fs_walk *walk)
{
    char base[LAYOUT_PATH_MAX + 16];
    int rc = attempt_base_copy(a, base, sizeof(base));
    return rc != 0 ? rc : fs_copy_tree(a->base, base, walk);
}

/* The session's conversation into the fresh HOME (conversation.h): only
 * when a->conv_from names one. */
static int attempt_seed_conversation(const struct layout_attempt *a)
{
    return conversation_seed(a);
}

int attempt_prepare(const struct layout_attempt *a, const char *prompt, int *created)
{
    return attempt_prepare_walk(a, prompt, NULL, created);
}

int attempt_prepare_walk(const struct layout_attempt *a, const char *prompt,
                         const struct fs_walk *walk, int *created)
{
    /* Exclusive: the lease token is fresh, so the folder is new; one that
     * exists belongs to someone else and is left alone. */
    int rc = fs_mkdir_new(a->dir, 0700);
    if (rc != 0)
        return rc;
    *created = 1;
    rc = fs_mkdir_p(a->jobs, 0755);
    if (rc == 0)
        rc = fs_copy_tree(a->base, a->work, walk);
    if (rc == 0)
        rc = attempt_keep_base(a, walk);
    if (rc == 0)
        rc = fs_mkdir_p(a->home, 0700);
    if (rc == 0)
        rc = attempt_seed_home(a->home);
    if (rc == 0)
        rc = attempt_seed_conversation(a);
    if (rc == 0)
        rc = attempt_write_file(a->prompt, prompt);
    return rc;
}

int attempt_publish(const struct layout_attempt *a, const char *job,
                    attempt_lease_fn still_ours, void *arg, char *trash_entry, size_t len)
{
    trash_entry[0] = '\0';
    if (!still_ours(arg))
        return ATTEMPT_LEASE_GONE;
    int rc = fs_publish_dir(a->work, a->published, NULL, NULL);
    if (rc != -EEXIST)
        return rc;
    if (!still_ours(arg))
        return ATTEMPT_LEASE_GONE;
    rc = layout_trash_entry(a, job, trash_entry, len);
    if (rc != 0) {
        trash_entry[0] = '\0';
        return rc;
    }
    return fs_publish_dir(a->work, a->published, a->trash, trash_entry);
}

int attempt_remove(const struct layout_attempt *a)
{
    return fs_rm_rf(a->dir);
}
