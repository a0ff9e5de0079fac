"""Operations endpoints and cross-cutting behaviour: GET /ready (database
and broker), CORS (CORS_ALLOW_ORIGINS: *, a list, none; preflights without
a key) and LOG_FORMAT=json.
"""

import json
import time

import harness
from harness import ServiceTest, wait_for

ORIGIN = "http://app.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "x-api-key, content-type"}


class ReadyTest(ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    def test_ready_when_database_and_broker_answer(self):
        s = self.svc
        # The relay connects to the broker within about a second of start.
        wait_for(lambda: s.ready().status == 200, 20, what="/ready 200")
        r = s.ready()
        self.assertEqual(r.json(), {"status": "ready"})
        self.assertEqual(s.request("HEAD", "/ready", key=None).status, 200)
        self.assertError(s.request("POST", "/ready", key=None), 405)

class ReadyBrokerDownTest(ServiceTest):
    # Nothing listens on port 1: the relay cannot connect.
    SERVICE_ARGS = {"workers": 0, "env": {"AMQP_URL": "amqp://nobody:nothing@127.0.0.1:1/%2f"}}

    def test_not_ready_without_the_broker(self):
        s = self.svc
        time.sleep(1.5)         # the relay's first attempt
        detail = self.assertError(s.ready(), 503, code="not_ready")
        self.assertIn("broker", detail)
        self.assertNotIn("database", detail)
        self.assertEqual(s.request("GET", "/health", key=None).status, 200)


class CorsAnyTest(ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    def test_every_response_allows_any_origin(self):
        s = self.svc
        for r in (s.request("GET", "/health", key=None, headers={"Origin": ORIGIN}),
                  s.request("GET", "/health", key=None),
                  s.request("GET", "/session/results?session_id=x", key=None,
                            headers={"Origin": ORIGIN}),
                  s.request("GET", "/nowhere", headers={"Origin": ORIGIN})):
            self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "*", r)
            self.assertIn("Retry-After", r.headers.get("Access-Control-Expose-Headers", ""), r)
            self.assertIn("Content-Disposition",
                          r.headers.get("Access-Control-Expose-Headers", ""), r)

    def test_preflight_needs_no_key(self):
        s = self.svc
        r = s.request("OPTIONS", "/session", key=None, headers=PREFLIGHT)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "*")
        methods = [m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")]
        self.assertEqual(sorted(methods), ["DELETE", "GET", "POST"])
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        for h in ("x-api-key", "idempotency-key", "content-type"):
            self.assertIn(h, allowed)
        self.assertGreater(int(r.headers["Access-Control-Max-Age"]), 0)
        r = s.request("OPTIONS", "/download", key=None, headers=PREFLIGHT)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.headers["Access-Control-Allow-Methods"], "GET")
        # Not a preflight: the key is still required, the method still checked.
        self.assertError(s.request("POST", "/session", body={"files": []}, key=None,
                                   headers={"Origin": ORIGIN}), 401)
        self.assertError(s.request("OPTIONS", "/session", key=None), 405)
        self.assertError(s.request("OPTIONS", "/nowhere", key=None, headers=PREFLIGHT), 404)


class CorsListTest(ServiceTest):
    SERVICE_ARGS = {"workers": 0,
                    "env": {"CORS_ALLOW_ORIGINS": "http://other.example, %s" % ORIGIN}}

    def test_listed_origin_only(self):
        s = self.svc
        r = s.request("GET", "/health", key=None, headers={"Origin": ORIGIN})
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), ORIGIN)
        self.assertEqual(r.headers.get("Vary"), "Origin")
        r = s.request("GET", "/health", key=None, headers={"Origin": "http://evil.example"})
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        self.assertEqual(r.headers.get("Vary"), "Origin")
        r = s.request("OPTIONS", "/job", key=None, headers=PREFLIGHT)
        self.assertEqual((r.status, r.headers.get("Access-Control-Allow-Origin")), (204, ORIGIN))
        r = s.request("OPTIONS", "/job", key=None,
                      headers=dict(PREFLIGHT, Origin="http://evil.example"))
        self.assertEqual(r.status, 204)
        for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                  "Access-Control-Allow-Headers"):
            self.assertNotIn(h, r.headers)


class CorsNoneTest(ServiceTest):
    SERVICE_ARGS = {"workers": 0, "env": {"CORS_ALLOW_ORIGINS": "none"}}

    def test_no_cors_headers(self):
        s = self.svc
        r = s.request("GET", "/health", key=None, headers={"Origin": ORIGIN})
        self.assertEqual(r.status, 200)
        self.assertFalse([h for h in r.headers if h.lower().startswith("access-control")], r)
        r = s.request("OPTIONS", "/session", key=None, headers=PREFLIGHT)
        self.assertError(r, 405)
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)


class JsonLogTest(ServiceTest):
    SERVICE_ARGS = {"workers": 0, "env": {"LOG_FORMAT": "json"}}

    def test_every_line_is_json(self):
        s = self.svc
        s.request("GET", "/no%0Awhere%22%5C%01%ff", key=None)
        s.request("GET", "/session/results?session_id=1&session_id=2")
        sid = s.create_session({"a.txt": "a"})["session_id"]
        s.request("DELETE", "/session?session_id=%s" % sid)
        s.stop("api")
        lines = [l for l in s.log_tail("api", 10 ** 7).split("\n") if l]
        self.assertGreater(len(lines), 3)
        events = {}
        for line in lines:
            obj = json.loads(line)
            self.assertIsInstance(obj, dict, line)
            for k in ("time", "level", "program", "event"):
                self.assertIsInstance(obj.get(k), str, line)
            self.assertEqual(obj["program"], "opencode-api")
            self.assertIn(obj["level"], ("debug", "info", "warn", "error"))
            self.assertRegex(obj["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            events.setdefault(obj["event"], obj)
        started = events["api.started"]
        self.assertEqual(started["listen"], "127.0.0.1:%d" % s.port)
        self.assertIsInstance(started["threads"], int)
        self.assertIn("api.stopping", events)
        self.assertEqual(events["http.no_route"]["path"], '/no\nwhere"/\x01\\xff')  # CivetWeb turns \ into /


if __name__ == "__main__":
    harness.main()
