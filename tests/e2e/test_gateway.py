"""End to end: the provider gateway and the agent's network (issue 10).

The worker holds a recognisable fake provider key; the scripted model (an
upstream provider like any other, on loopback) must receive it as its
credential header while nothing inside the job (environment of every
process, command lines, files) ever holds it. Under AGENT_EGRESS=none the
job's namespace has loopback only and no route, and the host's
PostgreSQL and RabbitMQ ports are unreachable. Every probe targets
127.0.0.1 only."""

import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

# Split so the job's prompt (which the agent stores in its HOME) never
# holds the whole key: the probe joins the parts in the shell.
KEY_A, KEY_B = "sk-gwtest-", "7f3a9c1e5d"
CANARY = KEY_A + KEY_B
OPENAI_CANARY = "sk-openai-gwtest-0b9e"


def provider_config(base):
    model = {"status": "active", "limit": {"context": 200000, "output": 8192},
             "cost": {"input": 0, "output": 0}}

    def prov(model_id):
        return {"npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": base, "apiKey": "{env:OC_GW_TEST_KEY}"},
                "models": {model_id: dict(model, name=model_id)}}
    return {"provider": {"anthropic": prov("claude-3-5-sonnet-latest"),
                         "openai": prov("gpt-4"), "scripted": prov("scripted-model")}}


def port_of(url):
    return urllib.parse.urlparse(url).port


class GatewayEgressNone(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.svc
        path = os.path.join(s.tmp, "gateway-agent-config.json")
        with open(path, "w") as f:
            json.dump(provider_config("http://127.0.0.1:%d/v1" % s.model_port), f)
        s.start_worker("worker0", AGENT_CONFIG_FILE=path, OC_GW_TEST_KEY=CANARY,
                       OPENAI_API_KEY=OPENAI_CANARY, AGENT_ENV="OC_GW_TEST_KEY")

    def run_probe(self, command, files):
        s = self.svc
        sid = s.create_session({"README.md": "x\n"})["session_id"]
        prompt = script_prompt([
            {"bash": {"command": command, "description": "probe"}},
            {"text": "probed"},
        ], "probe the sandbox")
        job = s.wait_job(s.submit(sid, prompt)["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        out = {}
        for name in files:
            r = s.download(sid, name, job_id=job["job_id"])
            self.assertEqual(r.status, 200, (name, r, job))
            out[name] = r.body.decode("utf-8", "replace")
        return job, out

    def test_provider_key_reaches_the_provider_never_the_agent(self):
        s = self.svc
        probe = (
            "K=%s; K=${K}%s; "
            "{ env; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; echo; done; "
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done; "
            "} > probe.txt 2>&1; "
            "grep -rls -- \"$K\" /home/agent /tmp /workspace /run /etc > found.txt 2>/dev/null; "
            "grep -rls -- %s /home/agent /tmp /workspace /run /etc >> found.txt 2>/dev/null; "
            "echo end >> found.txt" % (KEY_A, KEY_B, OPENAI_CANARY[:12] + "*")
        )
        # The last grep's pattern: a glob-quoted prefix is not the key.
        probe = probe.replace(OPENAI_CANARY[:12] + "*", "'sk-openai-gw[t]est'")
        job, out = self.run_probe(probe, ["probe.txt", "found.txt"])
        text = out["probe.txt"]
        self.assertIn("PATH=", text)              # the probe ran
        self.assertIn("OPENCODE_CONFIG_CONTENT=", text)
        self.assertIn("127.0.0.1:4100/scripted", text)   # the agent's copy: the gateway
        self.assertIn("oc-gateway", text)          # its dummy key
        self.assertNotIn(CANARY, text)
        self.assertNotIn(OPENAI_CANARY, text)
        self.assertNotIn("OC_GW_TEST_KEY=", text)
        self.assertNotIn("OPENAI_API_KEY=", text)
        self.assertEqual(out["found.txt"].strip(), "end", out["found.txt"])
        self.assertNotIn(CANARY, job["stdout"] or "")
        # The provider got the worker's key as its credential, and only it.
        with open(os.path.join(s.tmp, "model-requests.log.auth")) as f:
            creds = [json.loads(line) for line in f if line.strip()]
        self.assertTrue(creds)
        for c in creds:
            self.assertEqual(c.get("Authorization"), "Bearer " + CANARY, c)
        # Logged per request, without the key.
        log = s.log_tail("worker0", 200000)
        self.assertIn("gateway.request", log)
        self.assertIn("provider=", log)
        self.assertIn("ttfb_ms=", log)
        self.assertNotIn(CANARY, log)

    def test_namespace_has_loopback_only_and_no_host_services(self):
        pg = port_of(os.environ["DATABASE_URL"]) or 5432
        mq = port_of(os.environ["AMQP_URL"]) or 5672
        probe = (
            "cat /proc/net/dev > dev.txt; cat /proc/net/route > route.txt; "
            "for p in %d %d 4100; do "
            "if timeout 5 bash -c \"exec 3<>/dev/tcp/127.0.0.1/$p\" 2>/dev/null; "
            "then echo \"$p open\"; else echo \"$p closed\"; fi; done > ports.txt" % (pg, mq)
        )
        _, out = self.run_probe(probe, ["dev.txt", "route.txt", "ports.txt"])
        ifaces = [line.split(":")[0].strip() for line in out["dev.txt"].splitlines()[2:]
                  if ":" in line]
        self.assertEqual(ifaces, ["lo"], out["dev.txt"])
        routes = out["route.txt"].splitlines()[1:]
        self.assertEqual([r for r in routes if r.strip()], [], out["route.txt"])
        ports = out["ports.txt"]
        self.assertIn("%d closed" % pg, ports)
        self.assertIn("%d closed" % mq, ports)
        # The control: the bridge to the gateway is the one port open.
        self.assertIn("4100 open", ports)


def serve_text(text):
    """A loopback HTTP server answering text to every GET; returns it."""
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class GatewayEgressAllowlist(harness.ServiceTest):
    """AGENT_EGRESS=allowlist: a loopback server listed on purpose is
    reachable through the job's proxy, another loopback port is not, and
    nothing is reachable directly."""
    SERVICE_ARGS = {"workers": 0}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.listed = serve_text("hello-listed")
        cls.other = serve_text("hello-other")
        cls.svc.start_worker("worker0", AGENT_EGRESS="allowlist",
                             AGENT_EGRESS_ALLOW="127.0.0.1:%d" % cls.listed.server_address[1])

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.listed.shutdown()
        cls.other.shutdown()

    def test_listed_host_through_the_proxy_only(self):
        s = self.svc
        a, b = self.listed.server_address[1], self.other.server_address[1]
        px = "--noproxy '' -x http://127.0.0.1:4100"
        cmd = (
            "curl -s -m 5 {px} http://127.0.0.1:{a}/ > a.txt; echo \" rc=$?\" >> a.txt; "
            "curl -s -m 5 {px} http://127.0.0.1:{b}/ > b.txt; echo \" rc=$?\" >> b.txt; "
            "curl -s -m 5 -p {px} http://127.0.0.1:{a}/ > c.txt; echo \" rc=$?\" >> c.txt; "
            "curl -s -m 5 -p {px} http://127.0.0.1:{b}/ > d.txt; echo \" rc=$?\" >> d.txt; "
            "curl -s -m 5 --noproxy '*' http://127.0.0.1:{a}/ > e.txt; echo \" rc=$?\" >> e.txt; "
            "env | grep -i _proxy > f.txt"
        ).format(px=px, a=a, b=b)
        sid = s.create_session({"README.md": "x\n"})["session_id"]
        prompt = script_prompt([{"bash": {"command": cmd, "description": "probe"}},
                                {"text": "probed"}], "probe")
        job = s.wait_job(s.submit(sid, prompt)["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        out = {n: s.download(sid, n, job_id=job["job_id"]).body.decode()
               for n in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt")}
        self.assertIn("hello-listed", out["a.txt"], out)          # forwarded
        self.assertNotIn("hello-other", out["b.txt"], out)
        self.assertIn("egress not allowed", out["b.txt"], out)    # refused
        self.assertIn("hello-listed", out["c.txt"], out)          # CONNECT tunnel
        self.assertNotIn("hello-other", out["d.txt"], out)
        self.assertNotIn("hello-listed", out["e.txt"], out)       # no direct way
        self.assertIn("HTTPS_PROXY=http://127.0.0.1:4100", out["f.txt"], out)
        log = s.log_tail("worker0", 200000)
        self.assertIn("gateway.egress", log)
        self.assertIn("status=403", log)


class GatewayEgressOpen(harness.ServiceTest):
    """AGENT_EGRESS=open: the host's network, still no key in the job."""
    SERVICE_ARGS = {"workers": 1, "env": {"AGENT_EGRESS": "open",
                                          "OPENAI_API_KEY": OPENAI_CANARY}}

    def test_open_egress_shares_the_network_and_still_hides_keys(self):
        s = self.svc
        sid = s.create_session({"README.md": "x\n"})["session_id"]
        prompt = script_prompt([
            {"bash": {"command": "cat /proc/net/dev > dev.txt; env > env.txt",
                      "description": "probe"}},
            {"text": "probed"},
        ], "probe")
        job = s.wait_job(s.submit(sid, prompt)["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        env = s.download(sid, "env.txt", job_id=job["job_id"]).body.decode()
        dev = s.download(sid, "dev.txt", job_id=job["job_id"]).body.decode()
        self.assertNotIn(OPENAI_CANARY, env)
        self.assertIn("OPENCODE_CONFIG_CONTENT=", env)
        self.assertNotIn("127.0.0.1:4100", env)    # no bridge: a host port
        self.assertIn("http://127.0.0.1:", env)
        ifaces = [line.split(":")[0].strip() for line in dev.splitlines()[2:] if ":" in line]
        self.assertNotEqual(ifaces, ["lo"], dev)


if __name__ == "__main__":
    harness.main()
