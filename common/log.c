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
static enum log_format log_fmt = LOG_FORMAT_TEXT;

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

/* Longest line written, newline included. */
#define LOG_LINE_MAX 2048

void log_init(const char *program, int level)
{
    log_program = program;
    log_min_level = level;
}

void log_set_format(enum log_format format)
{
    log_fmt = format;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, log_level_names[i]) == 0)
            return i;
    return -1;
}

/* Length of the valid UTF-8 sequence at p (1 to 4), or 0 when the bytes
 * there are not one (overlong forms, surrogates and values past U+10FFFF
 * included). p is NUL-terminated. */
static size_t log_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;    /* bounds of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Writes the escaped form of the character at p into e (at least 5
 * bytes); returns its length and sets *in to the bytes of p it stands for.
 * quotes: escape " and \ too (a value), or only control bytes (a line). */
static size_t log_esc_one(const unsigned char *p, int quotes, char e[5], size_t *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = log_utf8_len(p);
    *in = n ? n : 1;
    if (n > 1) {
        memcpy(e, p, n);
        return n;
    }
    unsigned char c = p[0];
    if (n == 1 && c >= 0x20 && c != 0x7f && !(quotes && (c == '"' || c == '\\'))) {
        e[0] = (char)c;
        return 1;
    }
    e[0] = '\\';
    const char *named = c == '\n' ? "n" : c == '\r' ? "r" : c == '\t' ? "t"
                      : c == '"' ? "\"" : c == '\\' ? "\\" : NULL;
    if (named != NULL) {
        e[1] = named[0];
        return 2;
    }
    e[1] = 'x';
    e[2] = hex[c >> 4];
    e[3] = hex[c & 15];
    return 4;
}

/* Escapes s into out (out_len >= 8), ending in "..." when cut. */
static void log_escape(char *out, size_t out_len, const char *s, int quotes)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char e[5];
        size_t in;
        size_t n = log_esc_one(p, quotes, e, &in);
        if (o + n + 4 > out_len) {          /* room for "..." and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, e, n);
        o += n;
        p += in;
    }
    out[o] = '\0';
}

const char *log_esc(char *out, size_t out_len, const char *s)
{
    log_escape(out, out_len, s ? s : "", 1);
    return out;
}

/* ---- JSON lines ----------------------------------------------------------
 * The caller's text has been through log_escape(..., 0) first: it is valid
 * UTF-8 without control bytes, so copying it with " and \ escaped always
 * gives a valid JSON string. */

/* Longest JSON line: the text line can grow about 2.5 times as JSON. */
#define LOG_JSON_MAX (3 * LOG_LINE_MAX)
/* Kept free for ,"truncated":true}\n */
#define LOG_JSON_RESERVE 24

/* A bounded writer: once something does not fit, full is set and the
 * member being written is rolled back by log_jw_end(). */
struct log_jw {
    char  *buf;
    size_t cap, len;
    int    full;
};

static void log_jw_put(struct log_jw *w, const char *s, size_t n)
{
    if (w->full || w->len + n + LOG_JSON_RESERVE > w->cap) {
        w->full = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void log_jw_str(struct log_jw *w, const char *s)
{
    log_jw_put(w, s, strlen(s));
}

/* Copies s[0..n) as the inside of a JSON string. unescape: s is a LOG_ESC
 * value (\" \\ \n \r \t \xHH are read back); otherwise " and \ are escaped. */
static void log_jw_text(struct log_jw *w, const char *s, size_t n, int unescape)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && !w->full; i++) {
        char c = s[i];
        if (c == '\\' && unescape && i + 1 < n) {
            char d = s[++i];
            const char *named = d == 'n' ? "\\n" : d == 'r' ? "\\r" : d == 't' ? "\\t"
                              : d == '"' ? "\\\"" : d == '\\' ? "\\\\" : NULL;
            int xs = d == 'x' && i + 2 < n + 0 && strchr(hex, s[i + 1]) && strchr(hex, s[i + 2]);
            if (named != NULL) {
                log_jw_str(w, named);
            } else if (xs && (s[i + 1] == '0' || s[i + 1] == '1' ||
                              (s[i + 1] == '7' && s[i + 2] == 'f'))) {
                char u[7] = { '\\', 'u', '0', '0', s[i + 1], s[i + 2], 0 };
                log_jw_str(w, u);      /* a control byte */
                i += 2;
            } else {
                log_jw_str(w, "\\\\"); /* \xHH of a non-UTF-8 byte, or odd: kept as text */
                log_jw_put(w, &d, 1);
            }
        } else if (c == '"' || c == '\\') {
            char e[2] = { '\\', c };
            log_jw_put(w, e, 2);
        } else if (c != '\0') {
            log_jw_put(w, &c, 1);
        }
    }
}

/* 1 when s[0..n) is a plain JSON integer of at most 15 digits. */
static int log_is_int(const char *s, size_t n)
{
    size_t i = s[0] == '-' ? 1 : 0;
    if (n <= i || n - i > 15 || (s[i] == '0' && n - i > 1))
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Length of the key at s (letters, digits, _ . -), 0 when none. */
static size_t log_key_len(const char *s)
{
    size_t n = 0;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
           (s[n] >= '0' && s[n] <= '9') || s[n] == '_' || s[n] == '.' || s[n] == '-')
        n++;
    return n;
}

/* Length of a quoted value's inside starting at s (after the opening
 * quote): up to the first unescaped ", or the end of the text. */
static size_t log_quoted_len(const char *s, int *closed)
{
    size_t n = 0;
    *closed = 0;
    while (s[n] != '\0') {
        if (s[n] == '"') {
            *closed = 1;
            return n;
        }
        n += (s[n] == '\\' && s[n + 1] != '\0') ? 2 : 1;
    }
    return n;
}

/* Writes the member for the key=value token at *p (key of klen bytes) and
 * advances *p past it. */
static void log_jw_field(struct log_jw *w, const char **p, size_t klen)
{
    static const char *const reserved[] = { "time", "level", "program", "event", "msg",
                                            "truncated" };
    const char *s = *p;
    log_jw_str(w, ",\"");
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strlen(reserved[i]) == klen && memcmp(s, reserved[i], klen) == 0)
            log_jw_str(w, "_");
    log_jw_put(w, s, klen);
    log_jw_str(w, "\":");
    const char *v = s + klen + 1;
    if (*v == '"') {
        int closed;
        size_t n = log_quoted_len(v + 1, &closed);
        log_jw_str(w, "\"");
        log_jw_text(w, v + 1, n, 1);
        log_jw_str(w, "\"");
        *p = v + 1 + n + (size_t)closed;
        return;
    }
    size_t n = strcspn(v, " ");
    if (log_is_int(v, n)) {
        log_jw_put(w, v, n);
    } else {
        log_jw_str(w, "\"");
        log_jw_text(w, v, n, 0);
        log_jw_str(w, "\"");
    }
    *p = v + n;
}

/* Writes the members for text (key=value fields; the rest into "msg"). */
static void log_jw_fields(struct log_jw *w, const char *text)
{
    char msg[LOG_LINE_MAX];
    size_t mlen = 0;
    const char *p = text;
    while (*p != '\0' && !w->full) {
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t saved = w->len, klen = log_key_len(p);
        if (klen > 0 && p[klen] == '=') {
            log_jw_field(w, &p, klen);
            if (w->full)
                w->len = saved;
            continue;
        }
        size_t n = strcspn(p, " ");   /* not key=value: goes to "msg" */
        if (mlen + n + 2 < sizeof(msg)) {
            if (mlen > 0)
                msg[mlen++] = ' ';
            memcpy(msg + mlen, p, n);
            mlen += n;
        }
        p += n;
    }
    if (mlen > 0 && !w->full) {
        size_t saved = w->len;
        log_jw_str(w, ",\"msg\":\"");
        log_jw_text(w, msg, mlen, 0);
        log_jw_str(w, "\"");
        if (w->full)
            w->len = saved;
    }
}

/* Builds the JSON line for an event into out (LOG_JSON_MAX bytes); text
 * is the caller's formatted text, already line-escaped. Returns its
 * length, newline included. */
static size_t log_json_line(char *out, const char *stamp, int level, const char *event,
                            const char *text)
{
    struct log_jw w = { .buf = out, .cap = LOG_JSON_MAX, .len = 0, .full = 0 };
    log_jw_str(&w, "{\"time\":\"");
    log_jw_str(&w, stamp);
    log_jw_str(&w, "\",\"level\":\"");
    log_jw_str(&w, log_level_names[level]);
    log_jw_str(&w, "\",\"program\":\"");
    log_jw_text(&w, log_program, strlen(log_program), 0);
    log_jw_str(&w, "\",\"event\":\"");
    log_jw_text(&w, event, strlen(event), 0);
    log_jw_str(&w, "\"");
    log_jw_fields(&w, text);
    /* The reserve always has room for the end of the object. */
    const char *end = w.full ? ",\"truncated\":true}\n" : "}\n";
    memcpy(out + w.len, end, strlen(end));
    return w.len + strlen(end);
}

void log_msg(int level, const char *event, const char *fmt, ...)
{
    if (level < log_min_level)
        return;

    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);

    char text[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (m < 0)
        text[0] = '\0';

    char stamp[96], ev[128];
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(tv.tv_usec / 1000));
    log_escape(ev, sizeof(ev), event ? event : "", 0);

    char line[LOG_JSON_MAX];
    size_t len;
    if (log_fmt == LOG_FORMAT_JSON) {
        char esc[LOG_LINE_MAX];
        log_escape(esc, sizeof(esc), text, 0);
        len = log_json_line(line, stamp, level, ev, esc);
    } else {
        int n = snprintf(line, LOG_LINE_MAX, "%s %s %s %s ", stamp,
                         log_level_names[level], log_program, ev);
        if (n < 0 || n >= LOG_LINE_MAX - 8)
            return;
        /* Whatever a caller let through, the line stays one line. */
        log_escape(line + n, LOG_LINE_MAX - (size_t)n - 1, text, 0);
        len = strlen(line);
        line[len++] = '\n';
    }

    /* One write(2) per line keeps concurrent lines whole. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
