/* jsonutil.c - see jsonutil.h. */
#include "jsonutil.h"
#include "path.h"
#include "timefmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One pass over the raw bytes: tracks strings and escapes to measure
 * nesting depth and find \u0000, before cJSON sees the text. */
/* Bytes that end the fast path inside a string: the quote, the backslash
 * and the control characters JSON forbids there. */
static const unsigned char json_string_special[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

static const char *json_prescan(const char *buf, size_t len)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '"') {
            /* Inside a string: the tight loop skips ordinary bytes, which
             * are nearly all of a body (file contents). */
            for (i++; i < len; i++) {
                unsigned char s = (unsigned char)buf[i];
                if (!json_string_special[s])
                    continue;
                if (s == '"')
                    break;
                if (s < 0x20)
                    /* JSON forbids raw control characters in strings, and a
                     * raw NUL would cut the value short in cJSON. */
                    return "strings must not contain raw control characters";
                if (i + 5 < len && buf[i + 1] == 'u' && buf[i + 2] == '0' &&
                    buf[i + 3] == '0' && buf[i + 4] == '0' && buf[i + 5] == '0')
                    return "strings must not contain \\u0000";
                i++;          /* skip the escaped character */
            }
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_MAX_DEPTH)
                return "JSON nesting is too deep";
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == '\0') {
            return "body contains a NUL byte";
        }
    }
    return NULL;
}

static int json_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when some object in the tree has the same member name twice. Readers
 * disagree on which one wins (cJSON: the first; most others: the last), so
 * a proxy and this service could see different requests. */
static int json_has_duplicate_keys(const cJSON *node)
{
    const cJSON *c;
    if (cJSON_IsObject(node)) {
        size_t n = 0, i = 0;
        cJSON_ArrayForEach(c, node)
            n++;
        if (n > 1) {
            const char **keys = malloc(n * sizeof(*keys));
            if (keys == NULL)
                return 1;          /* refuse rather than guess */
            cJSON_ArrayForEach(c, node)
                keys[i++] = c->string;
            qsort(keys, n, sizeof(*keys), json_key_cmp);
            int dup = 0;
            for (i = 1; i < n && !dup; i++)
                dup = strcmp(keys[i - 1], keys[i]) == 0;
            free(keys);
            if (dup)
                return 1;
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node)) {
        cJSON_ArrayForEach(c, node)
            if (json_has_duplicate_keys(c))
                return 1;
    }
    return 0;
}

cJSON *json_parse_body(const char *buf, size_t len, const char **why)
{
    if (len == 0) {
        *why = "request body is empty";
        return NULL;
    }
    const char *bad = json_prescan(buf, len);
    if (bad != NULL) {
        *why = bad;
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (j == NULL) {
        *why = "request body is not valid JSON";
        return NULL;
    }
    /* Trailing garbage after the value (whitespace is fine). */
    for (const char *p = end; p != NULL && p < buf + len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(j);
            *why = "request body is not valid JSON";
            return NULL;
        }
    }
    if (json_has_duplicate_keys(j)) {
        cJSON_Delete(j);
        *why = "request body has a duplicate object key";
        return NULL;
    }
    return j;
}

int json_add_time(cJSON *obj, const char *name, int64_t usec, int is_null)
{
    char iso[TIME_ISO_LEN];
    if (is_null || time_format_iso(usec, iso) != 0)
        return cJSON_AddNullToObject(obj, name) ? 0 : -1;
    return cJSON_AddStringToObject(obj, name, iso) ? 0 : -1;
}

int json_add_str_or_null(cJSON *obj, const char *name, const char *s)
{
    if (s == NULL)
        return cJSON_AddNullToObject(obj, name) ? 0 : -1;
    return cJSON_AddStringToObject(obj, name, s) ? 0 : -1;
}

int json_get_int(const cJSON *obj, const char *name, long min, long max, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    /* (double)LONG_MAX rounds up to 2^63: refuse that before the cast,
     * which would be undefined. */
    if (!isfinite(d) || d != floor(d) || d >= 9223372036854775808.0 ||
        d < -9223372036854775808.0 || d < (double)min || d > (double)max)
        return -1;
    *out = (long)d;
    return 0;
}

void json_sanitize_utf8(char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (c == 0) {
            s[i++] = '?';
        } else if (n == 0 || i + n > len || !path_utf8_valid(s + i, n)) {
            s[i++] = '?';
        } else {
            i += n;
        }
    }
}
