"""Integration tests for refserver under faults: Redis stopped and restarted (/health, repeated warnings), publishes
that reach fewer participants than should hold their channel (the heartbeat on PREFIX-nodes and the receiver count
of each PUBLISH), and a SIGKILLed --workers master.

Run: WSH_BUILD=$PWD/build python3 -m unittest tests.integration.test_refserver_faults -v   (from the repo root)
Every process is started on a free loopback port and stopped by its PID; every wait has a deadline. Time bounds are
generous ceilings (scaled for sanitizer builds), never speed assertions.
"""

import os
import re
import signal
import threading
import unittest
import uuid

import harness as h
from test_refserver import Base as RefBase

if not os.access(h.REFSERVER, os.X_OK):
    raise RuntimeError(f"{h.REFSERVER} is not built (set WSH_BUILD or run make)")

SIO = "/socket.io/?EIO=4&transport=websocket"
DOWN_LINE = re.compile(r"warn: redis \S+ down for (\d+) s \(.*\): (\d+) message\(s\) not published")


def room_name(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def fnv1a64(text):
    """peers_hash: the FNV-1a 64 of a room name or Socket.IO key, as heartbeats carry it."""
    x = 14695981039346656037
    for b in text.encode():
        x = ((x ^ b) * 1099511628211) & (2 ** 64 - 1)
    return x or 1


class FakeParticipant:
    """A participant that heartbeats on wsh-nodes claiming to hold rooms (and Socket.IO namespaces) yet subscribes
    to nothing: every publish a node makes to those channels is short by one. Heartbeats until stop()."""

    def __init__(self, redis, pid_name, rooms=(), sio_nsps=()):
        key = f"{fnv1a64('socket.io'):016x}" if sio_nsps else "-"
        nsps = ",".join(sio_nsps) or "-"
        hashes = "".join(f" {fnv1a64(r):016x}" for r in rooms)
        self.message = f"wsh1-hb {pid_name} 1 {key} {nsps} {len(rooms)}{hashes}"
        self.redis = redis
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for _ in range(600):  # bounded: 5 minutes at most
            try:
                self.redis.command("PUBLISH", "wsh-nodes", self.message)
            except OSError:
                pass
            if self.stopped.wait(0.3):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(5)


class Base(RefBase):
    def wait_log(self, node, pattern, count=1, timeout=5.0):
        try:
            h.wait_until(lambda: len(re.findall(pattern, node.log_text())) >= count, timeout * h.SLOW,
                         what=f"{count} log line(s) matching {pattern!r}")
        except TimeoutError:
            self.fail(f"{node.node_id}: fewer than {count} line(s) matching {pattern!r}:\n{node.log_text()[-3000:]}")

    def fake(self, redis, name, **kw):
        f = FakeParticipant(redis, name, **kw)
        self.addCleanup(f.stop)
        return f


# ---------------------------------------------------------------------------------------------------------------


class HealthTest(Base):
    def test_health_follows_redis_while_root_stays_200(self):
        redis = h.start_redis(self)
        node = h.start_refserver(self, "hl1", redis.url)
        h.wait_until(lambda: h.http_request(node.port, "GET", "/health").status == 200, 5 * h.SLOW,
                     what="/health 200 once on the bus")
        r = h.http_request(node.port, "GET", "/health")
        self.assertEqual(r.body, b"ok\n")
        with h.HttpConn(node.port) as conn:  # keep-alive through the outage: the 503 does not close
            redis.stop()  # by PID
            self.wait_metric(node, "refserver_redis_up", lambda v: v == 0)
            r = conn.request("GET", "/health")
            self.assertEqual(r.status, 503, r)
            self.assertRegex(r.body.decode(), r"^503 redis redis://127\.0\.0\.1:\d+ unreachable for [\d.]+ s: .*"
                                              r"(refused|closed by the server)")
            self.assertEqual(conn.request("GET", "/").status, 200, "GET / is the liveness probe")
            head = conn.request("HEAD", "/health")
            self.assertEqual(head.status, 503)
        self.wait_metric(node, "refserver_redis_down_seconds", lambda v: v >= 1)
        self.assertEqual(node.metric("refserver_bus_participants"), 0)

        # The warning repeats (every 5 s), with the messages the clients sent meanwhile.
        client = h.ws_connect(self, node.port, f"/ws?room={room_name('hl')}")
        for i in range(3):
            client.send_text(f"lost {i}")
        self.wait_log(node, DOWN_LINE.pattern, count=2, timeout=15)
        counts = [int(m.group(2)) for m in DOWN_LINE.finditer(node.log_text())]
        self.assertEqual(counts[-1], 3, node.log_text()[-2000:])

        redis.start()  # same port
        h.wait_until(lambda: h.http_request(node.port, "GET", "/health").status == 200, 5 * h.SLOW,
                     what="/health 200 again once Redis is back")
        self.wait_log(node, r"info: redis \S+: back after [\d.]+ s down; 3 message\(s\) were not published")
        self.assertEqual(node.metric("refserver_redis_down_seconds"), 0)

    def test_standalone_node_is_healthy(self):
        node = h.start_refserver(self, "hl2", "none")
        r = h.http_request(node.port, "GET", "/health")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    def test_never_connected_node_says_why(self):
        port = h.free_port()  # nothing listens there
        node = h.start_refserver(self, "hl3", f"redis://127.0.0.1:{port}")
        r = h.http_request(node.port, "GET", "/health")
        self.assertEqual(r.status, 503)
        self.assertIn(b"unreachable for", r.body)
        self.assertEqual(h.http_request(node.port, "GET", "/").status, 200)


# ---------------------------------------------------------------------------------------------------------------


class ShortPublishTest(Base):
    def setUp(self):
        self.redis = h.start_redis(self)

    def test_participant_without_the_channel_makes_publishes_short(self):
        node = h.start_refserver(self, "sp1", self.redis.url)
        room = room_name("short")
        a = h.ws_connect(self, node.port, f"/ws?room={room}")
        self.redis.wait_subscribers(f"wsh#{room}", 1)
        a.send_text("nobody else")  # no other participant: not short
        self.assertEqual(node.metric("refserver_bus_participants"), 1)
        self.fake(self.redis, "ghost", rooms=[room, "elsewhere"])
        self.wait_metric(node, "refserver_bus_participants", lambda v: v == 2)
        self.assertEqual(node.metric("refserver_publish_short_total"), 0)
        for i in range(3):
            a.send_text(f"m{i}")
        self.wait_metric(node, "refserver_publish_short_total", lambda v: v == 3)
        self.assertEqual(node.metric("refserver_publish_short_receivers_total"), 3)
        self.wait_log(node, rf"warn: publish to wsh#{room} reached 0 of the 1 other participant\(s\) that hold it "
                            r"\(now: ghost\)")
        self.assertEqual(len(re.findall(r"warn: publish to", node.log_text())), 1, "later ones are summed")
        self.wait_log(node, r"warn: 2 more short publish\(es\) in the last \d+ s, 2 participant\(s\) missed "
                            rf"\(last: wsh#{room}\); 3 in all", timeout=10)

    def test_socketio_broadcast_short(self):
        node = h.start_refserver(self, "sp2", self.redis.url)
        c = h.ws_connect(self, node.port, SIO)
        self.assertEqual(c.recv_message(5.0)[1][:1], b"0")
        c.send_text("40")
        self.assertEqual(c.recv_message(5.0)[1][:2], b"40")
        self.fake(self.redis, "ghost-sio", sio_nsps=["/"])
        self.wait_metric(node, "refserver_bus_participants", lambda v: v == 2)
        c.send_text('42["e",1]')
        self.wait_metric(node, "refserver_publish_short_total", lambda v: v == 1)
        self.wait_log(node, r"warn: publish to socket\.io#/# reached 0 of the 1 other participant")

    def test_real_nodes_and_room_churn_are_not_short(self):
        """Two real nodes: publishes while the other node joins and leaves the room are never counted short,
        because a room's channel lingers after its last member left until the heartbeat has said so."""
        n1, n2 = h.start_nodes(self, 2, self.redis.url, prefix="rc")
        self.wait_metric(n1, "refserver_bus_participants", lambda v: v == 2)
        room = room_name("churn")
        a = h.ws_connect(self, n1.port, f"/ws?room={room}")
        for round_ in range(2):
            b = h.ws_connect(self, n2.port, f"/ws?room={room}")
            self.redis.wait_subscribers(f"wsh#{room}", 2)
            a.send_text(f"hello {round_}")
            got = b.recv_text(5.0)
            while got.startswith("after "):  # published just before b joined, reaching n2 just after
                got = b.recv_text(5.0)
            self.assertEqual(got, f"hello {round_}")
            self.assertEqual(b.recv_nothing(1.5), [])  # a heartbeat period: n1 has heard that n2 holds the room
            b.close()
            h.wait_until(lambda: n2.metric("refserver_rooms") == 0, 5 * h.SLOW, what="n2's room closed")
            for i in range(20):  # right after the other node's last member left
                a.send_text(f"after {round_}.{i}")
        self.assertEqual(a.recv_nothing(0.5), [])  # time for Redis to answer every publish
        self.assertEqual(n1.metric("refserver_publish_short_total"), 0, n1.log_text()[-2000:])

    def test_node_frozen_over_a_redis_restart_is_counted(self):
        """The restart window made deterministic: n2 is frozen (SIGSTOP) while Redis restarts, so it cannot
        re-subscribe; what n1 publishes meanwhile reached nobody and is counted."""
        n1, n2 = h.start_nodes(self, 2, self.redis.url, prefix="rr")
        room = room_name("restart")
        a = h.ws_connect(self, n1.port, f"/ws?room={room}")
        b = h.ws_connect(self, n2.port, f"/ws?room={room}")
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        self.wait_metric(n1, "refserver_bus_participants", lambda v: v == 2)
        self.wait_metric(n2, "refserver_bus_participants", lambda v: v == 2)
        a.send_text("before")
        self.assertEqual(b.recv_text(5.0), "before")
        self.assertEqual(b.recv_nothing(1.5), [])  # a heartbeat period: n1 has heard that n2 holds the room
        self.redis.kill()
        self.wait_metric(n1, "refserver_redis_up", lambda v: v == 0)
        n2.proc.signal(signal.SIGSTOP)
        self.addCleanup(n2.proc.signal, signal.SIGCONT)
        self.redis.start()
        self.wait_metric(n1, "refserver_redis_up", lambda v: v == 1)
        for i in range(3):
            a.send_text(f"lost {i}")
        self.wait_metric(n1, "refserver_publish_short_total", lambda v: v == 3)
        self.wait_log(n1, rf"warn: publish to wsh#{room} reached 0 of the 1 other participant\(s\) that hold it "
                          r"\(now: rr2\)")
        n2.proc.signal(signal.SIGCONT)
        self.wait_metric(n2, "refserver_redis_up", lambda v: v == 1, timeout=10)
        h.wait_until(lambda: self.redis.numsub(f"wsh#{room}") == 2, 5 * h.SLOW, what="n2 re-subscribed")
        a.send_text("after")
        self.assertEqual(b.recv_text(5.0), "after", "the frozen node missed the 3 (counted), then hears again")
        self.assertEqual(n1.metric("refserver_publish_short_total"), 3)

    def test_bye_forgets_a_node_at_once(self):
        """A node stopped with SIGTERM says bye: the others stop expecting it at once, not PEERS_ALIVE s later."""
        n1, n2 = h.start_nodes(self, 2, self.redis.url, prefix="by")
        room = room_name("bye")
        a = h.ws_connect(self, n1.port, f"/ws?room={room}")
        b = h.ws_connect(self, n2.port, f"/ws?room={room}")
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        self.wait_metric(n1, "refserver_bus_participants", lambda v: v == 2)
        n2.proc.signal(signal.SIGTERM)
        self.assertEqual(b.recv_close(5.0), 1001)
        b.send_close(1001)
        self.assertEqual(n2.proc.wait(10 * h.SLOW), 0)
        for i in range(5):  # well within the second n2 was last heard in
            a.send_text(f"m{i}")
        self.assertEqual(a.recv_nothing(0.5), [])
        self.assertEqual(n1.metric("refserver_publish_short_total"), 0, n1.log_text()[-2000:])
        self.assertEqual(n1.metric("refserver_bus_participants"), 1)


# ---------------------------------------------------------------------------------------------------------------


def worker_pids(node):
    pids = {}
    for m in re.finditer(r"worker (\d+) started, pid (\d+)", node.log_text()):
        pids[int(m.group(1))] = int(m.group(2))
    return pids


def running(pid):
    """Running, not a zombie waiting for a reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class WorkersFaultTest(Base):
    def test_sigkill_of_the_master_takes_every_worker_down_at_once(self):
        redis = h.start_redis(self)
        node = h.start_refserver(self, "wk1", redis.url, ["--workers", "2"])
        h.wait_until(lambda: len(worker_pids(node)) == 2, 10 * h.SLOW, what="2 workers started")
        pids = worker_pids(node)
        clients = {}
        for _ in range(80):
            c = h.ws_connect(self, node.port, "/ws")
            w = int(c.response.header("X-Node-Worker"))
            if w in clients:
                c.close()
            else:
                clients[w] = c
            if len(clients) == 2:
                break
        self.assertEqual(len(clients), 2)
        master, node.proc = node.proc, None  # its cleanup would take exit -9 for a bad end
        master.kill()  # SIGKILL of the master, as the fault scenarios do
        for w, c in clients.items():
            # A crashed node: the connection just ends, no polite 1001 close over the grace time.
            try:
                code = c.recv_close(3.0 * h.SLOW)
                self.fail(f"client of worker {w}: a close frame ({code}) from a node whose master was killed")
            except h.ConnectionClosed as e:
                self.assertTrue(e.eof, f"client of worker {w}: {e!r}")
            except ConnectionResetError:
                pass
        h.wait_until(lambda: not any(running(p) for p in pids.values()), 5 * h.SLOW, what="no worker left")
        with self.assertRaises(OSError):
            h.http_request(node.port, "GET", "/", timeout=2.0)

    def test_health_with_workers(self):
        redis = h.start_redis(self)
        node = h.start_refserver(self, "wk2", redis.url, ["--workers", "2"])
        h.wait_until(lambda: node.metrics().get("refserver_redis_up") == 1, 10 * h.SLOW, what="every worker up")
        self.assertEqual(h.http_request(node.port, "GET", "/health").status, 200)
        self.wait_metric(node, "refserver_bus_participants", lambda v: v == 2)  # the two workers hear each other
        redis.stop()
        seen = set()
        for _ in range(60):
            r = h.http_request(node.port, "GET", "/health")
            if r.status == 503:
                seen.add(r.header("X-Node-Worker"))
            if len(seen) == 2:
                break
        self.assertEqual(seen, {"0", "1"}, "each worker answers 503 once cut off")


if __name__ == "__main__":
    unittest.main()
