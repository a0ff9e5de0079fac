/*
 * store_ping.c - the readiness probe's statement, and the api listener's
 * heartbeat (see store.h).
 *
 * Threading: runs on the caller's struct db.
 */
#include "store_internal.h"

DB_STMT(st_ping, "ping", 0, "SELECT 1");

int store_ping(struct db *db)
{
    return store_from_db(db_run_exec(db, &st_ping, NULL));
}

DB_STMT(st_notify, "notify", 2, "SELECT pg_notify($1, $2)");

int store_notify(struct db *db, const char *channel, const char *payload)
{
    const char *p[] = { channel, payload };
    return store_from_db(db_run_exec(db, &st_notify, p));
}
