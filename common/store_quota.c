/*
 * store_quota.c - per-key quotas (see store.h, "Quotas"): what a key holds
 * now against its limits in api_keys (NULL: the KEY_MAX_* default).
 *
 * Threading: runs on the caller's struct db; keeps no state.
 */
#include "store_internal.h"

/* A key's session limits and what its active sessions hold: the sum of
 * its key_usage_shards counters (kept by triggers, migrations 014 and 016),
 * at most 16 rows per key, whatever it holds. They still count active sessions past their expiry that the
 * janitor has not marked yet, so they are an upper bound: a creation that
 * fits under it is allowed at once, and only one that does not asks
 * st_quota_expired what to subtract. A key without a row (none should
 * exist: every key has one, the bootstrap key's made at start) gets NULL
 * limits, i.e. the defaults. */
DB_STMT(st_quota_session, "quota.session", 1,
    "SELECT k.max_active_sessions, k.max_stored_bytes,"
    " coalesce(u.sessions, 0) AS used_sessions, coalesce(u.bytes, 0) AS used_bytes "
    "FROM (SELECT $1::text AS id) q "
    "LEFT JOIN api_keys k ON k.id = q.id "
    "CROSS JOIN (SELECT sum(active_sessions)::bigint AS sessions,"
    "  sum(stored_bytes)::bigint AS bytes FROM key_usage_shards WHERE key_id = $1) u");
/* The key's active sessions already past their expiry (a handful at most,
 * found by sessions_key_expiry_idx in expiry order; the ORDER BY keeps the
 * planner off the key's other indexes, which would visit every session of
 * the key). */
DB_STMT(st_quota_expired, "quota.expired", 1,
    "SELECT count(*) AS n, coalesce(sum(input_bytes), 0)::bigint AS b FROM ("
    " SELECT input_bytes FROM sessions WHERE api_key_id = $1 AND status = 'active'"
    " AND expires_at <= now() ORDER BY api_key_id, expires_at) x");
/* A key's job limit and its queued and running jobs. */
DB_STMT(st_quota_job, "quota.job", 1,
    "SELECT k.max_queued_jobs, coalesce(u.jobs, 0) AS used_jobs "
    "FROM (SELECT $1::text AS id) q LEFT JOIN api_keys k ON k.id = q.id "
    "CROSS JOIN (SELECT sum(open_jobs)::bigint AS jobs FROM key_usage_shards"
    "  WHERE key_id = $1) u");

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

/* Compares used + more against q's limit; fills *hit when over. */
static int store_quota_over(const struct pg_result *res, enum store_quota q,
                            const struct store_quota_limits *def, int64_t used, int64_t more,
                            struct store_quota_hit *hit)
{
    int64_t limit = store_quota_limit(res, q, def);
    if (used + more <= limit)
        return 0;
    hit->quota = q;
    hit->limit = limit;
    hit->used = used;
    return 1;
}

/* *n, *b: the key's expired but unmarked sessions and their bytes. */
static int store_quota_expired(struct db *db, const char *key_id, int64_t *n, int64_t *b)
{
    const char *p[] = { key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_quota_expired, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    rc = db_rows(res) == 1 ? STORE_OK : STORE_ERROR;
    if (rc == STORE_OK) {
        *n = db_get_ll(res, 0, "n");
        *b = db_get_ll(res, 0, "b");
    }
    db_clear(res);
    return rc;
}

/* What a session request adds: sessions (0 or 1) and bytes. */
struct store_quota_more {
    int     sessions;
    int64_t bytes;
};

/* Either session quota over with sessions and bytes in use. A request
 * adding no session (an edit) is never refused for the session count,
 * nor one adding no bytes for the bytes. */
static int store_quota_session_over(const struct pg_result *res,
                                    const struct store_quota_limits *def, int64_t sessions,
                                    int64_t bytes, struct store_quota_more more,
                                    struct store_quota_hit *hit)
{
    return (more.sessions > 0 && store_quota_over(res, STORE_QUOTA_ACTIVE_SESSIONS, def,
                                                  sessions, more.sessions, hit)) ||
           (more.bytes > 0 && store_quota_over(res, STORE_QUOTA_STORED_BYTES, def, bytes,
                                               more.bytes, hit));
}

int store_quota_session(struct db *db, const char *key_id, const struct store_quota_limits *def,
                        int new_sessions, int64_t new_bytes, struct store_quota_hit *hit)
{
    const struct store_quota_more more = { new_sessions, new_bytes };
    const char *p[] = { key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_quota_session, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    rc = db_rows(res) == 1 ? STORE_OK : STORE_ERROR;
    int64_t sessions = 0, bytes = 0, gone_n = 0, gone_b = 0;
    if (rc == STORE_OK) {
        sessions = db_get_ll(res, 0, "used_sessions");
        bytes = db_get_ll(res, 0, "used_bytes");
    }
    /* Over the upper bound: recount without the expired, exactly. */
    if (rc == STORE_OK && store_quota_session_over(res, def, sessions, bytes, more, hit) &&
        (rc = store_quota_expired(db, key_id, &gone_n, &gone_b)) == STORE_OK &&
        store_quota_session_over(res, def, sessions - gone_n, bytes - gone_b, more, hit))
        rc = STORE_LIMIT;
    db_clear(res);
    return rc;
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
               store_quota_over(res, STORE_QUOTA_QUEUED_JOBS, def, db_get_ll(res, 0, "used_jobs"),
                                1, hit);
    rc = db_rows(res) == 1 ? STORE_OK : STORE_ERROR;
    db_clear(res);
    return over ? STORE_LIMIT : rc;
}
