"""loadgen under faults: a node killed mid-run, with and without --reconnect, and a server that loses a message.

The accounting is checked against what really happened: a subscriber on the Redis channel the refserver nodes
publish on counts the messages the emitters really sent, and every emitted message must be due to, or missed while
away by, every other client of the room. The negative control is a server that silently drops one message to a
connected client: loadgen must call it lost (exit 1), never missed while away.
Run: WSH_BUILD=$PWD/build python3 -m unittest tests.integration.test_loadgen_faults -v
"""

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

LOADGEN = os.path.join(h.BUILD, "loadgen")
RUN_TIMEOUT = 60 * h.SLOW
CLIENTS = 20


class BusCounter:
    """Counts the messages PUBLISHed on Redis channels matching a pattern (PSUBSCRIBE), in a thread."""

    def __init__(self, owner, redis, pattern):
        self.count = 0
        self.resp = h.Resp(redis.port, timeout=0.2)
        self.resp.sock.settimeout(5.0)
        self.resp.command("PSUBSCRIBE", pattern)  # the confirmation
        self.resp.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        owner.addCleanup(self.stop)

    def _run(self):
        while not self.stopping.is_set():
            try:
                msg = self.resp.read_reply()
            except (socket.timeout, TimeoutError):
                continue
            except (OSError, ConnectionError):
                return
            if isinstance(msg, list) and msg and msg[0] == b"pmessage":
                self.count += 1

    def stop(self):
        """Stop counting (after a short wait for what is still on its way) and return the count."""
        if not self.stopping.is_set():
            time.sleep(0.3)
            self.stopping.set()
            self.thread.join(5)
            self.resp.close()
        return self.count


class Faults(unittest.TestCase):
    def assertRun(self, rc, want, out, err):
        self.assertEqual(rc, want, f"exit {rc}, wanted {want}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")

    def nodes(self, extra=()):
        """Redis and two refserver nodes; n1 (the first URL: client 0's, the emitter's) is the one to kill."""
        redis = h.start_redis(self)
        n1 = h.RefServer("n1", redis.url, extra)
        n1.start()
        self.addCleanup(n1.stop)
        n2 = h.start_refserver(self, "n2", redis.url, extra)
        return redis, n1, n2

    def run_killing(self, n1, args, clients_metric, wait_after=0.5):
        """Run loadgen, kill -9 n1 once it holds half the clients and the rounds have begun; (rc, out, err, doc,
        seconds from the kill to loadgen's end)."""
        out_json = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".json", delete=False).name
        self.addCleanup(os.unlink, out_json)
        proc = subprocess.Popen([LOADGEN, "--out", out_json, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        h.wait_until(lambda: n1.metric(clients_metric) >= CLIENTS // 2, 20 * h.SLOW, what="half the clients on n1")
        time.sleep(wait_after)  # the rounds begin one interval after the last connect: a few rounds have run
        n1.proc.kill()
        killed = time.monotonic()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        took = time.monotonic() - killed
        with open(out_json) as f:
            doc = json.load(f)
        return proc.returncode, out, err, doc, took

    def assertExact(self, doc, published=None):
        """No phantom loss: nothing owed while connected went missing; each emitted message is due to, or missed
        while away by, every other client of the room; the emitted counts are what reached the bus."""
        t, rounds = doc["totals"], doc["rounds"]
        self.assertEqual((t["missing"], t["late"], t["duplicate"], t["reordered"]), (0, 0, 0, 0), t)
        self.assertEqual(t["received"], t["expected"], t)
        for r in rounds:
            self.assertEqual(r["missing"], 0, r)
            self.assertEqual(r["expected"] + r["missed_while_away"], r["emitted"] * (CLIENTS - 1), r)
            if r["emitter_gone"]:
                self.assertEqual(r["emitted"], 0, r)  # one emitter: gone means nothing was sent
                self.assertFalse(r["timed_out"], r)  # and nothing is owed: no deadline wait
        for k in ("expected", "missed_while_away", "emitted"):
            self.assertEqual(t[k], sum(r[k] for r in rounds), k)
        self.assertEqual(t["emitter_gone"], sum(r["emitter_gone"] for r in rounds))
        if published is not None:
            self.assertEqual(t["emitted"], published, "messages emitted vs. messages published on the Redis bus")
        start = doc["start_unix_ms"]
        self.assertLess(abs(start / 1000 - time.time()), 120, start)

    def test_a_emitter_node_killed_no_phantom_loss(self):
        # the case: 2 nodes, -c 20 -r 10 -i 200ms --deadline 2s, the emitter's node killed mid-run
        redis, n1, n2 = self.nodes()
        bus = BusCounter(self, redis, "wsh#it-fault-a")
        rc, out, err, doc, took = self.run_killing(
            n1, ["-c", str(CLIENTS), "-r", "10", "-i", "200ms", "--deadline", "2s", "--room", "it-fault-a",
                 f"ws://{h.HOST}:{n1.port}/ws", f"ws://{h.HOST}:{n2.port}/ws"], "refserver_websocket_clients")
        self.assertRun(rc, 1, out, err)
        self.assertExact(doc, bus.stop())
        rounds = doc["rounds"]
        self.assertEqual(len(rounds), 10)
        gone = [r for r in rounds if r["emitter_gone"]]
        self.assertEqual(len(gone), 1, rounds)  # the next live client takes over for the following rounds
        after = rounds[gone[0]["round"]:]
        self.assertTrue(after and all(r["emitted"] == 1 and r["expected"] == 9 for r in after), after)
        self.assertFalse(any(r["timed_out"] for r in rounds), rounds)
        self.assertGreater(doc["totals"]["missed_while_away"], 0)
        self.assertEqual(doc["clients"]["dropped"], CLIENTS // 2)
        self.assertNotIn("reconnect", doc)
        self.assertLess(took, 10 * h.SLOW, "the run must end promptly once the rounds are over")  # 13 s before
        reasons = doc["verdict"]["reasons"]
        self.assertIn(f"{CLIENTS // 2} client(s) lost after connecting (dropped:", reasons[0])
        self.assertFalse(any("lost (missing" in r for r in reasons), reasons)
        self.assertIn("0 lost", out)

    def test_b_reconnect_after_node_kill(self):
        redis, n1, n2 = self.nodes()
        bus = BusCounter(self, redis, "wsh#it-fault-b")
        hlog = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".hlog", delete=False).name
        self.addCleanup(os.unlink, hlog)
        rc, out, err, doc, _ = self.run_killing(
            n1, ["-c", str(CLIENTS), "-r", "20", "-i", "200ms", "--deadline", "2s", "--room", "it-fault-b",
                 "--reconnect", "--reconnect-delay", "100ms", "--reconnect-delay-max", "400ms", "--hlog", hlog,
                 f"ws://{h.HOST}:{n1.port}/ws", f"ws://{h.HOST}:{n2.port}/ws"], "refserver_websocket_clients")
        self.assertRun(rc, 0, out, err)
        self.assertExact(doc, bus.stop())
        rc_, t = doc["reconnect"], doc["totals"]
        half = CLIENTS // 2
        self.assertEqual((rc_["drops"], rc_["reconnected"], rc_["never_back"]), (half, half, 0), rc_)
        self.assertEqual(rc_["nodes"], {"n2": half}, rc_)  # the survivor: n1 refused the first attempts
        self.assertGreaterEqual(rc_["failed_attempts"], half, rc_)
        self.assertEqual(sum(rc_["failed_kinds"].values()), rc_["failed_attempts"], rc_)
        self.assertEqual(rc_["away"]["count"], rc_["reconnected"], rc_)
        self.assertEqual(len(rc_["episodes"]), rc_["drops"], rc_)
        self.assertEqual(rc_["episodes_dropped"], 0)
        rounds_end = doc["rounds"][-1]["start_ms"] + doc["rounds"][-1]["duration_ms"]
        for lost, back in rc_["episodes"]:
            self.assertIsNotNone(back)
            self.assertLess(lost, back)
            self.assertLess(back, rounds_end + 5000)
        self.assertEqual(doc["clients"]["dropped"], half)
        self.assertEqual(doc["errors"]["dropped"]["count"], half)
        self.assertNotIn("refused", doc["errors"])  # failed attempts are not connect-phase failures
        self.assertGreater(t["missed_while_away"], 0, t)
        self.assertEqual(doc["rounds"][-1]["expected"], CLIENTS - 1)  # all back, all owed again
        self.assertEqual(doc["options"]["reconnect"],
                         {"enabled": True, "delay_ms": 100.0, "delay_max_ms": 400.0, "jitter": 0.5, "attempts": 0})
        with open(hlog) as f:
            self.assertIn("Tag=reconnect,", f.read())

    def test_d_socketio_reconnect(self):
        redis, n1, n2 = self.nodes()
        bus = BusCounter(self, redis, "socket.io#/#it-fault-d#")
        rc, out, err, doc, _ = self.run_killing(
            n1, ["--protocol", "socketio", "-c", str(CLIENTS), "-r", "20", "-i", "200ms", "--deadline", "2s",
                 "--room", "it-fault-d", "--reconnect", "--reconnect-delay", "100ms", "--reconnect-delay-max",
                 "400ms", f"ws://{h.HOST}:{n1.port}/", f"ws://{h.HOST}:{n2.port}/"],
            "refserver_connections")
        self.assertRun(rc, 0, out, err)
        self.assertExact(doc, bus.stop())
        rc_ = doc["reconnect"]
        half = CLIENTS // 2
        self.assertEqual((rc_["drops"], rc_["reconnected"], rc_["never_back"]), (half, half, 0), rc_)
        self.assertEqual(rc_["nodes"], {"n2": half}, rc_)
        self.assertEqual(doc["rounds"][-1]["expected"], CLIENTS - 1)

    def test_d_socketio_polling_reconnect(self):
        redis, n1, n2 = self.nodes()
        rc, out, err, doc, _ = self.run_killing(
            n1, ["--protocol", "socketio", "--transport", "polling", "--no-upgrade", "-c", str(CLIENTS), "-r", "20",
                 "-i", "200ms", "--deadline", "2s", "--room", "it-fault-p", "--reconnect", "--reconnect-delay",
                 "100ms", "--reconnect-delay-max", "400ms", f"ws://{h.HOST}:{n1.port}/",
                 f"ws://{h.HOST}:{n2.port}/"], "refserver_socketio_polling_sessions")
        self.assertRun(rc, 0, out, err)
        self.assertExact(doc)
        rc_ = doc["reconnect"]
        half = CLIENTS // 2
        self.assertEqual((rc_["drops"], rc_["reconnected"], rc_["never_back"]), (half, half, 0), rc_)
        self.assertEqual(rc_["nodes"], {"n2": half}, rc_)
        self.assertEqual(doc["rounds"][-1]["expected"], CLIENTS - 1)


class DroppingServer:
    """A tiny WebSocket broadcast server (one room) that relays each text message to every other client, except
    that it silently drops the message of round DROP_ROUND to the client connected last: a loss while connected.
    With set_cookie each 101 sets `SRVID=<handshake number>`, and every handshake's Cookie header is recorded."""

    DROP_ROUND = 3

    def __init__(self, owner, drop=True, set_cookie=False):
        self.drop, self.set_cookie, self.handshakes, self.served = drop, set_cookie, [], 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.clients, self.lock, self.dropped = [], threading.Lock(), 0
        threading.Thread(target=self._accept, daemon=True).start()
        owner.addCleanup(self.sock.close)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _handshake(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError
            head += chunk
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        cookie = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                  if ln.lower().startswith(b"cookie:")]
        with self.lock:
            self.served += 1
            n = self.served
            self.handshakes.append((n, cookie[0] if cookie else None))
        extra = b"Set-Cookie: SRVID=s%d; Path=/; HttpOnly\r\n" % n if self.set_cookie else b""
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")

    def _frame(self, conn):
        b0, b1 = self._read_exact(conn, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(conn, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(conn, 8))[0]
        mask = self._read_exact(conn, 4)
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read_exact(conn, n)))
        return b0 & 0x0F, data

    @staticmethod
    def _send(conn, opcode, data):
        n = len(data)
        head = bytes([0x80 | opcode, n]) if n < 126 else bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
        conn.sendall(head + data)

    def _serve(self, conn):
        try:
            self._handshake(conn)
            with self.lock:
                self.clients.append(conn)
            while True:
                opcode, data = self._frame(conn)
                if opcode == 8:  # close: answer it, then end
                    self._send(conn, 8, data[:2])
                    return
                with self.lock:
                    targets = [c for c in self.clients if c is not conn]
                    if self.drop and json.loads(data).get("r") == self.DROP_ROUND and targets:
                        targets = targets[:-1]
                        self.dropped += 1
                    for c in targets:
                        self._send(c, opcode, data)
        except (ConnectionError, OSError, ValueError, IndexError):
            pass
        finally:
            with self.lock:
                if conn in self.clients:
                    self.clients.remove(conn)
            conn.close()

    def kick_all(self):
        """Reset every open connection, as a crashed node would."""
        with self.lock:
            for c in self.clients:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.shutdown(socket.SHUT_RDWR)
            n = len(self.clients)
        return n


class NegativeControl(unittest.TestCase):
    def test_c_message_dropped_while_connected_is_lost(self):
        srv = DroppingServer(self)
        out_json = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".json", delete=False).name
        self.addCleanup(os.unlink, out_json)
        for flags in ((), ("--reconnect",)):  # --reconnect must not excuse a loss while connected either
            with self.subTest(flags=flags):
                p = subprocess.run([LOADGEN, "--out", out_json, "-c", "5", "-r", "5", "-i", "100ms", "--deadline",
                                    "500ms", *flags, f"ws://{h.HOST}:{srv.port}/ws"], capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                with open(out_json) as f:
                    doc = json.load(f)
                t = doc["totals"]
                self.assertEqual((t["missing"], t["missed_while_away"], t["emitted"]), (1, 0, 5), t)
                self.assertEqual(doc["rounds"][DroppingServer.DROP_ROUND - 1]["missing"], 1)
                self.assertIn("1 lost (missing", doc["verdict"]["reasons"][0])
                self.assertIn("1 lost", p.stdout)
        self.assertEqual(srv.dropped, 2)


class StickyCookie(unittest.TestCase):
    def test_reconnect_sends_back_the_cookie_it_was_set(self):
        # as a browser keeps a balancer's sticky cookie: the reconnect carries what the 101 set
        srv = DroppingServer(self, drop=False, set_cookie=True)
        out_json = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".json", delete=False).name
        self.addCleanup(os.unlink, out_json)
        proc = subprocess.Popen([LOADGEN, "--out", out_json, "-c", "4", "-r", "15", "-i", "100ms", "--deadline",
                                 "500ms", "--reconnect", "--reconnect-delay", "50ms", "--reconnect-delay-max", "100ms",
                                 f"ws://{h.HOST}:{srv.port}/ws"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        h.wait_until(lambda: len(srv.handshakes) >= 4, 10 * h.SLOW, what="4 handshakes")
        time.sleep(0.4)
        self.assertEqual(srv.kick_all(), 4)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertEqual(proc.returncode, 0, out + err)
        with open(out_json) as f:
            doc = json.load(f)
        self.assertEqual((doc["reconnect"]["drops"], doc["reconnect"]["reconnected"]), (4, 4), doc["reconnect"])
        first, again = srv.handshakes[:4], srv.handshakes[4:]
        self.assertEqual([c for _, c in first], [None] * 4)
        self.assertEqual(len(again), 4, srv.handshakes)
        self.assertEqual(sorted(c or "" for _, c in again), [f"SRVID=s{n}" for n in range(1, 5)], srv.handshakes)


if __name__ == "__main__":
    unittest.main()
