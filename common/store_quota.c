/*
 * store_quota.c - per-key quotas (see store.h, "Quotas"): what a key holds
 * now against its limits in api_keys (NULL: the KEY_MAX_* default).
 *
 * Threading: runs on the caller's struct db; keeps no state.
 */
#include "store_internal.h"

/* A key's session limits and what its active, unexpired sessions hold:
 * key_usage's counters (kept by triggers, migration 014) less the active
 * sessions already past their expiry that the janitor has not marked yet
 * (sessions_key_expiry_idx finds those few). One row per key, whatever it
 * holds. A key without a row (none should exist: every key has one, the
 * bootstrap key's made at start) gets NULL limits, i.e. the defaults. */
DB_STMT(st_quota_session, "quota.session", 1,
    "SELECT k.max_active_sessions, k.max_stored_bytes,"
    " coalesce(u.active_sessions, 0) - x.n AS used_sessions,"
    " coalesce(u.stored_bytes, 0) - x.b AS used_bytes "
    "FROM (SELECT $1::text AS id) q "
    "LEFT JOIN api_keys k ON k.id = q.id "
    "LEFT JOIN key_usage u ON u.key_id = q.id "
    "CROSS JOIN (SELECT count(*) AS n, coalesce(sum(input_bytes), 0)::bigint AS b"
    "  FROM sessions WHERE api_key_id = $1 AND status = 'active'"
    "  AND expires_at <= now()) x");
/* A key's job limit and its queued and running jobs. */
DB_STMT(st_quota_job, "quota.job", 1,
    "SELECT k.max_queued_jobs, coalesce(u.open_jobs, 0) AS used_jobs "
    "FROM (SELECT $1::text AS id) q LEFT JOIN api_keys k ON k.id = q.id "
    "LEFT JOIN key_usage u ON u.key_id = q.id");

const char *store_quota_name(enum store_quota q)
{
    return (unsigned)q < STORE_QUOTA_COUNT_ ? store_key_setting_name((size_t)q) : "unknown";
}

/* The key's limit for q: its column, or the default when NULL. */
static int64_t store_quota_limit(const struct pg_result *res, enum store_quota q,
                                 const struct store_quota_limits *def)
{
    const char *col = store_quota_name(q);
    return db_get(res, 0, col) != NULL ? db_get_ll(res, 0, col) : def->max[q];
}

/* Compares use + more against q's limit; fills *hit when over. */
static int store_quota_over(const struct pg_result *res, enum store_quota q,
                            const struct store_quota_limits *def, const char *used_col,
                            int64_t more, struct store_quota_hit *hit)
{
    int64_t limit = store_quota_limit(res, q, def);
    int64_t used = db_get_ll(res, 0, used_col);
    if (used + more <= limit)
        return 0;
    hit->quota = q;
    hit->limit = limit;
    hit->used = used;
    return 1;
}

int store_quota_session(struct db *db, const char *key_id, const struct store_quota_limits *def,
                        int64_t new_bytes, struct store_quota_hit *hit)
{
    const char *p[] = { key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_quota_session, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int over = db_rows(res) == 1 &&
               (store_quota_over(res, STORE_QUOTA_ACTIVE_SESSIONS, def, "used_sessions", 1, hit) ||
                store_quota_over(res, STORE_QUOTA_STORED_BYTES, def, "used_bytes", new_bytes, hit));
    rc = db_rows(res) == 1 ? STORE_OK : STORE_ERROR;
    db_clear(res);
    return over ? STORE_LIMIT : rc;
}

int store_quota_job(struct db *db, const char *key_id, const struct store_quota_limits *def,
                    struct store_quota_hit *hit)
{
    const char *p[] = { key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_quota_job, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int over = db_rows(res) == 1 &&
               store_quota_over(res, STORE_QUOTA_QUEUED_JOBS, def, "used_jobs", 1, hit);
    rc = db_rows(res) == 1 ? STORE_OK : STORE_ERROR;
    db_clear(res);
    return over ? STORE_LIMIT : rc;
}
