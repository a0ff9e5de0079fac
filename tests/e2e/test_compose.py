"""compose.yaml stays valid: docker-compose parses it, and the worker can
be scaled (no fixed container name or host port on it). Docker itself does
not run on the build machines, so this is as far as a test can go."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


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
        r = self.config("API_KEY=k\nPOSTGRES_PASSWORD=p\nRABBITMQ_PASSWORD=r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        for service in ("postgres:", "rabbitmq:", "api:", "worker:", "janitor:"):
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
