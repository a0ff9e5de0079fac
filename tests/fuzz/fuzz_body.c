/*
 * fuzz_body.c - libFuzzer target for request body parsing: json_parse_body
 * (common/jsonutil.h) and the checks POST /session runs on the tree.
 *
 * No HTTP and no database: the input goes to json_parse_body() exactly as
 * http_read_body() would hand it over, and an accepted tree is walked the
 * checked with session_req_check() (common/session_req.h), the very
 * function POST /session runs: files array of {path, content} or
 * {path, content_base64} (strict base64, decoded sizes counted),
 * ttl_seconds, path_validate on each path, path_list_check on all of them,
 * env names and values.
 *
 * Beyond "no crash, no leak, no UB" (ASan, LSan and UBSan are on), a
 * broken invariant calls abort():
 *  - json_parse_body either returns a tree or gives a reason, never both;
 *  - an accepted tree prints and parses back (json_parse_body again) to an
 *    equal tree: the depth and \u0000 pre-scan must not refuse what cJSON
 *    itself printed;
 *  - a session the walk accepts respects every limit it claims to, and
 *    each accepted content_base64 is the canonical encoding of its bytes.
 *
 * Built with -DOC_FUZZ_REPLAY (no libFuzzer, any compiler), the file has a
 * main() that runs the target once on each file named on the command line.
 */
#include "config.h"
#include "jsonutil.h"
#include "path.h"
#include "session_req.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The route's limits. MAX_FILES and MAX_TTL_S are the defaults of
 * common/config.c; MAX_SESSION_BYTES is far below its default (25 MiB) so
 * that inputs of -max_len 64 KiB can reach the "too large" branch. */
#define FUZZ_MAX_FILES         200
#define FUZZ_MAX_SESSION_BYTES (16 * 1024)
#define FUZZ_MAX_TTL_S         (7L * 24 * 3600)
#define FUZZ_DEFAULT_TTL_S     (24L * 3600)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const struct session_limits fuzz_limits = {
    FUZZ_MAX_FILES, FUZZ_MAX_SESSION_BYTES, FUZZ_DEFAULT_TTL_S, FUZZ_MAX_TTL_S,
};

/* A content_base64 the check accepted is canonical: encoding the decoded
 * bytes again gives back the very same text. */
static void check_base64(const char *text, const unsigned char *data, size_t len)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text), o = 0;
    FUZZ_ASSERT(n == (len + 2) / 3 * 4);
    for (size_t i = 0; i < len; i += 3) {
        unsigned long w = (unsigned long)data[i] << 16;
        if (i + 1 < len)
            w |= (unsigned long)data[i + 1] << 8;
        if (i + 2 < len)
            w |= data[i + 2];
        char q[4] = { alpha[(w >> 18) & 63], alpha[(w >> 12) & 63],
                      i + 1 < len ? alpha[(w >> 6) & 63] : '=',
                      i + 2 < len ? alpha[w & 63] : '=' };
        FUZZ_ASSERT(memcmp(text + o, q, 4) == 0);
        o += 4;
    }
}

/* What an accepted session must satisfy, rechecked from the tree. */
static void check_accepted(const struct session_req *ns)
{
    FUZZ_ASSERT(ns->count >= 0 && ns->count <= FUZZ_MAX_FILES);
    FUZZ_ASSERT(ns->ttl_s >= 1 && ns->ttl_s <= FUZZ_MAX_TTL_S);
    FUZZ_ASSERT(ns->bytes >= 0 && ns->bytes <= FUZZ_MAX_SESSION_BYTES);
    int64_t bytes = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, ns->files) {
        const char *why;
        const char *p = cJSON_GetObjectItemCaseSensitive(f, "path")->valuestring;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(f, "content");
        const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(f, "content_base64");
        FUZZ_ASSERT(path_validate(p, strlen(p), &why) == 0);
        FUZZ_ASSERT(strstr(p, "\n") == NULL && p[0] != '/');
        /* Exactly one of content and content_base64, and the bytes the
         * route writes are those counted. */
        FUZZ_ASSERT((text != NULL) != (b64 != NULL));
        const char *data;
        size_t len;
        int owned;
        FUZZ_ASSERT(session_file_data(f, &data, &len, &owned) == 0);
        FUZZ_ASSERT(owned == (b64 != NULL));
        if (b64 != NULL)
            check_base64(b64->valuestring, (const unsigned char *)data, len);
        if (owned)
            free((void *)data);
        bytes += (int64_t)len;
    }
    FUZZ_ASSERT(bytes == ns->bytes);
}

/* ---- Parser round trip -------------------------------------------------- */

/* 1 when the tree holds a number that JSON cannot print (1e999 parses to
 * infinity, which cJSON prints as null). */
static int has_nonfinite(const cJSON *j)
{
    for (; j != NULL; j = j->next) {
        if (cJSON_IsNumber(j) && !isfinite(j->valuedouble))
            return 1;
        if (j->child != NULL && has_nonfinite(j->child))
            return 1;
    }
    return 0;
}

/* Same shape, names and values, children in the same order. Not
 * cJSON_Compare(): it looks object members up by name, so a body with a
 * repeated name ({"a":1,"a":2}) would not equal itself. Numbers may differ
 * in the last bit: cJSON prints 15 significant digits when those read back
 * within DBL_EPSILON. */
static int tree_equal(const cJSON *a, const cJSON *b)
{
    for (; a != NULL && b != NULL; a = a->next, b = b->next) {
        if ((a->type & 0xFF) != (b->type & 0xFF))
            return 0;
        if ((a->string == NULL) != (b->string == NULL) ||
            (a->string != NULL && strcmp(a->string, b->string) != 0))
            return 0;
        if (cJSON_IsNumber(a)) {
            double x = a->valuedouble, y = b->valuedouble;
            double m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
            if (fabs(x - y) > m * DBL_EPSILON)
                return 0;
        }
        if (cJSON_IsString(a) && strcmp(a->valuestring, b->valuestring) != 0)
            return 0;
        if (!tree_equal(a->child, b->child))
            return 0;
    }
    return a == NULL && b == NULL;
}

/* The body parser must accept what cJSON prints from a tree it accepted,
 * and read back the same tree. Depth is bounded by JSON_MAX_DEPTH, so the
 * recursion here is short. */
static void check_round_trip(const cJSON *tree)
{
    if (has_nonfinite(tree))
        return;
    char *text = cJSON_PrintUnformatted(tree);
    if (text == NULL)
        return;                 /* out of memory */
    const char *why = NULL;
    cJSON *again = json_parse_body(text, strlen(text), &why);
    if (again == NULL)
        fprintf(stderr, "reprint refused (%s): %.200s\n", why, text);
    FUZZ_ASSERT(again != NULL);
    FUZZ_ASSERT(tree_equal(tree, again));
    cJSON_Delete(again);
    free(text);
}

/* ---- Entry points ------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    cJSON *req = json_parse_body((const char *)data, size, &why);
    if (req == NULL) {
        FUZZ_ASSERT(why != NULL && why[0] != '\0');
        return 0;
    }
    check_round_trip(req);

    struct session_req ns;
    char detail[512];
    detail[0] = '\0';
    enum session_req_rc rc = session_req_check(req, &fuzz_limits, &ns, detail, sizeof(detail));
    FUZZ_ASSERT(rc >= SREQ_OK && rc <= SREQ_CONTENT_FIELDS);
    FUZZ_ASSERT(rc == SREQ_OK || detail[0] != '\0');
    if (rc == SREQ_OK)
        check_accepted(&ns);
    cJSON_Delete(req);
    return 0;
}

#include "replay.h"
