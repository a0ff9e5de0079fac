/*
 * store_webhook.c - webhooks (see store.h, "Webhooks"): signing secrets,
 * a key's default URL, and the delivery queue the janitor works through
 * (webhook_deliveries, filled by the trigger of migration 009).
 *
 * Ownership: struct store_webhook_due owns its url (store_webhook_due_free).
 * Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Creates the key's secret, or rotates it: the old one is kept as
 * previous_secret (sent as a second signature for the grace period). */
DB_STMT(st_wh_secret_set, "webhook.secret.set", 2,
    "INSERT INTO webhook_secrets (key_id, secret)"
    " SELECT id, $2 FROM api_keys WHERE id = $1 AND revoked_at IS NULL "
    "ON CONFLICT (key_id) DO UPDATE SET previous_secret = webhook_secrets.secret,"
    " secret = EXCLUDED.secret, rotated_at = now()");
DB_STMT(st_wh_secret_get, "webhook.secret.get", 2,
    "SELECT secret, CASE WHEN rotated_at + $2::bigint * interval '1 second' > now()"
    " THEN previous_secret END AS previous FROM webhook_secrets WHERE key_id = $1");
DB_STMT(st_wh_key_url, "webhook.key.url", 2,
    "UPDATE api_keys SET webhook_url = $2 WHERE id = $1 AND revoked_at IS NULL");
DB_STMT(st_wh_key_url_get, "webhook.key.url.get", 1,
    "SELECT webhook_url FROM api_keys WHERE id = $1");
/* One due row; the lease (next_attempt_at moved ahead) keeps other
 * janitors off it while it is sent, and gives it back should this one
 * die. SKIP LOCKED: janitors taking rows at the same moment never wait
 * for each other. */
DB_STMT(st_wh_take, "webhook.take", 1,
    "WITH c AS (SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL"
    "  AND gave_up_at IS NULL AND next_attempt_at <= now()"
    "  ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = now(),"
    " next_attempt_at = now() + $1::bigint * interval '1 second' "
    "FROM c WHERE d.id = c.id "
    "RETURNING d.id, d.job_id, d.key_id, d.url, d.attempts,"
    " extract(epoch FROM now())::bigint AS ts");
/* $2 ok, $3 HTTP status or NULL, $4 error or NULL, $5 base, $6 cap,
 * $7 window (seconds), $8 the attempt recorded (a newer one wins). */
DB_STMT(st_wh_record, "webhook.record", 8,
    "WITH x AS (SELECT id, now() + least($5::float8 * power(2, least(attempts - 1, 40)),"
    "  $6::float8) * interval '1 second' AS next,"
    "  created_at + $7::bigint * interval '1 second' AS deadline"
    "  FROM webhook_deliveries WHERE id = $1 AND attempts = $8::int) "
    "UPDATE webhook_deliveries d SET last_status_code = $3::int, last_error = $4,"
    " delivered_at = CASE WHEN $2::boolean THEN now() END,"
    " gave_up_at = CASE WHEN NOT $2::boolean AND x.next > x.deadline THEN now() END,"
    " next_attempt_at = CASE WHEN $2::boolean OR x.next > x.deadline THEN NULL"
    " ELSE x.next END "
    "FROM x WHERE d.id = x.id "
    "RETURNING (d.gave_up_at IS NOT NULL) AS gave_up,"
    " coalesce(extract(epoch FROM d.next_attempt_at - now()), 0)::bigint AS retry_in");

int store_webhook_secret_set(struct db *db, const char *key_id, const char *secret)
{
    const char *p[] = { key_id, secret };
    long n = db_run_exec(db, &st_wh_secret_set, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

int store_webhook_secrets_get(struct db *db, const char *key_id, long grace_s,
                              char current[STORE_WEBHOOK_SECRET_MAX],
                              char previous[STORE_WEBHOOK_SECRET_MAX])
{
    char grace[32];
    snprintf(grace, sizeof(grace), "%ld", grace_s);
    const char *p[] = { key_id, grace };
    int rc;
    current[0] = previous[0] = '\0';
    struct pg_result *res = db_run(db, &st_wh_secret_get, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found) {
        store_copy(current, STORE_WEBHOOK_SECRET_MAX, res, 0, "secret");
        store_copy(previous, STORE_WEBHOOK_SECRET_MAX, res, 0, "previous");
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_webhook_url_set(struct db *db, const char *key_id, const char *url)
{
    const char *p[] = { key_id, url };
    long n = db_run_exec(db, &st_wh_key_url, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_webhook_url_get(struct db *db, const char *key_id, char **url)
{
    const char *p[] = { key_id };
    int rc;
    *url = NULL;
    struct pg_result *res = db_run(db, &st_wh_key_url_get, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found && db_get(res, 0, "webhook_url") != NULL)
        *url = xstrdup(db_get(res, 0, "webhook_url"));
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_webhook_take(struct db *db, long lease_s, struct store_webhook_due *out)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", lease_s);
    const char *p[] = { lease };
    int rc;
    memset(out, 0, sizeof(*out));
    struct pg_result *res = db_run(db, &st_wh_take, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found) {
        store_copy(out->id, sizeof(out->id), res, 0, "id");
        store_copy(out->job_id, sizeof(out->job_id), res, 0, "job_id");
        store_copy(out->key_id, sizeof(out->key_id), res, 0, "key_id");
        out->url = xstrdup(db_get(res, 0, "url"));
        out->attempt = (int)db_get_ll(res, 0, "attempts");
        out->timestamp = db_get_ll(res, 0, "ts");
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

void store_webhook_due_free(struct store_webhook_due *d)
{
    free(d->url);
    memset(d, 0, sizeof(*d));
}

int store_webhook_record(struct db *db, const struct store_webhook_due *d,
                         const struct store_webhook_result *r, int *gave_up, long *retry_in_s)
{
    char status[16], attempt[16], base[32], cap[32], window[32];
    snprintf(status, sizeof(status), "%d", r->http_status);
    snprintf(attempt, sizeof(attempt), "%d", d->attempt);
    snprintf(base, sizeof(base), "%ld", r->retry_base_s);
    snprintf(cap, sizeof(cap), "%ld", r->retry_max_s);
    snprintf(window, sizeof(window), "%ld", r->retry_window_s);
    const char *p[] = { d->id, r->ok ? "true" : "false",
                        r->http_status > 0 ? status : NULL, r->ok ? NULL : r->error,
                        base, cap, window, attempt };
    int rc;
    *gave_up = 0;
    *retry_in_s = 0;
    struct pg_result *res = db_run(db, &st_wh_record, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found) {
        *gave_up = db_get_bool(res, 0, "gave_up");
        *retry_in_s = (long)db_get_ll(res, 0, "retry_in");
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}
