/*
 * store_idempotency.c - the idempotency_keys table (see store.h and
 * migration 010).
 *
 * A scope (key, method, path+query, Idempotency-Key) is reserved by one
 * INSERT ... ON CONFLICT: it inserts an in-flight row, or takes over a row
 * that expired or whose request was abandoned (the conflicting row is
 * locked while the condition is checked, so two takers never both win).
 * When the insert took nothing, the row that holds the scope is read in
 * a statement of its own (READ COMMITTED: it sees a row committed while
 * the insert waited). Bodies go over as hex (bytea), so they come back
 * byte for byte.
 *
 * Ownership: struct store_idem_entry's body is malloc'd (caller frees).
 * Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

DB_STMT(st_idem_reserve, "idem.reserve", 7,
    "INSERT INTO idempotency_keys (key_id, method, path, idem_key, body_sha256) "
    "VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (key_id, method, path, idem_key) DO UPDATE SET"
    " body_sha256 = EXCLUDED.body_sha256, status = NULL, body = NULL,"
    " created_at = now(), completed_at = NULL "
    "WHERE idempotency_keys.created_at < now() - $6::int * interval '1 second'"
    " OR (idempotency_keys.completed_at IS NULL"
    "     AND idempotency_keys.created_at < now() - $7::int * interval '1 second') "
    "RETURNING 1");
DB_STMT(st_idem_get, "idem.get", 4,
    "SELECT body_sha256, status, encode(body, 'hex') AS body,"
    " (completed_at IS NOT NULL) AS completed FROM idempotency_keys "
    "WHERE key_id = $1 AND method = $2 AND path = $3 AND idem_key = $4");
DB_STMT(st_idem_complete, "idem.complete", 6,
    "UPDATE idempotency_keys SET status = $5::int, body = decode($6, 'hex'),"
    " completed_at = now() "
    "WHERE key_id = $1 AND method = $2 AND path = $3 AND idem_key = $4"
    " AND completed_at IS NULL");
DB_STMT(st_idem_release, "idem.release", 4,
    "DELETE FROM idempotency_keys "
    "WHERE key_id = $1 AND method = $2 AND path = $3 AND idem_key = $4"
    " AND completed_at IS NULL");
DB_STMT(st_idem_purge, "idem.purge", 2,
    "DELETE FROM idempotency_keys WHERE ctid IN ("
    " SELECT ctid FROM idempotency_keys"
    " WHERE created_at < now() - $1::int * interval '1 second'"
    " ORDER BY created_at LIMIT $2::int)");

/* How many times a reservation is tried when the row that held the scope
 * went away between the insert and the read (a failed first request). */
#define IDEM_RESERVE_TRIES 3

static int idem_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes hex text into a malloc'd buffer (NUL-terminated for logs). */
static char *idem_unhex(const char *hex, size_t *len)
{
    size_t n = hex ? strlen(hex) / 2 : 0;
    char *out = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(idem_hexval(hex[2 * i]) << 4 | idem_hexval(hex[2 * i + 1]));
    out[n] = '\0';
    *len = n;
    return out;
}

/* Reads the row holding q's scope into out. STORE_NOT_FOUND: none. */
static int idem_get(struct db *db, const struct store_idem_req *q,
                    struct store_idem_entry *out)
{
    const char *p[] = { q->key_id, q->method, q->path, q->idem_key };
    int rc;
    struct pg_result *res = store_row(db, &st_idem_get, p, &rc);
    if (res == NULL)
        return rc;
    store_copy(out->body_sha256, sizeof(out->body_sha256), res, 0, "body_sha256");
    out->completed = db_get_bool(res, 0, "completed");
    out->status = (int)db_get_ll(res, 0, "status");
    if (out->completed)
        out->body = idem_unhex(db_get(res, 0, "body"), &out->body_len);
    db_clear(res);
    return STORE_OK;
}

int store_idem_reserve(struct db *db, const struct store_idem_req *q, long ttl_s,
                       long abandon_s, struct store_idem_entry *out)
{
    char ttl[32], abandon[32];
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    snprintf(abandon, sizeof(abandon), "%ld", abandon_s);
    const char *p[] = { q->key_id, q->method, q->path, q->idem_key, q->body_sha256,
                        ttl, abandon };
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < IDEM_RESERVE_TRIES; i++) {
        int rc;
        struct pg_result *res = db_run(db, &st_idem_reserve, p, &rc);
        if (res == NULL)
            return store_from_db(rc);
        int reserved = db_rows(res) == 1;
        db_clear(res);
        if (reserved)
            return STORE_OK;
        rc = idem_get(db, q, out);
        if (rc != STORE_NOT_FOUND)
            return rc == STORE_OK ? STORE_CONFLICT : rc;
    }
    return STORE_UNAVAILABLE;
}

int store_idem_complete(struct db *db, const struct store_idem_req *q, int status,
                        const char *body, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    char *hex = xmalloc(2 * len + 1);
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[(unsigned char)body[i] >> 4];
        hex[2 * i + 1] = digits[(unsigned char)body[i] & 15];
    }
    hex[2 * len] = '\0';
    const char *p[] = { q->key_id, q->method, q->path, q->idem_key, st, hex };
    long r = db_run_exec(db, &st_idem_complete, p);
    free(hex);
    return store_from_db(r);
}

int store_idem_release(struct db *db, const struct store_idem_req *q)
{
    const char *p[] = { q->key_id, q->method, q->path, q->idem_key };
    return store_from_db(db_run_exec(db, &st_idem_release, p));
}

int store_idem_purge(struct db *db, long ttl_s, long limit, long *count)
{
    char ttl[32], lim[32];
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { ttl, lim };
    long r = db_run_exec(db, &st_idem_purge, p);
    *count = r > 0 ? r : 0;
    return store_from_db(r);
}
