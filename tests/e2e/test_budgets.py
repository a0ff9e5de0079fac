"""End to end: the provider gateway's accounting and per-key budgets
(issue 10, item 3).

The scripted model reports usage like a real OpenAI-compatible provider
(in a stream only when the request asks stream_options.include_usage) and
logs each answer's numbers ("USAGE prompt_tokens=N completion_tokens=M
reported=yes|no"); the job's gateway_usage must equal what it reported,
priced by the cost the operator's provider configuration states. Budgets:
max_usd_per_day (per key and UTC day) and max_tokens_per_job stop jobs
with error_code budget_exceeded, other keys unaffected."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

API_BIN = os.path.join(harness.BUILD, "opencode-api")

# USD per million tokens: $2 per input token, $5 per output token, so that
# one small job costs whole dollars (max_usd_per_day is whole USD).
COST_IN, COST_OUT = 2000000, 5000000


def priced_config(path, base):
    with open(path) as f:
        cfg = json.load(f)
    for prov in cfg["provider"].values():
        for model in prov["models"].values():
            model["cost"] = {"input": COST_IN, "output": COST_OUT}
    return cfg


class GatewayBudgets(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.svc
        path = os.path.join(s.tmp, "priced-agent-config.json")
        with open(path, "w") as f:
            json.dump(priced_config(s.agent_config,
                                    "http://127.0.0.1:%d/v1" % s.model_port), f)
        s.start_worker("worker0", AGENT_CONFIG_FILE=path)

    def reported(self):
        """What the scripted model reported so far: [(prompt, completion)]."""
        with open(os.path.join(self.svc.tmp, "model-requests.log")) as f:
            text = f.read()
        rows = re.findall(r"USAGE prompt_tokens=(\d+) completion_tokens=(\d+) reported=(\w+)",
                          text)
        return [(int(p), int(c), r == "yes") for p, c, r in rows]

    def new_key(self, name):
        return self.svc.create_key(name)[:2]

    def keys_set(self, *args):
        r = self.svc.run_program([API_BIN, "keys", "set"] + list(args))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def run_job(self, steps, key="default"):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"}, key=key)["session_id"]
        jid = s.submit(sid, script_prompt(steps), key=key)["job_id"]

        def ended():
            j = s.job(jid, key=key)
            return j if j["status"] not in ("queued", "running") else None
        return harness.wait_for(ended, 120, 0.3, "job %s to end" % jid)

    def test_1_usage_equals_what_the_provider_reported(self):
        before = len(self.reported())
        job = self.run_job([{"write": {"filePath": "b.txt", "content": "b\n"}},
                            {"text": "all done"}])
        self.assertEqual(job["status"], "succeeded", job)
        rows = self.reported()[before:]
        self.assertGreaterEqual(len(rows), 2, rows)
        # opencode asks for usage in its streams: every answer reported it.
        self.assertTrue(all(r for _, _, r in rows), rows)
        u = job["gateway_usage"]
        self.assertIsNotNone(u, job)
        self.assertEqual(u["requests"], len(rows))
        self.assertEqual(u["input_tokens"], sum(p for p, _, _ in rows))
        self.assertEqual(u["output_tokens"], sum(c for _, c, _ in rows))
        want = (u["input_tokens"] * COST_IN + u["output_tokens"] * COST_OUT) / 1e6
        self.assertAlmostEqual(u["cost_usd"], want, places=3)
        self.assertGreater(u["cost_usd"], 0)
        self.assertEqual(int(self.svc.scalar(
            "SELECT gateway_input_tokens FROM jobs WHERE id = '%s'" % job["job_id"])),
            u["input_tokens"])

    def test_2_daily_budget_stops_the_key_not_others(self):
        kid, key = self.new_key("budget-day")
        other_kid, other = self.new_key("budget-other")
        job = self.run_job([{"text": "first"}], key=key)
        self.assertEqual(job["status"], "succeeded", job)
        spent = job["gateway_usage"]["cost_usd"]
        self.assertGreater(spent, 1)
        # Below what the key spent today: its next job is over budget.
        limit = max(1, int(spent) - 1) if spent >= 2 else 1
        self.keys_set(kid, "max_usd_per_day=%d" % limit)
        self.keys_set(other_kid, "max_usd_per_day=%d" % limit)
        job = self.run_job([{"text": "second"}], key=key)
        self.assertEqual(job["status"], "failed", job)
        self.assertEqual(job["error_code"], "budget_exceeded", job)
        self.assertIn("budget exceeded", job["error"])
        self.assertIn("max_usd_per_day", job["error"])
        self.assertIn("%d USD" % limit, job["error"])
        self.assertEqual(job["gateway_usage"]["requests"], 0, job)
        # Another key with the same budget, nothing spent yet: runs.
        job = self.run_job([{"text": "other key"}], key=other)
        self.assertEqual(job["status"], "succeeded", job)
        # "default" takes the key back to KEY_MAX_USD_PER_DAY (0: none).
        self.keys_set(kid, "max_usd_per_day=default")
        job = self.run_job([{"text": "third"}], key=key)
        self.assertEqual(job["status"], "succeeded", job)

    def test_3_tokens_per_job_stop_a_job_mid_run(self):
        kid, key = self.new_key("budget-tokens")
        self.keys_set(kid, "max_tokens_per_job=1")
        job = self.run_job([{"write": {"filePath": "b.txt", "content": "b\n"}},
                            {"write": {"filePath": "c.txt", "content": "c\n"}},
                            {"write": {"filePath": "d.txt", "content": "d\n"}},
                            {"text": "never reached"}], key=key)
        self.assertEqual(job["status"], "failed", job)
        self.assertEqual(job["error_code"], "budget_exceeded", job)
        self.assertIn("budget exceeded", job["error"])
        self.assertIn("max_tokens_per_job is 1 tokens", job["error"])
        # The first request went through (one may overshoot; a title
        # request may run alongside), not the script's further rounds.
        self.assertIn(job["gateway_usage"]["requests"], (1, 2), job)
        self.assertNotIn("never reached", job["result"] or "")
        r = self.svc.run_program([API_BIN, "keys", "set", kid, "max_tokens_per_job=-1"])
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    harness.main()
