"""CORS from a real browser: headless Chromium loads a page from one origin
(http://127.0.0.1:PAGE_PORT) whose script calls the API on another
(http://127.0.0.1:API_PORT) with X-API-Key, so the browser sends a
preflight first. With CORS_ALLOW_ORIGINS=* the call succeeds; with none
the browser refuses it.

Everything runs inside a network namespace this test creates with only
loopback up: the browser reaches nothing but the page server and the API.
The API reaches PostgreSQL through the stack's Unix socket (the stack's
TCP port is on the host's loopback, not the namespace's); the broker is
out of reach, which creating a session does not need.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

import harness
import netns
from harness import wait_for

NS = netns.name("occors")
PAGE_PORT, API_PORT = 18080, 18081

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("http://127.0.0.1:%(api)d/session", {method: "POST",
      headers: {"X-API-Key": "%(key)s", "Content-Type": "application/json"},
      body: JSON.stringify({files: [{path: "a.txt", content: "a"}]})})
  .then(r => r.json().then(j => "OK " + r.status + " " + (j.session_id || JSON.stringify(j))))
  .catch(e => "FAIL " + e)
  .then(t => { document.getElementById("out").textContent = t; });
</script></body></html>
"""


def in_ns(*argv):
    return netns.in_ns(NS, *argv)


class CorsBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = netns.create(NS)
        if why:
            raise unittest.SkipTest(why)
        cls.svc = None
        try:
            cls.svc = harness.Service("corsbrowser", workers=0, api=False)
            cls.db_url = netns.unix_socket_url(cls.svc.database_url)
            if cls.db_url is None:
                raise unittest.SkipTest("the stack's PostgreSQL has no Unix socket in STACK_DIR")
            cls.page_dir = tempfile.mkdtemp(prefix="oc-cors-page-")
            with open(os.path.join(cls.page_dir, "page.html"), "w") as f:
                f.write(PAGE % {"api": API_PORT, "key": cls.svc.api_key})
            cls.svc._spawn("page", in_ns("python3", "-m", "http.server", str(PAGE_PORT),
                                         "--bind", "127.0.0.1", "--directory", cls.page_dir),
                           dict(os.environ))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.svc is not None:
                cls.svc.close()
            if getattr(cls, "page_dir", None):
                shutil.rmtree(cls.page_dir, ignore_errors=True)
        finally:
            netns.delete(NS)

    def ns_status(self, port, path):
        r = subprocess.run(in_ns("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 "http://127.0.0.1:%d%s" % (port, path)),
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def start_api(self, origins):
        s = self.svc
        env = s.env(DATABASE_URL=self.db_url, API_LISTEN="127.0.0.1:%d" % API_PORT,
                    CORS_ALLOW_ORIGINS=origins)
        p = s._spawn("api", in_ns(os.path.join(harness.BUILD, "opencode-api")), env)
        wait_for(lambda: p.poll() is not None or self.ns_status(API_PORT, "/health") == "200",
                 60, what="api /health in the namespace")
        self.assertIsNone(p.poll(), s.log_tail("api"))
        wait_for(lambda: self.ns_status(PAGE_PORT, "/page.html") == "200", 30, what="page server")

    def browse(self):
        r = netns.chromium_dump_dom(NS, "http://127.0.0.1:%d/page.html" % PAGE_PORT, 15000)
        start = r.stdout.find('<pre id="out">')
        self.assertGreaterEqual(start, 0, r.stdout + r.stderr[-2000:])
        return r.stdout[start + len('<pre id="out">'):].split("</pre>")[0]

    def test_1_any_origin_allows_the_call(self):
        self.start_api("*")
        try:
            out = self.browse()
            self.assertRegex(out, r"^OK 200 [0-9a-f]{32}$", self.svc.log_tail("api"))
        finally:
            self.svc.stop("api")
        self.assertEqual(int(self.svc.scalar("SELECT count(*) FROM sessions")), 1)

    def test_2_none_makes_the_browser_refuse(self):
        before = self.svc.scalar("SELECT count(*) FROM sessions")
        self.start_api("none")
        try:
            out = self.browse()
            self.assertTrue(out.startswith("FAIL"), out)
        finally:
            self.svc.stop("api")
        # The preflight was refused (405): the POST itself never came.
        self.assertEqual(self.svc.scalar("SELECT count(*) FROM sessions"), before)


if __name__ == "__main__":
    harness.main()
