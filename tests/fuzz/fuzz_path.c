/*
 * fuzz_path.c - libFuzzer target for the path rules (common/path.h), the
 * UTF-8 sanitizer (json_sanitize_utf8) and cfg_parse_long.
 *
 * The input is raw bytes. Every property below is checked independently
 * of the code under test, and a broken one calls abort(), which libFuzzer
 * reports as a crash (with the input saved):
 *
 *  - path_validate() on the whole input: when it accepts, the path is
 *    non-empty, at most PATH_MAX_BYTES, has no leading '/', no '\\', no
 *    control byte or NUL, no empty, "." or ".." component, no component
 *    longer than PATH_MAX_COMPONENT, and is well-formed UTF-8. (A ".."
 *    inside a name, "a..b", is a legal file name: only whole components
 *    are checked.)
 *  - path_utf8_valid() agrees with a table-driven reference decoder
 *    (Unicode 15, table 3-7) on every input.
 *  - path_list_check() on the lines of the input that path_validate()
 *    accepts agrees with a naive quadratic check, and names an offending
 *    path when it refuses.
 *  - json_sanitize_utf8(): the output is well-formed UTF-8 with no NUL,
 *    only ever replaces bytes with '?', is stable under a second pass, and
 *    leaves input that was already well-formed and NUL-free untouched.
 *  - cfg_parse_long(): accepts exactly the strings -?[0-9]+ whose value is
 *    in [min, max], and returns that value.
 *
 * Built with -DOC_FUZZ_REPLAY (no libFuzzer, any compiler), the file has a
 * main() that runs the checks once on each file named on the command
 * line: the seed corpus then serves as a regression test under ctest.
 */
#include "config.h"
#include "jsonutil.h"
#include "path.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines of one input given to path_list_check(): the naive check is
 * quadratic, and more lines find nothing new. */
#define FUZZ_MAX_LIST 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints what broke and aborts: the fuzzer keeps the input. */
#define FUZZ_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ---- Reference UTF-8 check ---------------------------------------------- */

/* Well-formed UTF-8 byte sequences, straight from the Unicode standard's
 * table 3-7 rather than by decoding: a second opinion on path_utf8_valid(). */
static int ref_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        unsigned lo = 0x80, hi = 0xBF;   /* range of the second byte */
        size_t n;
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c == 0xE0) {
            n = 3; lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            n = 3;
        } else if (c == 0xED) {
            n = 3; hi = 0x9F;
        } else if (c == 0xF0) {
            n = 4; lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            n = 4;
        } else if (c == 0xF4) {
            n = 4; hi = 0x8F;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += n;
    }
    return 1;
}

/* ---- path_validate ------------------------------------------------------ */

/* What path.h promises about every accepted path, checked byte by byte. */
static void check_accepted_path(const unsigned char *p, size_t len)
{
    FUZZ_ASSERT(len > 0 && len <= PATH_MAX_BYTES);
    FUZZ_ASSERT(p[0] != '/');
    for (size_t i = 0; i < len; i++) {
        FUZZ_ASSERT(p[i] >= 0x20 && p[i] != 0x7f);   /* NUL and control bytes */
        FUZZ_ASSERT(p[i] != '\\');
    }
    FUZZ_ASSERT(path_utf8_valid((const char *)p, len));
    FUZZ_ASSERT(ref_utf8_valid(p, len));

    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '/')
            continue;
        size_t n = i - start;
        FUZZ_ASSERT(n > 0);                           /* "a//b", "a/" */
        FUZZ_ASSERT(n <= PATH_MAX_COMPONENT);
        FUZZ_ASSERT(!(n == 1 && p[start] == '.'));
        FUZZ_ASSERT(!(n == 2 && p[start] == '.' && p[start + 1] == '.'));
        start = i + 1;
    }
}

static void fuzz_validate(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    int rc = path_validate((const char *)data, size, &why);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0)
        check_accepted_path(data, size);
    else
        FUZZ_ASSERT(why != NULL && why[0] != '\0');
}

/* ---- path_list_check ---------------------------------------------------- */

/* 1 when a and b cannot both be files: equal, or one is a folder of the
 * other ("a" and "a/b"). */
static int paths_collide(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la == lb)
        return strcmp(a, b) == 0;
    if (la > lb) {
        const char *t = a;
        a = b;
        b = t;
        size_t tl = la;
        la = lb;
        lb = tl;
    }
    return memcmp(a, b, la) == 0 && b[la] == '/';
}

/* The input's lines ('\n' cannot occur in a valid path) that pass
 * path_validate(), checked as one session's file list. */
static void fuzz_list(const uint8_t *data, size_t size)
{
    char *paths[FUZZ_MAX_LIST];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < FUZZ_MAX_LIST; i++) {
        if (i < size && data[i] != '\n')
            continue;
        const char *why;
        const char *line = (const char *)data + start;
        size_t len = i - start;
        start = i + 1;
        if (path_validate(line, len, &why) != 0)
            continue;
        paths[n] = malloc(len + 1);
        if (paths[n] == NULL)
            abort();
        memcpy(paths[n], line, len);
        paths[n][len] = '\0';
        n++;
    }

    int naive = 0;
    for (size_t i = 0; i < n && !naive; i++)
        for (size_t j = i + 1; j < n && !naive; j++)
            naive = paths_collide(paths[i], paths[j]);

    size_t bad = SIZE_MAX;
    const char *why = NULL;
    int rc = path_list_check((const char *const *)paths, n, &bad, &why);
    if (rc != -2) {
        FUZZ_ASSERT(rc == 0 || rc == -1);
        FUZZ_ASSERT((rc == -1) == naive);
    }
    if (rc == -1) {
        /* The path it names really is in a collision. */
        FUZZ_ASSERT(bad < n && why != NULL);
        int involved = 0;
        for (size_t j = 0; j < n && !involved; j++)
            involved = j != bad && paths_collide(paths[bad], paths[j]);
        FUZZ_ASSERT(involved);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
}

/* ---- json_sanitize_utf8 ------------------------------------------------- */

static void fuzz_sanitize(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    char *s = malloc(size);
    char *again = malloc(size);
    if (s == NULL || again == NULL)
        abort();
    memcpy(s, data, size);
    json_sanitize_utf8(s, size);

    FUZZ_ASSERT(memchr(s, '\0', size) == NULL);
    FUZZ_ASSERT(path_utf8_valid(s, size));
    FUZZ_ASSERT(ref_utf8_valid((const unsigned char *)s, size));
    for (size_t i = 0; i < size; i++)
        FUZZ_ASSERT((unsigned char)s[i] == data[i] || s[i] == '?');

    memcpy(again, s, size);
    json_sanitize_utf8(again, size);
    FUZZ_ASSERT(memcmp(again, s, size) == 0);

    if (memchr(data, '\0', size) == NULL && ref_utf8_valid(data, size))
        FUZZ_ASSERT(memcmp(s, data, size) == 0);
    free(again);
    free(s);
}

/* ---- cfg_parse_long ----------------------------------------------------- */

/* Reference: 1 and *v when s is -?[0-9]{1,18} (no overflow possible), 0
 * when it is not of the form -?[0-9]+ at all, -1 when it is but longer
 * (then only the digits rule is checked). */
static int ref_parse(const char *s, long *v)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    size_t digits = 0;
    long acc = 0;
    for (; *p != '\0'; p++, digits++) {
        if (*p < '0' || *p > '9')
            return 0;
        if (digits < 18)
            acc = acc * 10 + (*p - '0');
    }
    if (digits == 0)
        return 0;
    if (digits > 18)
        return -1;
    *v = neg ? -acc : acc;
    return 1;
}

static void fuzz_parse_long(const uint8_t *data, size_t size)
{
    static const long bounds[][2] = {
        { 0, 100 }, { 1, LONG_MAX }, { LONG_MIN, LONG_MAX }, { -5, 5 },
    };
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';          /* the string ends at the first NUL, if any */

    long want = 0;
    int form = ref_parse(s, &want);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        long min = bounds[b][0], max = bounds[b][1];
        long out = 0;
        int rc = cfg_parse_long(s, min, max, &out);
        FUZZ_ASSERT(rc == 0 || rc == -1);
        if (rc == 0) {
            FUZZ_ASSERT(form != 0);
            FUZZ_ASSERT(out >= min && out <= max);
            if (form == 1)
                FUZZ_ASSERT(out == want);
        } else {
            if (form == 1)
                FUZZ_ASSERT(want < min || want > max);
        }
    }
    free(s);
}

/* ---- Entry points ------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ASSERT(path_utf8_valid((const char *)data, size) == ref_utf8_valid(data, size));
    fuzz_validate(data, size);
    fuzz_list(data, size);
    fuzz_sanitize(data, size);
    fuzz_parse_long(data, size);
    return 0;
}

#include "replay.h"
