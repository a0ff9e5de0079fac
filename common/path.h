/*
 * path.h - validation of the relative file paths clients send.
 *
 * A path names a file inside a session's workspace. It must be relative,
 * non-empty, valid UTF-8 without control characters, at most
 * PATH_MAX_BYTES long with components of at most PATH_MAX_COMPONENT
 * bytes, and may not contain empty, "." or ".." components or a
 * backslash. Anything else is refused before a byte is written, so a path
 * can never step out of the workspace or smuggle a header line into
 * Content-Disposition.
 */
#ifndef OC_PATH_H
#define OC_PATH_H

#include <stddef.h>

#define PATH_MAX_BYTES     1024   /* whole relative path */
#define PATH_MAX_COMPONENT 255    /* NAME_MAX on Linux file systems */

/*
 * Checks p (len bytes, need not be NUL-terminated; an embedded NUL fails).
 * Returns 0 if the path is acceptable, or -1 and points *why at a short
 * static reason ("must be relative", ...).
 */
int path_validate(const char *p, size_t len, const char **why);

/*
 * Checks that no two of the n paths collide: the same path twice, or one
 * path that is a folder of another ("a" and "a/b"). Each path must already
 * have passed path_validate(). Returns 0, or -1 with *bad set to the index
 * of an offending path and *why to a static reason. Returns -2 when out of
 * memory.
 */
int path_list_check(const char *const *paths, size_t n, size_t *bad, const char **why);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates, or code
 * points past U+10FFFF), else 0. */
int path_utf8_valid(const char *s, size_t len);

#endif
