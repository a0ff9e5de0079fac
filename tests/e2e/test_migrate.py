"""Migrations: applied in order, recorded, safe to run twice and from
several processes at once; every table and column dashboards read is
documented with COMMENT ON."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

API = os.path.join(harness.BUILD, "opencode-api")
MIGRATIONS = sorted(f for f in os.listdir(os.path.join(harness.SOURCE, "migrations"))
                    if f.endswith(".sql"))


class Migrate(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "api": False}

    def test_concurrent_and_repeated_migrations(self):
        s = self.svc
        procs = [subprocess.Popen([API, "migrate"], env=s.env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0, 0], outs)
        applied = sum(int(o[0].split("(")[1].split()[0]) for o in outs)
        self.assertEqual(applied, len(MIGRATIONS), outs)

        again = s.run_program([API, "migrate"])
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("(0 migration(s) applied)", again.stdout)

        rows = s.sql("SELECT version, name FROM schema_migrations ORDER BY version")
        self.assertEqual([r[1] + ".sql" for r in rows], MIGRATIONS)

    def test_tables_and_columns_are_documented(self):
        s = self.svc
        s.run_program([API, "migrate"])
        undocumented = s.sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' "
            "AND obj_description(c.oid, 'pg_class') IS NULL")
        self.assertEqual(undocumented, [])
        for table, column in (("jobs", "lease_expires_at"), ("jobs", "status"),
                              ("sessions", "status"), ("sessions", "expires_at")):
            comment = s.scalar(
                "SELECT col_description('%s'::regclass, attnum) FROM pg_attribute "
                "WHERE attrelid = '%s'::regclass AND attname = '%s'" % (table, table, column))
            self.assertTrue(comment, "%s.%s has no comment" % (table, column))

    def test_bad_configuration_names_the_variable(self):
        r = self.svc.run_program([API, "migrate"], DATABASE_URL=None)
        self.assertEqual(r.returncode, 2)
        self.assertIn("DATABASE_URL", r.stderr)
        r = self.svc.run_program([API], MAX_FILES="many")
        self.assertEqual(r.returncode, 2)
        self.assertIn("MAX_FILES", r.stderr)


if __name__ == "__main__":
    harness.main()
