/*
 * store_diff.c - a job's unified diff (table job_diffs, migration 012),
 * written by the worker that holds the job's lease, read by GET /job/diff.
 *
 * The diff is any bytes (git writes file contents as they are), so it is
 * a bytea, sent and read as hex text (the connection speaks text only).
 *
 * Ownership: struct store_diff owns data and its result (store_diff_free).
 * Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Fenced by the lease: only the attempt that holds the job writes. */
DB_STMT(st_diff_put, "diff.put", 5,
    "INSERT INTO job_diffs (job_id, diff, size_bytes, truncated)"
    " SELECT id, decode($3, 'hex'), $4::bigint, $5::boolean FROM jobs"
    " WHERE id = $1 AND lease_token = $2 AND status = 'running' "
    "ON CONFLICT (job_id) DO UPDATE SET diff = EXCLUDED.diff,"
    " size_bytes = EXCLUDED.size_bytes, truncated = EXCLUDED.truncated,"
    " created_at = now()");
DB_STMT(st_diff_get, "diff.get", 2,
    "SELECT j.status, (d.job_id IS NOT NULL) AS found, encode(d.diff, 'hex') AS diff,"
    " d.truncated, d.size_bytes "
    "FROM jobs j JOIN sessions s ON s.id = j.session_id"
    " LEFT JOIN job_diffs d ON d.job_id = j.id "
    "WHERE j.id = $1 AND s.api_key_id = $2");

static const char store_hex[] = "0123456789abcdef";

static int store_unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int store_diff_put(struct db *db, const char *job_id, const char *token, const char *diff,
                   size_t len, int64_t size, int truncated)
{
    char *hex = xmalloc(2 * len + 1);
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = store_hex[(unsigned char)diff[i] >> 4];
        hex[2 * i + 1] = store_hex[(unsigned char)diff[i] & 15];
    }
    hex[2 * len] = '\0';
    char sz[32];
    snprintf(sz, sizeof(sz), "%lld", (long long)size);
    const char *p[] = { job_id, token, hex, sz, truncated ? "true" : "false" };
    long n = db_run_exec(db, &st_diff_put, p);
    free(hex);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

int store_diff_get(struct db *db, const char *job_id, const char *key_id,
                   struct store_diff *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { job_id, key_id };
    int rc;
    struct pg_result *res = store_row(db, &st_diff_get, p, &rc);
    if (res == NULL)
        return rc;
    out->res = res;
    out->status = db_get(res, 0, "status");
    out->found = db_get_bool(res, 0, "found");
    if (!out->found)
        return STORE_OK;
    out->truncated = db_get_bool(res, 0, "truncated");
    out->size_bytes = db_get_ll(res, 0, "size_bytes");
    const char *hex = db_get(res, 0, "diff");
    size_t hlen = hex ? strlen(hex) : 0;
    out->data = xmalloc(hlen / 2 + 1);
    for (size_t i = 0; i + 1 < hlen; i += 2) {
        int hi = store_unhex(hex[i]), lo = store_unhex(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            store_diff_free(out);
            return STORE_ERROR;
        }
        out->data[out->len++] = (char)(hi << 4 | lo);
    }
    out->data[out->len] = '\0';
    return STORE_OK;
}

void store_diff_free(struct store_diff *d)
{
    free(d->data);
    db_clear(d->res);
    memset(d, 0, sizeof(*d));
}
