"""Integration tests for build/lb: real lb processes in front of real nodes on free loopback ports.

The nodes are tests/integration/lb_backend.py (an HTTP/1.1 server that answers with a JSON echo of what reached it,
so a test sees exactly what the balancer forwarded) and, for WebSocket, refserver pairs on a real redis-server.
Run: python3 -m unittest discover -s tests/integration -p 'test_*.py' -v   (WSH_BUILD selects the build directory)
Every process is started on a free loopback port and stopped by PID in a cleanup; every wait has a deadline; an lb
that ends badly (exit code other than 0 after SIGTERM, a sanitizer report in its log) fails the test that owned it.
Tests assert behaviour, never speed: time bounds are generous ceilings (scaled for sanitizer builds).
"""

import base64
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import harness as h
from harness import OP_BINARY
from lb_backend import pattern

LB = os.path.join(h.BUILD, "lb")
BACKEND = os.path.join(h.HERE, "lb_backend.py")
if not os.access(LB, os.X_OK):
    raise RuntimeError(f"{LB} is not built (set WSH_BUILD or run make)")

LB_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer")
QUIET = 0.3
# Health checks for lbs whose tests are not about health: relaxed, so a busy machine never marks a node down.
CALM_HEALTH = "path=/,interval=1s,timeout=800ms,rise=2,fall=3"
# For the health tests: a dead node is down after fall x interval (+ a check timeout), well inside DOWN_WITHIN.
FAST_HEALTH = "path=/,interval=250ms,timeout=200ms,rise=2,fall=2"
DOWN_WITHIN = 3.0 * h.SLOW
COOKIE_RE = re.compile(r"^SRVID=([^;]+); Path=/; HttpOnly$")


# ---------------------------------------------------------------------------------------------------------------
# processes


class Backend:
    """lb_backend.py on a loopback port (127.0.0.1 unless host says another); restartable on the same port."""

    def __init__(self, name, port=None, host=h.HOST):
        self.name = name
        self.port = port
        self.host = host
        self.logdir = tempfile.mkdtemp(prefix="wsh-lbb-")
        self.proc = None
        self.starts = 0

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def start(self, timeout=10.0):
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = h.free_port()
            self.starts += 1
            log = os.path.join(self.logdir, f"backend-{self.name}-{self.starts}.log")
            self.proc = h.Proc([sys.executable, BACKEND, "--port", str(self.port), "--name", self.name,
                                "--host", self.host], log, f"lb_backend {self.name}")
            try:
                h.wait_until(self._ready, timeout * h.SLOW, what=f"backend {self.name} to answer GET /")
                return self
            except RuntimeError:
                self.proc.stop()
                if fixed or attempt == 2:
                    raise
            except TimeoutError:
                self.proc.stop()
                raise RuntimeError(f"backend {self.name} did not come up:\n{self.proc.log_text()[-2000:]}")
        raise RuntimeError(f"backend {self.name}: no free port")

    def _ready(self):
        if not self.proc.alive():
            raise RuntimeError(f"backend {self.name} exited {self.proc.returncode()}:\n{self.proc.log_text()}")
        with h.HttpConn(self.port, host=self.host, timeout=1.0) as c:
            r = c.request("GET", "/")
        return r.status == 200 and r.header("X-Backend") == self.name

    def stop(self):
        return self.proc.stop() if self.proc else None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.logdir, ignore_errors=True)


def sleeping(backend):
    """How many /sleep requests the backend holds now."""
    with h.HttpConn(backend.port, host=backend.host, timeout=2.0) as c:
        return json.loads(c.request("GET", "/sleeping").body)["sleeping"]


def start_backend(owner, name, port=None, host=h.HOST):
    b = Backend(name, port, host)
    h._add_cleanup(owner, b.cleanup)
    b.start()
    return b


def start_backends(owner, names):
    return [start_backend(owner, n) for n in names]


class Lb:
    """build/lb as a process. With flags (listen/admin ports chosen here) or with a config file (ports given). wrap
    prefixes the command line (a launcher that must exec the lb, so the PID held stays the lb's own)."""

    def __init__(self, args=(), config=None, port=None, admin_port=None, admin=True, tls_ca=None, wrap=(),
                 preexec_fn=None):
        self.args = list(args)
        self.wrap = list(wrap)
        self.preexec_fn = preexec_fn
        self.config = config
        self.port = port
        self.admin_port = admin_port
        self.admin = admin
        self.tls_ca = tls_ca
        self.logdir = tempfile.mkdtemp(prefix="wsh-lb-")
        self.proc = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid

    def argv(self):
        a = [*self.wrap, LB]
        if self.config:
            a += ["-c", self.config]
        else:
            a += ["--listen", f"{h.HOST}:{self.port}"]
            if self.admin:
                a += ["--admin", f"{h.HOST}:{self.admin_port}"]
        return a + self.args

    def start(self, timeout=10.0):
        for attempt in range(3):
            if not self.config:
                self.port = h.free_port()
                self.admin_port = h.free_port() if self.admin else None
            self.starts += 1
            self.proc = h.Proc(self.argv(), os.path.join(self.logdir, f"lb-{self.starts}.log"), "lb",
                               preexec_fn=self.preexec_fn)
            try:
                h.wait_until(self._ready, timeout * h.SLOW, what="lb to accept and answer /health")
                return self
            except RuntimeError:
                text = self.proc.log_text()
                self.proc.stop()
                if self.config or attempt == 2 or "in use" not in text.lower():
                    raise
            except TimeoutError:
                self.proc.stop()
                raise RuntimeError(f"lb did not come up:\n{self.proc.log_text()[-3000:]}")
        raise RuntimeError("lb: no free port after 3 attempts")

    def _ready(self):
        if not self.proc.alive():
            raise RuntimeError(f"lb exited {self.proc.returncode()} at start:\n{self.proc.log_text()[-3000:]}")
        socket.create_connection((h.HOST, self.port), timeout=1.0).close()
        if self.admin_port:
            return h.http_request(self.admin_port, "GET", "/health", timeout=1.0).status in (200, 503)
        return True

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def sanitizer_reports(self):
        text = self.log_text()
        return [m for m in LB_MARKERS if m in text]

    def processes(self):
        """PIDs of the lb's child processes: its workers and its health process."""
        out = []
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{task}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return out

    def health_pids(self):
        """The health process (checks and the admin listener), by the name it gives itself; [] before it has."""
        return [pid for pid in self.processes() if comm(pid) == "lb-health"]

    def children(self):
        """PIDs of the lb's worker processes."""
        return [pid for pid in self.processes() if comm(pid) not in ("lb-health", None)]

    # admin
    def admin_get(self, path):
        return h.http_request(self.admin_port, "GET", path)

    def admin_post(self, path):
        return h.http_request(self.admin_port, "POST", path)

    def series(self):
        r = self.admin_get("/metrics")
        if r.status != 200:
            raise h.ProtocolError(f"/metrics answered {r.status}")
        return parse_series(r.body.decode())

    def nodes(self, connected_to=False):
        """/nodes as {name: (address as written, up/down, admin state)}, or with connected_to as {name: the
        address the lb connects to now}."""
        r = self.admin_get("/nodes")
        if r.status != 200:
            raise h.ProtocolError(f"/nodes answered {r.status}")
        out = {}
        for line in r.body.decode().splitlines():
            name, addr, health, state, now = line.split()[:5]
            out[name] = now if connected_to else (addr, health, state)
        return out

    def stop(self, timeout=15.0):
        return self.proc.stop(timeout * h.SLOW) if self.proc else None

    def cleanup(self):
        """Stop by SIGTERM and check how it ended: exit 0, no sanitizer report."""
        if self.proc is None:
            shutil.rmtree(self.logdir, ignore_errors=True)
            return
        rc = self.stop()
        text = self.log_text()
        bad = self.sanitizer_reports()
        shutil.rmtree(self.logdir, ignore_errors=True)
        if rc != 0 or bad:
            raise AssertionError(f"lb ended badly (exit {rc}, {bad or 'no sanitizer report'}):\n{text[-4000:]}")


def comm(pid):
    """A process's name (/proc/PID/comm), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def start_lb(owner, args=(), **kw):
    lb = Lb(args, **kw)
    h._add_cleanup(owner, lb.cleanup)
    lb.start()
    return lb


def backend_flags(backends, opts=None):
    opts = opts or {}
    out = []
    for b in backends:
        extra = opts.get(b.name, "")
        out += ["--backend", f"{b.name}={b.addr}{extra}"]
    return out


def parse_series(text):
    """Prometheus text -> {'name{labels}': float}, labelled samples included."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


# ---------------------------------------------------------------------------------------------------------------
# HTTP helpers


def conn_from_socket(sock, timeout=5.0):
    """An HttpConn on an already connected socket (source-bound, TLS)."""
    c = h.HttpConn.__new__(h.HttpConn)
    c.sock, c.timeout, c.buf, c.eof = sock, timeout, b"", False
    return c


def conn_from(port, source, timeout=5.0):
    return conn_from_socket(socket.create_connection((h.HOST, port), timeout=timeout, source_address=(source, 0)),
                            timeout)


def get(port, path="/", headers=None, conn=None, method="GET", body=b""):
    """One request (on conn, or on a new connection): (response, JSON echo or None)."""
    if conn is None:
        with h.HttpConn(port) as c:
            r = c.request(method, path, headers, body)
    else:
        r = conn.request(method, path, headers, body)
    doc = json.loads(r.body) if r.status == 200 and r.header("X-Backend") and r.body else None
    return r, doc


def read_chunked_body(c, timeout=5.0):
    """After c.read_response(head_only=True) on a chunked response: (de-chunked body, trailer lines)."""
    dl = h.Deadline(timeout)

    def line():
        while b"\r\n" not in c.buf:
            if not c._fill(dl):
                raise h.ProtocolError(f"EOF inside a chunked body: {c.buf[:100]!r}")
        ln, c.buf = c.buf.split(b"\r\n", 1)
        return ln

    def exact(n):
        while len(c.buf) < n:
            if not c._fill(dl):
                raise h.ProtocolError("EOF inside chunk data")
        d, c.buf = c.buf[:n], c.buf[n:]
        return d

    body = b""
    while True:
        size = int(line().split(b";")[0], 16)
        if size == 0:
            break
        body += exact(size)
        if exact(2) != b"\r\n":
            raise h.ProtocolError("chunk data not followed by CRLF")
    trailers = []
    while True:
        ln = line()
        if not ln:
            return body, trailers
        trailers.append(ln)


def tls_socket(port, ca, alpn=("http/1.1",), timeout=10.0):
    ctx = ssl.create_default_context(cafile=ca)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection((h.HOST, port), timeout=timeout * h.SLOW)
    try:
        return ctx.wrap_socket(raw, server_hostname=h.HOST)
    except BaseException:
        raw.close()
        raise


def wss_connect(owner, port, ca, path="/ws", headers=None):
    """A WebSocket client over TLS (the harness's WSClient on an ssl socket)."""
    s = tls_socket(port, ca)
    owner.addCleanup(s.close)
    key = base64.b64encode(os.urandom(16)).decode()
    hdrs = {"Host": f"{h.HOST}:{port}", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13", **(headers or {})}
    s.sendall((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode())
    c = conn_from_socket(s, 10.0 * h.SLOW)
    r = c.read_response(head_only=True)
    if r.status != 101:
        raise h.HandshakeError(r)
    if r.header("Sec-WebSocket-Accept") != h.accept_key(key):
        raise h.ProtocolError(f"bad Sec-WebSocket-Accept in {r!r}")
    return h.WSClient(s, port, r, c.buf)


def fwd(doc, name):
    """Every value of the request header name as the backend received it."""
    return [v for k, v in doc["header_list"] if k.lower() == name.lower()]


def sha(data):
    return hashlib.sha256(data).hexdigest()


class LbBase(unittest.TestCase):
    lbs = ()  # the class's lbs, checked after every test

    def tearDown(self):
        for lb in self.lbs:
            self.assertTrue(lb.proc.alive(), f"lb died:\n{lb.log_text()[-3000:]}")
            self.assertEqual(lb.sanitizer_reports(), [], lb.log_text()[-4000:])

    def served_by(self, resp, doc, who="request"):
        self.assertEqual(resp.status, 200, f"{who}: {resp!r}")
        self.assertIsNotNone(doc, f"{who}: no JSON echo: {resp!r}")
        self.assertEqual(resp.header("X-Backend"), doc["backend"])
        return doc["backend"]

    def backend_of(self, port, path="/", headers=None, conn=None, who="request"):
        r, doc = get(port, path, headers, conn)
        return self.served_by(r, doc, who)

    def wait_node(self, lb, name, field, want, timeout=DOWN_WITHIN):
        seen = []

        def check():
            v = lb.series().get(f'lb_node_{field}{{node="{name}"}}')
            seen.append(v)
            return v == want

        try:
            h.wait_until(check, timeout, interval=0.05, what=f"lb_node_{field} of {name} == {want}")
        except TimeoutError:
            self.fail(f"lb_node_{field}{{node={name}}} never became {want} within {timeout:.1f}s (last {seen[-1:]})"
                      f"\nlb log:\n{lb.log_text()[-2000:]}")


# ---------------------------------------------------------------------------------------------------------------
# 1, 3: round robin


class RoundRobinTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2", "b3"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--health", CALM_HEALTH, "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_equal_weights_spread(self):
        counts = collections.Counter(self.backend_of(self.lb.port, who=f"request {i}") for i in range(30))
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)
        for name, n in counts.items():
            self.assertLessEqual(abs(n - 10), 1, f"30 requests over 3 equal nodes: {counts}")

    def test_weights_respected(self):
        lb = start_lb(self, [*backend_flags(self.backends, {"b1": ",weight=3", "b3": ",weight=0"}),
                             "--health", CALM_HEALTH, "--log-level", "warn"])
        counts = collections.Counter(self.backend_of(lb.port, who=f"request {i}") for i in range(40))
        self.assertLessEqual(abs(counts["b1"] - 30), 1, f"weight 3 vs 1 over 40 requests: {counts}")
        self.assertLessEqual(abs(counts["b2"] - 10), 1, f"weight 3 vs 1 over 40 requests: {counts}")
        self.assertEqual(counts["b3"], 0, f"a node of weight 0 takes nothing: {counts}")
        self.assertTrue(lb.proc.alive())

    def test_keepalive_routes_each_request(self):
        with h.HttpConn(self.lb.port) as c:
            seq = [self.backend_of(self.lb.port, f"/ka/{i}", conn=c, who=f"request {i} on one connection")
                   for i in range(9)]
        for a, b in zip(seq, seq[1:]):
            self.assertNotEqual(a, b, f"each request on a keep-alive connection is balanced on its own: {seq}")
        self.assertEqual(collections.Counter(seq), {"b1": 3, "b2": 3, "b3": 3}, seq)


# ---------------------------------------------------------------------------------------------------------------
# 2, 3: cookie stickiness


class StickyCookieTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--sticky", "cookie", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def cookie_of(self, resp):
        sc = resp.header("Set-Cookie")
        self.assertIsNotNone(sc, f"expected a Set-Cookie: {resp!r}")
        m = COOKIE_RE.match(sc)
        self.assertIsNotNone(m, f"Set-Cookie {sc!r} is not 'SRVID=<id>; Path=/; HttpOnly'")
        return m.group(1)

    def test_first_response_sets_cookie_naming_the_backend(self):
        for i in range(4):
            r, doc = get(self.lb.port)
            name = self.served_by(r, doc)
            sc = r.header("Set-Cookie")
            self.assertNotIn("127.0.0.1", sc, "the cookie must be an opaque id, not an address")
            for b in self.backends:
                self.assertNotIn(str(b.port), sc, "the cookie must not carry a port")
            self.assertEqual(self.cookie_of(r), name, "the id is the backend's name")
            self.assertEqual([v for k, v in r.headers if k.lower() == "set-cookie"], [sc], "one Set-Cookie")

    def test_cookie_pins_keepalive_and_new_connections(self):
        r, doc = get(self.lb.port)
        first = self.cookie_of(r)
        for node in (first, *[b.name for b in self.backends if b.name != first]):
            cookie = {"Cookie": f"SRVID={node}"}
            with h.HttpConn(self.lb.port) as c:
                for i in range(100):
                    r, doc = get(self.lb.port, f"/pin/{i}", cookie, conn=c)
                    self.assertEqual(self.served_by(r, doc, f"keep-alive request {i}"), node)
                    self.assertIsNone(r.header("Set-Cookie"), "a client with a valid cookie is not re-cookied")
            for i in range(20):
                r, doc = get(self.lb.port, f"/new/{i}", cookie)
                self.assertEqual(self.served_by(r, doc, f"new connection {i}"), node)

    def test_backend_never_sees_the_cookie(self):
        cases = [
            ("a=1; SRVID=b1; b=2", "b1", ["a=1; b=2"]),
            ("SRVID=b2", "b2", []),
            ("SRVID=b1;theme=dark", "b1", ["theme=dark"]),
            ("session=x=y; SRVID=b2", "b2", ["session=x=y"]),
        ]
        for sent, node, seen in cases:
            with self.subTest(cookie=sent):
                r, doc = get(self.lb.port, "/", {"Cookie": sent})
                self.assertEqual(self.served_by(r, doc), node)
                self.assertEqual(fwd(doc, "Cookie"), seen)
        # our cookie in a second Cookie field: routed by it, stripped from it, the other field intact
        with h.HttpConn(self.lb.port) as c:
            c.send(b"GET /two HTTP/1.1\r\nHost: x\r\nCookie: a=1; c=3\r\nCookie: SRVID=b2\r\n\r\n")
            r = c.read_response()
        doc = json.loads(r.body)
        self.assertEqual(self.served_by(r, doc), "b2")
        self.assertEqual(fwd(doc, "Cookie"), ["a=1; c=3"])

    def test_backend_set_cookie_kept(self):
        r, doc = get(self.lb.port, "/set-cookie?name=app&value=42")
        node = self.served_by(r, doc)
        cookies = [v for k, v in r.headers if k.lower() == "set-cookie"]
        self.assertEqual(sorted(cookies), sorted(["app=42; Path=/", f"SRVID={node}; Path=/; HttpOnly"]))

    def test_node_closing_an_idle_connection(self):
        """A node may close a kept-alive connection after any answer; the lb then connects again for the next
        request of the same client instead of sending it into the closed one."""
        with h.HttpConn(self.lb.port) as c:
            for i in range(3):
                r, doc = get(self.lb.port, "/drop-after", {"Cookie": "SRVID=b1"}, conn=c)
                self.assertEqual(self.served_by(r, doc, f"drop-after {i}"), "b1")
                time.sleep(0.3)
                r, doc = get(self.lb.port, f"/next/{i}", {"Cookie": "SRVID=b1"}, conn=c)
                self.assertEqual(self.served_by(r, doc, f"request {i} after the node closed"), "b1")

    def test_unknown_node_is_rebalanced_and_recookied(self):
        before = self.lb.series()["lb_rebalanced_total"]
        seen = set()
        for i in range(4):
            r, doc = get(self.lb.port, "/", {"Cookie": "x=1; SRVID=nope"})
            name = self.served_by(r, doc)
            self.assertEqual(self.cookie_of(r), name, "re-balanced clients get a new cookie")
            self.assertEqual(fwd(doc, "Cookie"), ["x=1"])
            seen.add(name)
        self.assertEqual(seen, {"b1", "b2"}, "unknown-cookie clients are balanced like new ones")
        self.assertEqual(self.lb.series()["lb_rebalanced_total"] - before, 4)

    def test_keepalive_without_cookie_alternates(self):
        with h.HttpConn(self.lb.port) as c:
            seq = []
            for i in range(8):
                r, doc = get(self.lb.port, f"/alt/{i}", conn=c)
                name = self.served_by(r, doc, f"request {i}")
                self.assertEqual(self.cookie_of(r), name)
                seq.append(name)
        for a, b in zip(seq, seq[1:]):
            self.assertNotEqual(a, b, f"requests without a cookie on one connection alternate: {seq}")


# ---------------------------------------------------------------------------------------------------------------
# 4: source


class SourceBalanceTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2", "b3"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--balance", "source", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def from_source(self, source, path="/"):
        with conn_from(self.lb.port, source) as c:
            r, doc = get(self.lb.port, path, conn=c)
        name = self.served_by(r, doc, f"from {source}")
        self.assertEqual(fwd(doc, "X-Forwarded-For"), [source])
        return name

    def test_one_client_one_backend(self):
        names = {self.from_source("127.0.0.1", f"/s/{i}") for i in range(20)}
        self.assertEqual(len(names), 1, f"20 connections from one address: {names}")
        with h.HttpConn(self.lb.port) as c:
            ka = {self.backend_of(self.lb.port, f"/ka/{i}", conn=c) for i in range(10)}
        self.assertEqual(ka, names, "keep-alive requests from that address too")

    def test_sources_spread(self):
        by_source = {}
        for i in range(2, 41):
            ip = f"127.0.0.{i}"
            first, second = self.from_source(ip), self.from_source(ip)
            self.assertEqual(first, second, f"two connections from {ip} went to {first} and {second}")
            by_source[ip] = first
        counts = collections.Counter(by_source.values())
        self.assertGreater(len(counts), 1, f"39 source addresses all on one node: {counts}")


# ---------------------------------------------------------------------------------------------------------------
# 5: param:room


class ParamBalanceTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--balance", "param:room", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_absolute_form_routed_by_its_path_and_query(self):
        """An absolute-form target (RFC 9112 3.2.2) is balanced by its query, and reaches the node in origin-form."""
        for room in ("r1", "r2", "r3", "r4", "r5", "r6"):
            with self.subTest(room=room):
                node = self.backend_of(self.lb.port, f"/ws?room={room}")
                with h.HttpConn(self.lb.port) as c:
                    c.send(f"GET http://n.example/ws?room={room} HTTP/1.1\r\nHost: n.example\r\n\r\n".encode())
                    r = c.read_response()
                self.assertEqual(r.status, 200, r)
                doc = json.loads(r.body)
                self.assertEqual(self.served_by(r, doc), node, "the same node as the origin-form request")
                self.assertEqual(doc["path"], f"/ws?room={room}")

    def test_one_room_one_backend(self):
        names = [self.backend_of(self.lb.port, "/ws?room=a") for _ in range(10)]
        with h.HttpConn(self.lb.port) as c:
            names += [self.backend_of(self.lb.port, "/poll?x=1&room=a", conn=c) for _ in range(10)]
        self.assertEqual(len(set(names)), 1, f"room a went to {collections.Counter(names)}")

    def test_rooms_spread(self):
        rooms = {}
        for i in range(40):
            room = f"r{i}-{uuid.uuid4().hex[:6]}"
            a = self.backend_of(self.lb.port, f"/ws?room={room}")
            b = self.backend_of(self.lb.port, f"/other?room={room}&t={i}")
            self.assertEqual(a, b, f"room {room}")
            rooms[room] = a
        counts = collections.Counter(rooms.values())
        self.assertEqual(set(counts), {"b1", "b2"}, f"40 rooms: {counts}")


# ---------------------------------------------------------------------------------------------------------------
# 6: prefix mode


class PrefixCookieTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--sticky", "prefix:io", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_set_cookie_prefixed_and_routed(self):
        nodes = set()
        for i in range(4):
            r, doc = get(self.lb.port, f"/set-cookie?name=io&value=abc{i}")
            node = self.served_by(r, doc)
            self.assertEqual(r.header("Set-Cookie"), f"io={node}~abc{i}; Path=/")
            nodes.add(node)
            with h.HttpConn(self.lb.port) as c:
                for j in range(10):
                    r2, doc2 = get(self.lb.port, f"/after/{j}", {"Cookie": f"io={node}~abc{i}; other=1"}, conn=c)
                    self.assertEqual(self.served_by(r2, doc2, f"request {j} with io={node}~abc{i}"), node)
                    self.assertEqual(fwd(doc2, "Cookie"), [f"io=abc{i}; other=1"], "the node sees its own value")
                    self.assertIsNone(r2.header("Set-Cookie"), "prefix mode inserts no cookie of its own")
        self.assertEqual(nodes, {"b1", "b2"})

    def test_other_cookies_untouched(self):
        r, doc = get(self.lb.port, "/set-cookie?name=other&value=1")
        self.served_by(r, doc)
        self.assertEqual(r.header("Set-Cookie"), "other=1; Path=/")
        r, doc = get(self.lb.port, "/", {"Cookie": "other=1; io2=b1~x"})
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "Cookie"), ["other=1; io2=b1~x"])

    def test_unknown_prefix_rebalanced(self):
        seen = set()
        for i in range(4):
            r, doc = get(self.lb.port, "/", {"Cookie": "io=nope~abc"})
            seen.add(self.served_by(r, doc))
            self.assertEqual(fwd(doc, "Cookie"), ["io=abc"])
        self.assertEqual(seen, {"b1", "b2"})


# ---------------------------------------------------------------------------------------------------------------
# 7, 8: forwarded headers, bodies, framing

HOP_BY_HOP = ("Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade")


class ForwardingTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--health", CALM_HEALTH, "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_x_forwarded_for_added(self):
        r, doc = get(self.lb.port)
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(fwd(doc, "X-Forwarded-Proto"), ["http"])

    def test_x_forwarded_for_appended(self):
        r, doc = get(self.lb.port, "/", {"X-Forwarded-For": "203.0.113.7"})
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"])

    def test_x_forwarded_for_two_fields(self):
        """Two X-Forwarded-For fields are one list (RFC 9110 5.3): the client's address is appended once, at its
        end, not once per field."""
        with h.HttpConn(self.lb.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n")
            r = c.read_response()
        doc = json.loads(r.body)
        self.served_by(r, doc)
        self.assertEqual(", ".join(fwd(doc, "X-Forwarded-For")), "10.0.0.1, 10.0.0.2, 127.0.0.1")

    def test_x_forwarded_proto_not_spoofable(self):
        r, doc = get(self.lb.port, "/", {"X-Forwarded-Proto": "https"})
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "X-Forwarded-Proto"), ["http"], "the client's own value is replaced")

    def test_other_headers_pass_unchanged(self):
        r, doc = get(self.lb.port, "/p?q=1&r=%20", {"X-Custom": "Some Value", "Accept": "*/*"})
        self.served_by(r, doc)
        self.assertEqual(doc["path"], "/p?q=1&r=%20")
        self.assertEqual(fwd(doc, "X-Custom"), ["Some Value"])
        self.assertEqual(fwd(doc, "Accept"), ["*/*"])
        self.assertEqual(fwd(doc, "Host"), ["127.0.0.1"])

    def test_post_one_megabyte(self):
        body = os.urandom(1 << 20)
        for attempt in range(2):
            r, doc = get(self.lb.port, "/upload", method="POST", body=body)
            self.served_by(r, doc)
            self.assertEqual(doc["body_len"], len(body))
            self.assertEqual(doc["body_sha256"], sha(body))
            self.assertEqual(fwd(doc, "Content-Length"), [str(len(body))])

    def test_post_chunked(self):
        parts = [os.urandom(n) for n in (1, 100, 70000, 5, 300000)]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts[:2])
        wire += b"%x;ext=1\r\n%s\r\n" % (len(parts[2]), parts[2])
        wire += b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in parts[3:])
        wire += b"0\r\nX-Trailer: t\r\n\r\n"
        head = b"POST /upload-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        with h.HttpConn(self.lb.port, timeout=10) as c:
            c.send(head + wire)
            r = c.read_response()
            doc = json.loads(r.body)
            self.served_by(r, doc)
            self.assertTrue(doc["chunked"])
            whole = b"".join(parts)
            self.assertEqual(doc["body_len"], len(whole))
            self.assertEqual(doc["body_sha256"], sha(whole))
            # the connection is still good
            r, doc = get(self.lb.port, "/after", conn=c)
            self.served_by(r, doc)
            self.assertEqual(doc["path"], "/after")

    def test_pipelined_after_body(self):
        body = os.urandom(200000)
        reqs = (b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body +
                b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n" +
                b"POST /third HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
                b"GET /fourth HTTP/1.1\r\nHost: x\r\n\r\n")
        with h.HttpConn(self.lb.port, timeout=10) as c:
            c.send(reqs)
            docs = []
            for i in range(4):
                r = c.read_response()
                self.assertEqual(r.status, 200, f"pipelined response {i}: {r!r}")
                docs.append(json.loads(r.body))
        self.assertEqual([d["path"] for d in docs], ["/first", "/second", "/third", "/fourth"])
        self.assertEqual([d["body_len"] for d in docs], [len(body), 0, 3, 0])
        self.assertEqual(docs[0]["body_sha256"], sha(body))
        self.assertEqual(docs[2]["body_sha256"], sha(b"abc"))

    def test_expect_100_continue(self):
        body = os.urandom(100000)
        with h.HttpConn(self.lb.port, timeout=10.0 * h.SLOW) as c:
            c.send(b"POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                   % len(body))
            r = c.read_response(head_only=True)
            self.assertEqual(r.status, 100, f"the node's 100 Continue passes through: {r!r}")
            c.send(body)
            r = c.read_response()
            doc = json.loads(r.body)
            self.served_by(r, doc)
            self.assertEqual(doc["body_len"], len(body))
            self.assertEqual(doc["body_sha256"], sha(body))
            r, doc = get(self.lb.port, "/after-expect", conn=c)
            self.served_by(r, doc)

    def test_chunked_response_then_keepalive(self):
        with h.HttpConn(self.lb.port) as c:
            for i in range(2):
                c.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response(head_only=True)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("Transfer-Encoding"), "chunked")
                body, trailers = read_chunked_body(c)
                self.assertEqual(json.loads(body)["path"], "/chunked")
                self.assertEqual(trailers, [b"X-Trailer: done"])
            r, doc = get(self.lb.port, "/after-chunked", conn=c)
            self.served_by(r, doc)
            self.assertEqual(doc["path"], "/after-chunked")

    def test_response_until_close(self):
        with h.HttpConn(self.lb.port) as c:
            r = c.request("GET", "/until-close")  # no Content-Length: read to EOF
            self.assertEqual(r.status, 200, r)
            self.assertIsNone(r.header("Content-Length"))
            self.assertEqual(json.loads(r.body)["path"], "/until-close")
            self.assertTrue(c.eof, "a body framed by the close ends the client's connection")

    def test_large_response(self):
        n = 5 << 20
        with h.HttpConn(self.lb.port, timeout=30.0 * h.SLOW) as c:
            c.send(b"GET /bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            time.sleep(0.5)  # let the lb fill the socket buffers and hold back
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), n)
            self.assertTrue(r.body == pattern(n), "the 5 MiB body arrives intact")
            r, doc = get(self.lb.port, "/after-big", conn=c)
            self.served_by(r, doc)

    def test_half_closed_client_still_answered(self):
        sock = socket.create_connection((h.HOST, self.lb.port), timeout=5.0)
        with conn_from_socket(sock) as c:
            c.send(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            doc = json.loads(r.body)
            self.served_by(r, doc)
            self.assertEqual(doc["path"], "/half")
            self.assertTrue(c.wait_closed(5.0 * h.SLOW))

    def test_head_request_then_get(self):
        with h.HttpConn(self.lb.port) as c:
            r = c.request("HEAD", "/h")
            self.assertEqual(r.status, 200)
            self.assertGreater(int(r.header("Content-Length")), 0)
            r, doc = get(self.lb.port, "/after-head", conn=c)
            self.served_by(r, doc)
            self.assertEqual(doc["path"], "/after-head")

    def test_connection_close_honoured(self):
        with h.HttpConn(self.lb.port) as c:
            r, doc = get(self.lb.port, "/", {"Connection": "close"}, conn=c)
            self.served_by(r, doc)
            self.assertIn("close", r.header("Connection", "").lower())
            self.assertTrue(c.wait_closed(5.0 * h.SLOW), "the lb must close after 'Connection: close'")

    def test_http10_without_host(self):
        with h.HttpConn(self.lb.port) as c:
            c.send(b"GET /old HTTP/1.0\r\n\r\n")
            r = c.read_response()
            doc = json.loads(r.body)
            self.served_by(r, doc)
            self.assertEqual(doc["version"], "HTTP/1.0")
            self.assertTrue(c.wait_closed(5.0 * h.SLOW), "an HTTP/1.0 connection without keep-alive closes")


    # absolute-form targets (RFC 9112 3.2.2) and hop-by-hop fields (RFC 9110 7.6.1), as HAProxy treats them

    def node_requests(self):
        s = self.lb.series()
        return sum(s[f'lb_node_requests_total{{node="{b.name}"}}'] for b in self.backends)

    @staticmethod
    def exchange(c, data):
        """Raw request bytes on c: (response, JSON echo or None)."""
        c.send(data)
        r = c.read_response()
        return r, json.loads(r.body) if r.status == 200 and r.header("X-Backend") else None

    def assert_rejected(self, cases, why):
        """Each (target, Host) on its own connection: 400, closed, and no node sees a request."""
        before = self.node_requests()
        for target, host in cases:
            with self.subTest(target=target, host=host):
                with h.HttpConn(self.lb.port) as c:
                    r, _ = self.exchange(c, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    self.assertEqual(r.status, 400, f"{why}: {r!r}")
                    self.assertIsNone(r.header("X-Backend"), r)
                    self.assertTrue(c.wait_closed(5.0 * h.SLOW), "closed after the 400")
        self.assertEqual(self.node_requests(), before, f"{why}: no node may see the request")

    def test_absolute_form_reaches_the_node_in_origin_form(self):
        """A node that only knows origin-form gets the path and query; Host, matching the authority (host
        case-insensitive, 80/443 the default ports), passes as sent; OPTIONS * stays as it is."""
        port = self.lb.port
        cases = [(f"http://127.0.0.1:{port}/abs/p?q=1", f"127.0.0.1:{port}", "/abs/p?q=1"),
                 ("http://Node.Example/x", "node.example", "/x"),
                 ("HTTP://node.example:80/x", "node.example", "/x"),
                 ("http://node.example/x", "NODE.example:80", "/x"),
                 ("https://node.example/y", "node.example:443", "/y"),
                 ("http://[::1]:8080/v6", "[::1]:8080", "/v6"),
                 ("http://node.example?room=a", "node.example", "/?room=a"),
                 ("http://node.example", "node.example", "/"),
                 ("*", "node.example", "*")]
        with h.HttpConn(port) as c:
            for target, host, want in cases:
                with self.subTest(target=target):
                    method = "OPTIONS" if target == "*" else "GET"
                    r, doc = self.exchange(c, f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    self.served_by(r, doc, target)
                    self.assertEqual(doc["path"], want)
                    self.assertEqual(fwd(doc, "Host"), [host])

    def test_absolute_form_without_host_gets_its_authority(self):
        """HTTP/1.0 needs no Host: the proxy then sends the authority as Host (RFC 9112 3.2.2)."""
        with h.HttpConn(self.lb.port) as c:
            r, doc = self.exchange(c, b"GET http://n.example:8080/old HTTP/1.0\r\n\r\n")
        self.served_by(r, doc)
        self.assertEqual((doc["path"], fwd(doc, "Host")), ("/old", ["n.example:8080"]))

    def test_absolute_form_authority_differing_from_host_400(self):
        self.assert_rejected([("http://evil.example/x", "127.0.0.1"), ("http://127.0.0.1:81/x", "127.0.0.1"),
                              ("http://n.example:80/x", "n.example:8080"), ("https://n.example/x", "n.example:80"),
                              ("http://n.example/x", "n.example:port"), ("http://n.example/x", "n.example.")],
                             "the authority differs from Host")

    def test_malformed_absolute_targets_400(self):
        self.assert_rejected([(t, "n.example") for t in (
            "http://", "http:///x", "http://?x", "http://:80/x", "ftp://n.example/x", "ws://n.example/x",
            "http://user@n.example/x", "http:/x", "http:n.example/x", "x", "n.example:80", "http://n.example:99999/",
            "http://n.example:8o/", "http://[::1/x", "http://n%zz.example/", "http://n.example#f")],
            "a malformed target")

    def test_asterisk_target_only_with_options_400(self):
        """RFC 9112 3.2.4: `*` is the target of a server-wide OPTIONS only (OPTIONS * passes: see above)."""
        self.assert_rejected([("*", "n.example")], "GET *")

    def test_hop_by_hop_request_fields_dropped(self):
        """Connection and the fields it names, Keep-Alive, Proxy-Connection, TE, Trailer and a stray Upgrade stop at
        the lb; Proxy-Authorization passes, as HAProxy passes it; keep-alive to the client is unchanged."""
        hop = (b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\nTrailer: X-T\r\n"
               b"Upgrade: h2c\r\nX-Foo: 1\r\nX-Bar: 2\r\nProxy-Authorization: Basic eA==\r\nX-Keep: k\r\n")
        with h.HttpConn(self.lb.port) as c:
            r, doc = self.exchange(c, b"GET /hop/1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Foo\r\n" + hop +
                                   b"connection: x-bar\r\n\r\n")
            self.served_by(r, doc)
            for name in (*HOP_BY_HOP, "X-Foo", "X-Bar"):
                self.assertEqual(fwd(doc, name), [], f"{name} must not reach the node")
            self.assertEqual(fwd(doc, "X-Keep"), ["k"])
            self.assertEqual(fwd(doc, "Proxy-Authorization"), ["Basic eA=="])
            self.assertIsNone(r.header("Connection"), r)
            r, doc = self.exchange(c, b"GET /hop/2 HTTP/1.1\r\nHost: x\r\nConnection: close, X-Foo\r\n" + hop +
                                   b"\r\n")
            self.served_by(r, doc, "the second request on the kept-alive connection")
            self.assertEqual(fwd(doc, "X-Foo"), [])
            self.assertEqual(fwd(doc, "Connection"), ["close"], "the node learns the connection ends")
            self.assertEqual(r.header("Connection", "").lower(), "close")
            self.assertTrue(c.wait_closed(5.0 * h.SLOW), "the lb closes after 'Connection: close'")

    def test_connection_cannot_strip_framing_or_host(self):
        """A Connection naming Content-Length, Transfer-Encoding or Host must not make the lb drop them: the node
        would frame the body differently from the lb (smuggling) or lose its Host."""
        with h.HttpConn(self.lb.port) as c:
            r, doc = self.exchange(c, b"POST /cl HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Host\r\n"
                                      b"Content-Length: 3\r\n\r\nabc")
            self.served_by(r, doc)
            self.assertEqual((doc["body_len"], fwd(doc, "Content-Length"), fwd(doc, "Host")), (3, ["3"], ["x"]))
            r, doc = self.exchange(c, b"POST /te HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            self.served_by(r, doc)
            self.assertEqual((doc["body_len"], doc["chunked"]), (3, True))
            r, doc = self.exchange(c, b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual((self.served_by(r, doc), doc["path"]), (doc["backend"], "/after"))

    def test_http10_keep_alive_kept(self):
        """The client's keep-alive is the lb's to answer now that the node's Connection field stops at the lb."""
        with h.HttpConn(self.lb.port) as c:
            for i in range(3):
                r, doc = self.exchange(c, b"GET /old%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
                self.served_by(r, doc, f"request {i}")
                self.assertEqual((doc["version"], fwd(doc, "Connection")), ("HTTP/1.0", ["keep-alive"]))
                self.assertEqual(r.header("Connection", "").lower(), "keep-alive", r)

    def test_hop_by_hop_response_fields_dropped(self):
        with h.HttpConn(self.lb.port) as c:
            for i in range(2):
                r, doc = self.exchange(c, b"GET /hop-by-hop HTTP/1.1\r\nHost: x\r\n\r\n")
                self.served_by(r, doc, f"request {i} on one connection")
                for name in (*HOP_BY_HOP, "X-Hop"):
                    self.assertIsNone(r.header(name), f"{name} must not reach the client: {r!r}")
                self.assertEqual((r.header("X-End"), r.header("Proxy-Authenticate")), ("1", "Basic realm=x"))


# ---------------------------------------------------------------------------------------------------------------
# 9: health checks


class HealthTest(LbBase):
    def setUp(self):
        self.b1, self.b2 = start_backends(self, ["b1", "b2"])
        self.lb = start_lb(self, [*backend_flags([self.b1, self.b2]), "--sticky", "cookie", "--health", FAST_HEALTH,
                                  "--log-level", "warn"])
        self.lbs = (self.lb,)

    def test_down_rebalanced_then_up_again(self):
        lb, b1 = self.lb, self.b1
        self.assertEqual(lb.nodes()["b1"], (b1.addr, "up", "ready"))
        self.assertEqual(lb.nodes(connected_to=True), {"b1": b1.addr, "b2": self.b2.addr}, "IP literals as given")
        b1.stop()
        self.wait_node(lb, "b1", "up", 0.0)
        self.assertEqual(lb.nodes()["b1"], (b1.addr, "down", "ready"))
        self.assertEqual(lb.admin_get("/health").status, 200, "one node is still usable")
        # sticky clients of the dead node move, and get the new node's cookie
        for i in range(5):
            r, doc = get(lb.port, f"/moved/{i}", {"Cookie": "SRVID=b1"})
            self.assertEqual(self.served_by(r, doc), "b2")
            self.assertEqual(r.header("Set-Cookie"), "SRVID=b2; Path=/; HttpOnly")
        self.assertEqual({self.backend_of(lb.port) for _ in range(6)}, {"b2"}, "new clients avoid the dead node")
        b1.start()  # the same port
        self.wait_node(lb, "b1", "up", 1.0)
        self.assertEqual(lb.nodes()["b1"], (b1.addr, "up", "ready"))
        self.assertIn("b1", {self.backend_of(lb.port) for _ in range(4)}, "a node back up takes traffic again")
        r, doc = get(lb.port, "/", {"Cookie": "SRVID=b1"})
        self.assertEqual(self.served_by(r, doc), "b1")
        self.assertIsNone(r.header("Set-Cookie"))
        self.assertEqual(lb.series()['lb_node_transitions_total{node="b1"}'], 2.0)

    def test_all_down_503(self):
        lb = self.lb
        self.b1.stop()
        self.b2.stop()
        self.wait_node(lb, "b1", "up", 0.0)
        self.wait_node(lb, "b2", "up", 0.0)
        for i in range(3):
            with h.HttpConn(lb.port) as c:
                r = c.request("GET", f"/none/{i}")
                self.assertEqual(r.status, 503, r)
                self.assertIn(b"no node", r.body.lower(), f"the 503 must say why: {r.body!r}")
                self.assertTrue(c.wait_closed(5.0 * h.SLOW))
        r = lb.admin_get("/health")
        self.assertEqual(r.status, 503)
        self.assertIn(b"0 of 2", r.body)

    def test_silent_and_broken_nodes_marked_down(self):
        """A node that accepts but never answers fails by the check timeout; one that answers garbage fails at
        once; a 5xx fails; neither is ever given a client."""
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind((h.HOST, 0))
        silent.listen(64)
        broken = FakeNode()
        self.addCleanup(broken.close)
        broken.reply = b"SSH-2.0-OpenSSH\r\n\r\n"
        failing = FakeNode()
        self.addCleanup(failing.close)
        failing.reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        # 1 node of 4 up is under the default panic threshold (50%): panic off, so the down nodes get nobody
        lb = start_lb(self, [*backend_flags([self.b1]), "--backend", f"silent={h.HOST}:{silent.getsockname()[1]}",
                             "--backend", f"broken={h.HOST}:{broken.port}", "--backend",
                             f"failing={h.HOST}:{failing.port}", "--health", FAST_HEALTH, "--panic-threshold", "0",
                             "--log-level", "warn"])
        self.lbs = (self.lb, lb)
        for name in ("silent", "broken", "failing"):
            self.wait_node(lb, name, "up", 0.0)
        self.assertEqual(lb.series()['lb_node_up{node="b1"}'], 1.0)
        self.assertEqual({self.backend_of(lb.port, f"/only/{i}") for i in range(6)}, {"b1"})

    def test_failed_connect_retried_elsewhere(self):
        """Health checks off: a dead node is found by client traffic; nothing was sent, so the request is retried
        on another node and the client never sees the failure."""
        lb = start_lb(self, [*backend_flags([self.b1, self.b2]), "--health", "off", "--log-level", "warn"])
        self.lbs = (self.lb, lb)
        self.b1.stop()
        names = [self.backend_of(lb.port, f"/retry/{i}", who=f"request {i}") for i in range(8)]
        self.assertEqual(set(names), {"b2"})
        s = lb.series()
        self.assertGreaterEqual(s['lb_node_connect_errors_total{node="b1"}'], 1)
        self.assertEqual(s['lb_node_up{node="b1"}'], 0.0, "fall failed connects in a row take the node down")


# ---------------------------------------------------------------------------------------------------------------
# issue 11: a node is judged by what it does, never by the lb's own state


def nofile_limit(soft, hard=None):
    """A preexec_fn that sets the child's open-files limit (hard defaults to soft, as `ulimit -n` does)."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or soft))
    return set_limit


def stop_and_go(pids, cycles, stopped, running):
    """cycles times: SIGSTOP every pid, wait stopped seconds, SIGCONT them, let them run running[i % len] seconds.
    Short runs leave checks in flight across the next stop. Every pid is continued at the end, whatever happens."""
    try:
        for i in range(cycles):
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(stopped)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            time.sleep(running[i % len(running)])
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def burst(port, n, path, timeout):
    """n clients at once, each one request on its own connection: [(status, body) or (None, error)]."""
    def one(i):
        try:
            with h.HttpConn(port, timeout=timeout) as c:
                r = c.request("GET", f"{path}&i={i}")
                return r.status, r.body
        except (OSError, h.ProtocolError, TimeoutError) as e:
            return None, repr(e)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


# Checks that a stopped loop would fail at once: a stop is more than twice the timeout.
LAG_HEALTH = "path=/,interval=200ms,timeout=150ms,rise=2,fall=2"
NOFILE = 64  # a descriptor budget a burst of BURST clients overruns at once
BURST = 80


class OwnStateTest(LbBase):
    def setUp(self):
        self.backends = start_backends(self, ["b1", "b2"])

    def assertNoNodeBlamed(self, lb):
        s = lb.series()
        for b in self.backends:
            self.assertEqual(s[f'lb_node_transitions_total{{node="{b.name}"}}'], 0.0,
                             f"{b.name} answered all along:\n{lb.log_text()[-3000:]}")
            self.assertEqual(s[f'lb_node_up{{node="{b.name}"}}'], 1.0)
        self.assertNotIn("is down", lb.log_text())

    def test_stalled_lb_blames_no_node(self):
        """The lb's processes stopped again and again for more than the check timeout (as a loop busy proxying
        would be): the nodes answered in time, so none goes down (a stopped loop used to run the expired check timer
        before the ready read, and logged every node "timed out" in the same millisecond)."""
        lb = start_lb(self, [*backend_flags(self.backends), "--workers", "2", "--health", LAG_HEALTH,
                             "--log-level", "warn"])
        self.lbs = (lb,)
        h.wait_until(lambda: len(lb.children()) == 2, 5.0 * h.SLOW, what="2 workers")
        for b in self.backends:
            h.wait_until(lambda: lb.series()[f'lb_node_checks_passed_total{{node="{b.name}"}}'] >= 2, 5.0 * h.SLOW,
                         what=f"checks of {b.name} passing")
        stop_and_go(lb.processes(), 12, 0.4, (0.0005, 0.001, 0.002, 0.004))
        time.sleep(1.0)  # the checks in flight at the last SIGCONT end
        self.assertNoNodeBlamed(lb)
        self.assertEqual({self.backend_of(lb.port, f"/after/{i}") for i in range(4)}, {"b1", "b2"})

    def test_admin_answers_while_workers_stalled(self):
        """/metrics and /health come from the health process, not from a worker's loop."""
        lb = start_lb(self, [*backend_flags(self.backends), "--workers", "2", "--health", CALM_HEALTH,
                             "--log-level", "warn"])
        self.lbs = (lb,)
        h.wait_until(lambda: len(lb.children()) == 2, 5.0 * h.SLOW, what="2 workers")
        workers = lb.children()
        try:
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            r = h.http_request(lb.admin_port, "GET", "/metrics", timeout=3.0 * h.SLOW)
            self.assertEqual(r.status, 200)
            self.assertIn(b"lb_node_up", r.body)
            self.assertEqual(h.http_request(lb.admin_port, "GET", "/health", timeout=3.0 * h.SLOW).status, 200)
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        self.assertEqual(len(lb.health_pids()), 1, "one health process beside the workers")

    def test_out_of_descriptors_blames_no_node(self):
        """A burst over the lb's own descriptor budget: requests that cannot get a node connection are answered 503
        naming the lb's limit, no node is marked down, the episode is logged once at each end, and a lone client
        after the burst is served at once."""
        lb = start_lb(self, [*backend_flags(self.backends), "--max-connections", "500", "--health",
                             "path=/,interval=2s,timeout=1s,rise=2,fall=3", "--log-level", "warn"],
                      preexec_fn=nofile_limit(NOFILE))
        self.lbs = (lb,)
        results = burst(lb.port, BURST, "/sleep?ms=300", 20.0 * h.SLOW)
        statuses = collections.Counter(status for status, _ in results)
        refused = [body for status, body in results if status == 503]
        self.assertEqual(set(statuses) - {200, 503}, set(), f"every client gets an answer: {results[:5]}")
        self.assertGreater(len(refused), 0, f"{BURST} clients must overrun {NOFILE} descriptors: {statuses}")
        for body in refused:
            self.assertIn(f"lb: out of file descriptors (limit {NOFILE}): request not forwarded".encode(), body)
        r, doc = get(lb.port, "/alone")
        self.served_by(r, doc, "a lone client right after the burst")
        self.assertNoNodeBlamed(lb)
        s = lb.series()
        self.assertEqual(s['lb_errors_total{kind="local_resource"}'], len(refused))
        self.assertGreaterEqual(s['lb_local_resource_errors_total{op="connect",kind="emfile"}'], len(refused))
        for b in self.backends:
            self.assertEqual(s[f'lb_node_connect_errors_total{{node="{b.name}"}}'], 0.0)
        time.sleep(1.2)  # a quiet second ends the episode at the next success
        self.backend_of(lb.port, "/later")
        log = lb.log_text()
        began = log.count(f"out of file descriptors (limit {NOFILE}): accepts pause")
        self.assertGreaterEqual(began, 1, log[-3000:])
        self.assertLess(began, len(refused), f"logged per episode, not per failure:\n{log[-3000:]}")
        self.assertIn("over after", log)
        self.assertIn(f"max-connections 500 does not fit the open-files limit {NOFILE}", log, "warned at start")

    def test_admin_out_of_descriptors_backs_off(self):
        """More idle admin connections than the health process has descriptors: its listener pauses (it used to
        retry the connection it could not take at once, forever: a busy loop), says so once, and answers again
        once they are gone."""
        lb = start_lb(self, [*backend_flags(self.backends), "--log-level", "warn"], preexec_fn=nofile_limit(NOFILE))
        self.lbs = (lb,)
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for _ in range(NOFILE + 4):  # the admin backlog (64) holds those it cannot take
            held.append(socket.create_connection((h.HOST, lb.admin_port), timeout=5.0))
        pid = lb.health_pids()[0]

        def cpu_seconds():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        time.sleep(0.3)  # it has taken what it can
        before = cpu_seconds()
        time.sleep(1.0)  # within the admin's 5 s timeout: the connections it holds stay
        self.assertLess(cpu_seconds() - before, 0.5, "the health process must not spin on the queued connection")
        self.assertIn("admin: accept: Too many open files", lb.log_text())
        for c in held:
            c.close()
        held.clear()
        h.wait_until(lambda: lb.admin_get("/health").status == 200, 3.0 * h.SLOW, what="the admin answering")
        self.assertEqual(lb.log_text().count("admin: accept: Too many open files"), 1, lb.log_text()[-3000:])

    def test_every_check_failing_still_routes(self):
        """Panic (Envoy's healthy_panic_threshold, 50% by default): every check fails (the check path answers
        500) yet the nodes serve clients, so the lb keeps routing over all of them, says so, and counts it; nodes
        taken out by the operator leave the share; with the threshold at 0, 503."""
        failing = "path=/status?code=500,interval=250ms,timeout=200ms,rise=2,fall=2"
        lb = start_lb(self, [*backend_flags(self.backends), "--health", failing, "--log-level", "warn"])
        self.lbs = (lb,)
        for b in self.backends:
            self.wait_node(lb, b.name, "up", 0.0)
        seen = {self.backend_of(lb.port, f"/panic/{i}", who=f"request {i} in panic") for i in range(6)}
        self.assertEqual(seen, {"b1", "b2"}, "balanced over every node, up or not")
        s = lb.series()
        self.assertEqual(s["lb_panic"], 1.0)
        self.assertEqual(s["lb_panic_episodes_total"], 1.0)
        self.assertGreaterEqual(s["lb_panic_routed_total"], 6.0)
        for b in self.backends:  # accepting clients does not bring a node back: only its checks could
            self.assertEqual(s[f'lb_node_transitions_total{{node="{b.name}"}}'], 1.0)
        self.assertIn("panic: 0 of 2 nodes in rotation up, under panic-threshold 50%", lb.log_text())
        r = lb.admin_get("/health")
        self.assertEqual(r.status, 503)
        self.assertIn(b"panic", r.body)
        for b in self.backends:  # out of rotation: out of the share too, so the panic is over
            self.assertEqual(lb.admin_post(f"/nodes/{b.name}/maint").status, 200)
        self.assertEqual(lb.series()["lb_panic"], 0.0)
        self.assertIn("panic over", lb.log_text())
        self.assertEqual(get(lb.port, "/maint")[0].status, 503)
        for b in self.backends:
            lb.admin_post(f"/nodes/{b.name}/ready")
        self.assertIn(self.backend_of(lb.port, "/again"), ("b1", "b2"))
        self.assertEqual(lb.series()["lb_panic_episodes_total"], 2.0)

        off = start_lb(self, [*backend_flags(self.backends), "--health", failing, "--panic-threshold", "0",
                              "--log-level", "warn"])
        self.lbs = (lb, off)
        for b in self.backends:
            self.wait_node(off, b.name, "up", 0.0)
        r, _ = get(off.port, "/off")
        self.assertEqual(r.status, 503, r)
        self.assertIn(b"no node is up", r.body)
        self.assertEqual(off.series()["lb_panic"], 0.0)
        self.assertNotIn("panic", off.log_text())

    def test_default_max_connections_from_open_files_limit(self):
        """Each connection may take 2 descriptors (client, node) in its worker, each worker has its own limit and
        keeps 32 for itself: W x (limit - 32) / 2 by default; a value that cannot fit is warned about."""
        flags = ["--check", "--listen", "127.0.0.1:18080", "--backend", "b1=127.0.0.1:9001"]
        cases = [([], nofile_limit(256), "max-connections 112 (1 worker(s) x (open-files limit 256 - 32 reserved)"),
                 (["--workers", "4"], nofile_limit(256), "max-connections 448 (4 worker(s)"),
                 ([], nofile_limit(256, 512), "max-connections 240 (1 worker(s) x (open-files limit 512"),
                 (["--max-connections", "112"], nofile_limit(256), "max-connections 112 (configured)")]
        for extra, limit, want in cases:
            with self.subTest(flags=extra, want=want):
                p = run_lb([*flags, *extra], preexec_fn=limit)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(want, p.stdout)
                self.assertEqual(p.stderr, "")
        p = run_lb([*flags, "--max-connections", "500"], preexec_fn=nofile_limit(256))
        self.assertEqual(p.returncode, 0, "a warning, not an error")
        self.assertIn("max-connections 500 (configured)", p.stdout)
        for part in ("max-connections 500 does not fit the open-files limit 256", "need 1032 per worker",
                     "ulimit -n 1032", "max-connections 112 or less"):
            self.assertIn(part, p.stderr)
        lb = start_lb(self, [*backend_flags(self.backends), "--health", CALM_HEALTH, "--log-level", "warn"],
                      preexec_fn=nofile_limit(256))
        self.lbs = (lb,)
        self.assertEqual(lb.series()["lb_max_connections"], 112.0)
        self.assertNotIn("does not fit", lb.log_text())


# ---------------------------------------------------------------------------------------------------------------
# 10: admin


class AdminTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1", "b2"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--sticky", "cookie", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def set_state(self, node, state):
        r = self.lb.admin_post(f"/nodes/{node}/{state}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, f"{node} {state}\n".encode())

    def test_maint_and_ready(self):
        lb = self.lb
        self.set_state("b1", "maint")
        self.addCleanup(lb.admin_post, "/nodes/b1/ready")
        self.assertEqual(lb.nodes()["b1"][1:], ("up", "maint"))
        self.assertEqual(lb.series()['lb_node_admin_state{node="b1",state="maint"}'], 1.0)
        for i in range(6):
            r, doc = get(lb.port, f"/new/{i}")
            self.assertEqual(self.served_by(r, doc), "b2", "a node in maintenance takes no new client")
            self.assertEqual(r.header("Set-Cookie"), "SRVID=b2; Path=/; HttpOnly")
        for i in range(4):
            r, doc = get(lb.port, f"/sticky/{i}", {"Cookie": "SRVID=b1"})
            self.assertEqual(self.served_by(r, doc), "b2", "b1's sticky clients are re-balanced")
            self.assertEqual(r.header("Set-Cookie"), "SRVID=b2; Path=/; HttpOnly")
        self.set_state("b1", "ready")
        self.assertEqual(lb.nodes()["b1"][1:], ("up", "ready"))
        self.assertIn("b1", {self.backend_of(lb.port) for _ in range(4)})
        r, doc = get(lb.port, "/", {"Cookie": "SRVID=b1"})
        self.assertEqual(self.served_by(r, doc), "b1")
        self.assertIsNone(r.header("Set-Cookie"))

    def test_drain_keeps_sticky_clients(self):
        lb = self.lb
        self.set_state("b1", "drain")
        self.addCleanup(lb.admin_post, "/nodes/b1/ready")
        self.assertEqual({self.backend_of(lb.port) for _ in range(6)}, {"b2"}, "a draining node takes no new client")
        for i in range(4):
            r, doc = get(lb.port, f"/sticky/{i}", {"Cookie": "SRVID=b1"})
            self.assertEqual(self.served_by(r, doc), "b1", "a draining node keeps its sticky clients")
        self.set_state("b1", "ready")
        self.assertIn("b1", {self.backend_of(lb.port) for _ in range(4)})

    def test_unknown_paths_404(self):
        for method, path in (("POST", "/nodes/zz/maint"), ("POST", "/nodes/b1/sleep"), ("GET", "/nope")):
            with self.subTest(method=method, path=path):
                r = h.http_request(self.lb.admin_port, method, path)
                self.assertEqual(r.status, 404)
        self.assertEqual(self.lb.nodes()["b1"][2], "ready")

    def test_absolute_form_targets(self):
        port = self.lb.admin_port
        r = h.http_request(port, "GET", f"http://{h.HOST}:{port}/health")
        self.assertEqual(r.status, 200, "routed by its path")
        self.assertEqual(r.body, b"2 of 2 nodes usable\n")
        r = h.http_request(port, "GET", f"http://{h.HOST}:{port}/nodes?x=1")
        self.assertEqual(r.status, 200)
        self.assertIn(b"b1 ", r.body)
        for target in ("ftp://x/health", "http:///health", "health"):
            with self.subTest(target=target):
                self.assertEqual(h.http_request(port, "GET", target).status, 400)

    def test_metrics_add_up(self):
        lb = self.lb
        before = lb.series()
        seen = collections.Counter()
        for i in range(15):
            seen[self.backend_of(lb.port, f"/m/{i}")] += 1
        with h.HttpConn(lb.port) as c:
            for i in range(10):
                seen[self.backend_of(lb.port, f"/ka/{i}", conn=c)] += 1
        after = lb.series()
        self.assertEqual(after["lb_requests_total"] - before["lb_requests_total"], 25)
        per_node = {b.name: after[f'lb_node_requests_total{{node="{b.name}"}}'] -
                    before[f'lb_node_requests_total{{node="{b.name}"}}'] for b in self.backends}
        self.assertEqual(sum(per_node.values()), 25, per_node)
        self.assertEqual(per_node, {k: float(v) for k, v in seen.items()}, "per-node counts match where requests went")
        for b in self.backends:
            self.assertEqual(after[f'lb_node_up{{node="{b.name}"}}'], 1.0)
            h.wait_until(lambda: lb.series()[f'lb_node_checks_passed_total{{node="{b.name}"}}'] > 0, 5.0 * h.SLOW,
                         what=f"a passed health check of {b.name} in /metrics")
        ok = sum(after[f'lb_node_responses_total{{node="{b.name}",class="2xx"}}'] -
                 before[f'lb_node_responses_total{{node="{b.name}",class="2xx"}}'] for b in self.backends)
        self.assertEqual(ok, 25)


# ---------------------------------------------------------------------------------------------------------------
# 11: malformed requests

BIG = b"x" * 20000
MALFORMED = [
    # (label, bytes, allowed statuses; None in the set: a close without an answer is acceptable too)
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     {400}),
    ("TE and CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
     {400}),
    ("two different CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", {400}),
    ("two equal CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", {400}),
    ("CL list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", {400}),
    ("CL not a number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", {400}),
    ("CL negative", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}),
    ("TE chunked, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
     {400, 501}),
    ("two TE fields", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n", {400, 501}),
    ("TE line starting with a space", b"POST / HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     {400}),
    ("TE gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {400, 501}),
    ("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     {400, 501}),
    ("TE xchunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", {400}),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", {400}),
    ("tab before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n", {400}),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: x\n\n", {400}),
    ("bare LF in a header", b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", {400}),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", {400}),
    ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", {400}),
    ("control char in a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", {400}),
    ("NUL in a header name", b"GET / HTTP/1.1\r\nHost: x\r\nX\x00A: 1\r\n\r\n", {400}),
    ("bad header name char", b"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", {400}),
    ("empty header name", b"GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", {400}),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", {400}),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("two equal Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", {400}),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", {400}),
    ("invalid method token", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("method with a slash", b"GET/ / HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("double space in request line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("no target", b"GET HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("extra word in request line", b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", {400}),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {400, 505}),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", {400, 505}),
    ("lowercase version", b"GET / http/1.1\r\nHost: x\r\n\r\n", {400, 505}),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", {400}),
    ("huge head", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + BIG + b"\r\n\r\n", {431}),
    ("huge head, no end", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + BIG, {431}),
    ("too many headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) +
     b"\r\n", {431}),
    ("malformed chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
     {400, None}),
    ("chunk size with a space", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3 \r\nabc\r\n0\r\n\r\n", {400, None}),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n", {400, None}),
    ("chunk data too long", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
     {400, None}),
]


class MalformedTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--health", CALM_HEALTH, "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_malformed_requests_rejected_and_closed(self):
        self.assertGreaterEqual(len(MALFORMED), 20)
        before = self.lb.series()
        for label, data, allowed in MALFORMED:
            with self.subTest(case=label):
                with h.HttpConn(self.lb.port, timeout=5.0 * h.SLOW) as c:
                    try:
                        c.send(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the lb may answer and close before it read everything
                    try:
                        r = c.read_response()
                    except h.ProtocolError as e:
                        self.assertIn(None, allowed, f"{label}: no response: {e}")
                        continue
                    self.assertIn(r.status, allowed, f"{label}: {r!r}")
                    self.assertIsNone(r.header("X-Backend"), f"{label}: must not reach a node: {r!r}")
                    self.assertEqual(r.header("Connection", "").lower(), "close", f"{label}: {r!r}")
                    self.assertTrue(r.body.startswith(str(r.status).encode()), f"{label}: body {r.body!r}")
                    self.assertTrue(c.wait_closed(5.0 * h.SLOW), f"{label}: the connection must be closed")
                    self.assertEqual(c.buf, b"", f"{label}: nothing may follow the error response")
        after = self.lb.series()
        rejected = sum(after[f'lb_errors_total{{kind="{k}"}}'] - before[f'lb_errors_total{{kind="{k}"}}']
                       for k in ("bad_request", "head_too_large"))
        self.assertGreaterEqual(rejected, len(MALFORMED) - 4, "each rejection is counted")
        self.assertTrue(self.lb.proc.alive(), self.lb.log_text()[-3000:])
        r, doc = get(self.lb.port, "/still-fine")
        self.assertEqual(self.served_by(r, doc), "b1")
        with h.HttpConn(self.lb.port) as c:
            for i in range(3):
                self.assertEqual(self.backend_of(self.lb.port, f"/ka/{i}", conn=c), "b1")

    def test_limits_are_exact(self):
        """Defaults: a head of max-head (16 KiB, its final CRLF CRLF included) and max-headers (100) fields passes;
        one byte or one field more is 431."""
        def head_of(size):
            start = b"GET /limit HTTP/1.1\r\nHost: x\r\nX-Pad: "
            return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"

        def fields(n):
            return (b"GET /fields HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(n - 1)) +
                    b"\r\n")

        for label, data, status in (("head of 16384 bytes", head_of(16384), 200),
                                    ("head of 16385 bytes", head_of(16385), 431),
                                    ("100 fields", fields(100), 200),
                                    ("101 fields", fields(101), 431)):
            with self.subTest(case=label):
                with h.HttpConn(self.lb.port) as c:
                    c.send(data)
                    r = c.read_response()
                    self.assertEqual(r.status, status, f"{label}: {r!r}")
                    if status == 200:
                        self.assertEqual(r.header("X-Backend"), "b1")

    def test_smuggled_request_never_reaches_a_node(self):
        """CL.TE: had the lb framed by Content-Length and a node by chunked (or the other way round), the bytes
        after the first body would become a second request. The lb must refuse the whole message."""
        before = self.lb.series()['lb_node_requests_total{node="b1"}']
        data = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        with h.HttpConn(self.lb.port) as c:
            c.send(data)
            r = c.read_response()
            self.assertEqual(r.status, 400)
            self.assertTrue(c.wait_closed(5.0 * h.SLOW))
            self.assertEqual(c.buf, b"", "no second response")
        self.assertEqual(self.lb.series()['lb_node_requests_total{node="b1"}'], before)


class FakeNode(h.ThreadedServer):
    """A node that answers every request head with canned bytes (self.reply), then closes: for broken responses."""

    def __init__(self):
        self.reply = b""
        super().__init__()

    def serve(self, conn):
        with conn:
            conn.settimeout(5.0)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                if self.reply:
                    conn.sendall(self.reply)
            except OSError:
                pass


BROKEN_RESPONSES = [
    ("garbage", b"garbage\r\n\r\n"),
    ("differing Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("Content-Length and chunked", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n"),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nhi"),
    ("status 099", b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nhi"),
    ("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
    ("101 nobody asked for", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    ("close without an answer", b""),
]


class BrokenNodeTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.node = FakeNode()
        cls.addClassCleanup(cls.node.close)
        cls.lb = start_lb(cls, ["--backend", f"bad={h.HOST}:{cls.node.port}", "--health", "off",
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_broken_responses_502(self):
        before = self.lb.series()['lb_errors_total{kind="bad_response"}']
        for label, reply in BROKEN_RESPONSES:
            with self.subTest(case=label):
                self.node.reply = reply
                with h.HttpConn(self.lb.port, timeout=5.0 * h.SLOW) as c:
                    r = c.request("GET", f"/{label.replace(' ', '-')}")
                    self.assertEqual(r.status, 502, f"{label}: {r!r}")
                    self.assertTrue(r.body.startswith(b"502"), r.body)
                    self.assertTrue(c.wait_closed(5.0 * h.SLOW), f"{label}: closed after the 502")
                    self.assertEqual(c.buf, b"", f"{label}: none of the node's bytes may follow")
        after = self.lb.series()['lb_errors_total{kind="bad_response"}']
        self.assertEqual(after - before, len(BROKEN_RESPONSES))

    def test_truncated_body_closes(self):
        self.node.reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
        with h.HttpConn(self.lb.port, timeout=5.0 * h.SLOW) as c:
            c.send(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
            with self.assertRaises(h.ProtocolError, msg="the client must see the body cut short by a close"):
                c.read_response()
            self.assertTrue(c.eof)
            self.assertTrue(c.buf.endswith(b"0123456789"), c.buf)


# ---------------------------------------------------------------------------------------------------------------
# 12: timeouts


class TimeoutTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.backends = start_backends(cls, ["b1"])
        cls.lb = start_lb(cls, [*backend_flags(cls.backends), "--timeout", "head=1s", "--timeout", "client=1s",
                                "--health", CALM_HEALTH, "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def test_slowloris_408(self):
        head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"  # 18 s at 5 bytes/s
        sock = socket.create_connection((h.HOST, self.lb.port), timeout=5.0)
        self.addCleanup(sock.close)
        sent, got = 0, b""
        dl = h.Deadline(10.0 * h.SLOW)
        while sent < len(head) and not dl.expired():
            sock.sendall(head[sent:sent + 1])
            sent += 1
            sock.settimeout(0.2)
            try:
                got = sock.recv(4096)
            except socket.timeout:
                continue
            break
        self.assertTrue(got, f"no answer after {sent} of {len(head)} head bytes")
        self.assertLess(sent, len(head), "the lb must give up before the head could be finished")
        c = conn_from_socket(sock, 5.0 * h.SLOW)
        c.buf = got
        r = c.read_response()
        self.assertEqual(r.status, 408, r)
        self.assertTrue(c.wait_closed(5.0 * h.SLOW), "closed after the 408")
        self.assertTrue(self.lb.proc.alive())

    def test_idle_keepalive_closed(self):
        with h.HttpConn(self.lb.port) as c:
            self.assertEqual(self.backend_of(self.lb.port, "/", conn=c), "b1")
            self.assertTrue(c.wait_closed(6.0 * h.SLOW), "an idle keep-alive connection is closed at timeout client")
            self.assertEqual(c.buf, b"", "silently: no 408 for a connection between requests")

    def test_silent_connection_closed(self):
        with h.HttpConn(self.lb.port) as c:
            self.assertTrue(c.wait_closed(6.0 * h.SLOW), "a connection that never sends is closed")
            self.assertEqual(c.buf, b"")

    def test_server_timeout_504(self):
        """A node that accepts (the kernel's backlog) but never answers: 504 at timeout server."""
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind((h.HOST, 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        lb = start_lb(self, ["--backend", f"mute={h.HOST}:{port}", "--timeout", "server=1s", "--health", "off",
                             "--log-level", "warn"])
        self.lbs = (self.lb, lb)
        with h.HttpConn(lb.port, timeout=10.0 * h.SLOW) as c:
            r = c.request("GET", "/")
            self.assertEqual(r.status, 504, r)
            self.assertTrue(c.wait_closed(5.0 * h.SLOW))
        self.assertEqual(lb.series()['lb_errors_total{kind="server_timeout"}'], 1.0)


    def test_abort_on_close(self):
        """A client that closes while its request waits (a held long-poll): with --abort-on-close the node's
        connection goes at once and counts as client_abort; without it, the node's connection stays open."""
        for abort in (True, False):
            with self.subTest(abort_on_close=abort):
                mute = socket.socket()
                self.addCleanup(mute.close)
                mute.bind((h.HOST, 0))
                mute.listen(16)
                flags = ["--backend", f"mute={h.HOST}:{mute.getsockname()[1]}", "--timeout", "server=30s",
                         "--health", "off", "--log-level", "warn"] + (["--abort-on-close"] if abort else [])
                lb = start_lb(self, flags)
                self.lbs = (self.lb, lb)
                client = socket.create_connection((h.HOST, lb.port), timeout=5.0)
                client.sendall(b"GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n\r\n")
                mute.settimeout(5.0 * h.SLOW)
                node_side, _ = mute.accept()
                self.addCleanup(node_side.close)
                got = b""
                while b"\r\n\r\n" not in got:  # the request reached the node, which never answers
                    chunk = node_side.recv(4096)
                    self.assertTrue(chunk, "the lb closed before the client did")
                    got += chunk
                client.close()
                node_side.settimeout(1.0 * h.SLOW)
                if abort:
                    self.assertEqual(node_side.recv(4096), b"", "the node's connection is closed with the client's")
                    h.wait_until(lambda: lb.series().get('lb_errors_total{kind="client_abort"}') == 1.0,
                                 5.0 * h.SLOW, what="client_abort counted")
                else:
                    with self.assertRaises(socket.timeout):
                        node_side.recv(4096)  # still open: the answer would be waited for


# ---------------------------------------------------------------------------------------------------------------
# 13: WebSocket through the lb, refserver nodes on one Redis


class WebSocketTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.nodes = h.start_nodes(cls, 2, cls.redis.url)
        cls.lb = start_lb(cls, [*[f for n in cls.nodes for f in ("--backend", f"{n.node_id}={h.HOST}:{n.port}")],
                                "--sticky", "cookie", "--timeout", "client=500ms", "--health", CALM_HEALTH,
                                "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def tearDown(self):
        super().tearDown()
        for n in self.nodes:
            self.assertTrue(n.proc.alive(), f"{n.node_id} died:\n{n.log_text()[-2000:]}")

    def recv_exactly_once(self, client, payload, who):
        try:
            self.assertEqual(client.recv_text(5.0 * h.SLOW), payload, who)
        except (TimeoutError, h.ConnectionClosed) as e:
            self.fail(f"{who}: expected {payload!r}, got {e!r}")

    def test_ten_clients_spread_and_broadcast(self):
        clients = [h.ws_connect(self, self.lb.port, "/ws") for _ in range(10)]
        where = []
        for i, c in enumerate(clients):
            node = c.response.header("X-Node-Id")
            self.assertIn(node, ("n1", "n2"), f"client {i}: 101 without the node's X-Node-Id: {c.response!r}")
            self.assertEqual(c.response.header("Set-Cookie"), f"SRVID={node}; Path=/; HttpOnly",
                             f"client {i}: the lb's cookie on the 101")
            where.append(node)
        counts = collections.Counter(where)
        self.assertEqual(set(counts), {"n1", "n2"}, counts)
        self.assertLessEqual(abs(counts["n1"] - counts["n2"]), 1, counts)
        h.wait_until(lambda: sum(self.lb.series()[f'lb_node_tunnels{{node="{n}"}}'] for n in ("n1", "n2")) == 10,
                     5.0 * h.SLOW, what="10 open tunnels in /metrics")
        self.redis.wait_subscribers("wsh#all", 2)
        payload = f"hello {uuid.uuid4()}"
        clients[0].send_text(payload)
        for i, c in enumerate(clients[1:], 1):
            self.recv_exactly_once(c, payload, f"client {i} on {where[i]}")
        for i, c in enumerate(clients):
            self.assertEqual(c.recv_nothing(QUIET), [], f"client {i}: a duplicate or an echo")

    def test_idle_tunnel_outlives_client_timeout(self):
        room = f"idle-{uuid.uuid4().hex[:8]}"
        a = h.ws_connect(self, self.lb.port, f"/ws?room={room}", headers={"Cookie": "SRVID=n1"})
        b = h.ws_connect(self, self.lb.port, f"/ws?room={room}", headers={"Cookie": "SRVID=n2; x=1"})
        self.assertEqual(a.response.header("X-Node-Id"), "n1")
        self.assertEqual(b.response.header("X-Node-Id"), "n2")
        self.assertIsNone(a.response.header("Set-Cookie"))
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        time.sleep(1.5)  # three times --timeout client: a tunnel lives by timeout tunnel
        a.send_text("after a quiet while")
        self.recv_exactly_once(b, "after a quiet while", "b on n2")
        b.send_text("and back")
        self.recv_exactly_once(a, "and back", "a on n1")

    def test_large_message_across_nodes(self):
        room = f"big-{uuid.uuid4().hex[:8]}"
        a = h.ws_connect(self, self.lb.port, f"/ws?room={room}", headers={"Cookie": "SRVID=n1"})
        b = h.ws_connect(self, self.lb.port, f"/ws?room={room}", headers={"Cookie": "SRVID=n2"})
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        big = os.urandom(512 << 10)
        a.send_binary(big)
        op, data = b.recv_message(10.0 * h.SLOW)
        self.assertEqual(op, OP_BINARY)
        self.assertTrue(data == big, "512 KiB through the lb, n1, Redis, n2 and the lb again")

    def test_sigterm_ends_tunnels_after_grace(self):
        lb = start_lb(self, [*[f for n in self.nodes for f in ("--backend", f"{n.node_id}={h.HOST}:{n.port}")],
                             "--timeout", "grace=1s", "--health", "off", "--log-level", "warn"])
        c = h.ws_connect(self, lb.port, f"/ws?room=grace-{uuid.uuid4().hex[:8]}")
        lb.proc.signal(signal.SIGTERM)
        try:
            rc = lb.proc.wait(10.0 * h.SLOW)
        except TimeoutError:
            self.fail(f"lb still running 10 s after SIGTERM with grace 1s:\n{lb.log_text()[-3000:]}")
        self.assertEqual(rc, 0, lb.log_text()[-3000:])
        try:
            self.assertTrue(c.wait_eof(5.0 * h.SLOW), "the tunnel is closed when the grace time is over")
        except h.ProtocolError:
            pass  # a close frame from the node is fine too
        self.assertEqual(lb.sanitizer_reports(), [])

    def test_close_handshake_through_tunnel(self):
        c = h.ws_connect(self, self.lb.port, f"/ws?room=close-{uuid.uuid4().hex[:8]}")
        c.send_close(1000)
        self.assertEqual(c.recv_close(5.0 * h.SLOW), 1000)
        self.assertTrue(c.wait_eof(5.0 * h.SLOW), "the tunnel ends when the node closes")


# ---------------------------------------------------------------------------------------------------------------
# 14: TLS termination


class TlsTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wsh-lbtls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.tls = h.make_tls_material(cls.dir)
        cls.backends = start_backends(cls, ["b1", "b2"])
        port, admin = h.free_port(), h.free_port()
        conf = os.path.join(cls.dir, "lb.conf")
        with open(conf, "w") as f:
            f.write(f"# TLS termination\nlisten {h.HOST}:{port} tls cert={cls.tls['cert']} key={cls.tls['key']}\n"
                    f"admin {h.HOST}:{admin}\n")
            for b in cls.backends:
                f.write(f"backend {b.name} {b.addr}\n")
            f.write("sticky cookie\nhealth path=/ interval=1s timeout=800ms\n")
        cls.lb = start_lb(cls, ["--log-level", "warn"], config=conf, port=port, admin_port=admin)
        cls.lbs = (cls.lb,)

    def tls_conn(self, alpn=("h2", "http/1.1")):
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection((h.HOST, self.lb.port), timeout=10.0 * h.SLOW)
        s = ctx.wrap_socket(raw, server_hostname=h.HOST)
        c = conn_from_socket(s, 10.0 * h.SLOW)
        self.addCleanup(c.close)
        return s, c

    def test_https_request(self):
        s, c = self.tls_conn()
        self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
        self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
        names = []
        for i in range(4):
            r, doc = get(self.lb.port, f"/tls/{i}", conn=c)
            names.append(self.served_by(r, doc, f"request {i} over TLS"))
            self.assertEqual(fwd(doc, "X-Forwarded-Proto"), ["https"])
            self.assertEqual(fwd(doc, "X-Forwarded-For"), ["127.0.0.1"])
            self.assertEqual(r.header("Set-Cookie"), f"SRVID={names[-1]}; Path=/; HttpOnly")
        self.assertEqual(set(names), {"b1", "b2"}, "keep-alive over TLS, each request balanced")

    def test_https_large_body_both_ways(self):
        s, c = self.tls_conn()
        body = os.urandom(1 << 20)
        r, doc = get(self.lb.port, "/big", {"Cookie": "SRVID=b2"}, conn=c, method="POST", body=body)
        self.assertEqual(self.served_by(r, doc), "b2")
        self.assertEqual(doc["body_len"], len(body))
        self.assertEqual(doc["body_sha256"], sha(body))
        big_header = "v" * 8000  # a large response: the JSON echo carries it back
        r, doc = get(self.lb.port, "/echo", {"X-Big": big_header}, conn=c)
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "X-Big"), [big_header])

    def test_https_large_response(self):
        s, c = self.tls_conn()
        n = 4 << 20
        c.send(b"GET /bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        time.sleep(0.5)  # the lb meets a full socket buffer: partial TLS writes, retried
        r = c.read_response(timeout=30.0 * h.SLOW)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), n)
        self.assertTrue(r.body == pattern(n), "the 4 MiB body arrives intact over TLS")
        r, doc = get(self.lb.port, "/after-big", conn=c)
        self.served_by(r, doc)

    def test_wss_tunnel(self):
        node = h.start_refserver(self, "r1", "none")
        port = h.free_port()
        conf = os.path.join(self.dir, "wss.conf")
        with open(conf, "w") as f:
            f.write(f"listen {h.HOST}:{port} tls cert={self.tls['cert']} key={self.tls['key']}\n"
                    f"backend r1 {h.HOST}:{node.port}\nsticky cookie\nhealth off\n")
        lb = start_lb(self, ["--log-level", "warn"], config=conf, port=port, admin=False)
        self.lbs = (self.lb, lb)
        room = f"wss-{uuid.uuid4().hex[:8]}"
        a = wss_connect(self, port, self.tls["ca"], f"/ws?room={room}")
        b = wss_connect(self, port, self.tls["ca"], f"/ws?room={room}")
        for c in (a, b):
            self.assertEqual(c.response.header("X-Node-Id"), "r1")
            self.assertEqual(c.response.header("Set-Cookie"), "SRVID=r1; Path=/; HttpOnly")
        big = os.urandom(512 << 10)
        a.send_binary(big)
        op, data = b.recv_message(10.0 * h.SLOW)
        self.assertEqual(op, OP_BINARY)
        self.assertTrue(data == big, "512 KiB through two TLS tunnels intact")
        b.send_text("back over wss")
        self.assertEqual(a.recv_text(5.0 * h.SLOW), "back over wss")
        a.send_close(1000)
        self.assertEqual(a.recv_close(5.0 * h.SLOW), 1000)

    def test_without_alpn(self):
        s, c = self.tls_conn(alpn=None)
        self.assertIsNone(s.selected_alpn_protocol())
        r, doc = get(self.lb.port, "/", conn=c)
        self.served_by(r, doc)
        self.assertEqual(fwd(doc, "X-Forwarded-Proto"), ["https"])

    def test_plain_http_on_tls_port_refused(self):
        with h.HttpConn(self.lb.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(c.wait_closed(10.0 * h.SLOW), "plain HTTP on a TLS listener is closed")
            self.assertNotIn(b"X-Backend", c.buf)
        r, doc = get(self.lb.port, "/", conn=self.tls_conn()[1])
        self.served_by(r, doc)


# ---------------------------------------------------------------------------------------------------------------
# 15: configuration checks


def run_lb(args, timeout=10.0, preexec_fn=None):
    return subprocess.run([LB, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout * h.SLOW, preexec_fn=preexec_fn)


class ConfigCheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = h.make_tempdir(self)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertNoCrash(self, p):
        for bad in ("Traceback", "Segmentation", "core dumped", *LB_MARKERS):
            self.assertNotIn(bad, p.stderr + p.stdout)
        self.assertGreaterEqual(p.returncode, 0, f"killed by signal {-p.returncode}")

    def test_check_reports_every_error_with_its_line(self):
        path = self.write("bad.conf", "# a config with three mistakes\n"
                                      "listen 127.0.0.1:18080\n"
                                      "backend b1 127.0.0.1:99999\n"
                                      "backend b2 127.0.0.1:9002\n"
                                      "\n"
                                      "balance nonsense\n"
                                      "timeout forever 1s\n"
                                      "sticky cookie\n")
        p = run_lb(["--check", "-c", path])
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        for line in (3, 6, 7):
            self.assertEqual(len([ln for ln in lines if ln.startswith(f"{path}:{line}:")]), 1,
                             f"line {line} must be reported once:\n{p.stderr}")
        self.assertEqual(len(lines), 3, f"exactly the three mistakes:\n{p.stderr}")
        for ln in lines:
            self.assertIn("bad.conf:", ln)
        self.assertIn("99999", lines[0])
        self.assertIn("nonsense", lines[1])
        self.assertIn("forever", lines[2])

    def test_check_good_file(self):
        path = self.write("good.conf", "# fine\nlisten 127.0.0.1:18080\nadmin 127.0.0.1:18081\n"
                                       "backend b1 127.0.0.1:9001 weight=2\nbackend b2 127.0.0.1:9002 cookie=x2\n"
                                       "balance param:room\nsticky cookie:LB\nhealth path=/ interval=2s timeout=1s\n"
                                       "timeout head 5s\nworkers 2\nmax-head 32k\n")
        p = run_lb(["--check", "-c", path])
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok", p.stdout)
        self.assertEqual(p.stderr.strip(), "")

    def test_check_resolve_interval(self):
        path = self.write("ri.conf", "listen 127.0.0.1:18080\nbackend b1 localhost:9001\nresolve-interval 0\n"
                                     "resolve-interval abc\n")
        p = run_lb(["--check", "-c", path])
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 2, p.stderr)
        self.assertIn(f"{path}:3: resolve-interval: must be more than 0 (or off)", lines[0])
        self.assertIn(f"{path}:4: resolve-interval: 'abc' is not a duration", lines[1])
        p = run_lb(["--check", "--listen", "127.0.0.1:18080", "--backend", "b1=localhost:9001", "--backend",
                    "b2=127.0.0.1:9002", "--resolve-interval", "2s"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("2 node(s); 1 by host name, resolved again every 2s", p.stdout)
        p = run_lb(["--check", "--listen", "127.0.0.1:18080", "--backend", "b1=localhost:9001", "--resolve-interval",
                    "off"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("resolved at start-up and SIGHUP only", p.stdout)

    def test_whole_config_errors(self):
        path = self.write("dup.conf", "listen 127.0.0.1:18080\nbackend b1 127.0.0.1:9001\nbackend b1 127.0.0.1:9002\n")
        p = run_lb(["--check", "-c", path])
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 2)
        self.assertIn("b1", p.stderr)
        p = run_lb(["--check", "-c", os.path.join(self.dir, "missing.conf")])
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing.conf", p.stderr)

    def test_bad_flags(self):
        ok = ["--listen", "127.0.0.1:18080", "--backend", "b1=127.0.0.1:9001"]
        cases = [
            ("--balance nonsense", [*ok, "--balance", "nonsense"], "nonsense"),
            ("--backend without port", [*ok, "--backend", "b2=127.0.0.1"], "127.0.0.1"),
            ("--sticky nonsense", [*ok, "--sticky", "sometimes"], "sometimes"),
            ("--workers 0", [*ok, "--workers", "0"], "workers"),
            ("--timeout bad duration", [*ok, "--timeout", "head=soon"], "soon"),
            ("--timeout bad kind", [*ok, "--timeout", "lunch=1s"], "lunch"),
            ("--health bad", [*ok, "--health", "interval=1s,timeout=2s"], "timeout"),
            ("--log-level bad", [*ok, "--log-level", "loud"], "loud"),
            ("unknown flag", [*ok, "--bogus"], "help"),
            ("stray argument", [*ok, "extra"], "extra"),
            ("--listen without port", ["--listen", "127.0.0.1", "--backend", "b1=127.0.0.1:9001"], "127.0.0.1"),
        ]
        for label, args, word in cases:
            with self.subTest(case=label):
                p = run_lb(args)
                self.assertNoCrash(p)
                self.assertEqual(p.returncode, 2, f"{label}: {p.stderr}")
                lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
                if label == "unknown flag":  # getopt's line, then ours
                    self.assertLessEqual(len(lines), 2, p.stderr)
                elif label == "--listen without port":  # the flag's error, then "no listen address" as a result
                    self.assertLessEqual(len(lines), 2, p.stderr)
                    self.assertIn(word, lines[0])
                else:
                    self.assertEqual(len(lines), 1, f"{label}: one clear line:\n{p.stderr}")
                self.assertIn(word, p.stderr)
                self.assertEqual(p.stdout, "")
        p = run_lb(["--listen", "127.0.0.1:18080", "--backend", "127.0.0.1"])  # the only backend is bad
        self.assertNoCrash(p)
        self.assertEqual(p.returncode, 2)
        self.assertIn("expected host:port", p.stderr.splitlines()[0])
        p = run_lb([])
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage", p.stderr)


# ---------------------------------------------------------------------------------------------------------------
# 16: SIGHUP


def listening_sockets(port):
    """How many sockets are in LISTEN on 127.0.0.1:port (SO_REUSEPORT groups have one per bind), from /proc/net/tcp."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "0A" and local == f"0100007F:{port:04X}":
                n += 1
    return n


class ReloadTest(LbBase):
    def setUp(self):
        self.dir = h.make_tempdir(self)
        self.redis = h.start_redis(self)
        # the old tunnel stays quiet through the whole reload: no ping or idle close from the node meanwhile
        self.n1, self.n2 = h.start_nodes(self, 2, self.redis.url, ["--ping-interval", "600", "--idle-timeout", "900"])
        self.port, self.admin_port = h.free_port(), h.free_port()
        self.conf = os.path.join(self.dir, "lb.conf")
        self.write_conf([self.n1])
        self.lb = start_lb(self, ["--log-level", "info"], config=self.conf, port=self.port,
                           admin_port=self.admin_port)
        self.lbs = (self.lb,)

    def write_conf(self, nodes, extra=""):
        # grace 60s: the old generation's tunnels must outlive everything this test waits for
        text = (f"listen {h.HOST}:{self.port}\nadmin {h.HOST}:{self.admin_port}\nsticky cookie\n"
                f"health path=/ interval=1s timeout=800ms\ntimeout grace 60s\n" +
                "".join(f"backend {n.node_id} {h.HOST}:{n.port}\n" for n in nodes) + extra)
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def node_of_get(self, timeout=5.0):
        r = h.http_request(self.port, "GET", "/", timeout=timeout * h.SLOW)
        if r.status != 200:
            raise h.ProtocolError(f"GET / through the lb: {r!r}")
        return r.header("X-Node-Id")

    def reload(self, nodes):
        """Rewrite the config with nodes, SIGHUP, and wait until the new generation answers. Tolerant of
        connections lost meanwhile (short timeouts, retried): test_every_new_connection_served_after_reload is the
        strict check of those."""
        before = set(self.lb.children())
        self.write_conf(nodes)
        self.lb.proc.signal(signal.SIGHUP)
        h.wait_until(lambda: len(set(self.lb.children()) - before) >= 1, 10.0 * h.SLOW,
                     what="a new generation of workers")
        names = [n.node_id for n in nodes]

        def nodes_listed():
            r = h.http_request(self.admin_port, "GET", "/nodes", timeout=0.5 * h.SLOW)
            return r.status == 200 and [ln.split()[0] for ln in r.body.decode().splitlines()] == names

        h.wait_until(nodes_listed, 15.0 * h.SLOW, what=f"/nodes to list {names} after SIGHUP")
        return before

    def test_reload_keeps_tunnels_and_applies_new_config(self):
        room = f"hup-{uuid.uuid4().hex[:8]}"
        old = h.ws_connect(self, self.port, f"/ws?room={room}")
        self.assertEqual(old.response.header("X-Node-Id"), "n1")
        self.assertEqual({self.node_of_get() for _ in range(4)}, {"n1"})
        old_workers = self.reload([self.n1, self.n2])
        self.assertTrue(old_workers & set(self.lb.children()), "the old worker stays while its tunnel is open")
        # new requests follow the new config (answers collected with short, retried attempts)
        seen = collections.Counter()
        dl = h.Deadline(20.0 * h.SLOW)
        while sum(seen.values()) < 10 and not dl.expired():
            try:
                seen[self.node_of_get(timeout=0.5)] += 1
            except (OSError, h.ProtocolError):
                pass
        self.assertEqual(sum(seen.values()), 10, f"10 answers after the reload: {seen}")
        self.assertEqual(set(seen), {"n1", "n2"}, f"new requests follow the new config: {seen}")

        def connect_new():
            c = h.WSClient.connect(self.port, f"/ws?room={room}", headers={"Cookie": "SRVID=n2"}, timeout=1.0 * h.SLOW)
            self.addCleanup(c.close)
            return c

        new = h.wait_until(connect_new, 15.0 * h.SLOW, what="a WebSocket client through the reloaded lb")
        self.assertEqual(new.response.header("X-Node-Id"), "n2")
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        old.send_text("from before the reload")
        self.assertEqual(new.recv_text(5.0 * h.SLOW), "from before the reload")
        new.send_text("from after the reload")
        self.assertEqual(old.recv_text(5.0 * h.SLOW), "from after the reload")
        self.assertEqual(old.recv_nothing(QUIET), [])
        self.assertEqual(new.recv_nothing(QUIET), [])
        self.assertTrue(self.lb.proc.alive())
        # the old tunnel ends: the old generation's worker goes away
        old.send_close(1000)
        self.assertEqual(old.recv_close(5.0 * h.SLOW), 1000)
        self.assertTrue(old.wait_eof(5.0 * h.SLOW), "the node's close passes through the old tunnel")
        old.close()
        h.wait_until(lambda: not (old_workers & set(self.lb.children())), 10.0 * h.SLOW,
                     what="the old worker to exit once its last tunnel closed")

    def test_every_new_connection_served_after_reload(self):
        """Once the old generation is gone, its listening sockets must be gone too: a listener left open in a
        SO_REUSEPORT group takes its share of new connections and nobody ever accepts them."""
        self.assertEqual(listening_sockets(self.port), 1)
        old_workers = self.reload([self.n1, self.n2])
        h.wait_until(lambda: not (old_workers & set(self.lb.children())), 10.0 * h.SLOW,
                     what="the old (idle) generation to exit")
        self.assertEqual(listening_sockets(self.port), 1,
                         "one listening socket for the one worker; the old generation's must be closed")
        self.assertEqual(listening_sockets(self.admin_port), 1, "the same for the admin listener")
        hung = []
        for i in range(20):
            try:
                self.node_of_get(timeout=3.0)
            except (OSError, h.ProtocolError) as e:
                hung.append(f"connection {i}: {e!r}")
        self.assertEqual(hung, [], f"{len(hung)} of 20 connections after the reload got no answer")

    def test_bad_config_keeps_running_one(self):
        self.write_conf([self.n1], extra="balance sideways\n")
        self.lb.proc.signal(signal.SIGHUP)
        h.wait_until(lambda: "keeping the running one" in self.lb.log_text(), 10.0 * h.SLOW,
                     what="the reload to be refused")
        self.assertIn("balance", self.lb.log_text())
        self.assertEqual({self.node_of_get() for _ in range(4)}, {"n1"})
        self.assertEqual(list(self.lb.nodes()), ["n1"])


# ---------------------------------------------------------------------------------------------------------------
# 16b: backend host names resolved again while running

# In a private mount namespace, /etc/hosts and /etc/nsswitch.conf are the files given as $0 and $1 (bind mounts
# of this test's files, so the name answers only what the test writes, never a real DNS server); then the command
# after them is exec'd, so unshare's PID becomes the lb's own.
NAMESPACE_SCRIPT = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/nsswitch.conf && shift && exec "$@"'
RESOLVE_INTERVAL = 0.3


def free_port_on(*hosts):
    """A TCP port that was free on every one of hosts a moment ago."""
    for _ in range(50):
        port = h.free_port()
        socks = []
        try:
            for host in hosts:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no port free on all of {hosts}")


def namespace_hosts_unavailable(tmpdir):
    """Why the lb cannot run with its own /etc/hosts here (unshare or mount refused, not root...), or None."""
    hosts, nss = os.path.join(tmpdir, "hosts"), os.path.join(tmpdir, "nsswitch.conf")
    with open(hosts, "w") as f:
        f.write("127.0.0.5 wsh-probe-node\n")
    with open(nss, "w") as f:
        f.write("hosts: files\n")
    argv = ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, hosts, nss, "getent", "hosts", "wsh-probe-node"]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{' '.join(argv[:3])} ...` could not run: {e}"
    if p.returncode != 0 or "127.0.0.5" not in p.stdout:
        return (f"a private /etc/hosts needs `unshare -m` and `mount --bind` (root or CAP_SYS_ADMIN); the probe "
                f"exited {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}")
    return None


class ResolveTest(LbBase):
    """A backend given by name (node-a) follows its name to a new address while the lb runs. The lb runs in a mount
    namespace whose /etc/hosts is a file the test rewrites in place (same inode: the bind mount keeps pointing at
    it); b1 and b2 listen on one port of two loopback addresses, so only the address tells them apart."""

    @classmethod
    def setUpClass(cls):
        why = namespace_hosts_unavailable(h.make_tempdir(cls))
        if why:
            raise unittest.SkipTest(why)

    def setUp(self):
        self.dir = h.make_tempdir(self)
        port = free_port_on("127.0.0.2", "127.0.0.3")
        self.b1 = start_backend(self, "b1", port, host="127.0.0.2")
        self.b2 = start_backend(self, "b2", port, host="127.0.0.3")
        self.hosts = os.path.join(self.dir, "hosts")
        nss = os.path.join(self.dir, "nsswitch.conf")
        with open(self.hosts, "w") as f:
            f.write("127.0.0.2 node-a\n")
        with open(nss, "w") as f:
            f.write("hosts: files\n")
        self.wrap = ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, self.hosts, nss]
        self.port = port
        self.changes = 'lb_node_address_changes_total{node="a"}'

    def start(self, interval=f"{RESOLVE_INTERVAL}s"):
        self.lb = start_lb(self, ["--backend", f"a=node-a:{self.port}", "--resolve-interval", interval,
                                  "--health", CALM_HEALTH, "--log-level", "info"], wrap=self.wrap)
        self.lbs = (self.lb,)
        # the PID held is the lb master's (everything exec'd), so the cleanup's SIGTERM reaches the lb itself
        self.assertEqual(os.path.realpath(f"/proc/{self.lb.pid}/exe"), os.path.realpath(LB))
        return self.lb

    def point_at(self, text):
        """Rewrite the hosts file in place: a new file renamed over it would leave the bind mount on the old one."""
        with open(self.hosts, "r+") as f:
            f.truncate(0)
            f.write(text)

    def intervals(self, n):
        time.sleep(n * RESOLVE_INTERVAL * h.SLOW)

    def test_name_follows_new_address(self):
        lb = self.start()
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(4)}, {"b1"})
        self.assertEqual(lb.series()[self.changes], 0)
        self.assertEqual(lb.nodes(connected_to=True), {"a": self.b1.addr})
        held = h.HttpConn(lb.port)  # a keep-alive connection with its node connection open, to b1
        self.addCleanup(held.close)
        self.assertEqual(self.backend_of(lb.port, conn=held), "b1")
        self.point_at("127.0.0.3 node-a\n")
        h.wait_until(lambda: self.backend_of(lb.port, who="a request after the change") == "b2",
                     10 * RESOLVE_INTERVAL * h.SLOW, what="new connections to reach b2")
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(6)}, {"b2"})
        self.assertEqual(self.backend_of(lb.port, conn=held, who="the connection opened before"), "b1",
                         "an existing node connection is not moved")
        self.assertEqual(lb.series()[self.changes], 1)
        self.assertEqual(lb.nodes(connected_to=True), {"a": self.b2.addr})
        self.assertEqual(lb.nodes()["a"][0], f"node-a:{self.b1.port}", "the address as written stays")
        lines = [ln for ln in lb.log_text().splitlines() if "now resolves to" in ln]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("node a: node-a now resolves to 127.0.0.3 (was 127.0.0.2)", lines[0])
        # the name now has both addresses: the current one is kept, whichever getaddrinfo lists first (no flapping)
        self.point_at("127.0.0.2 node-a\n127.0.0.3 node-a\n")
        self.intervals(4)
        self.point_at("127.0.0.3 node-a\n127.0.0.2 node-a\n")
        self.intervals(4)
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(4)}, {"b2"})
        self.assertEqual(lb.series()[self.changes], 1)

    def test_name_that_stops_resolving_keeps_last_address(self):
        lb = self.start()
        self.assertEqual(self.backend_of(lb.port), "b1")
        self.point_at("127.0.0.9 someone-else\n")
        h.wait_until(lambda: "cannot resolve node-a" in lb.log_text(), 10 * RESOLVE_INTERVAL * h.SLOW,
                     what="the failed lookup in the log")
        self.intervals(5)  # several more failed lookups: still one line
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(4)}, {"b1"},
                         "the last good address serves on")
        lines = [ln for ln in lb.log_text().splitlines() if "cannot resolve" in ln]
        self.assertEqual(len(lines), 1, f"one line per failure streak:\n{lb.log_text()[-2000:]}")
        self.assertIn("node a: cannot resolve node-a", lines[0])
        self.assertIn("keeping 127.0.0.2", lines[0])
        failures = 'lb_node_lookup_failures_total{node="a"}'
        h.wait_until(lambda: lb.series().get(failures, 0) >= 2, 10.0 * h.SLOW,
                     what="every failed lookup counted, though logged once")
        self.assertEqual(lb.series()[self.changes], 0)
        self.assertEqual(lb.nodes(connected_to=True), {"a": self.b1.addr})
        self.point_at("127.0.0.2 node-a\n")
        h.wait_until(lambda: "node-a resolves again" in lb.log_text(), 10 * RESOLVE_INTERVAL * h.SLOW,
                     what="the name's return in the log")
        self.assertEqual(lb.series()[self.changes], 0)
        self.assertEqual(self.backend_of(lb.port), "b1")

    def test_interval_off_looks_names_up_at_sighup_only(self):
        lb = self.start("off")
        self.assertEqual(self.backend_of(lb.port), "b1")
        self.point_at("127.0.0.3 node-a\n")
        self.intervals(4)
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(4)}, {"b1"},
                         "resolve-interval off: no lookups while running")
        before = set(lb.children())
        lb.proc.signal(signal.SIGHUP)  # the new generation loads the same flags, and looks node-a up again
        h.wait_until(lambda: set(lb.children()) - before, 10.0 * h.SLOW, what="a new generation of workers")
        h.wait_until(lambda: self.backend_of(lb.port, who="a request after SIGHUP") == "b2", 10.0 * h.SLOW,
                     what="new connections to reach b2")
        self.assertEqual({self.backend_of(lb.port, who=f"request {i}") for i in range(4)}, {"b2"})
        self.assertEqual(lb.series()[self.changes], 0, "a generation's own start-up lookup is not a change")


# ---------------------------------------------------------------------------------------------------------------
# 17, 18: processes


class ProcessTest(LbBase):
    def setUp(self):
        self.backends = start_backends(self, ["b1", "b2"])

    def test_sigterm_idle_exits_0_no_worker_left(self):
        lb = start_lb(self, [*backend_flags(self.backends), "--workers", "2", "--log-level", "warn"])
        h.wait_until(lambda: len(lb.children()) == 2 and len(lb.health_pids()) == 1, 5.0 * h.SLOW,
                     what="2 workers and the health process")
        workers = lb.processes()
        idle = h.HttpConn(lb.port)
        self.addCleanup(idle.close)
        self.backend_of(lb.port, conn=idle)
        lb.proc.signal(signal.SIGTERM)
        try:
            rc = lb.proc.wait(10.0 * h.SLOW)
        except TimeoutError:
            self.fail(f"lb still running 10 s after SIGTERM:\n{lb.log_text()[-3000:]}")
        self.assertEqual(rc, 0, lb.log_text()[-3000:])
        for pid in workers:
            with self.assertRaises(ProcessLookupError, msg=f"process {pid} outlived the master"):
                os.kill(pid, 0)
        self.assertTrue(idle.wait_closed(5.0), "an idle keep-alive connection is closed at shutdown")
        self.assertEqual(lb.sanitizer_reports(), [], lb.log_text()[-4000:])

    def test_sigterm_finishes_request_in_flight(self):
        lb = start_lb(self, [*backend_flags(self.backends), "--health", "off", "--log-level", "warn"])
        with h.HttpConn(lb.port, timeout=10.0 * h.SLOW) as c:
            c.send(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            # SIGTERM only once the request is at a node: before that the lb has read nothing from this client, and
            # an idle client connection is closed at once on SIGTERM (a slow machine showed it: a fixed sleep raced)
            h.wait_until(lambda: sum(sleeping(b) for b in self.backends) == 1, 5.0 * h.SLOW,
                         what="the request to reach a node")
            lb.proc.signal(signal.SIGTERM)
            h.wait_until(lambda: listening_sockets(lb.port) == 0, 5.0 * h.SLOW, what="the listener to close")
            with self.assertRaises(OSError, msg="no new connection after SIGTERM"):
                socket.create_connection((h.HOST, lb.port), timeout=2.0).close()
            r = c.read_response()
            doc = json.loads(r.body)
            self.served_by(r, doc, "the request in flight at SIGTERM")
            self.assertEqual(doc["path"], "/sleep?ms=3000")
            self.assertIn("close", r.header("Connection", "").lower(), "the connection ends with that response")
            self.assertTrue(c.wait_closed(5.0 * h.SLOW))
        try:
            rc = lb.proc.wait(10.0 * h.SLOW)
        except TimeoutError:
            self.fail(f"lb still running after its last request:\n{lb.log_text()[-3000:]}")
        self.assertEqual(rc, 0)

    def test_max_connections_wait_in_backlog(self):
        lb = start_lb(self, [*backend_flags(self.backends), "--max-connections", "2", "--health", CALM_HEALTH,
                             "--log-level", "warn"])
        self.lbs = (lb,)
        first, second = h.HttpConn(lb.port), h.HttpConn(lb.port)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        self.backend_of(lb.port, conn=first)
        self.backend_of(lb.port, conn=second)
        waiting = h.HttpConn(lb.port, timeout=0.5)  # the kernel completes the handshake; the lb does not accept
        self.addCleanup(waiting.close)
        waiting.send(b"GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
        with self.assertRaises(TimeoutError, msg="a connection beyond --max-connections must not be served yet"):
            waiting.read_response()
        first.close()
        r = waiting.read_response(timeout=5.0 * h.SLOW)
        doc = json.loads(r.body)
        self.served_by(r, doc, "the waiting connection once a slot was free")
        self.assertEqual(doc["path"], "/waiting")

    def test_two_workers_count_together(self):
        lb = start_lb(self, [*backend_flags(self.backends), "--workers", "2", "--health", CALM_HEALTH,
                             "--log-level", "warn"])
        self.lbs = (lb,)
        h.wait_until(lambda: len(lb.children()) == 2, 5.0 * h.SLOW, what="2 workers")
        before = lb.series()
        seen = collections.Counter(self.backend_of(lb.port, f"/w/{i}", who=f"request {i}") for i in range(40))
        after = lb.series()
        self.assertEqual(set(seen), {"b1", "b2"}, seen)
        self.assertEqual(after["lb_requests_total"] - before["lb_requests_total"], 40)
        per_node = {b.name: after[f'lb_node_requests_total{{node="{b.name}"}}'] -
                    before[f'lb_node_requests_total{{node="{b.name}"}}'] for b in self.backends}
        self.assertEqual(per_node, {k: float(v) for k, v in seen.items()})
        self.assertGreaterEqual(after["lb_connections_total"] - before["lb_connections_total"], 40)

    def test_dead_worker_restarted(self):
        lb = start_lb(self, [*backend_flags(self.backends), "--workers", "2", "--health", CALM_HEALTH,
                             "--log-level", "warn"])
        self.lbs = (lb,)
        h.wait_until(lambda: len(lb.children()) == 2, 5.0 * h.SLOW, what="2 workers")
        victim = sorted(lb.children())[-1]
        os.kill(victim, signal.SIGKILL)
        h.wait_until(lambda: len(lb.children()) == 2 and victim not in lb.children(), 5.0 * h.SLOW,
                     what="the master to start the dead worker again")
        h.wait_until(lambda: "died" in lb.log_text(), 5.0 * h.SLOW, what="the log to say a worker died")
        for i in range(10):
            self.backend_of(lb.port, f"/after/{i}", who=f"request {i} after the restart")
        self.assertEqual(lb.admin_get("/health").status, 200)

    def test_health_process_follows_its_generation(self):
        """The health process is supervised like a worker (restarted when it dies, checks and admin back) and
        belongs to its generation (a reload replaces it; SIGTERM ends it)."""
        lb = start_lb(self, [*backend_flags(self.backends), "--health", CALM_HEALTH, "--log-level", "warn"])
        self.lbs = (lb,)
        h.wait_until(lambda: len(lb.health_pids()) == 1, 5.0 * h.SLOW, what="the health process")
        first = lb.health_pids()[0]
        os.kill(first, signal.SIGKILL)
        h.wait_until(lambda: lb.health_pids() not in ([], [first]), 5.0 * h.SLOW, what="a new health process")
        self.assertIn("health process", lb.log_text())
        h.wait_until(lambda: lb.admin_get("/health").status == 200, 5.0 * h.SLOW, what="the admin listener back")
        second = lb.health_pids()[0]
        passed = lb.series()['lb_node_checks_passed_total{node="b1"}']
        h.wait_until(lambda: lb.series()['lb_node_checks_passed_total{node="b1"}'] > passed, 5.0 * h.SLOW,
                     what="checks running again")
        lb.proc.signal(signal.SIGHUP)
        h.wait_until(lambda: len(lb.health_pids()) == 1 and lb.health_pids()[0] != second, 10.0 * h.SLOW,
                     what="the new generation's health process, and the old one gone")
        h.wait_until(lambda: len(lb.children()) == 1, 5.0 * h.SLOW, what="the old worker gone (nothing in flight)")
        self.assertEqual(lb.admin_get("/health").status, 200)
        # with checks off it serves the admin listener alone, and is replaced all the same
        quiet = start_lb(self, [*backend_flags(self.backends), "--health", "off", "--log-level", "warn"])
        self.lbs = (lb, quiet)
        h.wait_until(lambda: len(quiet.health_pids()) == 1, 5.0 * h.SLOW, what="the health process")
        first = quiet.health_pids()[0]
        quiet.proc.signal(signal.SIGHUP)
        h.wait_until(lambda: quiet.health_pids() not in ([], [first]) and len(quiet.health_pids()) == 1,
                     10.0 * h.SLOW, what="the new generation's health process, and the old one gone")



class SourceAddressTest(LbBase):
    """--source: the lb's connections to the nodes come from its addresses in turn (a node's many connections
    then spread over several (source, destination) pairs, each with its own ports)."""

    def test_connections_to_nodes_come_from_the_source_range(self):
        backends = [Backend("s1"), Backend("s2")]
        for b in backends:
            b.start()
            self.addCleanup(b.stop)
        # 2 nodes, round robin, 2 addresses: each node must still get both (one turn per node, not one over all)
        lb = start_lb(self, [*backend_flags(backends), "--health", "off", "--source", "127.0.1.1-127.0.1.2"])
        self.lbs = (lb,)
        peers = {"s1": [], "s2": []}
        for i in range(8):  # a new connection to a node each time
            resp, doc = get(lb.port, "/", {"Connection": "close"})
            peers[self.served_by(resp, doc, f"request {i}")].append(doc["peer"])
        for name, got in peers.items():
            self.assertEqual(sorted(got), ["127.0.1.1", "127.0.1.1", "127.0.1.2", "127.0.1.2"], f"{name}: {peers}")
        backend = backends[0]
        # without --source the kernel's address: 127.0.0.1
        lb2 = start_lb(self, [*backend_flags([backend]), "--health", "off"])
        self.lbs = (lb, lb2)
        resp, doc = get(lb2.port, "/", {"Connection": "close"})
        self.assertEqual(self.served_by(resp, doc) and doc["peer"], "127.0.0.1")

if __name__ == "__main__":
    unittest.main()
