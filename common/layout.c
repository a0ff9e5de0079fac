/* layout.c - see layout.h. */
#include "layout.h"

#include <errno.h>
#include <stdio.h>

#include "ids.h"

static int layout_fit(int n, size_t len)
{
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int layout_sessions_root(const char *data_dir, char *buf, size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions", data_dir), len);
}

int layout_session_dir(const char *data_dir, const char *session, char *buf, size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions/%s", data_dir, session), len);
}

int layout_input_dir(const char *data_dir, const char *session, char *buf, size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions/%s/input", data_dir, session), len);
}

int layout_env_file(const char *data_dir, const char *session, char *buf, size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions/%s/env.json", data_dir, session), len);
}

int layout_files_dir(const char *data_dir, const char *session, const char *job, char *buf,
                     size_t len)
{
    if (job == NULL || job[0] == '\0')
        return layout_input_dir(data_dir, session, buf, len);
    return layout_fit(snprintf(buf, len, "%s/sessions/%s/jobs/%s", data_dir, session, job),
                      len);
}

#define LAYOUT_SET(field, ...) \
    layout_fit(snprintf(a->field, sizeof(a->field), __VA_ARGS__), sizeof(a->field))

int layout_attempt(const char *data_dir, const char *session, const char *job,
                   const char *token, const char *base_job, struct layout_attempt *a)
{
    a->conv_from[0] = '\0';
    if (LAYOUT_SET(dir, "%s/sessions/%s/attempts/%s-%s", data_dir, session, job, token) ||
        LAYOUT_SET(work, "%s/work", a->dir) ||
        LAYOUT_SET(run, "%s/run", a->dir) ||
        LAYOUT_SET(home, "%s/home", a->run) ||
        LAYOUT_SET(prompt, "%s/prompt", a->run) ||
        LAYOUT_SET(events, "%s/stdout.jsonl", a->run) ||
        LAYOUT_SET(log, "%s/stderr.log", a->run) ||
        LAYOUT_SET(jobs, "%s/sessions/%s/jobs", data_dir, session) ||
        LAYOUT_SET(published, "%s/%s", a->jobs, job) ||
        LAYOUT_SET(trash, "%s/sessions/%s/trash", data_dir, session) ||
        layout_env_file(data_dir, session, a->env_file, sizeof(a->env_file)) ||
        LAYOUT_SET(conv_stage, "%s/conversation", a->dir) ||
        LAYOUT_SET(conversations, "%s/sessions/%s/conversations", data_dir, session) ||
        LAYOUT_SET(conv_published, "%s/%s", a->conversations, job) ||
        layout_files_dir(data_dir, session, base_job, a->base, sizeof(a->base)))
        return -ENAMETOOLONG;
    return 0;
}

int layout_attempt_conversation(const char *data_dir, const char *session,
                                const char *conv_job, struct layout_attempt *a)
{
    if (conv_job == NULL || conv_job[0] == '\0') {
        a->conv_from[0] = '\0';
        return 0;
    }
    return LAYOUT_SET(conv_from, "%s/sessions/%s/conversations/%s", data_dir, session,
                      conv_job);
}

int layout_trash_entry(const struct layout_attempt *a, const char *job, char *buf,
                       size_t len)
{
    char rnd[ID_HEX_LEN + 1];
    if (id_new(rnd) != 0)
        return -EIO;
    return layout_fit(snprintf(buf, len, "%s/%s-%s", a->trash, job, rnd), len);
}
