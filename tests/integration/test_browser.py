"""A real browser through the lb: headless Chromium (the Debian package) loads pages from another origin than the lb
and drives the npm socket.io-client browser bundle (tests/interop's lockfile) and plain WebSocket through lb --sticky
prefix:io in front of two refserver nodes on Redis started with --cors-origin.

Each case runs in two Chromium processes (their own profiles, so their own cookie jars: in one browser every socket
would share the sticky cookie and so the node). Page B connects once page A is connected, and the lb balances by
leastconn, so they land on different nodes; the test checks that on the nodes' /metrics while both are connected, and
each page must receive what the other one sends, so a message crossed the two nodes through Redis. Cases: (a)
socket.io-client's default transports (polling, then the upgrade) with withCredentials, (b) websocket only, (c) a
plain WebSocket to /ws. The negative control runs (a) against nodes without --cors-origin: the page must fail.

The page is served from http://127.0.0.1:P and the lb listens on http://127.0.0.1:L: another origin (the port
differs) on the same site, so the sticky cookie (SameSite=Lax) travels with withCredentials (README, Browsers).
Pages report to the static server (POST /event) and wait on it (GET /state): the test gates each case's start (both
nodes empty) and its end (after checking the nodes). Every wait is bounded; Chromium's process group is stopped by
its PID. Without chromium the test fails, unless WSH_NO_BROWSER=1 (then it is skipped).
Run: WSH_BUILD=$PWD/build python3 -m unittest discover -s tests/integration -p test_browser.py -v
"""

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import unittest

import harness as h
import test_lb as tl

INTEROP = os.path.join(h.REPO, "tests", "interop")
BUNDLE = os.path.join(INTEROP, "node_modules", "socket.io-client", "dist", "socket.io.min.js")
CASE_TIMEOUT = 20.0 * h.SLOW  # per case; a page's own waits are 15 s
PAGE_WAIT_MS = 15000

PAGE = """<!doctype html><meta charset="utf-8"><title>wsh browser test</title>
<script src="/socket.io.min.js"></script>
<script>
const q = new URLSearchParams(location.search);
const role = q.get("role"), peer = q.get("peer"), lb = q.get("lb"), cases = q.get("cases").split(",");
const WAIT = %(wait)d;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const post = (c, ev, detail) => fetch("/event", {method: "POST",
    body: JSON.stringify({role, case: c, ev, detail: String(detail === undefined ? "" : detail)})});
const has = (s, r, c, ev) => s.events.some((e) => e.role === r && e.case === c && e.ev === ev);
async function until(pred, what) {
  const end = Date.now() + WAIT;
  for (;;) {
    const s = await (await fetch("/state", {cache: "no-store"})).json();
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(100);
  }
}
// A connection for case c: {first, transport(), send, onmessage, close}, once usable (for (a) once upgraded).
function open(c) {
  return new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("not connected in time")), WAIT);
    if (c === "c") {
      const ws = new WebSocket(lb.replace(/^http/, "ws") + "/ws?room=browser-c");
      ws.onerror = () => reject(new Error("websocket error"));
      ws.onopen = () => resolve({first: "websocket", transport: () => "websocket", send: (m) => ws.send(m),
                                 onmessage: (cb) => { ws.onmessage = (e) => cb(e.data); }, close: () => ws.close()});
      return;
    }
    const opts = {withCredentials: true, reconnection: false, timeout: WAIT, query: {room: "browser-" + c}};
    if (c === "b") opts.transports = ["websocket"];
    const s = io(lb, opts);
    const conn = {transport: () => s.io.engine.transport.name, send: (m) => s.emit("chat", m),
                  onmessage: (cb) => s.on("chat", cb), close: () => s.close()};
    // the transport the engine opened on: by the time "connect" fires a fast upgrade may already be over
    s.io.on("open", () => { conn.first = s.io.engine.transport.name; });
    s.on("connect_error", (err) => reject(new Error("connect_error: " + err.message)));
    s.on("connect", () => {
      if (s.io.engine.transport.name === "websocket") resolve(conn);
      else s.io.engine.once("upgrade", () => resolve(conn));
    });
  });
}
async function runCase(c) {
  await until((s) => s.start.includes(c), "the test to start " + c);
  if (peer && role === "B") await until((s) => has(s, "A", c, "connected"), "A to connect");
  const conn = await open(c);
  await post(c, "connected", conn.first + "->" + conn.transport());
  if (!peer) { conn.close(); return; }
  let got = false;
  conn.onmessage((m) => { if (m === "from-" + peer + "-" + c && !got) { got = true; post(c, "received", m); } });
  await until((s) => has(s, peer, c, "connected"), "the peer to connect");
  const timer = setInterval(() => conn.send("from-" + role + "-" + c), 200);
  try {
    await until((s) => has(s, role, c, "received") && has(s, peer, c, "received"), "both to receive");
  } finally {
    clearInterval(timer);
  }
  await until((s) => s.release.includes(c), "the test to check the nodes");
  conn.close();
  await post(c, "closed");
}
(async () => {
  for (const c of cases) {
    try { await runCase(c); } catch (e) { await post(c, "error", e.message); }
  }
  await post("*", "done");
})();
</script>
"""


class PageServer:
    """The other origin: the page, the socket.io-client bundle, and the pages' events (a thread of this process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = {"events": [], "start": [], "release": []}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, ctype, body):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/page.html":
                    self.reply("text/html", (PAGE % {"wait": PAGE_WAIT_MS}).encode())
                elif path == "/socket.io.min.js":
                    with open(BUNDLE, "rb") as f:
                        self.reply("text/javascript", f.read())
                elif path == "/state":
                    with server.lock:
                        self.reply("application/json", json.dumps(server.state).encode())
                else:
                    self.send_error(404)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    server.state["events"].append(json.loads(body))
                self.reply("text/plain", b"ok")

        self.httpd = http.server.ThreadingHTTPServer((h.HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{h.HOST}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gate(self, which, case):
        with self.lock:
            self.state[which].append(case)

    def events(self, case=None):
        with self.lock:
            return [e for e in self.state["events"] if case is None or e["case"] == case]

    def has(self, role, case, ev):
        return any(e["role"] == role and e["ev"] == ev for e in self.events(case))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Chromium:
    """Headless Chromium on one URL, with its own profile; its own process group, stopped by its PID."""

    def __init__(self, owner, url, name):
        self.dir = h.make_tempdir(owner, prefix="wsh-chromium-")
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", f"--user-data-dir={self.dir}", url]
        self.proc = h.Proc(argv, os.path.join(self.dir, "chromium.log"), name, preexec_fn=os.setsid)
        owner.addCleanup(self.stop)

    def stop(self):
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)  # the group Chromium leads (setsid): its renderers and helpers too
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except TimeoutError:
                continue
        self.proc.kill()

    def log_text(self):
        return self.proc.log_text()


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()


def ensure_bundle():
    """tests/interop's npm packages, as its run.sh installs them (this layer may run first on a fresh clone)."""
    lock = os.path.join(INTEROP, "node_modules", ".package-lock.json")
    if not os.path.exists(lock) or os.path.getmtime(lock) < os.path.getmtime(os.path.join(INTEROP,
                                                                                         "package-lock.json")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True, timeout=300,
                       stdin=subprocess.DEVNULL, capture_output=True)


class BrowserTest(unittest.TestCase):
    def setUp(self):
        if os.environ.get("WSH_NO_BROWSER") == "1":
            self.skipTest("WSH_NO_BROWSER=1")
        if not CHROMIUM:
            self.fail("chromium is not installed (scripts/deps.sh installs it; WSH_NO_BROWSER=1 skips this test)")
        ensure_bundle()
        self.pages = PageServer()
        self.addCleanup(self.pages.close)

    def cluster(self, cors):
        redis = h.start_redis(self)
        extra = ["--sio-cookie", "io", *(["--cors-origin", self.pages.origin] if cors else [])]
        nodes = h.start_nodes(self, 2, redis.url, extra, prefix="b")
        lb = tl.start_lb(self, [*[a for n in nodes for a in ("--backend", f"{n.node_id}={h.HOST}:{n.port}")],
                                "--sticky", "prefix:io", "--balance", "leastconn", "--health", tl.CALM_HEALTH,
                                "--log-level", "warn"])
        return nodes, lb

    def browse(self, lb, role, peer, cases):
        url = (f"{self.pages.origin}/page.html?role={role}&peer={peer}&cases={','.join(cases)}"
               f"&lb=http://{h.HOST}:{lb.port}")
        return Chromium(self, url, f"chromium-{role}")

    def explain(self, browsers, nodes, lb):
        logs = "\n".join(f"--- {b.proc.name}:\n{b.log_text()[-1500:]}" for b in browsers)
        return (f"events: {self.pages.events()}\n{logs}\n--- lb:\n{lb.log_text()[-800:]}\n"
                + "".join(f"--- {n.node_id}:\n{n.log_text()[-600:]}\n" for n in nodes))

    @staticmethod
    def clients(node):
        m = node.metrics()
        return int(m["refserver_websocket_clients"] + m["refserver_socketio_polling_sessions"])

    def bus_in(self, node, case):
        m = node.metrics()
        return m["refserver_bus_messages_in_total" if case == "c" else "refserver_socketio_bus_messages_in_total"]

    def run_case(self, case, nodes, lb, browsers):
        why = lambda: self.explain(browsers, nodes, lb)  # noqa: E731
        try:
            h.wait_until(lambda: [self.clients(n) for n in nodes] == [0, 0], 10 * h.SLOW, what="both nodes empty")
        except TimeoutError as e:
            self.fail(f"case {case}: {e} (the previous case left a client)\n{why()}")
        bus_before = [self.bus_in(n, case) for n in nodes]
        self.pages.gate("start", case)
        try:
            self.check_case(case, nodes, bus_before, why)
        finally:  # a failed case still lets its pages close, or the next case would find its clients
            self.pages.gate("release", case)
        h.wait_until(lambda: self.pages.has("A", case, "closed") and self.pages.has("B", case, "closed"),
                     CASE_TIMEOUT, what=f"case {case}: pages closing")

    def check_case(self, case, nodes, bus_before, why):
        try:
            h.wait_until(lambda: (self.pages.has("A", case, "received") and self.pages.has("B", case, "received"))
                         or any(e["ev"] == "error" for e in self.pages.events(case)), CASE_TIMEOUT,
                         what=f"case {case}: both pages receiving")
        except TimeoutError as e:
            self.fail(f"{e}\n{why()}")
        errors = [e for e in self.pages.events(case) if e["ev"] == "error"]
        self.assertEqual(errors, [], f"case {case}\n{why()}")
        self.assertEqual([self.clients(n) for n in nodes], [1, 1], f"case {case}: one page per node\n{why()}")
        self.assertTrue(all(after > before for after, before in zip([self.bus_in(n, case) for n in nodes],
                                                                     bus_before)),
                        f"case {case}: each node got the other's message from Redis\n{why()}")
        connected = {e["role"]: e["detail"] for e in self.pages.events(case) if e["ev"] == "connected"}
        want = {"a": "polling->websocket", "b": "websocket->websocket", "c": "websocket->websocket"}[case]
        self.assertEqual(connected, {"A": want, "B": want}, f"case {case}: transports\n{why()}")

    def test_cross_origin_through_lb(self):
        nodes, lb = self.cluster(cors=True)
        cases = ["a", "b", "c"]
        browsers = [self.browse(lb, "A", "B", cases), self.browse(lb, "B", "A", cases)]
        for case in cases:
            with self.subTest(case=case):
                self.run_case(case, nodes, lb, browsers)

    def test_without_cors_default_transports_blocked(self):
        """The negative control: the same page and lb, nodes without --cors-origin."""
        nodes, lb = self.cluster(cors=False)
        browser = self.browse(lb, "A", "", ["a"])
        self.pages.gate("start", "a")
        h.wait_until(lambda: self.pages.has("A", "*", "done"), CASE_TIMEOUT, what="the page to finish")
        errors = [e["detail"] for e in self.pages.events("a") if e["ev"] == "error"]
        self.assertFalse(self.pages.has("A", "a", "connected"), self.explain([browser], nodes, lb))
        self.assertEqual(len(errors), 1, self.explain([browser], nodes, lb))
        self.assertIn("connect_error", errors[0])
        # The nodes answered the handshake (200): the browser, not the server, kept it from the page.
        self.assertGreaterEqual(sum(n.metrics()["refserver_socketio_polling_sessions"] for n in nodes), 1)
        self.assertIn("CORS policy", browser.log_text(), self.explain([browser], nodes, lb))


if __name__ == "__main__":
    unittest.main()
