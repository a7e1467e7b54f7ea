"""The lb's signals and timeouts under faults: SIGTERM refuses new connections at once, SIGHUP loses no new
connection, a reload past the old-generation cap still takes effect, a silent connection ends at timeout head,
a drained node keeps its tunnels. Nodes are TunnelNode (below): 200 to plain requests, 101 and an echo to upgrades.
Run: python3 -m unittest discover -s tests/integration -p 'test_lb_signals.py' -v   (WSH_BUILD: the build dir)
"""

import os
import re
import signal
import socket
import threading
import time
import unittest

import harness as h
from test_lb import LbBase, start_lb

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class TunnelNode(h.ThreadedServer):
    """A node on a free loopback port: a plain request gets 200 with X-Backend: NAME (keep-alive), an upgrade gets
    101 and then every byte echoed until the client closes. A thread per connection."""

    def __init__(self, name):
        self.name = name
        super().__init__(backlog=512)

    def serve(self, conn):
        with conn:
            conn.settimeout(120.0)
            buf = b""
            try:
                while not self.stopped:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    if b"upgrade: websocket" in head.lower():
                        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nX-Backend: " + self.name.encode() + b"\r\n\r\n" + buf)
                        while (chunk := conn.recv(65536)):
                            conn.sendall(chunk)
                        return
                    body = self.name.encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + body +
                                 b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            except OSError:
                pass


def start_node(owner, name):
    n = TunnelNode(name)
    h._add_cleanup(owner, n.close)
    return n


def open_tunnel(owner, port, cookie=None):
    """A connection upgraded through the lb; returns (socket, the node's name)."""
    s = socket.create_connection((h.HOST, port), timeout=5.0 * h.SLOW)
    owner.addCleanup(s.close)
    s.sendall(UPGRADE if not cookie else UPGRADE.replace(b"\r\n\r\n", f"\r\nCookie: SRVID={cookie}\r\n\r\n".encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise h.ProtocolError(f"closed before the 101: {head!r}")
        head += chunk
    owner.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
    name = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n") if ln.lower().startswith(b"x-backend:")]
    return s, name[0]


def echoes(s, data=b"ping"):
    """Whether the tunnel still carries bytes both ways."""
    try:
        s.sendall(data)
        got = b""
        s.settimeout(5.0 * h.SLOW)
        while len(got) < len(data):
            chunk = s.recv(4096)
            if not chunk:
                return False
            got += chunk
        return got == data
    except OSError:
        return False


def closed(s, timeout):
    """Whether the peer closed (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def node_flags(nodes):
    return [f for n in nodes for f in ("--backend", f"{n.name}={h.HOST}:{n.port}")]


def refused_within(port, seconds):
    """The time until a connect to port is refused, polling; None when it never was within seconds."""
    start = time.monotonic()
    dl = h.Deadline(seconds)
    while not dl.expired():
        try:
            socket.create_connection((h.HOST, port), timeout=1.0).close()
        except ConnectionRefusedError:
            return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    return None


class SigtermTest(LbBase):
    def test_new_connections_refused_while_a_tunnel_is_in_grace(self):
        n1 = start_node(self, "n1")
        lb = start_lb(self, [*node_flags([n1]), "--workers", "2", "--timeout", "grace=30s", "--health", "off",
                             "--log-level", "info"])
        tunnel, _ = open_tunnel(self, lb.port)
        self.assertTrue(echoes(tunnel))
        lb.proc.signal(signal.SIGTERM)
        took = refused_within(lb.port, 5.0 * h.SLOW)
        self.assertIsNotNone(took, "a new connection after SIGTERM must be refused, not queued for the grace time")
        self.assertLess(took, 2.0 * h.SLOW)
        self.assertIsNotNone(refused_within(lb.admin_port, 5.0 * h.SLOW), "the admin listener is closed too")
        self.assertTrue(echoes(tunnel, b"still there"), "the tunnel runs on in the grace time")
        h.wait_until(lambda: re.search(r"SIGTERM: stopped listening; \d+ client connection\(s\) open, 1 of them "
                                       r"tunnels", lb.log_text()), 5.0 * h.SLOW, what="the SIGTERM log line")
        self.assertIn("grace 30s", lb.log_text())
        tunnel.close()
        self.assertEqual(lb.proc.wait(10.0 * h.SLOW), 0, lb.log_text()[-3000:])


class HeadTimeoutTest(LbBase):
    @classmethod
    def setUpClass(cls):
        cls.n1 = TunnelNode("n1")
        cls.lb = start_lb(cls, [*node_flags([cls.n1]), "--timeout", "head=1s", "--timeout", "client=30s",
                                "--health", "off", "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    @classmethod
    def tearDownClass(cls):
        cls.n1.close()
        super().tearDownClass()

    def test_silent_connection_closed_at_timeout_head(self):
        with h.HttpConn(self.lb.port) as c:
            start = time.monotonic()
            self.assertTrue(c.wait_closed(8.0 * h.SLOW), "a connection that never sends ends at timeout head (1s), "
                            "not timeout client (30s)")
            self.assertGreater(time.monotonic() - start, 0.5, "not before timeout head")
            self.assertEqual(c.buf, b"", "closed without a 408, as HAProxy does for an empty connection")

    def test_idle_keepalive_waits_for_timeout_client(self):
        with h.HttpConn(self.lb.port) as c:
            self.assertEqual(c.request().status, 200)
            self.assertFalse(c.wait_closed(2.5), "between requests timeout client (30s) holds, not timeout head")
            self.assertEqual(c.request().status, 200)


class ReloadStormTest(LbBase):
    def setUp(self):
        self.dir = h.make_tempdir(self)
        self.nodes = [start_node(self, "n1"), start_node(self, "n2")]
        self.port, self.admin_port = h.free_port(), h.free_port()
        self.conf = os.path.join(self.dir, "lb.conf")
        self.write_conf(0)
        self.lb = start_lb(self, ["--log-level", "warn"], config=self.conf, port=self.port, admin_port=self.admin_port)
        self.lbs = (self.lb,)

    def write_conf(self, version, extra=""):
        text = (f"listen {h.HOST}:{self.port}\nadmin {h.HOST}:{self.admin_port}\nworkers 2\nhealth off\n"
                f"timeout grace 60s\n# version {version}\n" +
                "".join(f"backend {n.name} {h.HOST}:{n.port}\n" for n in self.nodes) + extra)
        with open(self.conf + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.conf + ".tmp", self.conf)

    def client(self, pause, stop, counts, failures):
        """New connections one after another, each one request (sent at once, or after pause) then closed."""
        while not stop.is_set():
            try:
                with h.HttpConn(self.port, timeout=10.0 * h.SLOW) as c:
                    if pause:
                        time.sleep(pause)  # accepted, no byte yet: a reload must not close it
                    r = c.request(headers={"Connection": "close"})
                    if r.status != 200:
                        raise h.ProtocolError(f"status {r.status}")
                counts.append(1)
            except (OSError, h.ProtocolError, TimeoutError) as e:
                failures.append(repr(e))

    def test_no_new_connection_lost_over_20_reloads(self):
        stop, counts, failures = threading.Event(), [], []
        threads = [threading.Thread(target=self.client, args=(p, stop, counts, failures), daemon=True)
                   for p in (0, 0, 0.02, 0.05)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                time.sleep(0.25)
                self.write_conf(i + 1)
                self.lb.proc.signal(signal.SIGHUP)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30.0)
        self.assertGreater(len(counts), 100, "the storm ran")
        self.assertEqual(failures, [], f"{len(failures)} of {len(counts) + len(failures)} connections failed")
        h.wait_until(lambda: self.lb.series().get('lb_reloads_total{result="ok"}') == 20, 10.0 * h.SLOW,
                     what="20 reloads counted ok")

    def test_invalid_reload_counted_and_named(self):
        self.write_conf(1, extra="balance sideways\n")
        self.lb.proc.signal(signal.SIGHUP)
        h.wait_until(lambda: self.lb.series().get('lb_reloads_total{result="invalid"}') == 1, 10.0 * h.SLOW,
                     what="the invalid reload counted")
        series = self.lb.series()
        self.assertEqual(series.get('lb_reload_last{result="invalid"}'), 1)
        self.assertIn("sideways", self.lb.log_text())
        self.assertIn("has errors", self.lb.log_text())


class ReloadCapTest(LbBase):
    def test_reload_past_the_cap_ends_the_oldest_generation(self):
        self.dir = h.make_tempdir(self)
        node = start_node(self, "t")
        port, admin_port = h.free_port(), h.free_port()
        conf = os.path.join(self.dir, "lb.conf")

        def write(version):
            with open(conf + ".tmp", "w") as f:
                f.write(f"listen {h.HOST}:{port}\nadmin {h.HOST}:{admin_port}\nhealth off\ntimeout grace 120s\n"
                        f"backend v{version} {h.HOST}:{node.port}\n")
            os.replace(conf + ".tmp", conf)

        write(0)
        lb = start_lb(self, ["--log-level", "info"], config=conf, port=port, admin_port=admin_port)
        tunnels = []
        for v in range(1, 10):  # 9 reloads, each leaving a generation with one open tunnel behind
            tunnels.append(open_tunnel(self, port)[0])
            write(v)
            lb.proc.signal(signal.SIGHUP)
            h.wait_until(lambda v=v: list(lb.nodes()) == [f"v{v}"], 15.0 * h.SLOW,
                         what=f"reload {v} to take effect")
        self.assertIn("the oldest, generation 1, finishes now: closing 1 client connection(s), 1 of them tunnels",
                      lb.log_text())
        self.assertTrue(closed(tunnels[0], 5.0 * h.SLOW), "the oldest generation's tunnel is closed")
        self.assertTrue(echoes(tunnels[1]), "the next generation's tunnel runs on")
        series = lb.series()
        self.assertEqual(series.get("lb_generations_forced_total"), 1)
        self.assertEqual(series.get("lb_old_generations"), 8)
        self.assertEqual(series.get('lb_reloads_total{result="ok"}'), 9)


class DrainTest(LbBase):
    def test_drained_node_keeps_its_tunnels_and_takes_no_new_one(self):
        n1, n2 = start_node(self, "n1"), start_node(self, "n2")
        lb = start_lb(self, [*node_flags([n1, n2]), "--health", "off", "--log-level", "warn"])
        old, name = open_tunnel(self, lb.port, cookie="n1")
        self.assertEqual(name, "n1")
        self.assertEqual(lb.admin_post("/nodes/n1/drain").status, 200)
        got = {open_tunnel(self, lb.port)[1] for _ in range(6)}
        self.assertEqual(got, {"n2"}, "new tunnels avoid the drained node")
        self.assertTrue(echoes(old), "the drained node's open tunnel runs on")
        lines = {ln.split()[0]: ln for ln in lb.admin_get("/nodes").body.decode().splitlines()}
        self.assertIn("tunnels=1", lines["n1"].split())
        self.assertIn("tunnels=6", lines["n2"].split())
        old.close()
        h.wait_until(lambda: "tunnels=0" in lb.admin_get("/nodes").body.decode().splitlines()[0].split(),
                     5.0 * h.SLOW, what="the drained node to empty")


if __name__ == "__main__":
    unittest.main()
