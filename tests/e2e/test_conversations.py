"""Conversations with the real agent (README, "Conversations").

The real api, worker and opencode, driven by the scripted model, whose
expect_history / expect_no_history steps (tests/fakemodel/fake_model.py)
answer "HISTORY MISSING: ..." / "HISTORY UNEXPECTED: ..." when the
conversation opencode sends does not hold (or holds) a text:
  - a second job's agent receives the first job's prompt and answer;
  - a "fresh": true job does not, and its conversation becomes the
    session's; "fresh": null and false continue;
  - a job that does not succeed does not advance the conversation: the job
    after it sees the last succeeded job's, not the failed one's prompt;
  - what a job's agent plants in its HOME (opencode config, a plugin, a
    file next to opencode's database) is not in the next job's HOME; the
    model catalogue (AGENT_MODELS_FILE) is;
  - the conversation is kept out of output_files and goes with the session;
  - "fresh" of a wrong type is 422 and queues nothing.

The answer texts hold a non-ASCII character: json.dumps escapes it in the
script of the prompt, so only the agent's earlier ANSWER can match it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

PLANT = r"""set -e
mkdir -p "$HOME/.config/opencode/plugin" "$HOME/.config/opencode/plugins" \
         "$HOME/.local/share/opencode"
echo '{"$schema": "https://opencode.ai/config.json", "instructions": ["planted"]}' \
  > "$HOME/.config/opencode/opencode.json"
echo 'export const Evil = async () => ({})' > "$HOME/.config/opencode/plugin/evil.js"
echo 'export const Evil = async () => ({})' > "$HOME/.config/opencode/plugins/evil.js"
echo planted > "$HOME/.local/share/opencode/planted.txt"
mkdir -p "$HOME/.local/share/opencode/plugin"
echo planted > "$HOME/.local/share/opencode/plugin/evil.js"
"""

PLANTED = [".config/opencode/opencode.json", ".config/opencode/plugin/evil.js",
           ".config/opencode/plugins/evil.js", ".local/share/opencode/planted.txt",
           ".local/share/opencode/plugin/evil.js"]

# The catalogue the worker gives every agent (AGENT_MODELS_FILE, set by the
# harness) is in its HOME, where opencode reads its cached one.
CATALOGUE = 'wc -c < "$HOME/.cache/opencode/models.json" > catalogue-size.txt'

CHECK = ("for p in %s; do if [ -e \"$HOME/$p\" ]; then echo \"PRESENT $p\"; "
         "else echo \"ABSENT $p\"; fi; done > home-check.txt"
         % " ".join(PLANTED))


class ConversationsTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1}

    def run_job(self, sid, steps, text, status="succeeded", **fields):
        job_id = self.svc.submit(sid, script_prompt(steps, text), **fields)["job_id"]
        job = self.svc.wait_job(job_id)
        self.assertEqual(job["status"], status, job)
        return job

    def conversations(self, sid):
        d = os.path.join(self.svc.session_dir(sid), "conversations")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def test_second_job_continues_the_first(self):
        # Also: what the first job's agent plants in its HOME does not reach
        # the second job's, which still gets the conversation.
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        first = self.run_job(sid, [{"bash": {"command": PLANT, "description": "plant"}},
                                   {"bash": {"command": CHECK, "description": "check"}},
                                   {"bash": {"command": CATALOGUE, "description": "size"}},
                                   {"text": "first answer \u00e9-one"}], "prompt PROMPT-ONE-7c1")
        self.assertEqual(first["result"], "first answer \u00e9-one")
        # The conversation is kept next to the outputs, never among them.
        self.assertEqual(sorted(f["path"] for f in first["output_files"]),
                         ["a.txt", "catalogue-size.txt", "home-check.txt"])
        size = s.download(sid, "catalogue-size.txt", job_id=first["job_id"]).body.decode()
        self.assertEqual(int(size), os.path.getsize(harness.MODELS_FILE))
        self.assertEqual(self.conversations(sid), [first["job_id"]])
        # The plant worked in the first job's HOME ...
        planted = s.download(sid, "home-check.txt", job_id=first["job_id"])
        self.assertEqual(planted.status, 200, planted)
        self.assertEqual(planted.body.decode().split(), sum([["PRESENT", p] for p in PLANTED], []))
        # "fresh": null is a job that continues.
        second = self.run_job(sid, [{"expect_history": "PROMPT-ONE-7c1"},
                                    {"expect_history": "first answer \u00e9-one"},
                                    {"bash": {"command": CHECK, "description": "check"}},
                                    {"text": "second saw it \u00e9-two"}], "prompt PROMPT-TWO-7c1",
                              fresh=None)
        self.assertEqual(second["result"], "second saw it \u00e9-two")
        # ... and none of it reached the second job's.
        got = s.download(sid, "home-check.txt", job_id=second["job_id"])
        self.assertEqual(got.body.decode().split(), sum([["ABSENT", p] for p in PLANTED], []))
        conv = set(os.listdir(os.path.join(s.session_dir(sid), "conversations",
                                           second["job_id"])))
        self.assertTrue({"opencode.db", "session_id"} <= conv, conv)
        self.assertTrue(conv <= {"opencode.db", "opencode.db-wal", "session_id"}, conv)
        # A third job sees both earlier jobs.
        third = self.run_job(sid, [{"expect_history": "PROMPT-ONE-7c1"},
                                   {"expect_history": "second saw it \u00e9-two"},
                                   {"text": "third ok"}], "prompt three")
        self.assertEqual(third["result"], "third ok")
        # Only the latest (and the one it continued) are kept on disk.
        self.assertEqual(self.conversations(sid), sorted([second["job_id"], third["job_id"]]))
        # Removed with the session.
        r = s.request("DELETE", "/session?session_id=" + sid)
        self.assertEqual(r.status, 204, r)
        harness.wait_for(lambda: not os.path.exists(s.session_dir(sid)), 30,
                         what="the session's folder to go")

    def test_fresh_then_failed_job(self):
        # A fresh job starts a new conversation, which becomes the
        # session's; a job after it that fails does not advance it.
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        # The prompt texts are not JSON-escaped (the scripts are): "\u00e9"
        # in a later script never matches this raw prompt.
        self.run_job(sid, [{"text": "old answer \u00e9-old"}], "prompt PROMPT-OLD-\u00e93f2")
        fresh = self.run_job(sid, [{"expect_history": "PROMPT-OLD-\u00e93f2"},
                                   {"text": "unexpected"}],
                             "prompt PROMPT-FRESH-\u00e93f2", fresh=True)
        self.assertEqual(fresh["result"], "HISTORY MISSING: PROMPT-OLD-\u00e93f2")
        self.assertEqual(s.scalar("SELECT fresh FROM jobs WHERE id = '%s'" % fresh["job_id"]), "t")
        kept = self.conversations(sid)
        self.assertIn(fresh["job_id"], kept)
        # The agent gets the prompt (opencode stores it), the model fails.
        bad_id = s.submit(sid, script_prompt([{"http_error": 500}], "prompt PROMPT-BAD-9d4"),
                          timeout_s=5)["job_id"]
        bad = s.wait_job(bad_id, timeout=60)
        self.assertNotEqual(bad["status"], "succeeded", bad)
        self.assertEqual(self.conversations(sid), kept)
        # "fresh": false continues: the fresh job's conversation, without
        # the old one's or the failed job's.
        after = self.run_job(sid, [{"expect_history": "PROMPT-FRESH-\u00e93f2"},
                                   {"expect_no_history": "old answer \u00e9-old"},
                                   {"expect_no_history": "PROMPT-BAD-9d4"},
                                   {"text": "after fresh ok"}], "prompt after", fresh=False)
        self.assertEqual(after["result"], "after fresh ok")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE fresh AND session_id = '%s'"
                                  % sid), "1")

    def test_fresh_must_be_boolean(self):
        # (null and false are accepted: the tests above send them.)
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        before = s.scalar("SELECT count(*) FROM jobs")
        for bad in ("yes", 1, 0, [], {}):
            r = s.request("POST", "/job?session_id=" + sid,
                          {"prompt": "hello", "fresh": bad})
            self.assertError(r, 422, "fresh", code="validation_error")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs"), before)


if __name__ == "__main__":
    harness.main()
