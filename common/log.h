/*
 * log.h - one line per event on stderr: time, level, event name, then
 * key=value pairs chosen by the caller. Never log a secret or a request
 * body: callers pass ids, sizes and statuses only.
 */
#ifndef OC_LOG_H
#define OC_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Sets the lowest level written (default LOG_INFO) and the program name
 * printed on each line. Call once at start-up, before threads exist. */
void log_init(const char *program, int level);

/* Parses "debug", "info", "warn" or "error"; returns the level or -1. */
int log_level_parse(const char *s);

/* Writes "<time> <level> <program> <event> <fmt...>\n" atomically (one
 * write call), so lines from several threads never interleave. */
void log_msg(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
