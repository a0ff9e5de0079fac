/*
 * store_key.c - API keys (see store.h).
 *
 * Ownership: struct store_keys is a view into its result (store_keys_free).
 * Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

DB_STMT(st_key_lookup, "key.lookup", 1,
    "SELECT id FROM api_keys WHERE key_sha256 = $1::bytea AND revoked_at IS NULL");
DB_STMT(st_key_create, "key.create", 3,
    "INSERT INTO api_keys (id, name, key_sha256) VALUES ($1, $2, $3::bytea)");
DB_STMT(st_key_list, "key.list", 0,
    "SELECT id, name, " STORE_USEC("created_at") " AS created, "
    STORE_USEC("revoked_at") " AS revoked FROM api_keys ORDER BY created_at");
DB_STMT(st_key_revoke, "key.revoke", 1,
    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL");
DB_STMT(st_key_bootstrap, "key.bootstrap", 1,
    "INSERT INTO api_keys (id, name, key_sha256) "
    "VALUES ('bootstrap', 'API_KEY (bootstrap)', $1::bytea) ON CONFLICT (id) DO NOTHING");
/* Every column, so a new setting needs no new statement here. Admin only. */
DB_STMT(st_key_settings, "key.settings", 1, "SELECT * FROM api_keys WHERE id = $1");

/* UPDATE of one setting column of an unrevoked key ($1 id, $2 value or NULL). */
#define KEY_SET_SQL(column) \
    "UPDATE api_keys SET " column " = $2::bigint WHERE id = $1 AND revoked_at IS NULL"
#define KEY_SETTING(column) { "key.set." column, KEY_SET_SQL(column), 2 }

/*
 * The key settings: one row each, named as its api_keys column (a nullable
 * bigint: NULL = the default from the environment). The quotas come first,
 * in enum store_quota order (store_quota_name() reads this table). Adding a
 * setting = a migration adding the column + a row here.
 */
static const struct db_stmt store_key_settings_table[] = {
    KEY_SETTING("max_active_sessions"),
    KEY_SETTING("max_queued_jobs"),
    KEY_SETTING("max_stored_bytes"),
    KEY_SETTING("max_usd_per_day"),
    KEY_SETTING("max_tokens_per_job"),
};
#define STORE_KEY_NSETTINGS (sizeof(store_key_settings_table) / sizeof(store_key_settings_table[0]))
_Static_assert(STORE_KEY_NSETTINGS <= STORE_KEY_SETTINGS_MAX, "raise STORE_KEY_SETTINGS_MAX");
_Static_assert(STORE_KEY_NSETTINGS >= STORE_QUOTA_COUNT_, "a quota without a setting");

/* bytea parameters go over as hex text: \x + 64 digits. */
static void store_hash_hex(const unsigned char hash[32], char out[67])
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (int i = 0; i < 32; i++) {
        out[2 + 2 * i] = hex[hash[i] >> 4];
        out[3 + 2 * i] = hex[hash[i] & 15];
    }
    out[66] = '\0';
}

int store_key_lookup(struct db *db, const unsigned char hash[32],
                     char key_id[STORE_KEY_ID_MAX])
{
    char hex[67];
    store_hash_hex(hash, hex);
    const char *p[] = { hex };
    int rc;
    struct pg_result *res = db_run(db, &st_key_lookup, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found)
        store_copy(key_id, STORE_KEY_ID_MAX, res, 0, "id");
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_create(struct db *db, const char *id, const char *name,
                     const unsigned char hash[32])
{
    char hex[67];
    store_hash_hex(hash, hex);
    const char *p[] = { id, name, hex };
    return store_from_db(db_run_exec(db, &st_key_create, p));
}

int store_key_list(struct db *db, struct store_keys *out)
{
    memset(out, 0, sizeof(*out));
    int rc;
    struct pg_result *res = db_run(db, &st_key_list, NULL, &rc);
    if (res == NULL)
        return store_from_db(rc);
    out->res = res;
    out->n = (size_t)db_rows(res);
    out->v = xcalloc(out->n, sizeof(*out->v));
    for (int i = 0; i < (int)out->n; i++) {
        struct store_key *k = &out->v[i];
        k->id = db_get(res, i, "id");
        k->name = db_get(res, i, "name");
        k->created_usec = db_get_ll(res, i, "created");
        k->revoked = db_get(res, i, "revoked") != NULL;
        k->revoked_usec = db_get_ll(res, i, "revoked");
    }
    return STORE_OK;
}

void store_keys_free(struct store_keys *k)
{
    db_clear(k->res);
    free(k->v);
    memset(k, 0, sizeof(*k));
}

int store_key_revoke(struct db *db, const char *id)
{
    const char *p[] = { id };
    long n = db_run_exec(db, &st_key_revoke, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_ensure_bootstrap(struct db *db, const unsigned char unmatchable_hash[32])
{
    char hex[67];
    store_hash_hex(unmatchable_hash, hex);
    const char *p[] = { hex };
    return store_from_db(db_run_exec(db, &st_key_bootstrap, p));
}

const char *store_key_setting_name(size_t i)
{
    /* The statement's name is "key.set.<column>". */
    return i < STORE_KEY_NSETTINGS ? store_key_settings_table[i].name + strlen("key.set.")
                                   : NULL;
}

int store_key_set(struct db *db, const char *id, const char *name, const int64_t *value)
{
    size_t i = 0;
    while (store_key_setting_name(i) != NULL && strcmp(store_key_setting_name(i), name) != 0)
        i++;
    if (i == STORE_KEY_NSETTINGS || (value != NULL && *value < 0))
        return STORE_CONFLICT;
    char num[32];
    if (value != NULL)
        snprintf(num, sizeof(num), "%lld", (long long)*value);
    const char *p[] = { id, value != NULL ? num : NULL };
    long n = db_run_exec(db, &store_key_settings_table[i], p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_settings_get(struct db *db, const char *id, struct store_key_settings *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { id };
    int rc;
    struct pg_result *res = db_run(db, &st_key_settings, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    for (size_t i = 0; found && i < STORE_KEY_NSETTINGS; i++) {
        out->set[i] = db_get(res, 0, store_key_setting_name(i)) != NULL;
        out->value[i] = db_get_ll(res, 0, store_key_setting_name(i));
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}
