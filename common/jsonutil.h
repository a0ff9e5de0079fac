/*
 * jsonutil.h - small helpers around cJSON for request bodies and replies.
 */
#ifndef OC_JSONUTIL_H
#define OC_JSONUTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting a request body may have. Bodies of this API are two
 * levels deep; anything deeper is hostile, and refusing it early keeps the
 * parser's recursion short. */
#define JSON_MAX_DEPTH 16

/*
 * Parses a request body of len bytes (not NUL-terminated). Refuses, with
 * *why set to a static reason and NULL returned: nesting deeper than
 * JSON_MAX_DEPTH, a \u0000 escape or raw control character in a string
 * (cJSON would cut the string short there and silently change the data),
 * an object with the same key twice, and malformed JSON. The caller
 * owns the returned tree (cJSON_Delete).
 */
cJSON *json_parse_body(const char *buf, size_t len, const char **why);

/* Adds name: ISO-8601 timestamp of usec, or null when is_null. Returns 0
 * or -1 (out of memory). */
int json_add_time(cJSON *obj, const char *name, int64_t usec, int is_null);

/* Adds name: string, or null when s is NULL. Returns 0 or -1. */
int json_add_str_or_null(cJSON *obj, const char *name, const char *s);

/*
 * Reads an optional integer member. Returns 0 and sets *out (or leaves it
 * at its default when the member is absent or null), or -1 when present
 * but not an integer within [min, max] (JSON numbers are doubles: 1.5,
 * 1e400 and true are all refused).
 */
int json_get_int(const cJSON *obj, const char *name, long min, long max, long *out);

/* Replaces every byte that is not part of well-formed UTF-8, and every
 * NUL, with '?' in s[0..len), so agent output can go into text columns. */
void json_sanitize_utf8(char *s, size_t len);

#endif
