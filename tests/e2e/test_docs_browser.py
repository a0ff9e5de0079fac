"""GET /docs in a real browser: headless Chromium loads the page, whose
inline script fetches /openapi.json and renders the reference; every
endpoint of the document (method and path) and every error code must be
in the rendered DOM.

Everything runs inside a network namespace this test creates with only
loopback up (tests/e2e/netns.py): the browser reaches nothing but the
api. The api reaches PostgreSQL through the stack's Unix socket; the
broker is out of reach, which serving the reference does not need.
"""

import html.parser
import json
import os
import subprocess
import unittest

import harness
import netns
from harness import wait_for

NS = netns.name("ocdocs")
API_PORT = 18082

with open(os.path.join(harness.SOURCE, "api", "openapi.json")) as _f:
    DOC = json.load(_f)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class Headings(html.parser.HTMLParser):
    """The text of every <h2> of a page."""

    def __init__(self):
        super().__init__()
        self.h2 = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.depth += 1
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth > 0:
            self.h2[-1] += data + " "


class DocsBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = netns.create(NS)
        if why:
            raise unittest.SkipTest(why)
        cls.svc = None
        try:
            cls.svc = harness.Service("docsbrowser", workers=0, api=False)
            db_url = netns.unix_socket_url(cls.svc.database_url)
            if db_url is None:
                raise unittest.SkipTest("the stack's PostgreSQL has no Unix socket in STACK_DIR")
            env = cls.svc.env(DATABASE_URL=db_url, API_LISTEN="127.0.0.1:%d" % API_PORT)
            p = cls.svc._spawn("api", netns.in_ns(NS, os.path.join(harness.BUILD,
                                                                  "opencode-api")), env)
            wait_for(lambda: p.poll() is not None or cls.ns_status("/health") == "200", 60,
                     what="api /health in the namespace")
            if p.poll() is not None:
                raise AssertionError("api exited:\n" + cls.svc.log_tail("api"))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.svc is not None:
                cls.svc.close()
        finally:
            netns.delete(NS)

    @classmethod
    def ns_status(cls, path):
        r = subprocess.run(netns.in_ns(NS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                       "http://127.0.0.1:%d%s" % (API_PORT, path)),
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def test_namespace_has_only_loopback(self):
        self.assertEqual(netns.interfaces_up(NS), ["lo"])

    def test_every_endpoint_is_rendered(self):
        r = netns.chromium_dump_dom(NS, "http://127.0.0.1:%d/docs" % API_PORT, 5000)
        dom = r.stdout
        self.assertIn("</html>", dom, r.stderr[-2000:])
        error = dom.split('<p id="error">', 1)[-1].split("</p>", 1)[0]
        self.assertEqual(error, "", r.stderr[-2000:])
        parser = Headings()
        parser.feed(dom)
        headings = [" ".join(h.split()) for h in parser.h2]
        ops = [(m.upper(), p) for p, item in DOC["paths"].items() for m in item if m in METHODS]
        self.assertGreaterEqual(len(ops), 10)
        for method, path in ops:
            with self.subTest(endpoint="%s %s" % (method, path)):
                self.assertTrue(any(h.startswith("%s %s " % (method, path)) for h in headings),
                                headings)
        # The responses with their error codes, and the key where needed.
        for code in DOC["components"]["schemas"]["ErrorCode"]["enum"]:
            self.assertIn(code, dom)
        self.assertIn("X-API-Key", dom)
        self.assertIn(DOC["info"]["title"], dom)
        # The page asked the api for itself and /openapi.json, nothing else
        # (there is nothing else to reach in the namespace, and its CSP
        # allows nothing else).
        self.assertNotIn("Refused to", r.stderr)


if __name__ == "__main__":
    harness.main()
