"""scripts/smoke.sh, the deployment smoke test, against a real service.

It must pass every step of the seed's flow on a working service (the
scripted model answers the seed's example 2 by really adding a subtract
function), and stop at the first failing step with a non-zero exit when
something is wrong (here: a key the service does not know).
"""

import os
import subprocess

import harness

SMOKE = os.path.join(harness.SOURCE, "scripts", "smoke.sh")


class Smoke(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1}

    def run_smoke(self, key):
        env = dict(os.environ, BASE=self.svc.base, API_KEY=key, SMOKE_POLL="0.5",
                   SMOKE_TIMEOUT="240")
        return subprocess.run(["bash", SMOKE], env=env, capture_output=True, text=True,
                              timeout=300)

    def test_every_step_passes_on_a_working_service(self):
        r = self.run_smoke(self.svc.api_key)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.svc.all_logs())
        steps = [line.split()[1] for line in r.stdout.splitlines()
                 if line.startswith("smoke: ") and len(line.split()) > 2]
        self.assertEqual(steps[:7], ["health", "session", "job", "status", "results",
                                     "download", "delete"], r.stdout)
        self.assertIn("smoke: status     succeeded", r.stdout)
        self.assertIn("smoke: all steps passed", r.stdout)
        # It cleaned up after itself: its session is deleted.
        self.assertEqual(self.svc.scalar("SELECT count(*) FROM sessions WHERE status = 'active'"),
                         "0")

    def test_first_failure_stops_with_its_step(self):
        r = self.run_smoke("not-a-key-of-this-service")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("smoke: health", r.stdout)
        self.assertIn("FAILED at session: status 401", r.stderr)
        self.assertIn("unauthorized", r.stderr)
        self.assertNotIn("smoke: job", r.stdout)


if __name__ == "__main__":
    harness.main()
