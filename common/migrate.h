/*
 * migrate.h - schema migrations compiled into the programs.
 *
 * migrations/NNN_name.sql files are embedded at build time (see
 * cmake/embed_migrations.cmake) and applied in order, each in its own
 * transaction together with its row in schema_migrations. A session-level
 * advisory lock serializes concurrent migrators, and applied versions are
 * skipped, so running migrate twice, or from two processes at once, is
 * safe.
 */
#ifndef OC_MIGRATE_H
#define OC_MIGRATE_H

#include <stddef.h>

struct migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct migration migrations[];
extern const size_t migrations_count;

struct db;

/* Applies every pending migration on db (connecting it first when
 * needed). Returns the number applied (>= 0), or -1 with a message in
 * err. */
int migrate_run(struct db *db, char *err, size_t err_len);

/* Highest migration version compiled in. */
int migrate_latest_version(void);

#endif
