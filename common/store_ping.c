/*
 * store_ping.c - the readiness probe's statement (see store.h).
 *
 * Threading: runs on the caller's struct db.
 */
#include "store_internal.h"

DB_STMT(st_ping, "ping", 0, "SELECT 1");

int store_ping(struct db *db)
{
    return store_from_db(db_run_exec(db, &st_ping, NULL));
}
