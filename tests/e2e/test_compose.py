"""compose.yaml stays valid: docker-compose parses it, and the worker can
be scaled (no fixed container name or host port on it). Grafana is
published on loopback only, shares a network with PostgreSQL and
Prometheus alone, and every provisioning file it mounts exists and agrees
with the dashboard. Prometheus scrapes the api, every worker replica and
the janitor on their METRICS_LISTEN port, is published on loopback only if
at all, and stays off the workers' side of the metrics network.
Docker itself does not run on the build machines, so this is as far as a
test can go."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

try:
    import yaml
except ImportError:
    # Debian's python3-yaml, when python3 is another interpreter (pyenv).
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import yaml
    except ImportError:
        yaml = None

ENV = "API_KEY=k\nPOSTGRES_PASSWORD=p\nRABBITMQ_PASSWORD=r\nGRAFANA_ADMIN_PASSWORD=g\n"
METRICS_PORT = "9464"  # METRICS_LISTEN in compose.yaml, scraped by prometheus.yml


class Compose(unittest.TestCase):
    def config(self, env_lines):
        tool = shutil.which("docker-compose")
        if tool is None:
            self.skipTest("docker-compose is not installed")
        with tempfile.NamedTemporaryFile("w", suffix=".env") as env:
            env.write(env_lines)
            env.flush()
            return subprocess.run([tool, "--env-file", env.name, "-f",
                                   os.path.join(harness.SOURCE, "compose.yaml"), "config"],
                                  capture_output=True, text=True, timeout=60)

    def test_config_is_valid_and_worker_scales(self):
        r = self.config(ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        for service in ("postgres:", "rabbitmq:", "api:", "worker:", "janitor:", "grafana:",
                        "prometheus:"):
            self.assertIn(service, out)
        worker = out.split("  worker:")[1].split("\n  janitor:")[0] if "  janitor:" in \
            out.split("  worker:")[1] else out.split("  worker:")[1]
        self.assertNotIn("container_name", worker)
        self.assertNotIn("published", worker)
        self.assertIn("/data", worker)

    def test_secrets_are_required(self):
        r = self.config("POSTGRES_PASSWORD=p\nRABBITMQ_PASSWORD=r\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("API_KEY", r.stderr)
        r = self.config("API_KEY=k\nPOSTGRES_PASSWORD=p\nRABBITMQ_PASSWORD=r\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("GRAFANA_ADMIN_PASSWORD", r.stderr)

    def services(self):
        if yaml is None:
            self.skipTest("python3-yaml is not installed")
        r = self.config(ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        return yaml.safe_load(r.stdout)["services"]

    @staticmethod
    def ports(service):
        """(host_ip, published, target) of each published port."""
        out = []
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                out.append((port.get("host_ip"), str(port.get("published")),
                            str(port.get("target"))))
            else:
                parts = str(port).split("/")[0].split(":")
                out.append(tuple([None] * (3 - len(parts)) + parts))
        return out

    def test_grafana_is_provisioned_and_private(self):
        if yaml is None:
            self.skipTest("python3-yaml is not installed")
        r = self.config(ENV + "GRAFANA_PORT=3999\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        services = yaml.safe_load(r.stdout)["services"]
        g = services["grafana"]
        self.assertTrue(g["image"].startswith("grafana/grafana-oss:"), g["image"])
        self.assertEqual(g["environment"]["GF_SECURITY_ADMIN_PASSWORD"], "g")
        self.assertEqual(g["environment"]["OPENCODE_DB_PASSWORD"], "p")
        # Published on loopback only, at GRAFANA_PORT.
        self.assertTrue(g["ports"])
        for port in g["ports"]:
            text = port if isinstance(port, str) else "%s:%s:%s" % (
                port.get("host_ip"), port.get("published"), port.get("target"))
            self.assertTrue(text.startswith("127.0.0.1:3999:3000"), port)
        # Reachable from PostgreSQL's network, not from the workers'.
        self.assertEqual(set(g["networks"]), {"dashboards"})
        self.assertIn("dashboards", services["postgres"]["networks"])
        self.assertIn("dashboards", services["prometheus"]["networks"])
        for name in ("api", "worker", "janitor", "rabbitmq"):
            self.assertNotIn("dashboards", services[name].get("networks") or {}, name)
        # Every bind mount exists in the repository, read-only.
        mounts = {}
        for v in g["volumes"]:
            if isinstance(v, dict):
                source, target, ro = v.get("source"), v["target"], v.get("read_only")
            else:
                parts = v.split(":")
                source, target, ro = parts[0], parts[1], parts[2:] == ["ro"]
            if source and source.startswith("/"):
                self.assertTrue(os.path.exists(source), source)
                self.assertTrue(source.startswith(os.path.join(harness.SOURCE, "deploy", "grafana")),
                                source)
                self.assertTrue(ro, v)
                mounts[target] = source
        prov = mounts["/etc/grafana/provisioning"]
        dashboards = mounts["/etc/grafana/dashboards"]
        ds_files = os.listdir(os.path.join(prov, "datasources"))
        provider_files = os.listdir(os.path.join(prov, "dashboards"))
        self.assertTrue(ds_files)
        self.assertTrue(provider_files)
        uids = {}
        for f in ds_files:
            with open(os.path.join(prov, "datasources", f)) as fh:
                for ds in yaml.safe_load(fh)["datasources"]:
                    self.assertIn(ds["type"], ("grafana-postgresql-datasource", "prometheus"))
                    if ds["type"] == "grafana-postgresql-datasource":
                        self.assertEqual(ds["url"], "postgres:5432")
                        self.assertEqual(ds["jsonData"]["database"], "opencode")
                        # Credentials from the container's environment, never in the file.
                        self.assertEqual(ds["user"], "$OPENCODE_DB_USER")
                        self.assertEqual(ds["secureJsonData"]["password"],
                                         "$OPENCODE_DB_PASSWORD")
                    else:
                        # The compose service, at the address it listens on.
                        self.assertEqual(ds["url"], "http://prometheus-dashboards:9090")
                        self.assertNotIn("secureJsonData", ds)
                    self.assertNotIn(ds["uid"], uids)
                    uids[ds["uid"]] = ds["type"]
        self.assertEqual(sorted(uids.values()), ["grafana-postgresql-datasource", "prometheus"])
        paths = []
        for f in provider_files:
            with open(os.path.join(prov, "dashboards", f)) as fh:
                paths += [p["options"]["path"] for p in yaml.safe_load(fh)["providers"]]
        self.assertEqual(paths, ["/etc/grafana/dashboards"])
        self.assertEqual(g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"],
                         "/etc/grafana/dashboards/opencode.json")
        with open(os.path.join(dashboards, "opencode.json")) as fh:
            dash = json.load(fh)
        targets = [t for p in dash["panels"] for t in p.get("targets", [])]
        self.assertTrue(targets)
        for t in targets:
            self.assertIn(t["datasource"]["uid"], uids)
            self.assertEqual(t["datasource"]["type"], uids[t["datasource"]["uid"]])
            if t["datasource"]["type"] == "prometheus":
                self.assertTrue(t["expr"])
            else:
                self.assertTrue(t["rawSql"])
        self.assertEqual({t["datasource"]["type"] for t in targets},
                         {"grafana-postgresql-datasource", "prometheus"})

    def test_metrics_listen_on_every_program(self):
        services = self.services()
        for name in ("api", "worker", "janitor"):
            with self.subTest(service=name):
                listen = services[name]["environment"].get("METRICS_LISTEN")
                self.assertEqual(listen, "0.0.0.0:%s" % METRICS_PORT)
                # Never published on the host: only the API port of the api is.
                for host_ip, published, target in self.ports(services[name]):
                    self.assertNotEqual(target, METRICS_PORT, name)
                self.assertIn("metrics", services[name]["networks"])
        # The worker still scales.
        self.assertNotIn("container_name", services["worker"])
        self.assertEqual(self.ports(services["worker"]), [])
        # Nothing else needs the metrics port: PostgreSQL, RabbitMQ and
        # Grafana stay off the metrics network.
        for name in ("postgres", "rabbitmq", "grafana"):
            self.assertNotIn("metrics", services[name].get("networks") or {}, name)

    def test_prometheus_scrapes_every_program(self):
        services = self.services()
        p = services["prometheus"]
        image, _, tag = p["image"].partition(":")
        self.assertEqual(image, "prom/prometheus")
        self.assertTrue(tag and tag != "latest", "pin the image's tag: %s" % p["image"])
        self.assertNotIn("container_name", p)
        # Published on loopback only, if at all.
        for host_ip, published, target in self.ports(p):
            self.assertEqual(host_ip, "127.0.0.1", p["ports"])
        # It reaches the programs (metrics) and Grafana reaches it
        # (dashboards, by its alias there).
        self.assertEqual(set(p["networks"]), {"metrics", "dashboards"})
        self.assertIn("prometheus-dashboards", p["networks"]["dashboards"]["aliases"])
        self.assertIn("--web.listen-address=0.0.0.0:9090", p["command"])
        self.assertFalse([a for a in p["command"] if "enable-admin-api" in a
                          or "enable-lifecycle" in a], p["command"])
        self.assertNotIn("dashboards", services["worker"]["networks"])
        # Its configuration: mounted read-only from the repository.
        config = None
        for v in p["volumes"]:
            if isinstance(v, dict):
                source, target, ro = v.get("source"), v["target"], v.get("read_only")
            else:
                parts = v.split(":")
                source, target, ro = parts[0], parts[1], parts[2:] == ["ro"]
            if target == "/etc/prometheus/prometheus.yml":
                self.assertEqual(source, os.path.join(harness.SOURCE, "deploy", "prometheus",
                                                      "prometheus.yml"))
                self.assertTrue(ro, v)
                config = source
        self.assertIsNotNone(config, p["volumes"])
        self.assertTrue(os.path.isfile(config), config)
        self.assertIn("--config.file=/etc/prometheus/prometheus.yml", p["command"])
        with open(config) as fh:
            conf = yaml.safe_load(fh)
        # One job per program, each finding every replica of its service
        # by compose's DNS (A records), on the METRICS_LISTEN port.
        scraped = {}
        for job in conf["scrape_configs"]:
            self.assertNotIn("static_configs", job, job["job_name"])
            for sd in job["dns_sd_configs"]:
                self.assertEqual(sd["type"], "A")
                self.assertEqual(str(sd["port"]), METRICS_PORT)
                for name in sd["names"]:
                    scraped[name] = job["job_name"]
            self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        self.assertEqual(scraped, {"api": "api", "worker": "worker", "janitor": "janitor"})
        for name in scraped:
            self.assertIn(name, services)


if __name__ == "__main__":
    unittest.main(verbosity=2)
