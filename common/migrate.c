/* migrate.c - see migrate.h. */
#include "migrate.h"
#include "db.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

/* Any constant shared by all migrators; "ocmigrat" in ASCII. */
#define MIGRATE_LOCK_KEY "7958254213418182004"

static int migrate_simple(PGconn *conn, const char *sql, char *err, size_t err_len)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    if (!ok)
        snprintf(err, err_len, "%s", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

int migrate_latest_version(void)
{
    int v = 0;
    for (size_t i = 0; i < migrations_count; i++)
        if (migrations[i].version > v)
            v = migrations[i].version;
    return v;
}

int migrate_run(struct pg_conn *conn, char *err, size_t err_len)
{
    int applied = 0;
    if (migrate_simple(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, err_len))
        return -1;
    if (migrate_simple(conn,
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            "COMMENT ON TABLE schema_migrations IS "
            "'Migrations applied by \"opencode-api migrate\" (files in migrations/).'",
            err, err_len))
        goto fail;

    for (size_t i = 0; i < migrations_count; i++) {
        const struct migration *m = &migrations[i];
        char version[16];
        snprintf(version, sizeof(version), "%d", m->version);
        const char *p[] = { version };
        int rc;
        PGresult *res = db_query(conn, "migrate.check",
                                 "SELECT 1 FROM schema_migrations WHERE version = $1",
                                 1, p, &rc);
        if (res == NULL) {
            snprintf(err, err_len, "could not read schema_migrations");
            goto fail;
        }
        int done = PQntuples(res) > 0;
        PQclear(res);
        if (done)
            continue;

        if (migrate_simple(conn, "BEGIN", err, err_len))
            goto fail;
        if (migrate_simple(conn, m->sql, err, err_len)) {
            char reason[400];
            snprintf(reason, sizeof(reason), "%s", err);
            snprintf(err, err_len, "migration %s failed: %s", m->name, reason);
            db_rollback(conn);
            goto fail;
        }
        const char *ins[] = { version, m->name };
        if (db_exec(conn, "migrate.record",
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    2, ins) != 1 ||
            migrate_simple(conn, "COMMIT", err, err_len)) {
            snprintf(err, err_len, "could not record migration %s", m->name);
            db_rollback(conn);
            goto fail;
        }
        log_info("migrate.applied", "version=%d name=%s", m->version, m->name);
        applied++;
    }
    migrate_simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", err, err_len);
    return applied;

fail:
    {
        char ignored[64];
        migrate_simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored,
                       sizeof(ignored));
    }
    return -1;
}
