/*
 * xalloc.h - the allocation failure policy, in one place.
 *
 * Small allocations whose size the program chooses (structs, ids, paths,
 * lists bounded by configuration, cJSON nodes) go through these: on
 * failure they print one line and abort, so call sites never half-check.
 * Allocations sized by a client (request bodies, uploaded files) use
 * plain malloc() and answer the request alone with 413/503 on failure.
 */
#ifndef OC_XALLOC_H
#define OC_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Routes cJSON's allocations through xmalloc(). Call once at start-up,
 * before any thread uses cJSON. */
void xalloc_init_cjson(void);

#endif
