"""Dashboards: the ops_* views of migrations/007_dashboard_views.sql answer
on a populated database, and every SQL query of the Grafana dashboard
(deploy/grafana/dashboards/opencode.json) runs against it.

The database is filled directly with SQL (no agent runs: workers=0): two
keys, active and ended sessions, jobs in every status with error codes,
tokens, costs and output files, at known offsets from one now(), so each
view's numbers can be checked exactly. Every view and each of its columns
must carry a COMMENT, like the tables (test_migrate.py).

The dashboard's Prometheus panels cannot run here (no Prometheus): every
PromQL expression must name only metrics of common/metrics.c's table (a
histogram through its _bucket, _sum or _count series), group only by their
labels, and use a provisioned data source (this part needs no database)."""

import csv
import io
import json
import os
import re
import subprocess
import sys
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

API = os.path.join(harness.BUILD, "opencode-api")
DASHBOARD = os.path.join(harness.SOURCE, "deploy", "grafana", "dashboards", "opencode.json")
DATASOURCES = os.path.join(harness.SOURCE, "deploy", "grafana", "provisioning", "datasources")
METRICS_C = os.path.join(harness.SOURCE, "common", "metrics.c")
SQL_DS = "grafana-postgresql-datasource"
PROM_DS = "prometheus"
VIEWS = ("ops_queue", "ops_throughput_per_minute", "ops_job_latency_by_model",
         "ops_failures_by_error", "ops_usage_per_key_day", "ops_storage_per_key")
M1 = "prov/model-one"
M2 = "prov/model-two"
KEY_A = "key_aaaaaaaaaaaaaaaa"
KEY_B = "key_bbbbbbbbbbbbbbbb"


def hexid():
    return uuid.uuid4().hex


def percentile(values, q):
    """percentile_cont: linear interpolation between the closest ranks."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def dashboard_targets():
    """(panel, target) of every target of every panel, rows' panels too."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p, t))
    walk(dash["panels"])
    return out


def target_type(panel, target):
    return (target.get("datasource") or panel.get("datasource") or {}).get("type")


def dashboard_queries():
    """(panel title, format, rawSql) of every SQL target of every panel."""
    return [(p.get("title"), t.get("format", "table"), t.get("rawSql"))
            for p, t in dashboard_targets() if target_type(p, t) != PROM_DS]


def dashboard_promql():
    """(panel title, expr) of every Prometheus target of every panel."""
    return [(p.get("title"), t.get("expr")) for p, t in dashboard_targets()
            if target_type(p, t) == PROM_DS]


def exported_metrics():
    """{name: (type, labels)} from the ocm_defs table of common/metrics.c."""
    with open(METRICS_C) as f:
        src = f.read()
    table = src[src.index("ocm_defs[OCM_COUNT_]"):]
    table = table[:table.index("};")]
    out = {}
    entry = re.compile(r'\{\s*METRIC_(COUNTER|GAUGE|HISTOGRAM)\s*,\s*"([a-z_:][a-z0-9_:]*)"\s*,'
                       r'\s*(?:"(?:[^"\\]|\\.)*"\s*)+,\s*(NULL|"([^"]*)")')
    for m in entry.finditer(table):
        labels = set(m.group(4).split(",")) if m.group(4) else set()
        out[m.group(2)] = (m.group(1).lower(), labels)
    return out


def provisioned_datasources():
    """{uid: type} of every provisioned data source (a minimal reader of
    the flat YAML lists there, so python3-yaml is not needed)."""
    out = {}
    for name in sorted(os.listdir(DATASOURCES)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(DATASOURCES, name)) as f:
            text = f.read()
        for item in re.split(r"\n\s*- name:", text)[1:]:
            uid = re.search(r"^\s*uid:\s*(\S+)", item, re.M)
            typ = re.search(r"^\s*type:\s*(\S+)", item, re.M)
            if uid and typ:
                out[uid.group(1)] = typ.group(1)
    return out


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def promql_names(expr):
    """(metric names, labels grouped by) of a PromQL expression: strings,
    label matchers, ranges and Grafana variables removed, identifiers that
    are not a function call or a keyword are metric names."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    grouped = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        grouped.update(x.strip() for x in m.group(1).split(",") if x.strip())
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names, grouped


class Dashboards(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "api": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.svc.run_program([API, "migrate"])
        if r.returncode != 0:
            cls.tearDownClass()
            raise AssertionError("migrate failed: %s" % r.stderr)
        cls.expect = cls.populate(cls.svc)

    # ---- data ------------------------------------------------------------

    @classmethod
    def populate(cls, s):
        """Inserts the fixture in one statement (one now()) and returns
        what the views must show."""
        sa1, sa2, sa3, sb1 = hexid(), hexid(), hexid(), hexid()
        stmts = [
            "INSERT INTO api_keys (id, name, key_sha256) VALUES "
            "('%s', 'alpha', decode(md5('a'), 'hex')), ('%s', 'beta', decode(md5('b'), 'hex'))"
            % (KEY_A, KEY_B),
            "INSERT INTO sessions (id, api_key_id, status, ttl_seconds, expires_at, "
            "input_file_count, input_bytes, ended_at) VALUES "
            "('%s', '%s', 'active', 3600, now() + interval '1 hour', 2, 1000, NULL),"
            "('%s', '%s', 'active', 3600, now() + interval '1 hour', 1, 500, NULL),"
            "('%s', '%s', 'deleted', 3600, now() + interval '1 hour', 3, 7777, now()),"
            "('%s', '%s', 'active', 3600, now() + interval '1 hour', 1, 2000, NULL)"
            % (sa1, KEY_A, sa2, KEY_A, sa3, KEY_A, sb1, KEY_B),
        ]
        jobs = []  # dicts; times in seconds before now()

        def job(session, model, status, created_ago, wait=None, duration=None, error_code=None,
                tokens=None, cost=None, lease_expired=None, finished_at_sql=None):
            j = dict(id=hexid(), session=session, model=model, status=status,
                     created_ago=created_ago, wait=wait, duration=duration,
                     error_code=error_code, tokens=tokens, cost=cost,
                     lease_expired=lease_expired, finished_at_sql=finished_at_sql)
            jobs.append(j)
            return j

        # Model one: five finished runs (three succeeded, two failed).
        a_cur = job(sa1, M1, "succeeded", 3000, wait=1, duration=10, tokens=(100, 10, 1, 5, 2), cost=0.25)
        a_old = job(sa1, M1, "succeeded", 2900, wait=2, duration=20, tokens=(200, 20, 2, 0, 0), cost=0.5)
        job(sa2, M1, "succeeded", 2800, wait=3, duration=100, tokens=(300, 30, 0, 0, 0), cost=1.0)
        job(sa2, M1, "failed", 2700, wait=4, duration=30, error_code="agent_failed")
        job(sa3, M1, "failed", 2600, wait=5, duration=40, error_code="worker_lost")
        # Model two: three finished runs, one cancelled, two running.
        b_cur = job(sb1, M2, "succeeded", 2500, wait=30, duration=60, tokens=(1000, 100, 10, 50, 20), cost=2.0)
        job(sb1, M2, "timed_out", 2400, wait=10, duration=600, error_code="timeout", tokens=(5, 5, 0, 0, 0), cost=0.125)
        job(sb1, M2, "failed", 2300, wait=20, duration=5, error_code="agent_failed")
        job(sb1, M2, "cancelled", 2200, error_code="cancelled",
            finished_at_sql="now() - interval '2100 seconds'")
        job(sb1, M2, "failed", 2150, wait=1, duration=1, error_code=None)  # "unknown"
        job(sb1, M2, "running", 200, wait=40, lease_expired=True)
        job(sa1, M2, "running", 150, wait=50, lease_expired=False)
        # Two jobs finished in one minute, ten minutes ago (their own model).
        same_minute = ("date_trunc('minute', now()) - interval '10 minutes' + interval '5 seconds'",
                       "date_trunc('minute', now()) - interval '10 minutes' + interval '40 seconds'")
        job(sa2, "prov/model-three", "succeeded", 1000, finished_at_sql=same_minute[0])
        job(sa2, "prov/model-three", "succeeded", 1000, finished_at_sql=same_minute[1])
        # Queued: the oldest was submitted 100 s ago.
        for ago in (100, 50, 10):
            job(sa2, M1, "queued", ago)
        # Two days ago: outside every 24 h window, but in the usage per day.
        old = job(sa1, M1, "failed", 2 * 86400, wait=7, duration=9, error_code="agent_start_failed",
                  tokens=(40000, 4000, 0, 0, 0), cost=4.0)

        rows = []
        for j in jobs:
            created = "now() - interval '%d seconds'" % j["created_ago"]
            started = finished = "NULL"
            if j["wait"] is not None:
                started = "now() - interval '%d seconds'" % (j["created_ago"] - j["wait"])
                if j["duration"] is not None:
                    finished = "now() - interval '%d seconds'" % (
                        j["created_ago"] - j["wait"] - j["duration"])
            if j["finished_at_sql"]:
                finished = j["finished_at_sql"]
                if j["status"] == "succeeded" and started == "NULL":
                    started = "now() - interval '%d seconds'" % j["created_ago"]
            running = j["status"] == "running"
            lease_token = "'tok%s'" % j["id"][:8] if running else "NULL"
            lease = "NULL"
            if running:
                lease = "now() %s interval '60 seconds'" % ("-" if j["lease_expired"] else "+")
            t = j["tokens"] or (None,) * 5
            rows.append("('%s', '%s', '%s', 'p', '%s', 60, %d, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)" % (
                j["id"], j["session"], j["status"], j["model"], 1 if started != "NULL" else 0,
                lease_token, lease, created, started, finished,
                "'%s'" % j["error_code"] if j["error_code"] else "NULL",
                *("%d" % x if x is not None else "NULL" for x in t),
                repr(j["cost"]) if j["cost"] is not None else "NULL"))
        stmts.append(
            "INSERT INTO jobs (id, session_id, status, prompt, model, timeout_s, attempt, "
            "lease_token, lease_expires_at, created_at, started_at, finished_at, error_code, "
            "tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, "
            "cost_usd) VALUES " + ",\n".join(rows))
        stmts.append(
            "INSERT INTO job_files (job_id, path, size_bytes, sha256) VALUES "
            "('%s', 'a.txt', 300, 'x'), ('%s', 'b.txt', 200, 'x'), "
            "('%s', 'old.txt', 999, 'x'), ('%s', 'c.txt', 50, 'x')"
            % (a_cur["id"], a_cur["id"], a_old["id"], b_cur["id"]))
        stmts.append("UPDATE sessions SET current_job_id = '%s' WHERE id = '%s'" % (a_cur["id"], sa1))
        stmts.append("UPDATE sessions SET current_job_id = '%s' WHERE id = '%s'" % (b_cur["id"], sb1))
        s.sql("BEGIN; " + "; ".join(stmts) + "; COMMIT")

        recent = [j for j in jobs if j is not old]
        finished = [j for j in recent if j["status"] in ("succeeded", "failed", "timed_out", "cancelled")]
        return dict(jobs=jobs, recent=recent, finished=finished, old=old,
                    same_minute=same_minute, sessions=(sa1, sa2, sa3, sb1))

    # ---- helpers ---------------------------------------------------------

    def query(self, sql):
        """(column names, rows as dicts of strings; '' for NULL) via psql --csv."""
        s = self.svc
        u = urllib.parse.urlparse(s.database_url)
        env = dict(os.environ, PGHOST=u.hostname, PGPORT=str(u.port), PGUSER=u.username,
                   PGPASSWORD=urllib.parse.unquote(u.password or ""), PGDATABASE=s.db_name,
                   PGTZ="UTC")
        out = subprocess.run(["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=60, env=env)
        if out.returncode != 0:
            raise AssertionError("query failed: %s\n%s" % (sql, out.stderr))
        reader = list(csv.reader(io.StringIO(out.stdout)))
        header = reader[0] if reader else []
        return header, [dict(zip(header, r)) for r in reader[1:]]

    def rows(self, view, order=""):
        return self.query("SELECT * FROM %s %s" % (view, order))[1]

    # ---- the dashboard ---------------------------------------------------

    def test_every_dashboard_query_runs_and_answers(self):
        queries = dashboard_queries()
        self.assertGreaterEqual(len(queries), 6)
        used = set()
        for title, fmt, sql in queries:
            with self.subTest(panel=title):
                self.assertTrue(sql, "panel without rawSql")
                self.assertNotIn("$", sql, "Grafana macro or variable: the test cannot run it")
                header, rows = self.query(sql)
                self.assertTrue(rows, "no rows on a populated database")
                if fmt == "time_series":
                    self.assertIn("time", header)
                    self.assertIn("value", header)
                used.update(v for v in VIEWS if v in sql)
        self.assertEqual(used, set(VIEWS), "every view has a panel")

    def test_dashboard_and_provisioning_agree(self):
        with open(DASHBOARD) as f:
            dash = json.load(f)
        ds_file = os.path.join(harness.SOURCE, "deploy", "grafana", "provisioning",
                               "datasources", "opencode.yaml")
        with open(ds_file) as f:
            ds = f.read()
        self.assertIn("uid: opencode-pg", ds)
        self.assertIn("type: grafana-postgresql-datasource", ds)
        for title, _, _ in dashboard_queries():
            self.assertTrue(title)
        prom_ds = os.path.join(DATASOURCES, "prometheus.yaml")
        with open(prom_ds) as f:
            prom = f.read()
        self.assertIn("uid: opencode-prom", prom)
        self.assertIn("type: prometheus", prom)
        uids = {"opencode-pg": SQL_DS, "opencode-prom": PROM_DS}
        for p in dash["panels"]:
            if p.get("type") == "row":
                continue
            # Each panel reads one data source, every target of it too.
            self.assertIn(p["datasource"]["uid"], uids, p["title"])
            self.assertEqual(p["datasource"]["type"], uids[p["datasource"]["uid"]], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"], p["datasource"], p["title"])

    # ---- the views -------------------------------------------------------

    def test_views_and_columns_are_documented(self):
        s = self.svc
        views = [r[0] for r in s.sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'v' ORDER BY 1")]
        for v in VIEWS:
            self.assertIn(v, views)
        undocumented = s.sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'v' "
            "AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''")
        self.assertEqual(undocumented, [])
        columns = s.sql(
            "SELECT c.relname || '.' || a.attname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = 'public' AND c.relkind = 'v' "
            "AND coalesce(col_description(c.oid, a.attnum), '') = ''")
        self.assertEqual(columns, [])

    def test_queue(self):
        rows = {r["status"]: r for r in self.rows("ops_queue")}
        self.assertEqual(list(rows), ["queued", "running", "succeeded", "failed", "timed_out",
                                      "cancelled"])
        jobs = self.expect["jobs"]
        for status, r in rows.items():
            self.assertEqual(int(r["job_count"]), sum(j["status"] == status for j in jobs), status)
        queued = rows["queued"]
        self.assertGreaterEqual(float(queued["oldest_age_seconds"]), 100)
        self.assertLess(float(queued["oldest_age_seconds"]), 100 + 600)
        self.assertEqual(int(rows["running"]["lease_expired_count"]), 1)
        self.assertGreaterEqual(float(rows["running"]["oldest_age_seconds"]), 200)
        for status in ("succeeded", "failed", "timed_out", "cancelled"):
            self.assertEqual(rows[status]["oldest_age_seconds"], "")
            self.assertEqual(rows[status]["lease_expired_count"], "0")

    def test_throughput_per_minute(self):
        rows = self.rows("ops_throughput_per_minute")
        per_status = {}
        for r in rows:
            per_status[r["status"]] = per_status.get(r["status"], 0) + int(r["jobs_finished"])
        expected = {}
        for j in self.expect["finished"]:
            expected[j["status"]] = expected.get(j["status"], 0) + 1
        self.assertEqual(per_status, expected)
        minute = self.query("SELECT DISTINCT date_trunc('minute', finished_at) AS m FROM jobs "
                            "WHERE model = 'prov/model-three'")[1]
        self.assertEqual(len(minute), 1)
        minute = minute[0]["m"]
        same = [r for r in rows if r["minute"] == minute and r["status"] == "succeeded"]
        self.assertEqual(len(same), 1, rows)
        self.assertEqual(int(same[0]["jobs_finished"]), 2)
        self.assertTrue(all(r["status"] not in ("queued", "running") for r in rows))

    def test_latency_by_model(self):
        rows = {r["model"]: r for r in self.rows("ops_job_latency_by_model")}
        for model in (M1, M2):
            with self.subTest(model=model):
                r = rows[model]
                mine = [j for j in self.expect["recent"] if j["model"] == model]
                durations = [j["duration"] for j in mine if j["duration"] is not None]
                waits = [j["wait"] for j in mine if j["wait"] is not None]
                self.assertEqual(int(r["jobs_finished"]), len(durations))
                self.assertEqual(int(r["jobs_started"]), len(waits))
                for q, col in ((0.5, "duration_p50_seconds"), (0.95, "duration_p95_seconds")):
                    self.assertAlmostEqual(float(r[col]), percentile(durations, q), places=3)
                    self.assertTrue(min(durations) <= float(r[col]) <= max(durations))
                for q, col in ((0.5, "queue_wait_p50_seconds"), (0.95, "queue_wait_p95_seconds")):
                    self.assertAlmostEqual(float(r[col]), percentile(waits, q), places=3)
                    self.assertTrue(min(waits) <= float(r[col]) <= max(waits))
                self.assertLessEqual(float(r["duration_p50_seconds"]),
                                     float(r["duration_p95_seconds"]))

    def test_failures_by_error(self):
        rows = {r["error_code"]: r for r in self.rows("ops_failures_by_error")}
        self.assertEqual({k: int(r["job_count"]) for k, r in rows.items()},
                         {"agent_failed": 2, "worker_lost": 1, "timeout": 1, "cancelled": 1,
                          "unknown": 1})
        self.assertNotIn("agent_start_failed", rows)  # two days ago
        self.assertEqual(int(rows["timeout"]["timed_out_count"]), 1)
        self.assertEqual(int(rows["cancelled"]["cancelled_count"]), 1)
        self.assertEqual(int(rows["agent_failed"]["failed_count"]), 2)
        for r in rows.values():
            self.assertEqual(int(r["job_count"]), int(r["failed_count"]) + int(r["timed_out_count"])
                             + int(r["cancelled_count"]))
            self.assertTrue(r["last_finished_at"])
        order = [int(r["job_count"]) for r in self.rows("ops_failures_by_error")]
        self.assertEqual(order, sorted(order, reverse=True))

    def test_usage_per_key_day(self):
        rows = self.rows("ops_usage_per_key_day")
        sa1, sa2, sa3, sb1 = self.expect["sessions"]
        key_of = {sa1: KEY_A, sa2: KEY_A, sa3: KEY_A, sb1: KEY_B}
        names = {KEY_A: "alpha", KEY_B: "beta"}
        cols = ("tokens_input", "tokens_output", "tokens_reasoning", "tokens_cache_read",
                "tokens_cache_write")
        for key in (KEY_A, KEY_B):
            with self.subTest(key=key):
                mine = [r for r in rows if r["api_key_id"] == key]
                self.assertTrue(all(r["key_name"] == names[key] for r in mine))
                jobs = [j for j in self.expect["jobs"] if key_of[j["session"]] == key
                        and j["status"] in ("succeeded", "failed", "timed_out", "cancelled")]
                self.assertEqual(sum(int(r["jobs_finished"]) for r in mine), len(jobs))
                for i, col in enumerate(cols):
                    self.assertEqual(sum(int(r[col]) for r in mine),
                                     sum((j["tokens"] or (0,) * 5)[i] for j in jobs), col)
                self.assertAlmostEqual(sum(float(r["cost_usd"]) for r in mine),
                                       sum(j["cost"] or 0 for j in jobs), places=6)
        # The job of two days ago has a day of its own (UTC).
        old_day = self.query("SELECT ((now() - interval '%d seconds' + interval '16 seconds') "
                             "AT TIME ZONE 'UTC')::date AS d" % self.expect["old"]["created_ago"])[1][0]["d"]
        old = [r for r in rows if r["day"] == old_day and r["api_key_id"] == KEY_A]
        self.assertEqual(len(old), 1, rows)
        self.assertEqual(int(old[0]["jobs_finished"]), 1)
        self.assertEqual(int(old[0]["tokens_input"]), 40000)
        self.assertAlmostEqual(float(old[0]["cost_usd"]), 4.0)

    def test_storage_per_key(self):
        rows = self.rows("ops_storage_per_key")
        got = {r["api_key_id"]: (r["key_name"], int(r["active_sessions"]), int(r["input_bytes"]),
                                 int(r["current_job_bytes"]), int(r["stored_bytes"]))
               for r in rows}
        # Key A: two active sessions (1000 + 500 bytes; the deleted one is
        # not counted), the current job of one holds 300 + 200 bytes (an
        # older job's 999 bytes are not counted). Key B: 2000 + 50.
        self.assertEqual(got, {KEY_A: ("alpha", 2, 1500, 500, 2000),
                               KEY_B: ("beta", 1, 2000, 50, 2050)})
        self.assertEqual([r["api_key_id"] for r in rows], [KEY_B, KEY_A])  # most bytes first


class PromQL(unittest.TestCase):
    """The dashboard's Prometheus panels against common/metrics.c."""

    def test_promql_names_only_exported_metrics(self):
        metrics = exported_metrics()
        # The table parsed: every metric README, "Metrics", names.
        self.assertGreaterEqual(len(metrics), 17, sorted(metrics))
        for name in ("opencode_http_requests_total", "opencode_http_request_duration_seconds",
                     "opencode_jobs_finished_total", "opencode_janitor_rows_total",
                     "opencode_jobs_running"):
            self.assertIn(name, metrics)
        self.assertEqual(metrics["opencode_http_requests_total"],
                         ("counter", {"route", "method", "status"}))
        self.assertEqual(metrics["opencode_job_duration_seconds"], ("histogram", set()))
        series = {}
        for name, (kind, labels) in metrics.items():
            if kind == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    series[name + suffix] = (name, labels | ({"le"} if suffix == "_bucket"
                                                               else set()))
            else:
                series[name] = (name, labels)
        exprs = dashboard_promql()
        self.assertGreaterEqual(len(exprs), 12)
        used = set()
        for title, expr in exprs:
            with self.subTest(panel=title, expr=expr):
                self.assertTrue(expr, "Prometheus target without expr")
                names, grouped = promql_names(expr)
                self.assertTrue(names, "no metric named")
                for n in names:
                    self.assertIn(n, series, "not exported by common/metrics.c")
                    used.add(series[n][0])
                # Grouped only by labels the metrics carry (or the
                # target's, which Prometheus adds).
                known = {"instance", "job"}.union(*(series[n][1] for n in names))
                self.assertLessEqual(grouped, known)
                if "histogram_quantile" in expr:
                    self.assertIn("le", grouped)
                    self.assertTrue(all(n.endswith("_bucket") for n in names), names)
        # Every metric of the brief has a panel (build_info and the
        # janitor's passes by role are not charted).
        self.assertEqual(set(metrics) - used,
                         {"opencode_build_info", "opencode_janitor_passes_total"})

    def test_every_panel_datasource_is_provisioned(self):
        provisioned = provisioned_datasources()
        self.assertEqual(provisioned, {"opencode-pg": SQL_DS, "opencode-prom": PROM_DS})
        with open(DASHBOARD) as f:
            dash = json.load(f)
        for p, t in dashboard_targets():
            for ds in (p.get("datasource"), t.get("datasource")):
                with self.subTest(panel=p.get("title")):
                    self.assertIsNotNone(ds)
                    self.assertIn(ds["uid"], provisioned)
                    self.assertEqual(ds["type"], provisioned[ds["uid"]])
        self.assertTrue(dashboard_promql())
        self.assertTrue(dashboard_queries())
        self.assertTrue(dash["panels"])

    def test_promql_parser(self):
        names, grouped = promql_names(
            'histogram_quantile(0.95, sum by (route, le) (rate(a_bucket{route!="x"}'
            '[$__rate_interval]))) / on(instance) b * 60 + max without (job) (c offset 5m)')
        self.assertEqual(names, {"a_bucket", "b", "c"})
        self.assertEqual(grouped, {"route", "le", "instance", "job"})


if __name__ == "__main__":
    harness.main()
