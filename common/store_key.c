/* store_key.c - API keys (see store.h). */
#include <stdio.h>
#include <string.h>

#include "jsonutil.h"
#include "store_internal.h"

/* bytea parameters go over as hex text: \x + 64 digits. */
static void store_hash_hex(const unsigned char hash[32], char out[67])
{
    out[0] = '\\';
    out[1] = 'x';
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", hash[i]);
}

int store_key_lookup(PGconn *db, const unsigned char hash[32], char key_id[STORE_KEY_ID_MAX])
{
    char hex[67];
    store_hash_hex(hash, hex);
    const char *p[] = { hex };
    int rc;
    PGresult *res = db_query(db, "key.lookup",
                             "SELECT id FROM api_keys WHERE key_sha256 = $1::bytea "
                             "AND revoked_at IS NULL", 1, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = PQntuples(res) == 1;
    if (found)
        store_copy(key_id, STORE_KEY_ID_MAX, res, 0, "id");
    PQclear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_key_create(PGconn *db, const char *id, const char *name, const unsigned char hash[32])
{
    char hex[67];
    store_hash_hex(hash, hex);
    const char *p[] = { id, name, hex };
    return store_from_db(db_exec(db, "key.create",
                                 "INSERT INTO api_keys (id, name, key_sha256) "
                                 "VALUES ($1, $2, $3::bytea)", 3, p));
}

cJSON *store_key_list(PGconn *db, int *rc)
{
    PGresult *res = db_query(db, "key.list",
                             "SELECT id, name, " STORE_USEC("created_at") " AS created, "
                             STORE_USEC("revoked_at") " AS revoked "
                             "FROM api_keys ORDER BY created_at", 0, NULL, rc);
    if (res == NULL) {
        *rc = store_from_db(*rc);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "id", db_get(res, i, "id"));
        cJSON_AddStringToObject(o, "name", db_get(res, i, "name"));
        json_add_time(o, "created_at", db_get_ll(res, i, "created"), 0);
        json_add_time(o, "revoked_at", db_get_ll(res, i, "revoked"),
                      db_get(res, i, "revoked") == NULL);
    }
    PQclear(res);
    *rc = arr ? STORE_OK : STORE_ERROR;
    return arr;
}

int store_key_revoke(PGconn *db, const char *id)
{
    const char *p[] = { id };
    long n = db_exec(db, "key.revoke",
                     "UPDATE api_keys SET revoked_at = now() "
                     "WHERE id = $1 AND revoked_at IS NULL", 1, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}
