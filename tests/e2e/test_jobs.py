"""End to end: the real api, workers, PostgreSQL, RabbitMQ and opencode,
driven by the scripted model. Covers the seed's whole flow and the job
pipeline's promises (issue: job pipeline)."""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

SEED_FILES = {
    "README.md": "# My Project\n",
    "src/math_utils.py": "def add(a,b):\n    return a+b\n",
}
SUBTRACT = "def add(a,b):\n    return a+b\n\ndef subtract(a, b):\n    return a - b\n"


class JobFlow(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1, "env": {"WORKER_CONCURRENCY": "2"}}

    def test_seed_flow_agent_changes_a_file(self):
        s = self.svc
        sess = s.create_session(SEED_FILES, ttl=3600)
        sid = sess["session_id"]
        prompt = script_prompt([
            {"read": {"filePath": "src/math_utils.py"}},
            {"edit": {"filePath": "src/math_utils.py", "oldString": "    return a+b\n",
                      "newString": "    return a+b\n\ndef subtract(a, b):\n    return a - b\n"}},
            {"write": {"filePath": "NOTES.md", "content": "added subtract\n"}},
            {"delete": "README.md"},
            {"text": "Added a subtract function."},
        ], "Add a subtract function to src/math_utils.py")
        queued = s.submit(sid, prompt)
        self.assertEqual(queued["status"], "queued")
        self.assertEqual(queued["session_id"], sid)

        job = s.wait_job(queued["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        self.assertIsNone(job["error"])
        self.assertIsNone(job["error_code"])
        self.assertEqual(job["attempt"], 1)
        self.assertEqual(job["result"], "Added a subtract function.")
        self.assertEqual(job["result_json"]["text"], "Added a subtract function.")
        tools = [t["tool"] for t in job["result_json"]["tools"]]
        self.assertIn("edit", tools)
        # What the agent took, as the worker's watchdog sampled it.
        res = job["result_json"]["resources"]
        self.assertGreater(res["cpu_s"], 0)
        self.assertGreater(res["peak_rss_bytes"], 50 * 1024 * 1024)
        self.assertIsNotNone(job["usage"])
        self.assertGreater(job["usage"]["input_tokens"], 0)
        self.assertIn('"type":"step_finish"', job["stdout"].replace(" ", ""))
        self.assertTrue(job["started_at"] <= job["finished_at"])

        files = {f["path"]: f for f in job["output_files"]}
        self.assertEqual(sorted(files), ["NOTES.md", "src/math_utils.py"])
        self.assertEqual(files["src/math_utils.py"]["sha256"],
                         hashlib.sha256(SUBTRACT.encode()).hexdigest())
        self.assertEqual(files["src/math_utils.py"]["size_bytes"], len(SUBTRACT))

        results = s.request("GET", "/session/results?session_id=" + sid).json()
        self.assertEqual(results["latest_job_id"], queued["job_id"])
        self.assertEqual(results["result"], "Added a subtract function.")
        self.assertEqual(sorted(f["path"] for f in results["output_files"]),
                         ["NOTES.md", "src/math_utils.py"])

        r = s.download(sid, "src/math_utils.py")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode(), SUBTRACT)
        self.assertEqual(s.download(sid, "README.md").status, 404)
        url = files["NOTES.md"]["download_url"]
        self.assertEqual(s.request("GET", url).body, b"added subtract\n")

        # The attempt's folders (scratch: HOME, prompt, logs) are gone after
        # the job; its workspace became the job's published outputs.
        self.assertEqual(os.listdir(os.path.join(s.session_dir(sid), "attempts")), [])
        self.assertEqual(os.listdir(os.path.join(s.session_dir(sid), "jobs")),
                         [queued["job_id"]])

        self.assertEqual(s.request("DELETE", "/session?session_id=" + sid).status, 204)
        self.assertFalse(os.path.exists(s.session_dir(sid)))
        self.assertEqual(s.download(sid, "src/math_utils.py").status, 404)

    def test_offline_demo_prompt_from_the_seed(self):
        # The seed's example 2, unchanged, with offline mode's configuration
        # (scripts/offline-agent-config.sh): its default model and
        # openai/gpt-4 both reach the scripted model, whose demo mode
        # appends the function.
        s = self.svc
        for model in ("anthropic/claude-3-5-sonnet-latest", "openai/gpt-4"):
            sid = s.create_session(SEED_FILES)["session_id"]
            job = s.wait_job(s.submit(sid, "Add a subtract function to src/math_utils.py",
                                      model=model)["job_id"])
            self.assertEqual(job["status"], "succeeded", job)
            self.assertEqual(job["model"], model)
            body = s.download(sid, "src/math_utils.py").body.decode()
            self.assertIn("def subtract(a, b):", body)
            self.assertTrue(body.startswith("def add(a,b):"))

    def test_timeout_keeps_partial_outputs(self):
        s = self.svc
        sid = s.create_session({"a.txt": "original\n"})["session_id"]
        prompt = script_prompt([
            {"write": {"filePath": "a.txt", "content": "partial\n"}},
            {"sleep": 300},
            {"text": "never"},
        ])
        # The timeout leaves opencode time to start and write even on a
        # loaded machine; the scripted sleep outlasts it by far.
        started = time.time()
        job = s.wait_job(s.submit(sid, prompt, timeout_s=45)["job_id"], timeout=150)
        self.assertEqual(job["status"], "timed_out", job)
        self.assertEqual(job["error_code"], "timeout", job)
        self.assertIn("timeout of 45 seconds", job["error"])
        self.assertLess(time.time() - started, 120)
        # Partial outputs are kept with the job...
        self.assertEqual([f["path"] for f in job["output_files"]], ["a.txt"])
        r = s.download(sid, "a.txt", job_id=job["job_id"])
        self.assertEqual(r.body, b"partial\n")
        # ...but the session's files stay those of its last success.
        self.assertEqual(s.download(sid, "a.txt").body, b"original\n")
        # No agent process of this job is left behind.
        self.assertEqual(harness.processes_mentioning(job["job_id"]), [])

    def test_provider_http_errors_end_in_timeout(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        job = s.wait_job(s.submit(sid, script_prompt([{"http_error": 500}]),
                                  timeout_s=5)["job_id"], timeout=60)
        self.assertEqual(job["status"], "timed_out", job)

    def test_unknown_model_fails_with_readable_error(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        job = s.wait_job(s.submit(sid, "hello", model="nosuch/model")["job_id"])
        self.assertEqual(job["status"], "failed", job)
        self.assertEqual(job["error_code"], "agent_failed", job)
        self.assertIn("model not found: nosuch/model", job["error"].lower())
        self.assertNotIn("\x1b[", job["error"])

    def test_long_streamed_answer(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        job = s.wait_job(s.submit(sid, script_prompt([{"long_text": 200000}]))["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(len(job["result"]), 200000)

    def test_jobs_of_a_session_run_in_order_and_build_on_each_other(self):
        s = self.svc
        sid = s.create_session({"a.txt": "zero\n"})["session_id"]
        first = s.submit(sid, script_prompt([
            {"sleep": 2},
            {"write": {"filePath": "a.txt", "content": "one\n"}},
            {"text": "first"},
        ]))
        second = s.submit(sid, script_prompt([
            {"bash": {"command": "cp a.txt copy.txt", "description": "copy"}},
            {"text": "second"},
        ]))
        j2 = s.wait_job(second["job_id"])
        j1 = s.job(first["job_id"])
        self.assertEqual((j1["status"], j2["status"]), ("succeeded", "succeeded"), (j1, j2))
        self.assertGreaterEqual(j2["started_at"], j1["finished_at"])
        self.assertEqual(s.download(sid, "copy.txt").body, b"one\n")
        self.assertEqual(s.download(sid, "a.txt").body, b"one\n")


class TwoWorkers(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 2, "env": {"WORKER_CONCURRENCY": "1"}}

    def test_jobs_of_two_sessions_run_at_the_same_time(self):
        s = self.svc
        prompt = script_prompt([{"sleep": 5}, {"text": "slept"}])
        jobs = []
        for _ in range(2):
            sid = s.create_session({"a.txt": "x\n"})["session_id"]
            jobs.append(s.submit(sid, prompt)["job_id"])
        done = [s.wait_job(j) for j in jobs]
        self.assertEqual([d["status"] for d in done], ["succeeded", "succeeded"], done)
        a, b = done
        # The two runs overlap in time, on two different workers.
        self.assertLess(a["started_at"], b["finished_at"])
        self.assertLess(b["started_at"], a["finished_at"])
        workers = {r[0] for r in s.sql("SELECT worker_id FROM jobs WHERE id IN ('%s', '%s')"
                                       % tuple(jobs))}
        self.assertEqual(workers, {"worker0", "worker1"})


if __name__ == "__main__":
    harness.main()
