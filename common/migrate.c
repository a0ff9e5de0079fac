/*
 * migrate.c - see migrate.h.
 *
 * Ownership: nothing is kept. Threading: runs on the caller's struct db;
 * concurrent migrators (other processes) wait on an advisory lock.
 */
#include "migrate.h"
#include "db.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

/* Any constant shared by all migrators; "ocmigrat" in ASCII. */
#define MIGRATE_LOCK_KEY "7958254213418182004"

DB_STMT(st_migrate_check, "migrate.check", 1,
    "SELECT 1 FROM schema_migrations WHERE version = $1::int");
DB_STMT(st_migrate_record, "migrate.record", 2,
    "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)");

int migrate_latest_version(void)
{
    int v = 0;
    for (size_t i = 0; i < migrations_count; i++)
        if (migrations[i].version > v)
            v = migrations[i].version;
    return v;
}

/* Applies m unless schema_migrations lists it: 1 applied, 0 already
 * there, -1 with a message in err. */
static int migrate_one(struct db *db, const struct migration *m, char *err, size_t err_len)
{
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *p[] = { version };
    int rc;
    struct pg_result *res = db_run(db, &st_migrate_check, p, &rc);
    if (res == NULL) {
        snprintf(err, err_len, "could not read schema_migrations");
        return -1;
    }
    int done = db_rows(res) > 0;
    db_clear(res);
    if (done)
        return 0;

    if (db_script(db, "BEGIN", err, err_len) != DB_OK)
        return -1;
    if (db_script(db, m->sql, err, err_len) != DB_OK) {
        char reason[400];
        snprintf(reason, sizeof(reason), "%s", err);
        snprintf(err, err_len, "migration %s failed: %s", m->name, reason);
        db_rollback(db);
        return -1;
    }
    const char *ins[] = { version, m->name };
    if (db_run_exec(db, &st_migrate_record, ins) != 1 ||
        db_script(db, "COMMIT", err, err_len) != DB_OK) {
        snprintf(err, err_len, "could not record migration %s", m->name);
        db_rollback(db);
        return -1;
    }
    log_info("migrate.applied", "version=%d name=%s", m->version, m->name);
    return 1;
}

int migrate_run(struct db *db, char *err, size_t err_len)
{
    int applied = 0;
    if (db_ensure(db, err, err_len) != DB_OK)
        return -1;
    if (db_script(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, err_len) != DB_OK)
        return -1;
    if (db_script(db,
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            "COMMENT ON TABLE schema_migrations IS "
            "'Migrations applied by \"opencode-api migrate\" (files in migrations/).'",
            err, err_len) != DB_OK)
        goto fail;

    for (size_t i = 0; i < migrations_count; i++) {
        int r = migrate_one(db, &migrations[i], err, err_len);
        if (r < 0)
            goto fail;
        applied += r;
    }
    db_script(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", err, err_len);
    return applied;

fail:
    {
        char ignored[64];
        db_script(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored,
                  sizeof(ignored));
    }
    return -1;
}
