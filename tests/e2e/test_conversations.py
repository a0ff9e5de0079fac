"""Conversations with the real agent (README, "Conversations").

The real api, worker and opencode, driven by the scripted model, whose
expect_history / expect_no_history steps (tests/fakemodel/fake_model.py)
answer "HISTORY MISSING: ..." / "HISTORY UNEXPECTED: ..." when the
conversation opencode sends does not hold (or holds) a text:
  - a second job's agent receives the first job's prompt and answer;
  - a "fresh": true job does not, and its conversation becomes the
    session's;
  - a job that does not succeed does not advance the conversation: the job
    after it sees the last succeeded job's, not the failed one's prompt;
  - what a job's agent plants in its HOME (opencode config, a plugin, a
    file next to opencode's database) is not in the next job's HOME;
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
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        first = self.run_job(sid, [{"text": "first answer \u00e9-one"}], "prompt PROMPT-ONE-7c1")
        self.assertEqual(first["result"], "first answer \u00e9-one")
        # The conversation is kept next to the outputs, never among them.
        self.assertEqual([f["path"] for f in first["output_files"]], ["a.txt"])
        self.assertEqual(self.conversations(sid), [first["job_id"]])
        second = self.run_job(sid, [{"expect_history": "PROMPT-ONE-7c1"},
                                    {"expect_history": "first answer \u00e9-one"},
                                    {"text": "second saw it \u00e9-two"}], "prompt PROMPT-TWO-7c1")
        self.assertEqual(second["result"], "second saw it \u00e9-two")
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

    def test_fresh_job_starts_a_new_conversation(self):
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
        # The fresh job's conversation is the session's now.
        after = self.run_job(sid, [{"expect_history": "PROMPT-FRESH-\u00e93f2"},
                                   {"expect_no_history": "old answer \u00e9-old"},
                                   {"text": "after fresh ok"}], "prompt after", fresh=False)
        self.assertEqual(after["result"], "after fresh ok")

    def test_failed_job_does_not_advance(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        good = self.run_job(sid, [{"text": "good answer \u00e9-good"}], "prompt PROMPT-GOOD-9d4")
        # The agent gets the prompt (opencode stores it), the model fails.
        bad_id = s.submit(sid, script_prompt([{"http_error": 500}], "prompt PROMPT-BAD-9d4"),
                          timeout_s=5)["job_id"]
        bad = s.wait_job(bad_id, timeout=60)
        self.assertNotEqual(bad["status"], "succeeded", bad)
        self.assertEqual(self.conversations(sid), [good["job_id"]])
        nxt = self.run_job(sid, [{"expect_history": "good answer \u00e9-good"},
                                 {"expect_no_history": "PROMPT-BAD-9d4"},
                                 {"text": "next ok"}], "prompt next")
        self.assertEqual(nxt["result"], "next ok")

    def test_planted_config_is_not_carried(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        self.run_job(sid, [{"bash": {"command": PLANT, "description": "plant"}},
                           {"bash": {"command": CHECK, "description": "check"}},
                           {"text": "planted \u00e9-plant"}], "prompt PROMPT-PLANT-5e6")
        first = s.download(sid, "home-check.txt")
        self.assertEqual(first.status, 200, first)
        # The plant worked in the first job's HOME ...
        self.assertEqual(first.body.decode().split(), sum([["PRESENT", p] for p in PLANTED], []))
        second = self.run_job(sid, [{"expect_history": "planted \u00e9-plant"},
                                    {"bash": {"command": CHECK, "description": "check"}},
                                    {"text": "checked"}], "prompt check")
        self.assertEqual(second["result"], "checked")
        # ... and none of it reached the second job's, which still has the
        # conversation.
        got = s.download(sid, "home-check.txt", job_id=second["job_id"])
        self.assertEqual(got.body.decode().split(), sum([["ABSENT", p] for p in PLANTED], []))
        conv = set(os.listdir(os.path.join(s.session_dir(sid), "conversations",
                                           second["job_id"])))
        self.assertTrue({"opencode.db", "session_id"} <= conv, conv)
        self.assertTrue(conv <= {"opencode.db", "opencode.db-wal", "session_id"}, conv)

    def test_fresh_must_be_boolean(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        before = s.scalar("SELECT count(*) FROM jobs")
        for bad in ("yes", 1, 0, [], {}):
            r = s.request("POST", "/job?session_id=" + sid,
                          {"prompt": "hello", "fresh": bad})
            self.assertError(r, 422, "fresh", code="validation_error")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs"), before)
        # null and false are a job that continues.
        for ok in (None, False):
            r = s.request("POST", "/job?session_id=" + sid, {"prompt": "hello", "fresh": ok})
            self.assertEqual(r.status, 200, r)
            s.wait_job(r.json()["job_id"])
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE fresh AND session_id = '%s'"
                                  % sid), "0")


if __name__ == "__main__":
    harness.main()
