/* layout.c - see layout.h. */
#include "layout.h"

#include <stdio.h>

static int layout_fit(int n, size_t len)
{
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
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

int layout_job_dir(const char *data_dir, const char *session, const char *job, char *buf,
                   size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions/%s/jobs/%s", data_dir, session, job),
                      len);
}

int layout_run_dir(const char *data_dir, const char *session, const char *job, char *buf,
                   size_t len)
{
    return layout_fit(snprintf(buf, len, "%s/sessions/%s/run/%s", data_dir, session, job),
                      len);
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
    return layout_job_dir(data_dir, session, job, buf, len);
}
