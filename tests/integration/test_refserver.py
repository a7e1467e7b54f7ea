"""Integration tests for build/refserver: real refserver processes, a real redis-server, a hand-written RFC 6455 client.

Run: python3 -m unittest discover -s tests/integration -p 'test_*.py' -v   (WSH_BUILD selects the build directory)
Every process is started on a free loopback port and stopped by PID in a cleanup; every wait has a deadline.
Tests assert behaviour, never speed: time bounds are generous ceilings (scaled for sanitizer builds).
"""

import base64
import json
import os
import signal
import socket
import struct
import sys
import time
import unittest
import uuid

import harness as h
from harness import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT

if not os.access(h.REFSERVER, os.X_OK):
    raise RuntimeError(f"{h.REFSERVER} is not built (set WSH_BUILD or run make)")

METRIC_NAMES = [
    "refserver_connections", "refserver_websocket_clients", "refserver_rooms", "refserver_messages_in_total",
    "refserver_messages_out_total", "refserver_bytes_in_total", "refserver_bytes_out_total",
    "refserver_publish_failures_total", "refserver_published_total", "refserver_slow_consumers_closed_total",
    "refserver_protocol_errors_total", "refserver_redis_up", "refserver_redis_reconnects_total",
]

QUIET = 0.3  # how long a client listens to be sure nothing (more) arrives


def room_name(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


class Base(unittest.TestCase):
    def assertMessage(self, client, opcode, payload, timeout=5.0, who="client"):
        try:
            op, data = client.recv_message(timeout)
        except (TimeoutError, h.ConnectionClosed) as e:
            self.fail(f"{who}: expected a message {payload[:60]!r}, got {e!r}")
        self.assertEqual(op, opcode, f"{who}: opcode")
        self.assertEqual(data, payload, f"{who}: payload")

    def assertSilent(self, client, duration=QUIET, who="client"):
        got = client.recv_nothing(duration)
        self.assertEqual(got, [], f"{who} received unexpected message(s)")

    def wait_metric(self, node, name, pred, timeout=5.0):
        """Poll node's metric until pred(value); returns the value, fails with the last one seen."""
        seen = []

        def check():
            v = node.metrics().get(name)
            seen.append(v)
            return v is not None and pred(v)

        try:
            h.wait_until(check, timeout * h.SLOW, interval=0.05, what=name)
        except TimeoutError:
            self.fail(f"{node.node_id}: {name} never satisfied the condition; last value {seen[-1:]}\n"
                      f"log:\n{node.log_text()[-2000:]}")
        return seen[-1]


# ---------------------------------------------------------------------------------------------------------------


class RoutesTest(Base):
    """HTTP routes and the request-head parser, on a standalone node."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "r1", "none", ["--handshake-timeout", "1"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def test_root_ok_with_node_id(self):
        r = h.http_request(self.node.port, "GET", "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"ok r1\n")
        self.assertEqual(r.header("X-Node-Id"), "r1")

    def test_metrics_names(self):
        r = h.http_request(self.node.port, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Node-Id"), "r1")
        self.assertTrue(r.header("Content-Type", "").startswith("text/plain"), r.header("Content-Type"))
        text = r.body.decode()
        m = h.parse_metrics(text)
        for name in METRIC_NAMES:
            with self.subTest(metric=name):
                self.assertIn(name, m, f"{name} missing from /metrics")
                self.assertRegex(text, rf"(?m)^# TYPE {name} (counter|gauge)$")
        self.assertEqual(m["refserver_redis_up"], 0, "a standalone node has no Redis link")
        self.assertGreaterEqual(m["refserver_connections"], 1, "the /metrics request itself is a connection")

    def test_metrics_follow_clients(self):
        before = self.node.metrics()
        c = h.ws_connect(self, self.node.port, f"/ws?room={room_name('m')}")
        m = self.wait_metric(self.node, "refserver_websocket_clients",
                             lambda v: v == before["refserver_websocket_clients"] + 1)
        self.assertEqual(m, before["refserver_websocket_clients"] + 1)
        self.assertEqual(self.node.metric("refserver_rooms"), before["refserver_rooms"] + 1)
        c.send_close(1000)
        self.assertEqual(c.recv_close(), 1000)
        self.wait_metric(self.node, "refserver_websocket_clients", lambda v: v == before["refserver_websocket_clients"])
        self.wait_metric(self.node, "refserver_rooms", lambda v: v == before["refserver_rooms"])

    def test_not_found(self):
        r = h.http_request(self.node.port, "GET", "/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("X-Node-Id"), "r1")

    def test_two_host_headers_400(self):
        """RFC 9112 3.2: more than one Host field line is a 400, whichever route and version."""
        for req in (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                    b"GET /metrics HTTP/1.0\r\nhost: a\r\nHOST: b\r\n\r\n",
                    b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
            with self.subTest(req=req):
                r = h.http_raw(self.node.port, req)
                self.assertEqual(r.status, 400, r.body)
                self.assertIn(b"more than one Host header", r.body)
        self.assertEqual(h.http_raw(self.node.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, 200)

    def test_absolute_form_target_routes_by_its_path(self):
        """RFC 9112 3.2.2: an origin server accepts an absolute-form target (what clients send to proxies)."""
        for target, body in (("http://x/", b"ok r1\n"), ("http://x", b"ok r1\n"), ("HTTPS://x:1/?a=b", b"ok r1\n"),
                             ("http://x/socket.io/?EIO=4&transport=polling", b"0{")):
            with self.subTest(target=target):
                r = h.http_raw(self.node.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                self.assertEqual((r.status, r.body[:len(body)]), (200, body))
        self.assertEqual(h.http_raw(self.node.port, b"GET http://x/nope HTTP/1.1\r\nHost: x\r\n\r\n").status, 404)
        room = room_name("abs")
        a = h.ws_connect(self, self.node.port, f"http://x/ws?room={room}")
        b = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        a.send_text("over the absolute form")  # the room came from the absolute target's query
        self.assertMessage(b, OP_TEXT, b"over the absolute form")

    def test_other_methods_405(self):
        for method, path in (("POST", "/"), ("PUT", "/ws"), ("DELETE", "/metrics")):
            with self.subTest(method=method, path=path):
                r = h.http_request(self.node.port, method, path, body=b"x=1" if method == "POST" else b"")
                self.assertEqual(r.status, 405)
                self.assertEqual(r.header("X-Node-Id"), "r1")

    def handshake_refused(self, headers, path="/ws"):
        with self.assertRaises(h.HandshakeError) as cm:
            c = h.WSClient.connect(self.node.port, path, headers=headers)
            c.close()
        r = cm.exception.response
        self.assertEqual(r.header("X-Node-Id"), "r1")
        return r

    def test_handshake_missing_key_400(self):
        r = self.handshake_refused({"Sec-WebSocket-Key": None})
        self.assertEqual(r.status, 400)
        self.assertIn(b"key", r.body.lower(), "the body should give the reason")

    def test_handshake_invalid_key_400(self):
        r = self.handshake_refused({"Sec-WebSocket-Key": "not-a-16-byte-key"})
        self.assertEqual(r.status, 400)
        self.assertIn(b"key", r.body.lower())

    def test_handshake_wrong_upgrade_400(self):
        r = self.handshake_refused({"Upgrade": "h2c"})
        self.assertEqual(r.status, 400)
        self.assertIn(b"upgrade", r.body.lower())

    def test_handshake_missing_connection_upgrade_400(self):
        r = self.handshake_refused({"Connection": "keep-alive"})
        self.assertEqual(r.status, 400)
        self.assertIn(b"connection", r.body.lower())

    def test_handshake_version_12_426(self):
        r = self.handshake_refused({"Sec-WebSocket-Version": "12"})
        self.assertEqual(r.status, 426)
        self.assertEqual(r.header("Sec-WebSocket-Version"), "13")

    def test_malformed_heads_rejected_and_server_still_serves(self):
        cases = [
            ("bare LF", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", (400,)),
            ("LF-only lines", b"GET / HTTP/1.1\nHost: x\n\n", (400,)),
            ("duplicate Content-Length", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
             (400,)),
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n", (400,)),
            ("head too large", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", (431,)),
            ("garbage request line", b"HELLO\r\n\r\n", (400,)),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", (400,)),
            ("CL and TE", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
             (400,)),
        ]
        for name, raw, statuses in cases:
            with self.subTest(case=name):
                with h.HttpConn(self.node.port) as c:
                    c.send(raw)
                    r = c.read_response()
                    self.assertIn(r.status, statuses, r)
                    self.assertEqual(r.header("X-Node-Id"), "r1")
                    self.assertTrue(c.wait_closed(5.0), "the connection should close after a malformed head")
                ok = h.http_request(self.node.port, "GET", "/")
                self.assertEqual(ok.status, 200, "server must still serve after a malformed request")

    def test_bad_room_name_400(self):
        r = self.handshake_refused({}, path="/ws?room=a%20b")  # decodes to a space: not a visible character
        self.assertEqual(r.status, 400)
        self.assertIn(b"room", r.body.lower())

    def test_slow_request_head_408(self):
        with h.HttpConn(self.node.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHo")  # and nothing more (slowloris); --handshake-timeout is 1 s here
            r = c.read_response(timeout=10.0)
            self.assertEqual(r.status, 408)
            self.assertTrue(c.wait_closed(5.0))

    def test_keepalive_two_requests(self):
        with h.HttpConn(self.node.port) as c:
            r1 = c.request("GET", "/")
            r2 = c.request("GET", "/")
            self.assertEqual((r1.status, r1.body), (200, b"ok r1\n"))
            self.assertEqual((r2.status, r2.body), (200, b"ok r1\n"))

    def test_keepalive_head_then_get(self):
        with h.HttpConn(self.node.port) as c:
            r1 = c.request("HEAD", "/")
            self.assertEqual(r1.status, 200)
            r2 = c.request("GET", "/metrics")  # would be misparsed if HEAD had sent a body
            self.assertEqual(r2.status, 200)
            self.assertIn(b"refserver_connections", r2.body)

    def test_keepalive_pipelined(self):
        with h.HttpConn(self.node.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            r1 = c.read_response()
            r2 = c.read_response()
            self.assertEqual((r1.status, r1.body), (200, b"ok r1\n"))
            self.assertEqual(r2.status, 404)


# ---------------------------------------------------------------------------------------------------------------


class CliTest(Base):
    def assertUsageError(self, args):
        r = h.run_refserver(args)
        self.assertEqual(r.returncode, 2, f"{args}: stderr={r.stderr!r}")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, f"{args}: expected one line on stderr, got {r.stderr!r}")
        return lines[0]

    def test_help(self):
        r = h.run_refserver(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--listen", r.stdout)
        self.assertIn("--redis", r.stdout)

    def test_unknown_flag(self):
        line = self.assertUsageError(["--bogus-flag"])
        self.assertIn("bogus", line)

    def test_bad_values(self):
        cases = [["--max-message", "lots"], ["--max-queue", "-5"], ["--ping-interval", "0"],
                 ["--idle-timeout", "soon"], ["--listen", "not-an-address"], ["--log-level", "loud"],
                 ["--ping-interval", "10", "--idle-timeout", "5"], ["--listen"]]
        for args in cases:
            with self.subTest(args=args):
                self.assertUsageError(args + (["--redis", "none"] if args != ["--listen"] else []))

    def test_port_in_use(self):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.bind((h.HOST, 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        line = self.assertUsageError(["--listen", f"{h.HOST}:{port}", "--redis", "none", "--node-id", "busy"])
        self.assertTrue(line, "the error line should not be empty")


# ---------------------------------------------------------------------------------------------------------------


class BroadcastTest(Base):
    """Three nodes on one Redis."""

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.nodes = h.start_nodes(cls, 3, cls.redis.url)

    def tearDown(self):
        for n in self.nodes:
            self.assertTrue(n.proc.alive(), f"{n.node_id} died:\n{n.log_text()[-2000:]}")

    def join(self, node, room, **kw):
        return h.ws_connect(self, node.port, f"/ws?room={room}", **kw)

    def test_cross_node_broadcast_exactly_once(self):
        room = room_name("bc")
        n1, n2, n3 = self.nodes
        sender, local, r2, r3 = self.join(n1, room), self.join(n1, room), self.join(n2, room), self.join(n3, room)
        for client, node in ((sender, n1), (local, n1), (r2, n2), (r3, n3)):
            self.assertEqual(client.response.header("X-Node-Id"), node.node_id, "101 must name the node")
        self.redis.wait_subscribers(f"wsh#{room}", 3)
        payload = f"hello {uuid.uuid4()}".encode()
        sender.send_text(payload)
        for who, c in (("local", local), ("node2", r2), ("node3", r3)):
            self.assertMessage(c, OP_TEXT, payload, who=who)
        for who, c in (("sender", sender), ("local", local), ("node2", r2), ("node3", r3)):
            self.assertSilent(c, who=who)

    def test_order_1000_messages(self):
        room = room_name("order")
        n1, n2, _ = self.nodes
        sender, local, remote = self.join(n1, room), self.join(n1, room), self.join(n2, room)
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        count = 1000
        sender.send_raw(b"".join(h.encode_frame(OP_TEXT, f"seq {i:04d}".encode()) for i in range(count)))
        for who, c in (("same node", local), ("other node", remote)):
            got = []
            dl = h.Deadline(20 * h.SLOW)
            while len(got) < count and not dl.expired():
                try:
                    got.append(c.recv_text(dl.remaining()))
                except TimeoutError:
                    break
            self.assertEqual(len(got), count, f"{who}: got {len(got)} of {count}")
            self.assertEqual(got, [f"seq {i:04d}" for i in range(count)], f"{who}: order")
            self.assertSilent(c, who=who)
        self.assertSilent(sender, who="sender")

    def test_rooms_isolated(self):
        ra, rb = room_name("a"), room_name("b")
        n1, n2, n3 = self.nodes
        a1, a2 = self.join(n1, ra), self.join(n2, ra)
        b1, b2, b3 = self.join(n1, rb), self.join(n2, rb), self.join(n3, rb)
        self.redis.wait_subscribers(f"wsh#{ra}", 2)
        self.redis.wait_subscribers(f"wsh#{rb}", 3)
        a1.send_text("for room a")
        self.assertMessage(a2, OP_TEXT, b"for room a", who="a2")
        b2.send_text("for room b")
        self.assertMessage(b1, OP_TEXT, b"for room b", who="b1")
        self.assertMessage(b3, OP_TEXT, b"for room b", who="b3")
        for who, c in (("a1", a1), ("a2", a2), ("b1", b1), ("b2", b2), ("b3", b3)):
            self.assertSilent(c, who=who)

    def test_default_room_is_all(self):
        n1, n2, _ = self.nodes
        a = h.ws_connect(self, n1.port, "/ws")
        b = h.ws_connect(self, n2.port, "/ws?room=all")
        self.redis.wait_subscribers("wsh#all", 2)
        a.send_text("to all")
        self.assertMessage(b, OP_TEXT, b"to all", who="room all on node 2")

    def test_binary_relayed_as_binary(self):
        room = room_name("bin")
        n1, n2, _ = self.nodes
        sender, local, remote = self.join(n1, room), self.join(n1, room), self.join(n2, room)
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        small = bytes(range(256)) * 4 + b"\x00\xff\n"  # NULs, newlines, invalid UTF-8: must pass unchanged
        big = os.urandom(200_000)                      # 64-bit length frames, over several reads
        sender.send_binary(small)
        sender.send_binary(big)
        for who, c in (("same node", local), ("other node", remote)):
            self.assertMessage(c, OP_BINARY, small, who=who)
            self.assertMessage(c, OP_BINARY, big, who=who)
        self.assertSilent(sender, who="sender")

    def test_fragmented_message_relayed_whole(self):
        room = room_name("frag")
        n1, n2, _ = self.nodes
        sender, local, remote = self.join(n1, room), self.join(n1, room), self.join(n2, room)
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        text = "caf\u00e9 \u20ac and \U0001F600 end".encode()
        euro = text.index("\u20ac".encode())
        parts = [text[:euro + 1], text[euro + 1:euro + 2], text[euro + 2:]]  # the euro sign split over 3 frames
        self.assertEqual(b"".join(parts), text)
        self.assertTrue(all(parts))
        sender.send_frame(OP_TEXT, parts[0], fin=False)
        sender.send_ping(b"between fragments")  # control frames may interleave with fragments
        sender.send_frame(OP_CONT, parts[1], fin=False)
        sender.send_frame(OP_CONT, parts[2], fin=True)
        for who, c in (("same node", local), ("other node", remote)):
            self.assertMessage(c, OP_TEXT, text, who=who)
        f = sender.recv_frame(5.0)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"between fragments"))
        self.assertSilent(sender, who="sender")
        self.assertSilent(local, who="same node")
        self.assertSilent(remote, who="other node")


# ---------------------------------------------------------------------------------------------------------------


class ProtocolTest(Base):
    """RFC 6455 failures and control frames, on a standalone node with --max-message 1024."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "p1", "none", ["--max-message", "1024"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def client(self):
        return h.ws_connect(self, self.node.port, f"/ws?room={room_name('p')}")

    def assertFailsWith(self, code, send):
        c = self.client()
        send(c)
        try:
            got = c.recv_close(5.0)
        except (TimeoutError, h.ConnectionClosed) as e:
            self.fail(f"expected a close frame with {code}, got {e!r}")
        self.assertEqual(got, code)
        self.assertTrue(c.wait_eof(5.0), "the server should close the TCP connection after a protocol error")

    def test_unmasked_frame_1002(self):
        before = self.node.metric("refserver_protocol_errors_total")
        self.assertFailsWith(1002, lambda c: c.send_frame(OP_TEXT, b"not masked", mask=False))
        self.assertGreaterEqual(self.node.metric("refserver_protocol_errors_total"), before + 1)

    def test_reserved_bits_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(OP_TEXT, b"rsv", rsv=4))

    def test_unknown_opcode_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(3, b"?"))

    def test_fragmented_control_frame_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(OP_PING, b"x", fin=False))

    def test_continuation_without_message_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(OP_CONT, b"orphan"))

    def test_close_with_invalid_code_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_close(1005))

    def test_control_frame_too_long_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(OP_PING, b"x" * 126))

    def test_close_one_byte_payload_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_frame(h.OP_CLOSE, b"\x03"))

    def test_non_minimal_length_1002(self):
        frame = struct.pack("!BBH", 0x81, 0x80 | 126, 5) + b"\0\0\0\0" + b"hello"  # 5 bytes in a 16-bit length
        self.assertFailsWith(1002, lambda c: c.send_raw(frame))

    def test_length_top_bit_1002(self):
        self.assertFailsWith(1002, lambda c: c.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63) + b"\0" * 4))

    def test_new_message_inside_fragmented_one_1002(self):
        def send(c):
            c.send_frame(OP_TEXT, b"a", fin=False)
            c.send_frame(OP_TEXT, b"b")
        self.assertFailsWith(1002, send)

    def test_close_reason_invalid_utf8_1007(self):
        self.assertFailsWith(1007, lambda c: c.send_frame(h.OP_CLOSE, b"\x03\xe8\xff"))

    def test_invalid_utf8_1007(self):
        self.assertFailsWith(1007, lambda c: c.send_frame(OP_TEXT, b"ok \xc3\x28"))

    def test_invalid_utf8_across_fragments_1007(self):
        def send(c):
            c.send_frame(OP_TEXT, b"ok \xe2\x82", fin=False)  # a valid prefix of a 3-byte sequence...
            c.send_frame(OP_CONT, b"(", fin=True)              # ...broken in the next fragment
        self.assertFailsWith(1007, send)

    def test_message_over_max_1009(self):
        self.assertFailsWith(1009, lambda c: c.send_binary(b"x" * 2000))

    def test_fragments_over_max_1009(self):
        def send(c):
            c.send_frame(OP_BINARY, b"y" * 600, fin=False)
            c.send_frame(OP_CONT, b"y" * 600, fin=True)
        self.assertFailsWith(1009, send)

    def test_message_at_max_is_relayed(self):
        room = room_name("max")
        a = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        b = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        a.send_binary(b"z" * 1024)
        self.assertMessage(b, OP_BINARY, b"z" * 1024)

    def test_empty_messages_relayed(self):
        room = room_name("empty")
        a = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        b = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        a.send_text(b"")
        a.send_binary(b"")
        self.assertMessage(b, OP_TEXT, b"")
        self.assertMessage(b, OP_BINARY, b"")

    def test_data_after_close_is_ignored(self):
        room = room_name("late")
        a = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        b = h.ws_connect(self, self.node.port, f"/ws?room={room}")
        a.send_text("before close")
        a.send_raw(h.encode_frame(h.OP_CLOSE, h.close_payload(1000)) + h.encode_frame(OP_TEXT, b"after close"))
        self.assertEqual(a.recv_close(5.0), 1000)
        self.assertTrue(a.wait_eof(5.0))
        self.assertMessage(b, OP_TEXT, b"before close")
        self.assertSilent(b, who="a message sent after a close frame must not be relayed")

    def test_close_without_code_answered_without_code(self):
        c = self.client()
        c.send_frame(h.OP_CLOSE, b"")
        f = c.recv_frame(5.0)
        self.assertEqual(f.opcode, h.OP_CLOSE)
        self.assertIn(f.payload, (b"", h.close_payload(1000)), "answered without a code, or with 1000")
        self.assertTrue(c.wait_eof(5.0))

    def test_ping_pong_same_payload(self):
        c = self.client()
        c.send_ping(b"are you there?")
        f = c.recv_frame(5.0)
        self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_PONG, b"are you there?"))
        c.send_ping(b"")
        f = c.recv_frame(5.0)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b""))

    def test_client_close_echoed(self):
        c = self.client()
        c.send_close(1000, b"bye")
        self.assertEqual(c.recv_close(5.0), 1000)
        self.assertTrue(c.wait_eof(5.0), "the server should close TCP after the close handshake")

    def test_client_close_other_code_echoed(self):
        c = self.client()
        c.send_close(4001)
        self.assertEqual(c.recv_close(5.0), 4001)
        self.assertTrue(c.wait_eof(5.0))


# ---------------------------------------------------------------------------------------------------------------


class RedisOutageTest(Base):
    def setUp(self):
        self.redis = h.start_redis(self)
        self.n1, self.n2 = h.start_nodes(self, 2, self.redis.url)

    def probe_until_crosses(self, sender, receiver, tag, timeout=10.0):
        """Send "tag-i" every ~200 ms until receiver gets one of them; fail after timeout."""
        dl = h.Deadline(timeout)
        i = 0
        while not dl.expired():
            sender.send_text(f"{tag}-{i}")
            i += 1
            try:
                while True:
                    op, data = receiver.recv_message(min(0.2, max(0.01, dl.remaining())))
                    if data.decode().startswith(f"{tag}-"):
                        return i
            except TimeoutError:
                pass
        self.fail(f"{tag}: no message crossed nodes within {timeout} s after Redis came back\n"
                  f"n1 log:\n{self.n1.log_text()[-1500:]}\nn2 log:\n{self.n2.log_text()[-1500:]}")

    def recv_skipping(self, client, prefix, timeout=5.0):
        """The next text message not starting with prefix (probes that arrived late)."""
        dl = h.Deadline(timeout)
        while True:
            data = client.recv_text(max(0.01, dl.remaining()))
            if not data.startswith(prefix):
                return data

    def test_redis_killed_and_restarted(self):
        room = room_name("out")
        a, b = (h.ws_connect(self, self.n1.port, f"/ws?room={room}") for _ in range(2))
        c = h.ws_connect(self, self.n2.port, f"/ws?room={room}")
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        a.send_text("before")
        self.assertMessage(b, OP_TEXT, b"before", who="local before")
        self.assertMessage(c, OP_TEXT, b"before", who="remote before")

        self.redis.kill()
        self.wait_metric(self.n1, "refserver_redis_up", lambda v: v == 0)
        self.wait_metric(self.n2, "refserver_redis_up", lambda v: v == 0)
        for i in range(5):
            a.send_text(f"during {i}")
        for i in range(5):
            self.assertMessage(b, OP_TEXT, f"during {i}".encode(), who="local delivery while Redis is down")
        self.wait_metric(self.n1, "refserver_publish_failures_total", lambda v: v >= 5)
        self.assertTrue(self.n1.proc.alive() and self.n2.proc.alive())

        self.redis.start()  # same port
        self.probe_until_crosses(a, c, "probe12")
        self.probe_until_crosses(c, a, "probe21")  # node 1 re-subscribed too
        for node in (self.n1, self.n2):
            self.wait_metric(node, "refserver_redis_up", lambda v: v == 1)
            self.wait_metric(node, "refserver_redis_reconnects_total", lambda v: v >= 1)
        a.send_text("after")
        self.assertEqual(self.recv_skipping(c, "probe12-"), "after")
        self.assertEqual(self.recv_skipping(b, "probe"), "after")


# ---------------------------------------------------------------------------------------------------------------


class SigtermTest(Base):
    def test_sigterm_closes_clients_with_1001_and_exits_0(self):
        redis = h.start_redis(self)
        node = h.start_refserver(self, "t1", redis.url)
        room = room_name("term")
        polite = h.ws_connect(self, node.port, f"/ws?room={room}")
        silent = h.ws_connect(self, node.port, f"/ws?room={room}")  # never answers the close
        polite.send_text("warm up")
        self.assertMessage(silent, OP_TEXT, b"warm up")
        node.proc.signal(signal.SIGTERM)
        self.assertEqual(polite.recv_close(5.0), 1001)
        polite.send_close(1001)
        self.assertTrue(polite.wait_eof(5.0), "TCP should close after the close handshake")
        self.assertEqual(silent.recv_close(5.0), 1001)
        try:
            rc = node.proc.wait(15.0 * h.SLOW)
        except TimeoutError:
            self.fail(f"refserver did not exit after SIGTERM:\n{node.log_text()[-2000:]}")
        self.assertEqual(rc, 0, node.log_text()[-2000:])


# ---------------------------------------------------------------------------------------------------------------


class HousekeepingTest(Base):
    def test_stats_line_every_5s(self):
        node = h.start_refserver(self, "k1", "none")
        room = room_name("stats")
        h.ws_connect(self, node.port, f"/ws?room={room}")
        h.ws_connect(self, node.port, f"/ws?room={room}")
        h.wait_until(lambda: "2 connected client(s)" in node.log_text(), 8.0 * h.SLOW, interval=0.2,
                     what="the periodic '2 connected client(s)' log line")

    def test_max_clients_waits_in_backlog(self):
        node = h.start_refserver(self, "k2", "none", ["--max-clients", "1"])
        first = h.WSClient.connect(node.port, "/ws")
        self.addCleanup(first.close)
        waiting = socket.create_connection((h.HOST, node.port), timeout=5.0)  # accepted by the kernel's backlog
        self.addCleanup(waiting.close)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(0.5)
        with self.assertRaises(socket.timeout, msg="a connection beyond --max-clients must not be served yet"):
            waiting.recv(1)
        first.send_close(1000)
        self.assertEqual(first.recv_close(), 1000)
        waiting.settimeout(5.0)
        got = b""
        while len(got) < 12:
            chunk = waiting.recv(12 - len(got))
            if not chunk:
                break
            got += chunk
        self.assertEqual(got, b"HTTP/1.1 200", "served once the first client left")

    def test_out_of_descriptors_warns_once_per_episode(self):
        """More connections than the open-files limit: the node pauses accepting (the rest wait in the backlog),
        counts the failed accepts, says so once for the whole episode however long it lasts (it used to repeat
        every 5 s), serves the waiting connections once descriptors free up, and says when the episode is over."""
        nofile = 40

        class Limited(h.RefServer):
            def argv(self):
                wrap = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
                        "os.execv(sys.argv[1], sys.argv[1:])" % (nofile, nofile))
                return [sys.executable, "-c", wrap, *super().argv()]

        node = Limited("k3", "none", ["--handshake-timeout", "60"])
        self.addCleanup(node.cleanup)
        node.start()
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for _ in range(nofile + 10):
            held.append(socket.create_connection((h.HOST, node.port), timeout=5.0))
        h.wait_until(lambda: "pausing accepts" in node.log_text(), 5.0 * h.SLOW, what="the accept warning")
        time.sleep(6.0)  # longer than the old 5 s between repeats; the node retries every 100 ms meanwhile
        for c in held:
            c.close()
        held.clear()
        self.assertEqual(h.http_request(node.port, "GET", "/").status, 200)
        time.sleep(1.2)  # a quiet second: the next accept ends the episode
        s = node.metrics()
        self.assertGreater(s["refserver_accept_errors_total"], 10)
        log = node.log_text()
        self.assertEqual(log.count("listener: accept: Too many open files"), 1, log[-3000:])
        self.assertEqual(log.count("failures over after"), 1, log[-3000:])


# ---------------------------------------------------------------------------------------------------------------


class SlowConsumerTest(Base):
    def test_slow_consumer_closed_and_counted(self):
        node = h.start_refserver(self, "s1", "none", ["--max-queue", "65536"])
        room = room_name("slow")
        slow = h.ws_connect(self, node.port, f"/ws?room={room}", rcvbuf=4096)  # never reads after the handshake
        healthy = h.ws_connect(self, node.port, f"/ws?room={room}")
        sender = h.ws_connect(self, node.port, f"/ws?room={room}")
        size, count, batch = 16384, 256, 2  # 4 MiB in all
        pad = b"." * (size - 8)
        got = []
        for start in range(0, count, batch):
            sender.send_raw(b"".join(h.encode_frame(OP_BINARY, b"%08d" % i + pad) for i in range(start, start + batch)))
            for _ in range(batch):  # the healthy receiver keeps up, so only the slow one falls behind
                try:
                    op, data = healthy.recv_message(10.0)
                except (TimeoutError, h.ConnectionClosed) as e:
                    self.fail(f"healthy receiver lost after {len(got)} messages: {e!r}\n{node.log_text()[-2000:]}")
                got.append(int(data[:8]))
        self.assertEqual(got, list(range(count)), "healthy receiver: all messages, in order")
        self.wait_metric(node, "refserver_slow_consumers_closed_total", lambda v: v >= 1)
        # Its close code, if it can still be read (the server may have dropped it after the close timeout).
        try:
            self.assertEqual(slow.recv_close(5.0), 1013)
        except (TimeoutError, h.ConnectionClosed, h.ProtocolError):
            pass
        # The slow client is gone; the others stay.
        self.wait_metric(node, "refserver_websocket_clients", lambda v: v == 2, timeout=10.0)
        sender.send_text("still here")
        self.assertMessage(healthy, OP_TEXT, b"still here")


# ---------------------------------------------------------------------------------------------------------------


class IdleTest(Base):
    def test_ping_and_idle_timeout(self):
        node = h.start_refserver(self, "i1", "none", ["--ping-interval", "0.3", "--idle-timeout", "1"])
        room = room_name("idle")
        mute = h.ws_connect(self, node.port, f"/ws?room={room}")    # never answers pings, never reads for a while
        lively = h.ws_connect(self, node.port, f"/ws?room={room}")  # answers every ping
        self.assertEqual(lively.recv_nothing(2.5), [])
        self.assertGreaterEqual(len(lively.pings), 2, "a client answering pings keeps being pinged")
        # The mute client was pinged, then closed.
        f = mute.recv_frame(5.0)
        self.assertEqual(f.opcode, OP_PING, f"first frame to an idle client should be a ping, got {f!r}")
        code = mute.recv_close(5.0)
        self.assertIn(code, (1000, 1001), "idle close code")
        try:
            mute.send_close(code)
        except OSError:  # the server may already have given up waiting for our half of the close
            pass
        self.assertTrue(mute.wait_eof(5.0))
        self.wait_metric(node, "refserver_idle_closed_total", lambda v: v >= 1)
        # The lively client outlived the idle timeout and still works.
        lively.send_ping(b"still alive")
        dl = h.Deadline(5.0)
        while True:
            f = lively.recv_frame(max(0.01, dl.remaining()))
            if f.opcode == OP_PING:
                lively.send_pong(f.payload)
                continue
            self.assertEqual((f.opcode, f.payload), (OP_PONG, b"still alive"))
            break


# ---------------------------------------------------------------------------------------------------------------


class RedissTest(Base):
    """rediss:// with our own CA: a TLS-only redis-server, nodes verifying its certificate."""

    @classmethod
    def setUpClass(cls):
        d = h.make_tempdir(cls, "wsh-tls-")
        cls.tls = h.make_tls_material(d)
        cls.redis = h.start_redis(cls, tls=cls.tls)
        cls.nodes = h.start_nodes(cls, 2, cls.redis.url, ["--redis-ca", cls.tls["ca"]], prefix="tls")

    def test_cross_node_broadcast_over_tls(self):
        n1, n2 = self.nodes
        for n in self.nodes:
            self.wait_metric(n, "refserver_redis_up", lambda v: v == 1)
        room = room_name("tls")
        a = h.ws_connect(self, n1.port, f"/ws?room={room}")
        b = h.ws_connect(self, n2.port, f"/ws?room={room}")
        self.redis.wait_subscribers(f"wsh#{room}", 2)
        a.send_text("over tls \u2713")
        a.send_binary(b"\x00\x01\x02" * 1000)
        self.assertMessage(b, OP_TEXT, "over tls \u2713".encode())
        self.assertMessage(b, OP_BINARY, b"\x00\x01\x02" * 1000)
        b.send_text("and back")
        self.assertMessage(a, OP_TEXT, b"and back")
        self.assertSilent(a)
        self.assertSilent(b)
        self.assertGreaterEqual(n1.metric("refserver_published_total"), 2)

    def test_untrusted_certificate_refused(self):
        # Without --redis-ca the system store is used, which does not know our CA: the link must not come up.
        node = h.start_refserver(self, "tls-untrusted", self.redis.url)
        self.wait_metric(node, "refserver_redis_errors_total", lambda v: v >= 1)
        self.assertEqual(node.metric("refserver_redis_up"), 0)

    def test_insecure_flag_skips_verification(self):
        node = h.start_refserver(self, "tls-insecure", self.redis.url, ["--redis-insecure"])
        self.wait_metric(node, "refserver_redis_up", lambda v: v == 1)


class SocketIOTest(Base):
    """Socket.IO v4 over the websocket transport: Engine.IO handshake errors, strict packets, the heartbeat's
    direction. (Interop with socket.io-client is in tests/interop/refserver_socketio.test.mjs.)"""

    SIO = "/socket.io/?EIO=4&transport=websocket"

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "sio1", "none", ["--sio-ping-interval", "60000",
                                                           "--sio-namespace", "/chat"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def assertEngineError(self, path, code, message, upgrade=True):
        headers = {"Host": "x"}
        if upgrade:
            headers.update({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        r = h.http_request(self.node.port, "GET", path, headers)
        self.assertEqual(r.status, 400, path)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(json.loads(r.body), {"code": code, "message": message}, path)

    def test_handshake_errors(self):
        self.assertEngineError("/socket.io/?transport=websocket", 5, "Unsupported protocol version")
        self.assertEngineError("/socket.io/?EIO=3&transport=websocket", 5, "Unsupported protocol version")
        self.assertEngineError("/socket.io/?EIO=4&transport=carrier-pigeon", 0, "Transport unknown")
        self.assertEngineError("/socket.io/?EIO=4", 0, "Transport unknown")
        self.assertEngineError(self.SIO, 3, "Bad request", upgrade=False)
        self.assertEngineError(self.SIO + "&sid=abcdefghijklmnopqrst", 1, "Session ID unknown")

    def sio_client(self, room=None):
        c = h.ws_connect(self, self.node.port, self.SIO + (f"&room={room}" if room else ""))
        op, data = c.recv_message(5.0)
        self.assertEqual(op, OP_TEXT)
        self.assertEqual(data[:1], b"0")
        opened = json.loads(data[1:])
        self.assertRegex(opened["sid"], r"^[A-Za-z0-9_-]{20}$")
        self.assertEqual(opened["upgrades"], [])
        self.assertEqual((opened["pingInterval"], opened["pingTimeout"]), (60000, 20000))
        return c

    def joined(self, room, nsps=("",)):
        c = self.sio_client(room)
        for nsp in nsps:
            c.send_text(f"40{nsp}")
            op, data = c.recv_message(5.0)
            prefix = f"40{nsp}".encode()
            self.assertEqual(data[:len(prefix)], prefix, data)
            self.assertRegex(json.loads(data[len(prefix):])["sid"], r"^[A-Za-z0-9_-]{20}$", data)
        return c

    def assertClosed(self, c, code):
        try:
            got = c.recv_close(5.0)
        except (TimeoutError, h.ConnectionClosed) as e:
            self.fail(f"expected a close frame with {code}, got {e!r}")
        self.assertEqual(got, code)
        self.assertTrue(c.wait_eof(5.0), "the server should close the TCP connection")

    def test_broadcast_ack_and_namespace(self):
        room = room_name("sio")
        a, b = self.joined(room), self.joined(room)
        raw = h.ws_connect(self, self.node.port, f"/ws?room={room}")  # /ws and Socket.IO rooms are apart
        a.send_text('42/,7["chat",{"x":[1,"two"]}]')
        self.assertMessage(a, OP_TEXT, b"437[]", who="sender (ack)")
        self.assertMessage(b, OP_TEXT, b'42["chat",{"x":[1,"two"]}]', who="receiver")
        self.assertSilent(a, who="sender")
        self.assertSilent(raw, who="/ws client of the same room")
        a.send_text("40/nope,")
        self.assertMessage(a, OP_TEXT, b'44/nope,{"message":"Invalid namespace"}')

    def test_odd_namespace_gets_connect_error(self):
        # socket.io-parser takes any bytes up to ',' as the namespace; Node answers an unknown one with
        # CONNECT_ERROR, echoing it, and keeps the connection
        c = self.sio_client()
        c.send_text('40/x"y z,')
        self.assertMessage(c, OP_TEXT, b'44/x"y z,{"message":"Invalid namespace"}')
        c.send_text("40")
        op, data = c.recv_message(5.0)
        self.assertTrue(data.startswith(b'40{"sid":'), data)

    def test_event_before_connect_closes(self):
        c = self.sio_client()
        c.send_text('42["chat"]')
        self.assertClosed(c, 1002)

    def test_malformed_packets_close(self):
        for bad in ['42["chat"', "42[]", '42["connect"]', "4x", "9", "", '40[1]', '42/a"b,["e"]', "41{}"]:
            with self.subTest(packet=bad):
                c = self.joined(room_name("bad"))
                c.send_text(bad)
                self.assertClosed(c, 1002)

    def test_client_ping_closes(self):
        c = self.joined(room_name("ping"))
        c.send_text("2")
        self.assertClosed(c, 1002)

    def test_binary_event_with_attachments(self):
        room = room_name("bin")
        a, b = self.joined(room), self.joined(room)
        a.send_text('452-["e",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]')
        a.send_binary(b"\x00\xff" * 100)
        self.assertSilent(b, who="receiver before the last attachment")
        a.send_binary(b"")
        self.assertMessage(b, OP_TEXT, b'452-["e",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]')
        self.assertMessage(b, OP_BINARY, b"\x00\xff" * 100)
        self.assertMessage(b, OP_BINARY, b"")
        a.send_text('450-3["e"]')  # no attachments at all: sent on at once as a plain EVENT, and acknowledged
        self.assertMessage(a, OP_TEXT, b"433[]", who="sender (ack)")
        self.assertMessage(b, OP_TEXT, b'42["e"]')

    def test_binary_protocol_errors_close(self):
        for why, steps in [("binary data no packet announced", [b"\x01"]),
                           ("text while attachments are due", ['451-["e",{"_placeholder":true,"num":0}]', '42["e"]']),
                           ("more than 10 attachments", ['4511-["e"]'])]:
            with self.subTest(why):
                c = self.joined(room_name("binerr"))
                for step in steps:
                    c.send_binary(step) if isinstance(step, bytes) else c.send_text(step)
                self.assertClosed(c, 1002)

    def test_namespaces_are_apart(self):
        room = room_name("nsp")
        both, root, chat = self.joined(room, ("", "/chat,")), self.joined(room), self.joined(room, ("/chat,",))
        both.send_text('42/chat,["e","in chat"]')
        self.assertMessage(chat, OP_TEXT, b'42/chat,["e","in chat"]')
        self.assertSilent(root, who="a socket of / only")
        root.send_text('42["e","in /"]')
        self.assertMessage(both, OP_TEXT, b'42["e","in /"]')
        self.assertSilent(chat, who="a socket of /chat only")
        chat.send_text('42["e"]')  # chat never joined "/"
        self.assertClosed(chat, 1002)

    def test_room_and_namespace_wide_broadcasts(self):
        r1, r2 = room_name("r1"), room_name("r2")
        a, b, c, free = self.joined(r1), self.joined(r1), self.joined(r2), self.joined(None)
        a.send_text('42["e","to r1"]')
        self.assertMessage(b, OP_TEXT, b'42["e","to r1"]')
        self.assertSilent(c, who="a socket of another room")
        self.assertSilent(free, who="a socket in no room")
        free.send_text('42["e","to all"]')
        for who in (a, b, c):
            self.assertMessage(who, OP_TEXT, b'42["e","to all"]')

    def test_second_connect_to_a_namespace_closes(self):
        c = self.joined(room_name("twice"))
        c.send_text("40")
        self.assertClosed(c, 1002)

    def test_disconnect_leaves_the_namespace(self):
        room = room_name("bye")
        c, other = self.joined(room), self.joined(room)
        c.send_text("41")
        # The two sockets are two connections, so nothing orders c's 41 before other's event; a refused namespace
        # on c answers only after the server has read the 41 before it.
        c.send_text("40/nope,")
        self.assertMessage(c, OP_TEXT, b'44/nope,{"message":"Invalid namespace"}')
        other.send_text('42["e"]')
        self.assertSilent(c, who="a socket that left /")
        c.send_text('42["e"]')  # a packet for a namespace not joined
        self.assertClosed(c, 1002)

    def test_no_connect_in_time_closes(self):
        node = h.start_refserver(self, "sio-ct", "none", ["--sio-connect-timeout", "300"])
        c = h.ws_connect(self, node.port, self.SIO)
        self.assertEqual(c.recv_message(5.0)[1][:1], b"0")
        self.assertClosed(c, 1001)
        joined = h.ws_connect(self, node.port, self.SIO)
        joined.recv_message(5.0)
        joined.send_text("40")
        joined.recv_message(5.0)
        self.assertSilent(joined, duration=0.6, who="a socket that connected to /")


def msgpack(v):
    """The few msgpack shapes the adapter's requests use (str, non-negative int, list, dict), as notepack writes them."""
    if isinstance(v, str):
        b = v.encode()
        assert len(b) < 32
        return bytes([0xA0 | len(b)]) + b
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        assert 0 <= v < 128
        return bytes([v])
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(msgpack(x) for x in v)
    assert isinstance(v, dict) and len(v) < 16
    return bytes([0x80 | len(v)]) + b"".join(msgpack(k) + msgpack(x) for k, x in v.items())


class SocketIOConformanceTest(Base):
    """--profile conformance writes the CONNECT reply and its "auth" event so that a client reading one packet at a
    time sees both: a WebSocket ping follows the reply, and the event waits for its pong."""

    SIO = "/socket.io/?EIO=4&transport=websocket"

    @classmethod
    def setUpClass(cls):  # Engine.IO pings far apart: they would release the event too
        cls.node = h.start_refserver(cls, "conf1", "none", ["--profile", "conformance", "--sio-ping-interval", "60000"])

    def connected(self, connect):
        c = h.ws_connect(self, self.node.port, self.SIO)
        self.assertEqual(c.recv_message(5.0)[1][:1], b"0")
        c.send_text(connect)
        f = c.recv_frame(5.0)
        nsp = connect.split("{")[0].encode()
        self.assertEqual((f.opcode, f.payload[:len(nsp)]), (OP_TEXT, nsp), f)
        self.assertRegex(json.loads(f.payload[len(nsp):])["sid"], r"^[A-Za-z0-9_-]{20}$")
        ping = c.recv_frame(5.0)
        self.assertEqual(ping.opcode, OP_PING, f"a ping after the CONNECT reply, got {ping!r}")
        return c, ping

    def test_auth_event_waits_for_the_pong(self):
        c, ping = self.connected('40/custom,{"t":1}')
        with self.assertRaises(TimeoutError):
            c.recv_frame(QUIET)
        c.send_pong(ping.payload)
        self.assertMessage(c, OP_TEXT, b'42/custom,["auth",{"t":1}]')

    def test_auth_event_goes_before_the_next_answer_without_a_pong(self):
        c, _ = self.connected("40")
        c.send_text('42["message",1]')
        self.assertMessage(c, OP_TEXT, b'42["auth",{}]')
        self.assertMessage(c, OP_TEXT, b'42["message-back",1]')

    def test_polling_gets_reply_and_event_in_one_payload(self):
        poll = "/socket.io/?EIO=4&transport=polling"
        sid = json.loads(h.http_request(self.node.port, "GET", poll).body[1:])["sid"]
        self.assertEqual(h.http_request(self.node.port, "POST", f"{poll}&sid={sid}", None, b"40").body, b"ok")
        body = h.http_request(self.node.port, "GET", f"{poll}&sid={sid}").body
        self.assertRegex(body, rb'^40\{"sid":"[A-Za-z0-9_-]{20}"\}\x1e42\["auth",\{\}\]$')


class SocketIOAdapterRequestsTest(Base):
    """The edges of the adapter's request channel (socket.io-request#NSP#) that a Node peer does not reach: the cap on
    acks one client owes, malformed and unsupported requests. (What Node's fetchSockets, emitWithAck and
    disconnectSockets see of refserver is in tests/interop/socketio_requests.test.mjs.)"""

    SIO = "/socket.io/?EIO=4&transport=websocket"
    REQUESTS, RESPONSES = "socket.io-request#/#", "socket.io-response#/#"

    def setUp(self):
        self.redis = h.start_redis(self)
        self.node = h.start_refserver(self, "req1", self.redis.url, ["--sio-ping-interval", "60000"])
        self.redis.wait_subscribers(self.REQUESTS, 1)
        self.answers = self.redis.client(timeout=5.0 * h.SLOW)
        self.addCleanup(self.answers.close)
        self.answers.command("SUBSCRIBE", self.RESPONSES)

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def joined(self):
        c = h.ws_connect(self, self.node.port, self.SIO)
        c.recv_message(5.0)
        c.send_text("40")
        op, data = c.recv_message(5.0)
        return c, json.loads(data[2:])["sid"]

    def request(self, payload):
        self.redis.command("PUBLISH", self.REQUESTS, payload)

    def answer(self):
        kind, channel, data = self.answers.read_reply()
        self.assertEqual((kind, channel), (b"message", self.RESPONSES.encode()))
        return data

    def ack_request(self, request_id, k):
        return msgpack({"uid": "py", "requestId": request_id, "type": 7,
                        "packet": {"type": 2, "data": ["q", k], "nsp": "/"},
                        "opts": {"rooms": [], "except": [], "flags": {}}})

    def test_a_client_owes_at_most_32_acks(self):
        c, _ = self.joined()
        for k in range(33):
            self.request(self.ack_request(f"w{k:02d}", k))
            data = self.answer()  # BROADCAST_CLIENT_COUNT: {requestId, type: 8, clientCount: 1}
            self.assertEqual(data, msgpack({"requestId": f"w{k:02d}", "type": 8, "clientCount": 1}))
        ids = []
        for k in range(33):
            op, data = c.recv_message(5.0)
            head, args = data.split(b"[", 1)
            self.assertEqual(args, f'"q",{k}]'.encode())
            ids.append(int(head[2:]))
        for k, ack in enumerate(ids):  # the oldest first: it was forgotten when the 33rd came
            c.send_text(f'43{ack}[{{"k":{k}}}]')
        for k in range(1, 33):
            self.assertEqual(self.answer(), msgpack({"requestId": f"w{k:02d}", "type": 9, "packet": {"k": k}}))
        self.answers.sock.settimeout(QUIET)
        with self.assertRaises(socket.timeout, msg="an answer for the forgotten ack"):
            self.answer()

    def test_malformed_and_unsupported_requests(self):
        c, sid = self.joined()
        self.request(b"\xc1 not msgpack")
        self.request('{"uid":"py","requestId":"r","type":"1"}')  # type not a number
        self.request('{"uid":"py","type":1}')  # ALL_ROOMS needs a requestId to answer to
        self.request(f'{{"uid":"py","requestId":"r","type":4,"sid":"{sid}","close":false}}')  # by sid: legacy
        for _ in range(2):
            self.request('{"uid":"py","type":2,"opts":{"rooms":[],"except":[]},"rooms":["x"]}')  # socketsJoin
        self.request('{"uid":"py","type":6,"data":["e"]}')  # serverSideEmit: no listeners here
        self.request('{"uid":"py","requestId":"last","type":1}')
        # Requests are handled in order: the answer to the last one means every one before it was read.
        self.assertEqual(self.answer(), msgpack({"requestId": "last", "rooms": [sid]}))
        self.assertSilent(c, who="a socket the legacy by-sid disconnect named")
        m = self.node.metrics()
        self.assertEqual(m["refserver_socketio_bus_messages_dropped_total"], 2)
        self.assertEqual(m["refserver_socketio_adapter_requests_total"], 1)
        self.assertEqual(self.node.log_text().count("socketsJoin/socketsLeave"), 1, "warned once")


class SocketIOPollingTest(Base):
    """Engine.IO v4 long-polling on raw HTTP: handshake, POST, held GET, errors, the upgrade to websocket, the cookie."""

    POLL = "/socket.io/?EIO=4&transport=polling"

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "poll1", "none",
                                     ["--sio-ping-interval", "60000", "--max-message", "4096", "--sio-cookie", "io"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def conn(self):
        c = h.HttpConn(self.node.port)
        self.addCleanup(c.close)
        return c

    def handshake(self, room):
        r = h.http_request(self.node.port, "GET", f"{self.POLL}&room={room}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=UTF-8")
        self.assertEqual(r.body[:1], b"0")
        opened = json.loads(r.body[1:])
        self.assertRegex(opened["sid"], r"^[A-Za-z0-9_-]{20}$")
        self.assertEqual(opened["upgrades"], ["websocket"])
        self.assertEqual((opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]), (60000, 20000, 4096))
        self.assertEqual(r.header("Set-Cookie"), f"io={opened['sid']}; Path=/; HttpOnly; SameSite=Lax")
        return opened["sid"]

    def post(self, sid, body, conn=None):
        c = conn or self.conn()
        r = c.request("POST", f"{self.POLL}&sid={sid}", {"Content-Type": "text/plain;charset=UTF-8"}, body)
        return r

    def poll(self, sid, timeout=5.0):
        c = self.conn()
        return c.request("GET", f"{self.POLL}&sid={sid}") if timeout else c

    def joined(self, room):
        sid = self.handshake(room)
        r = self.post(sid, b"40")
        self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"ok", "text/html"))
        r = self.poll(sid)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body[:2], b"40")
        self.assertRegex(json.loads(r.body[2:])["sid"], r"^[A-Za-z0-9_-]{20}$")
        return sid

    def held_get(self, sid):
        """A GET for sid that the server holds (nothing is owed yet)."""
        c = self.conn()
        c.send(f"GET {self.POLL}&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with self.assertRaises(TimeoutError):
            c.read_response(timeout=QUIET)
        return c

    def assertEngineError(self, r, code, message):
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(json.loads(r.body), {"code": code, "message": message})

    def test_post_event_and_long_poll(self):
        room = room_name("poll")
        a, b = self.joined(room), self.joined(room)
        held = self.conn()  # b's GET is held until a's broadcast arrives
        held.send(f"GET {self.POLL}&sid={b} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with self.assertRaises(TimeoutError):
            held.read_response(timeout=QUIET)
        r = self.post(a, b'42["chat","hi"]\x1e' b'421["chat",{"n":2}]')
        self.assertEqual(r.body, b"ok")
        got = held.read_response()
        self.assertEqual(got.status, 200)
        self.assertEqual(got.body, b'42["chat","hi"]\x1e42["chat",{"n":2}]')
        self.assertEqual(self.poll(a).body, b"431[]")  # the ack, queued for the sender

    def test_polling_and_websocket_share_the_room(self):
        room = room_name("mix")
        sid = self.joined(room)
        ws = h.ws_connect(self, self.node.port, f"/socket.io/?EIO=4&transport=websocket&room={room}")
        ws.recv_message(5.0)
        ws.send_text("40")
        ws.recv_message(5.0)
        self.post(sid, b'42["from-poll"]')
        self.assertMessage(ws, OP_TEXT, b'42["from-poll"]')
        ws.send_text('42["from-ws"]')
        self.assertEqual(self.poll(sid).body, b'42["from-ws"]')

    def test_binary_over_polling_is_base64(self):
        room = room_name("b64")
        sid = self.joined(room)
        ws = h.ws_connect(self, self.node.port, f"/socket.io/?EIO=4&transport=websocket&room={room}")
        ws.recv_message(5.0)
        ws.send_text("40")
        ws.recv_message(5.0)
        blob = bytes(range(256))
        self.post(sid, b'451-["bin",{"_placeholder":true,"num":0}]\x1eb' + base64.b64encode(blob))
        self.assertMessage(ws, OP_TEXT, b'451-["bin",{"_placeholder":true,"num":0}]')
        self.assertMessage(ws, OP_BINARY, blob)
        ws.send_text('452-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        ws.send_binary(b"\x00")
        ws.send_binary(b"ab")
        self.assertEqual(self.poll(sid).body,
                         b'452-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]\x1ebAA==\x1ebYWI=')
        self.assertEqual(self.post(sid, b"451-[\"e\",{}]\x1eb!!!").body, b"ok")  # not base64: the session ends
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_malformed_base64_item_ends_the_session(self):
        # '=' inside the text, or padding whose dropped bits are not zero: not base64 (RFC 4648), the rule
        # loadgen reads the server's items by (common/eio); none of these may become an attachment
        for item in (b"b=QUJ", b"bQ=Q=", b"b====", b"bQR=="):
            with self.subTest(item=item):
                sid = self.joined(room_name("badb64"))
                self.assertEqual(self.post(sid, b'451-["bin",{"_placeholder":true,"num":0}]\x1e' + item).body, b"ok")
                self.assertEngineError(self.post(sid, b"3"), 1, "Session ID unknown")

    def test_errors(self):
        c = self.conn()
        self.assertEngineError(c.request("GET", f"{self.POLL}&sid=abcdefghijklmnopqrst"), 1, "Session ID unknown")
        self.assertEngineError(self.conn().request("POST", self.POLL, None, b"40"), 2, "Bad handshake method")
        self.assertEngineError(self.conn().request("GET", "/socket.io/?EIO=3&transport=polling"), 5,
                               "Unsupported protocol version")
        sid = self.handshake(room_name("big"))
        r = self.post(sid, b"4" + b"x" * 5000)
        self.assertEqual(r.status, 413)

    def test_second_get_closes_the_session(self):
        sid = self.joined(room_name("twice"))
        first = self.held_get(sid)
        self.assertEngineError(self.poll(sid), 3, "Bad request")
        self.assertEqual(first.read_response().body, b"1")  # the held GET gets the close packet
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_posted_close_answers_the_held_get_with_a_noop(self):
        """engine.io: a close packet POSTed by the client releases the held GET with a noop (6), not a close (1)."""
        sid = self.joined(room_name("bye"))
        held = self.held_get(sid)
        self.assertEqual(self.post(sid, b"1").body, b"ok")
        got = held.read_response()
        self.assertEqual((got.status, got.body), (200, b"6"))
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_posted_close_answers_a_get_that_crossed_it_with_a_noop(self):
        """A GET sent beside the close may arrive second: it was pending for the client, so it gets the noop too;
        the session ends with it."""
        sid = self.joined(room_name("crossed"))
        self.assertEqual(self.post(sid, b"1").body, b"ok")
        got = self.poll(sid)
        self.assertEqual((got.status, got.body), (200, b"6"))
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_posted_close_ends_the_session_without_a_get(self):
        sid = self.joined(room_name("nobody"))
        before = self.node.metrics()["refserver_socketio_polling_sessions"]
        self.assertEqual(self.post(sid, b"1").body, b"ok")
        self.wait_metric(self.node, "refserver_socketio_polling_sessions", lambda v: v == before - 1)
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_malformed_post_closes_the_session(self):
        sid = self.joined(room_name("bad"))
        self.assertEqual(self.post(sid, b'42["chat"').body, b"ok")
        self.assertEngineError(self.poll(sid), 1, "Session ID unknown")

    def test_upgrade(self):
        room = room_name("up")
        sid, other = self.joined(room), self.joined(room)
        held = self.held_get(sid)
        ws = h.ws_connect(self, self.node.port, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
        self.assertSilent(ws)  # no open packet on an upgrade
        ws.send_text("2probe")
        self.assertMessage(ws, OP_TEXT, b"3probe")
        self.assertEqual(held.read_response().body, b"6")  # the held GET is released with a noop
        self.post(other, b'42["while-upgrading"]')
        ws.send_text("5")
        self.assertMessage(ws, OP_TEXT, b'42["while-upgrading"]', who="queued packet flushed over the websocket")
        self.post(other, b'42["after"]')
        self.assertMessage(ws, OP_TEXT, b'42["after"]')
        ws.send_text('42["from-upgraded"]')
        self.assertEqual(self.poll(other).body, b'42["from-upgraded"]')
        self.assertEngineError(self.poll(sid), 3, "Bad request")
        self.assertEngineError(self.post(sid, b"3"), 3, "Bad request")
        metrics = self.node.metrics()
        self.assertGreaterEqual(metrics["refserver_socketio_polling_sessions"], 1)
        ws.close()
        h.wait_until(lambda: self.poll(sid).body.find(b'"code":1') >= 0, 5 * h.SLOW, what="sid forgotten")

    def test_another_websocket_for_the_sid_is_accepted_and_closed(self):
        """engine.io (onWebSocket): a websocket for a sid that is upgrading or upgraded gets its 101 and a close at
        once; the suite's client treats a 400 there as an error."""
        sid = self.joined(room_name("again"))
        path = f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
        ws = h.ws_connect(self, self.node.port, path)
        for stage in ("upgrading", "upgraded"):
            extra = h.ws_connect(self, self.node.port, path)  # HandshakeError unless 101
            self.assertIsNone(extra.recv_close(5.0), stage)  # a close without a code, as ws's close()
            extra.send_close(None)
            self.assertTrue(extra.wait_eof(5.0), stage)
            if stage == "upgrading":
                ws.send_text("2probe")
                self.assertMessage(ws, OP_TEXT, b"3probe")
                ws.send_text("5")
        ws.send_text("40/nope,")
        self.assertEqual(ws.recv_message(5.0)[1][:7], b"44/nope")  # the first websocket goes on

    def test_the_member_after_a_dropped_poller_gets_the_broadcast(self):
        """A poller that stops polling is ended as a slow consumer in the middle of a broadcast; every other member
        of the room still gets that broadcast (the member that takes the leaver's slot in the room included)."""
        self.node = h.start_refserver(self, "slowpoll", "none",
                                      ["--sio-ping-interval", "60000", "--max-message", "4096", "--sio-cookie", "io",
                                       "--max-queue", "2048"])
        room = room_name("slowpoll")
        slow = self.joined(room)  # the room's first member, and it never polls again
        sender, receiver = [h.ws_connect(self, self.node.port, f"/socket.io/?EIO=4&transport=websocket&room={room}")
                            for _ in range(2)]  # the receiver is the last member: it takes a leaver's slot
        for ws in (sender, receiver):
            ws.recv_message(5.0)
            ws.send_text("40")
            ws.recv_message(5.0)
        pad = "x" * 200
        for i in range(40):  # one at a time, so only the poller's queue grows: past 2048 bytes within a dozen
            sender.send_text(f'42["n",{i},"{pad}"]')
            self.assertMessage(receiver, OP_TEXT, f'42["n",{i},"{pad}"]'.encode(), who=f"receiver, event {i}")
        self.assertEngineError(self.poll(slow), 1, "Session ID unknown")  # ended as a slow consumer
        self.wait_metric(self.node, "refserver_slow_consumers_closed_total", lambda v: v >= 1)

    def test_upgrade_needs_probe(self):
        sid = self.joined(room_name("noprobe"))
        ws = h.ws_connect(self, self.node.port, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
        ws.send_text("5")
        try:
            code = ws.recv_close(5.0)
        except (TimeoutError, h.ConnectionClosed) as e:
            self.fail(f"expected a close, got {e!r}")
        self.assertEqual(code, 1002)
        self.assertEqual(self.post(sid, b"3").body, b"ok")  # the session goes on polling


class SocketIOPollingHeartbeatTest(Base):
    """The server pings a polling session through its held GET and drops it when the pong does not come."""

    POLL = "/socket.io/?EIO=4&transport=polling"

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "pollhb", "none", ["--sio-ping-interval", "300", "--sio-ping-timeout", "300"])

    def test_ping_pong_and_timeout(self):
        r = h.http_request(self.node.port, "GET", self.POLL)
        self.assertIsNone(r.header("Set-Cookie"))  # no cookie unless --sio-cookie
        sid = json.loads(r.body[1:])["sid"]
        for _ in range(3):  # each held GET is answered by the next ping, each pong keeps the session
            got = h.http_request(self.node.port, "GET", f"{self.POLL}&sid={sid}", timeout=5 * h.SLOW)
            self.assertEqual(got.body, b"2")
            self.assertEqual(h.http_request(self.node.port, "POST", f"{self.POLL}&sid={sid}", None, b"3").body, b"ok")
        self.assertEqual(h.http_request(self.node.port, "GET", f"{self.POLL}&sid={sid}", timeout=5 * h.SLOW).body, b"2")

        def gone():
            r = h.http_request(self.node.port, "GET", f"{self.POLL}&sid={sid}", timeout=5 * h.SLOW)
            return r.status == 400 and json.loads(r.body)["code"] == 1

        h.wait_until(gone, 5 * h.SLOW, what="session dropped after the ping timeout")
        self.assertEqual(self.node.metrics()["refserver_socketio_polling_sessions"], 0)


if __name__ == "__main__":
    unittest.main()
