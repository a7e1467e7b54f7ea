"""refserver --cors-origin (CORS with credentials on the Engine.IO polling endpoints, as socket.io's cors option)
and the lb passing those headers through untouched, with the sticky cookie (--sticky prefix:io).

Run: WSH_BUILD=$PWD/build python3 -m unittest discover -s tests/integration -p test_cors.py -v   (from the root)
The real-browser test of the same thing is test_browser.py.
"""

import json
import unittest

import harness as h
import test_lb as tl

PAGE = "http://127.0.0.1:8000"
POLL = "/socket.io/?EIO=4&transport=polling"
ACCESS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods",
          "Access-Control-Allow-Headers")


def cors_headers(resp):
    """The Access-Control-* and Vary lines of resp, in order."""
    return [(k, v) for k, v in resp.headers if k.lower().startswith("access-control-") or k.lower() == "vary"]


def sid_of(resp):
    body = resp.body.decode()
    assert body.startswith("0{"), body
    return json.loads(body[1:])["sid"]


CREDENTIALED = [("Access-Control-Allow-Origin", PAGE), ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin")]
PREFLIGHT = [("Vary", "Access-Control-Request-Headers"), ("Access-Control-Allow-Methods", "GET,POST"),
             ("Access-Control-Allow-Headers", "content-type"), *CREDENTIALED]
PREFLIGHT_ASK = {"Origin": PAGE, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}


class RefserverCorsTest(unittest.TestCase):
    """A node with --cors-origin: what each Socket.IO answer carries, by Origin."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "cors1", "none", ["--cors-origin", f"http://other:1,{PAGE}",
                                                            "--sio-cookie", "io", "--sio-ping-interval", "60000"])

    def tearDown(self):
        self.assertTrue(self.node.proc.alive(), f"refserver died:\n{self.node.log_text()[-2000:]}")

    def request(self, method, path, headers=None, body=b""):
        with h.HttpConn(self.node.port) as c:
            return c.request(method, path, headers, body)

    def test_preflight_allowed(self):
        r = self.request("OPTIONS", POLL, PREFLIGHT_ASK)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Content-Length"), "0")
        self.assertEqual(cors_headers(r), PREFLIGHT)

    def test_preflight_other_origin_gets_no_access(self):
        r = self.request("OPTIONS", POLL, {**PREFLIGHT_ASK, "Origin": "http://evil:8000"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(cors_headers(r), [("Vary", "Access-Control-Request-Headers"), ("Vary", "Origin")])

    def test_handshake_echoes_origin_with_credentials(self):
        r = self.request("GET", POLL, {"Origin": PAGE})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(cors_headers(r), CREDENTIALED)
        self.assertTrue(r.header("Set-Cookie").startswith("io="))
        self.assertNotIn(("Access-Control-Allow-Origin", "*"), r.headers)

    def test_other_origin_answered_as_before_without_access(self):
        r = self.request("GET", POLL, {"Origin": "http://evil:8000"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body.startswith(b"0{"))
        self.assertEqual(cors_headers(r), [("Vary", "Origin")])
        r = self.request("GET", POLL)  # no Origin: a same-origin or non-browser client
        self.assertEqual(cors_headers(r), [("Vary", "Origin")])

    def test_errors_carry_cors_so_the_page_can_read_them(self):
        r = self.request("GET", POLL + "&sid=nope", {"Origin": PAGE})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(cors_headers(r), CREDENTIALED)

    def test_held_get_and_post_answered_with_cors(self):
        with h.HttpConn(self.node.port) as c:
            sid = sid_of(c.request("GET", POLL, {"Origin": PAGE}))
            r = c.request("POST", f"{POLL}&sid={sid}", {"Origin": PAGE, "Content-Type": "text/plain"}, b"40")
            self.assertEqual((r.status, cors_headers(r)), (200, CREDENTIALED))
            r = c.request("GET", f"{POLL}&sid={sid}", {"Origin": PAGE})  # the CONNECT answer, queued
            self.assertEqual((r.status, cors_headers(r)), (200, CREDENTIALED))
            self.assertTrue(r.body.startswith(b"40"), r)
            # Nothing owed now: this GET is held, then answered by the POST of "1" (close) on another connection.
            c.send(f"GET {POLL}&sid={sid} HTTP/1.1\r\nHost: x\r\nOrigin: {PAGE}\r\n\r\n".encode())
            with h.HttpConn(self.node.port) as c2:
                r2 = c2.request("POST", f"{POLL}&sid={sid}", {"Origin": "http://other:1"}, b"1")
                self.assertEqual(cors_headers(r2)[0], ("Access-Control-Allow-Origin", "http://other:1"))
            r = c.read_response()
            self.assertEqual((r.status, cors_headers(r)), (200, CREDENTIALED))

    def test_websocket_and_other_routes_untouched(self):
        r = self.request("GET", "/metrics", {"Origin": PAGE})
        self.assertEqual((r.status, cors_headers(r)), (200, []))
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        ws_head = {"Origin": PAGE, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": key}
        for path in ("/ws", "/socket.io/?EIO=4&transport=websocket"):
            r = self.request("GET", path, ws_head)
            self.assertEqual((r.status, cors_headers(r)), (101, []), path)

    def test_keep_alive_forgets_the_previous_request(self):
        with h.HttpConn(self.node.port) as c:
            r = c.request("GET", POLL, {"Origin": PAGE})
            self.assertEqual(cors_headers(r), CREDENTIALED)
            r = c.request("GET", "/", {"Origin": PAGE})
            self.assertEqual(cors_headers(r), [])


class RefserverNoCorsTest(unittest.TestCase):
    """Without --cors-origin nothing changes: no CORS lines, OPTIONS refused as a handshake method."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "nocors", "none")

    def test_no_cors_lines(self):
        with h.HttpConn(self.node.port) as c:
            r = c.request("GET", POLL, {"Origin": PAGE})
            self.assertEqual((r.status, cors_headers(r)), (200, []))
        with h.HttpConn(self.node.port) as c:
            r = c.request("OPTIONS", POLL, PREFLIGHT_ASK)
            self.assertEqual((r.status, cors_headers(r)), (400, []))


class CorsFlagTest(unittest.TestCase):
    def test_bad_values_exit_2(self):
        for bad, why in (("app.example.com", "scheme://host"), ("http://a.com/", "no trailing '/'"),
                         ("http://a.com:80", "default"), ("http://a.com,,http://b.com", "empty origin"),
                         ("", "empty origin")):
            p = h.run_refserver(["--redis", "none", "--cors-origin", bad])
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("--cors-origin", p.stderr)
            self.assertIn(why, p.stderr)


class LbCorsPassthroughTest(tl.LbBase):
    """Two nodes on Redis behind lb --sticky prefix:io: the preflight and a credentialed polling session, with the
    sticky cookie, arrive with the nodes' Access-Control-* lines unchanged."""

    @classmethod
    def setUpClass(cls):
        redis = h.start_redis(cls)
        cls.nodes = h.start_nodes(cls, 2, redis.url, ["--cors-origin", PAGE, "--sio-cookie", "io",
                                                      "--sio-ping-interval", "60000"], prefix="c")
        cls.lb = tl.start_lb(cls, [*[a for n in cls.nodes for a in ("--backend", f"{n.node_id}=127.0.0.1:{n.port}")],
                                   "--sticky", "prefix:io", "--health", tl.CALM_HEALTH, "--log-level", "warn"])
        cls.lbs = (cls.lb,)

    def through_lb(self, method, path, headers, body=b""):
        with h.HttpConn(self.lb.port) as c:
            return c.request(method, path, headers, body)

    def test_preflight_passes_unchanged(self):
        r = self.through_lb("OPTIONS", POLL, PREFLIGHT_ASK)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(cors_headers(r), PREFLIGHT)

    def test_credentialed_session_with_sticky_cookie(self):
        r = self.through_lb("GET", POLL, {"Origin": PAGE})
        self.assertEqual((r.status, cors_headers(r)), (200, CREDENTIALED))
        node = r.header("X-Node-Id")
        cookie = r.header("Set-Cookie").split(";", 1)[0]
        sid = sid_of(r)
        self.assertEqual(cookie, f"io={node}~{sid}")
        for i in range(4):  # each on a new connection: only the cookie keeps the session on its node
            r = self.through_lb("POST", f"{POLL}&sid={sid}", {"Origin": PAGE, "Cookie": cookie}, b"40" if i == 0
                                else b"3")
            self.assertEqual((r.status, r.header("X-Node-Id"), cors_headers(r)), (200, node, CREDENTIALED), i)
        r = self.through_lb("GET", f"{POLL}&sid={sid}", {"Origin": PAGE, "Cookie": cookie})
        self.assertEqual((r.status, r.header("X-Node-Id"), cors_headers(r)), (200, node, CREDENTIALED))
        self.assertTrue(r.body.startswith(b"40"), r)


if __name__ == "__main__":
    unittest.main()
