"""Integration tests for refserver --workers N: N processes on one port, each its own participant on the Redis bus,
with every request of an Engine.IO polling session brought to the worker that holds it.

Run: WSH_BUILD=$PWD/build python3 -m unittest tests.integration.test_refserver_workers -v   (from the repo root)
Which worker the kernel picks for a connection is up to SO_REUSEPORT's hash: tests open connections until they see
the workers they need (X-Node-Worker says which answered), in bounded loops. Every process is stopped by its PID.
"""

import json
import os
import re
import signal
import socket
import unittest
import uuid

import harness as h
from harness import OP_TEXT

if not os.access(h.REFSERVER, os.X_OK):
    raise RuntimeError(f"{h.REFSERVER} is not built (set WSH_BUILD or run make)")

QUIET = 0.3
POLL = "/socket.io/?EIO=4&transport=polling"
SIO_WS = "/socket.io/?EIO=4&transport=websocket"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def room_name(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def worker_of(resp):
    """The X-Node-Worker of an HttpResponse (or a 101), as an int."""
    v = resp.header("X-Node-Worker")
    if v is None:
        raise AssertionError(f"no X-Node-Worker header: {resp!r}")
    return int(v)


def sid_owner(sid):
    return B64URL.index(sid[0])


def worker_pids(node):
    """{worker index: pid} from the master's "worker I started, pid P" lines (the latest start of each)."""
    pids = {}
    for m in re.finditer(r"worker (\d+) started, pid (\d+)", node.log_text()):
        pids[int(m.group(1))] = int(m.group(2))
    return pids


def pid_alive(pid):
    return os.path.exists(f"/proc/{pid}")


class Base(unittest.TestCase):
    def assertSilent(self, client, who="client"):
        self.assertEqual(client.recv_nothing(QUIET), [], f"{who} received unexpected message(s)")

    def spread(self, connect, workers, per_worker=2, tries=80):
        """Clients from connect() (each with a 101 .response) until every worker holds per_worker of them; the extra
        ones are closed. {worker: [clients]}."""
        got = {w: [] for w in range(workers)}
        for _ in range(tries):
            c = connect()
            w = worker_of(c.response)
            if len(got[w]) < per_worker:
                got[w].append(c)
            else:
                c.close()
            if all(len(v) >= per_worker for v in got.values()):
                return got
        self.fail(f"after {tries} connections some worker had fewer than {per_worker} clients: "
                  f"{ {w: len(v) for w, v in got.items()} }")

    def assertEachHearsTheOthersOnce(self, clients, text):
        """Client i sends text(i); each client gets every other client's text exactly once, and not its own."""
        for i, c in enumerate(clients):
            c.send_text(text(i))
        for i, c in enumerate(clients):
            got = sorted(c.recv_text() for _ in range(len(clients) - 1))
            self.assertEqual(got, sorted(text(k) for k in range(len(clients)) if k != i), f"client {i}")
        for i, c in enumerate(clients):
            self.assertSilent(c, f"client {i}")

    def wait_redis_up(self, node):
        h.wait_until(lambda: node.metrics().get("refserver_redis_up") == 1, 10 * h.SLOW,
                     what=f"{node.node_id}: every worker on Redis")


def start_workers(owner, node_id, workers, redis_url="none", extra=()):
    node = h.start_refserver(owner, node_id, redis_url, ["--workers", str(workers), *extra])
    h.wait_until(lambda: len(worker_pids(node)) == workers, 10 * h.SLOW, what=f"{workers} workers started")
    return node


# ---------------------------------------------------------------------------------------------------------------


class WorkersBroadcastTest(Base):
    """Clients on each worker of a 2-worker node and on a single-process node: each message reaches every other
    client once. The workers hear each other only through Redis, as separate nodes do."""

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.multi = start_workers(cls, "m1", 2, cls.redis.url)
        cls.single = h.start_refserver(cls, "s1", cls.redis.url)

    def ws(self, port, path):
        return h.ws_connect(self, port, path)

    def test_ws_broadcast_exactly_once_across_workers_and_nodes(self):
        room = room_name("wk")
        path = f"/ws?room={room}"
        by_worker = self.spread(lambda: self.ws(self.multi.port, path), 2)
        clients = [c for cs in by_worker.values() for c in cs] + [self.ws(self.single.port, path) for _ in range(2)]
        for c in clients:
            self.assertEqual(c.response.header("X-Node-Id"), "m1" if c.port == self.multi.port else "s1")
        self.redis.wait_subscribers(f"wsh#{room}", 3)  # each worker and the other node, each its own subscriber
        self.assertEachHearsTheOthersOnce(clients, lambda i: f"from {i}")

    def sio(self, port, room):
        c = h.ws_connect(self, port, f"{SIO_WS}&room={room}")
        op, data = c.recv_message(5.0)
        self.assertEqual(data[:1], b"0")
        c.send_text("40")
        op, data = c.recv_message(5.0)
        self.assertEqual(data[:2], b"40")
        return c

    def test_socketio_broadcast_exactly_once_across_workers_and_nodes(self):
        room = room_name("sio")
        by_worker = self.spread(lambda: self.sio(self.multi.port, room), 2)
        clients = [c for cs in by_worker.values() for c in cs] + [self.sio(self.single.port, room) for _ in range(2)]
        self.wait_redis_up(self.multi)
        self.wait_redis_up(self.single)
        self.assertEachHearsTheOthersOnce(clients, lambda i: f'42["chat",{i}]')

    def test_bus_identity_per_worker_node_id_per_node(self):
        pubsub = self.redis.client(timeout=5.0)
        self.addCleanup(pubsub.close)
        room = room_name("id")
        pubsub.command("SUBSCRIBE", f"wsh#{room}")
        by_worker = self.spread(lambda: self.ws(self.multi.port, f"/ws?room={room}"), 2, per_worker=1)
        self.redis.wait_subscribers(f"wsh#{room}", 3)  # the two workers and this test
        origins = set()
        for w, (c,) in by_worker.items():
            self.assertEqual(c.response.header("X-Node-Id"), "m1")
            c.send_text(f"hello from {w}")
            while True:
                msg = pubsub.read_reply()
                if msg[0] == b"message":
                    break
            origins.add(msg[2].split(b" ")[1].decode())
        self.assertEqual(origins, {"m1.w0", "m1.w1"})
        self.assertEqual(h.http_request(self.multi.port, "GET", "/").body, b"ok m1\n")


# ---------------------------------------------------------------------------------------------------------------


class WorkersPollingTest(Base):
    """A 4-worker node: every polling request and the upgrade reach the worker holding the session, whichever worker
    accepts the connection (each request here comes on a connection of its own unless said)."""

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.node = start_workers(cls, "p1", 4, cls.redis.url, ["--sio-ping-interval", "60000"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-3000:]}")

    def request(self, method, path, body=b"", conn=None):
        if conn is not None:
            return conn.request(method, path, {"Content-Type": "text/plain;charset=UTF-8"}, body)
        with h.HttpConn(self.node.port) as c:
            return c.request(method, path, {"Content-Type": "text/plain;charset=UTF-8"}, body)

    def handshake(self, room):
        r = self.request("GET", f"{POLL}&room={room}")
        self.assertEqual(r.status, 200, r.body)
        sid = json.loads(r.body[1:])["sid"]
        self.assertEqual(sid_owner(sid), worker_of(r), "the sid names the worker that made it")
        return sid

    def joined(self, room):
        sid = self.handshake(room)
        r = self.request("POST", f"{POLL}&sid={sid}", b"40")
        self.assertEqual((r.status, r.body, worker_of(r)), (200, b"ok", sid_owner(sid)), sid)
        r = self.request("GET", f"{POLL}&sid={sid}")
        self.assertEqual((r.status, r.body[:2], worker_of(r)), (200, b"40", sid_owner(sid)), (sid, r.body))
        return sid

    def assertUnknown(self, r):
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(json.loads(r.body), {"code": 1, "message": "Session ID unknown"})

    def test_many_sessions_each_request_reaches_its_owner(self):
        before = self.node.metric("refserver_connections_handed_over_total")
        sids = [self.joined(room_name("many")) for _ in range(24)]  # a room each: an event reaches nobody else
        self.assertGreaterEqual(len({sid_owner(s) for s in sids}), 3, "sessions on several workers")
        for sid in sids:  # a noop POST and an ack round trip each, on fresh connections
            r = self.request("POST", f"{POLL}&sid={sid}", b'6\x1e421["e"]')
            self.assertEqual((r.body, worker_of(r)), (b"ok", sid_owner(sid)))
            r = self.request("GET", f"{POLL}&sid={sid}")
            self.assertEqual((r.body, worker_of(r)), (b"431[]", sid_owner(sid)))
        handed = self.node.metric("refserver_connections_handed_over_total") - before
        self.assertGreater(handed, 0, "some requests were accepted by a worker that did not hold their session")
        self.assertEqual(self.node.metric("refserver_handover_failures_total"), 0)
        self.assertGreaterEqual(self.node.metric("refserver_socketio_polling_sessions"), 24, "summed over workers")

    def test_keepalive_connection_carries_many_sessions(self):
        room = room_name("ka")
        sids = [self.joined(room) for _ in range(12)]
        with h.HttpConn(self.node.port) as c:  # one connection, handed from worker to worker
            for _ in range(2):
                for sid in sids:
                    r = self.request("POST", f"{POLL}&sid={sid}", b"6", conn=c)
                    self.assertEqual((r.status, r.body, worker_of(r)), (200, b"ok", sid_owner(sid)), sid)
        with h.HttpConn(self.node.port) as c:  # pipelined: each head waits for the answers before it
            c.send(b"".join(f"POST {POLL}&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n6".encode()
                            for sid in sids))
            for sid in sids:
                r = c.read_response()
                self.assertEqual((r.status, r.body, worker_of(r)), (200, b"ok", sid_owner(sid)), sid)

    def test_pipelined_large_posts_behind_an_answer(self):
        sids = {}
        for _ in range(60):  # a session on each of two workers, each alone in its room
            sid = self.joined(room_name("big"))
            sids.setdefault(sid_owner(sid), sid)
            if len(sids) == 2:
                break
        self.assertEqual(len(sids), 2)
        posts = [(sid, f'42["big","{"x" * 20000}"]'.encode()) for sid in sids.values()]
        with h.HttpConn(self.node.port) as c:  # whichever worker answers GET /, a 20 KB POST waits behind an answer
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"".join(
                f"POST {POLL}&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                for sid, body in posts))
            self.assertEqual(c.read_response().status, 200)
            for sid, _ in posts:
                r = c.read_response()
                self.assertEqual((r.status, r.body, worker_of(r)), (200, b"ok", sid_owner(sid)), sid)
        self.assertEqual(self.node.metric("refserver_handover_failures_total"), 0)

    def test_broadcast_between_sessions_of_different_workers(self):
        room = room_name("bc")
        sids = {}
        for _ in range(40):
            sid = self.joined(room)
            sids.setdefault(sid_owner(sid), sid)
            if len(sids) >= 2:
                break
        self.assertGreaterEqual(len(sids), 2, "sessions on two workers")
        a, b = list(sids.values())[:2]
        self.wait_redis_up(self.node)
        held = h.HttpConn(self.node.port)
        self.addCleanup(held.close)
        held.send(f"GET {POLL}&sid={b} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with self.assertRaises(TimeoutError):
            held.read_response(timeout=QUIET)
        self.assertEqual(self.request("POST", f"{POLL}&sid={a}", b'42["chat","across"]').body, b"ok")
        got = held.read_response()
        self.assertEqual((got.body, worker_of(got)), (b'42["chat","across"]', sid_owner(b)))

    def test_upgrade_reaches_the_owner(self):
        room = room_name("up")
        other = self.joined(room)
        self.wait_redis_up(self.node)
        for _ in range(6):
            sid = self.joined(room)
            ws = h.ws_connect(self, self.node.port, f"{SIO_WS}&sid={sid}")
            self.assertEqual(worker_of(ws.response), sid_owner(sid))
            ws.send_text("2probe")
            op, data = ws.recv_message(5.0)
            self.assertEqual(data, b"3probe")
            ws.send_text("5")
            self.assertEqual(self.request("POST", f"{POLL}&sid={other}", b'42["to-ws"]').body, b"ok")
            op, data = ws.recv_message(5.0)
            self.assertEqual(data, b'42["to-ws"]')
            r = self.request("GET", f"{POLL}&sid={sid}")
            self.assertEqual((r.status, json.loads(r.body)["code"]), (400, 3), "upgraded: polling is over")
            ws.close()

    def test_forged_and_unknown_sids(self):
        nobody = "Z" + "A" * 19  # names worker 25 of 4
        for path in (f"{POLL}&sid={nobody}", f"{POLL}&sid=abc", f"{POLL}&sid={'B' * 20}"):
            self.assertUnknown(self.request("GET", path))
            self.assertUnknown(self.request("POST", path, b"40"))
        r = self.request("GET", f"{POLL}&sid={'C' * 20}")
        self.assertUnknown(r)
        self.assertEqual(worker_of(r), 2, "answered by the worker the sid names")
        with self.assertRaises(h.HandshakeError) as e:
            h.WSClient.connect(self.node.port, f"{SIO_WS}&sid={nobody}")
        self.assertUnknown(e.exception.response)
        self.assertTrue(self.node.proc.alive())


# ---------------------------------------------------------------------------------------------------------------


class WorkersLifecycleTest(Base):
    def test_sigterm_stops_every_worker_and_clients_get_1001(self):
        redis = h.start_redis(self)
        node = start_workers(self, "t1", 3, redis.url)
        pids = worker_pids(node)
        room = room_name("term")
        by_worker = self.spread(lambda: h.ws_connect(self, node.port, f"/ws?room={room}"), 3, per_worker=1)
        node.proc.signal(signal.SIGTERM)
        for w, (c,) in by_worker.items():
            self.assertEqual(c.recv_close(5.0 * h.SLOW), 1001, f"client of worker {w}")
            c.send_close(1001)
        try:
            rc = node.proc.wait(15.0 * h.SLOW)
        except TimeoutError:
            self.fail(f"the master did not exit after SIGTERM:\n{node.log_text()[-3000:]}")
        self.assertEqual(rc, 0, node.log_text()[-3000:])
        for w, pid in pids.items():
            self.assertFalse(pid_alive(pid), f"worker {w} (pid {pid}) still running")

    def test_killed_worker_is_started_again_and_counters_go_on(self):
        node = start_workers(self, "k1", 2)
        pids = worker_pids(node)
        by_1 = 0
        for _ in range(200):  # worker 1 has counted connections of its own, which must not be lost with it
            by_1 += worker_of(h.http_request(node.port, "GET", "/")) == 1
            if by_1 >= 3:
                break
        self.assertGreaterEqual(by_1, 3)
        accepted = node.metric("refserver_connections_accepted_total")
        os.kill(pids[1], signal.SIGKILL)
        h.wait_until(lambda: worker_pids(node).get(1, pids[1]) != pids[1], 10 * h.SLOW, what="worker 1 restarted")
        self.assertIn("worker 1 died (signal 9); starting it again", node.log_text())
        self.assertTrue(pid_alive(pids[0]), "the other worker is untouched")
        since = [0]

        def answered_by_1():
            since[0] += 1
            return worker_of(h.http_request(node.port, "GET", "/")) == 1

        h.wait_until(answered_by_1, 10 * h.SLOW, interval=0.01, what="the new worker 1 serving")
        self.assertGreaterEqual(node.metric("refserver_connections_accepted_total"), accepted + since[0] + 1,
                         "a restarted worker's counters go on from its predecessor's (+1: this scrape)")

    def test_metrics_summed_and_stats_line_per_worker(self):
        node = start_workers(self, "ms1", 2)
        by_worker = self.spread(lambda: h.ws_connect(self, node.port, "/ws"), 2, per_worker=2)
        total = sum(len(v) for v in by_worker.values())
        h.wait_until(lambda: node.metric("refserver_websocket_clients") == total, 5 * h.SLOW,
                     what="the extra clients gone")
        answered = set()
        for _ in range(60):
            r = h.http_request(node.port, "GET", "/metrics")
            answered.add(worker_of(r))
            self.assertEqual(h.parse_metrics(r.body.decode())["refserver_websocket_clients"], total, r.body)
            if answered == {0, 1}:
                break
        self.assertEqual(answered, {0, 1}, "scrapes answered by both workers")
        for w in (0, 1):
            h.wait_until(lambda w=w: f"refserver ms1.w{w} info: 2 connected client(s)" in node.log_text(),
                         8.0 * h.SLOW, interval=0.2, what=f"worker {w}'s stats line")

    def test_max_clients_is_for_the_node(self):
        node = start_workers(self, "mc1", 2, extra=["--max-clients", "2"])  # one connection per worker
        held = {}
        for _ in range(20):  # one client on each worker; a connection to a worker already holding one waits
            try:
                c = h.WSClient.connect(node.port, "/ws", timeout=1.0)
            except (TimeoutError, OSError, h.ProtocolError):
                continue
            self.addCleanup(c.close)
            held[worker_of(c.response)] = c
            if len(held) == 2:
                break
        self.assertEqual(set(held), {0, 1})
        waiting = socket.create_connection((h.HOST, node.port), timeout=5.0)
        self.addCleanup(waiting.close)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(0.5)
        with self.assertRaises(socket.timeout, msg="a third connection must wait: the node's limit is 2"):
            waiting.recv(1)

    def test_start_errors_said_once(self):
        with socket.socket() as taken:
            taken.bind((h.HOST, 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            r = h.run_refserver(["--listen", f"{h.HOST}:{port}", "--redis", "none", "--workers", "3"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("cannot listen", r.stderr)
        r = h.run_refserver(["--listen", f"{h.HOST}:{h.free_port()}", "--redis", "http://x", "--workers", "3"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("bad Redis URL", r.stderr)
        for bad in ("0", "65", "two", ""):
            r = h.run_refserver(["--workers", bad])
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn("--workers", r.stderr)


if __name__ == "__main__":
    unittest.main()
