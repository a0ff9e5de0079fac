/*
 * log.h - one line per event on stderr: time, level, event name, then
 * key=value pairs chosen by the caller. Never log a secret or a request
 * body: callers pass ids, sizes and statuses only.
 *
 * Two formats (LOG_FORMAT): text (the default)
 *   2024-05-01T12:00:00.000Z info opencode-api job.queued job=ab12 model="x/y"
 * and json, one object per line with the same content:
 *   {"time":"2024-05-01T12:00:00.000Z","level":"info","program":"opencode-api",
 *    "event":"job.queued","job":"ab12","model":"x/y"}
 * In json the caller's key=value text is parsed back into members: a
 * quoted value is unescaped (LOG_ESC's escapes; a \xHH standing for a
 * control byte becomes that character, one standing for a byte that is
 * not UTF-8 stays the text \xHH), a bare value that is a plain integer
 * (up to 15 digits) becomes a JSON number, any other bare value a string.
 * A key that repeats time/level/program/event gets a leading "_"; text
 * that is not key=value is gathered in "msg"; a line cut at the length
 * limit ends with "truncated": true.
 *
 * Text a client controls (a path, a model name, a message of CivetWeb's
 * that quotes the request) goes into a key="..." field through LOG_ESC(),
 * so it can neither end the field nor the line. log_msg() also escapes any
 * control character left in a line, so a forgotten LOG_ESC() still cannot
 * forge a second line.
 */
#ifndef OC_LOG_H
#define OC_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Sets the lowest level written (default LOG_INFO) and the program name
 * printed on each line. Call once at start-up, before threads exist. */
void log_init(const char *program, int level);

enum log_format {
    LOG_FORMAT_TEXT = 0,     /* time level program event key=value... */
    LOG_FORMAT_JSON = 1,     /* one JSON object per line */
};

/* Sets the line format (default LOG_FORMAT_TEXT). Call at start-up,
 * before threads exist. */
void log_set_format(enum log_format format);

/* Parses "debug", "info", "warn" or "error"; returns the level or -1. */
int log_level_parse(const char *s);

/* Writes "<time> <level> <program> <event> <fmt...>\n" (or its JSON form)
 * atomically (one write call), so lines from several threads never
 * interleave. Control characters in the formatted text come out as \xHH
 * (text) or \u00HH (json). */
void log_msg(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

/* Longest escaped value LOG_ESC() produces, NUL included; longer values
 * are cut (at a character boundary) and end in "...". */
#define LOG_ESC_MAX 512

/*
 * Escapes s for a key="..." field into out (out_len bytes, at least 8):
 * " and \ get a backslash, \n \r \t are written so, other control bytes
 * and bytes that are not valid UTF-8 become \xHH; valid UTF-8 stays.
 * NULL is written as the empty string. Returns out.
 */
const char *log_esc(char *out, size_t out_len, const char *s);

/* log_esc() into a buffer that lives until the end of the enclosing
 * statement's block: log_warn("x", "path=\"%s\"", LOG_ESC(path)). */
#define LOG_ESC(s) log_esc((char[LOG_ESC_MAX]){ 0 }, LOG_ESC_MAX, (s))

#endif
