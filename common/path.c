/* path.c - see path.h. */
#include "path.h"

#include <stdlib.h>
#include <string.h>

int path_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t need;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1; min = 0x80; c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2; min = 0x800; c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3; min = 0x10000; c &= 0x07;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

int path_validate(const char *p, size_t len, const char **why)
{
    if (len == 0) {
        *why = "must not be empty";
        return -1;
    }
    if (len > PATH_MAX_BYTES) {
        *why = "is too long";
        return -1;
    }
    if (memchr(p, '\0', len) != NULL) {
        *why = "must not contain a NUL byte";
        return -1;
    }
    if (p[0] == '/') {
        *why = "must be relative";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) {
            *why = "must not contain control characters";
            return -1;
        }
        if (c == '\\') {
            *why = "must not contain a backslash";
            return -1;
        }
    }
    if (!path_utf8_valid(p, len)) {
        *why = "is not valid UTF-8";
        return -1;
    }

    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 0) {
            *why = "must not contain empty components";
            return -1;
        }
        if ((n == 1 && p[start] == '.') || (n == 2 && p[start] == '.' && p[start + 1] == '.')) {
            *why = "must not contain \".\" or \"..\" components";
            return -1;
        }
        if (n > PATH_MAX_COMPONENT) {
            *why = "has a component longer than 255 bytes";
            return -1;
        }
        start = i + 1;
    }
    return 0;
}

static int path_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int path_list_check(const char *const *paths, size_t n, size_t *bad, const char **why)
{
    if (n == 0)
        return 0;
    const char **sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL)
        return -2;
    memcpy(sorted, paths, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), path_strcmp);

    int rc = 0;
    const char *culprit = NULL;
    for (size_t i = 0; i + 1 < n && rc == 0; i++) {
        if (strcmp(sorted[i], sorted[i + 1]) == 0) {
            culprit = sorted[i];
            *why = "appears twice";
            rc = -1;
        }
    }
    /* "a" and "a/b": look every folder prefix of every path up. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *p = sorted[i];
        for (const char *s = strchr(p, '/'); s != NULL && rc == 0; s = strchr(s + 1, '/')) {
            size_t plen = (size_t)(s - p);
            size_t lo = 0, hi = n;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strncmp(sorted[mid], p, plen);
                if (c == 0 && sorted[mid][plen] != '\0')
                    c = 1;
                if (c == 0) {
                    culprit = p;
                    *why = "is inside a path that is also a file";
                    rc = -1;
                    break;
                }
                if (c < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
        }
    }
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            if (paths[i] == culprit)
                *bad = i;
    }
    free(sorted);
    return rc;
}
