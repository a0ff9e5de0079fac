/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "opencode";
static int log_min_level = LOG_INFO;

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *program, int level)
{
    log_program = program;
    log_min_level = level;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, log_level_names[i]) == 0)
            return i;
    return -1;
}

void log_msg(int level, const char *event, const char *fmt, ...)
{
    if (level < log_min_level)
        return;

    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);

    char line[2048];
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                     log_level_names[level], log_program, event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;          /* truncated: still one line */
    line[len++] = '\n';

    /* One write(2) per line keeps concurrent lines whole. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
