"""Operating the toolkit (issue 14): request logs in the lb and refserver, the lb refusing a port another process
listens on (and sharing it when told, and its own reloads still taking the port over), --version everywhere,
`make help` and `scenarios/run --list`.
Run: WSH_BUILD=$PWD/build python3 -m unittest tests.integration.test_ops -v  (from the worktree root)
"""

import os
import re
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as h  # noqa: E402
from test_lb import LB, Lb, start_backend, start_lb  # noqa: E402

REQ_RE = re.compile(r"request (\S+) \[(.+?)\] node=(\S+) \"(\S+) (\S+)\" (\S+) Tq/Tc/Tr/Tt=(-?\d+)/(-?\d+)/(-?\d+)/"
                    r"(-?\d+) ms bytes=(\d+)/(\d+) term=(\S+) cookie=(\S+)")
REF_RE = re.compile(r"request (\S+) \[(\S+)\] \"(\S+) (\S+)\" (\S+) Tq/Tr/Tt=(-?\d+)/(-?\d+)/(-?\d+) ms bytes=(\d+) "
                    r"term=(\S+) sid=(\S+)")


def log_lines(proc_owner, regex, want, what):
    """Wait until proc_owner's log holds want matching lines; the matches."""
    found = []

    def enough():
        found[:] = [m for m in map(regex.search, proc_owner.log_text().splitlines()) if m]
        return len(found) >= want

    h.wait_until(enough, 10.0 * h.SLOW, what=what)
    return found


def listener(reuseport):
    s = socket.socket()
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((h.HOST, 0))
    s.listen(8)
    return s


class LbRequestLogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.n1 = start_backend(cls, "n1")
        cls.lb = start_lb(cls, ["--backend", f"n1={cls.n1.addr}", "--backend", f"n2={h.HOST}:{h.free_port()}",
                                "--sticky", "cookie", "--health", "path=/,interval=200ms,timeout=150ms,rise=1,fall=1",
                                "--log-requests"])
        h.wait_until(lambda: cls.lb.nodes()["n2"][1] == "down", 10.0 * h.SLOW, what="n2 (nobody there) down")

    def request(self, path, cookie=None):
        headers = {"Cookie": f"SRVID={cookie}"} if cookie else None
        r = h.http_request(self.lb.port, "GET", path, headers=headers)
        self.assertEqual(r.status, 200)
        return r

    def wait_line(self, path):
        hit = []

        def seen():
            hit[:] = [m for m in map(REQ_RE.search, self.lb.log_text().splitlines()) if m and m.group(5) == path]
            return hit

        h.wait_until(seen, 10.0 * h.SLOW, what=f"the lb's log line for {path}")
        return hit[0]

    def test_each_cookie_fate_logged(self):
        cases = [("/log-none", None, "none,set"), ("/log-valid", "n1", "valid"),
                 ("/log-unknown", "zz", "unknown,set"), ("/log-down", "n2", "node-down,set")]
        for path, cookie, fate in cases:
            self.request(path, cookie)
            m = self.wait_line(path)
            self.assertEqual(m.group(14), fate, m.group(0))
            self.assertEqual((m.group(3), m.group(4), m.group(6), m.group(13)), ("n1", "GET", "200", "ok"), m.group(0))
            self.assertRegex(m.group(1), r"^127\.0\.0\.1:\d+$")
            self.assertEqual(m.group(2), "worker 0")
            self.assertGreater(int(m.group(12)), 0, "response bytes counted")
            tq, tc, tr, tt = (int(m.group(i)) for i in range(7, 11))
            self.assertTrue(tq >= 0 and tr >= 0 and tt >= tq, m.group(0))

    def test_bad_request_logged_with_reason(self):
        with socket.create_connection((h.HOST, self.lb.port), timeout=5) as s:
            s.sendall(b"NOT A REQUEST\r\n\r\n")
            self.assertIn(b" 400 ", s.recv(200))

        def seen():
            return [ln for ln in self.lb.log_text().splitlines() if '"- -" 400 ' in ln and "term=lb-error" in ln]

        h.wait_until(seen, 10.0 * h.SLOW, what="a 400 line")
        self.assertIn('why="', seen()[0])


class LbRequestLogOffTest(unittest.TestCase):
    def test_off_by_default(self):
        n1 = start_backend(self, "n1")
        lb = start_lb(self, ["--backend", f"n1={n1.addr}", "--health", "off"])
        h.http_request(lb.port, "GET", "/quiet")
        lb.stop()
        self.assertNotIn("request ", lb.log_text())


class LbTunnelLogTest(unittest.TestCase):
    def test_websocket_tunnel_logged_at_its_end(self):
        node = h.start_refserver(self, "t1")
        lb = start_lb(self, ["--backend", f"t1={h.HOST}:{node.port}", "--health", "off", "--log-requests"])
        ws = h.ws_connect(self, lb.port, "/ws?room=tun")
        ws.send_text("hello")
        self.assertNotIn('"GET /ws?room=tun" 101', lb.log_text(), "a tunnel is logged at its end, not its start")
        ws.close()
        m = log_lines(lb, REQ_RE, 1, "the tunnel's line")[-1]
        self.assertEqual((m.group(5), m.group(6), m.group(3)), ("/ws?room=tun", "101", "t1"), m.group(0))
        self.assertIn(m.group(13), ("client-closed", "server-closed", "closed"))
        self.assertGreater(int(m.group(11)), 0, "the client's bytes through the tunnel")


class PortGuardTest(unittest.TestCase):
    def run_lb(self, port, *extra):
        return subprocess.run([LB, "--listen", f"{h.HOST}:{port}", "--backend", f"{h.HOST}:1", "--health", "off",
                               *extra], capture_output=True, text=True, timeout=20 * h.SLOW)

    def test_busy_port_refused_naming_the_address(self):
        for reuseport in (True, False):  # another lb (SO_REUSEPORT) or any other server
            with listener(reuseport) as s:
                port = s.getsockname()[1]
                r = self.run_lb(port)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f"{h.HOST}:{port}", r.stderr)
                self.assertIn("--share-port", r.stderr)

    def test_second_lb_refused(self):
        n1 = start_backend(self, "n1")
        first = start_lb(self, ["--backend", f"n1={n1.addr}", "--health", "off"])
        r = self.run_lb(first.port)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("in use by another process", r.stderr)
        self.assertEqual(h.http_request(first.port, "GET", "/").status, 200, "the first lb still serves")

    def start_shared(self, port, args):
        lb = Lb(admin=False)
        self.addCleanup(lb.cleanup)
        lb.proc = h.Proc([LB, *args, "--backend", f"{h.HOST}:1", "--health", "off"],
                         os.path.join(lb.logdir, "lb.log"), "lb")
        h.wait_until(lambda: "serving on" in lb.log_text() or not lb.proc.alive(), 10.0 * h.SLOW,
                     what="the lb to start on a shared port")
        self.assertTrue(lb.proc.alive(), lb.log_text())

    def test_shared_when_told(self):
        with listener(True) as s:
            port = s.getsockname()[1]
            self.start_shared(port, ["--listen", f"{h.HOST}:{port}", "--share-port"])
            conf = os.path.join(h.make_tempdir(self), "lb.conf")
            with open(conf, "w") as f:
                f.write(f"listen {h.HOST}:{port} shared\n")
            self.start_shared(port, ["-c", conf])

    def test_reload_keeps_its_own_port(self):
        n1 = start_backend(self, "n1")
        d = h.make_tempdir(self)
        port, admin = h.free_port(), h.free_port()
        conf = os.path.join(d, "lb.conf")
        with open(conf, "w") as f:
            f.write(f"listen {h.HOST}:{port}\nadmin {h.HOST}:{admin}\nhealth off\nbackend n1 {n1.addr}\n")
        lb = start_lb(self, config=conf, port=port, admin_port=admin)
        before = set(lb.children())
        for _ in range(2):
            lb.proc.signal(signal.SIGHUP)
            h.wait_until(lambda: "reload: generation" in lb.log_text().split("SIGHUP")[-1], 10.0 * h.SLOW,
                         what="the reload to finish")
        self.assertNotIn("in use", lb.log_text())
        self.assertTrue(set(lb.children()) - before, "new workers serve")
        self.assertEqual(h.http_request(port, "GET", "/").status, 200)


class RefserverRequestLogTest(unittest.TestCase):
    def test_unknown_sid_and_websocket_logged(self):
        node = h.start_refserver(self, "r1", extra=["--log-requests"])
        r = h.http_request(node.port, "GET", "/socket.io/?EIO=4&transport=polling&sid=nosuchsid")
        self.assertEqual(r.status, 400)
        ws = h.ws_connect(self, node.port, "/ws?room=rl")
        ws.close()
        lines = log_lines(node, REF_RE, 2, "two request lines")
        bad = next(m for m in lines if "sid=nosuchsid" in m.group(4))
        self.assertEqual((bad.group(2), bad.group(5), bad.group(11)), ("r1", "400", "unknown"), bad.group(0))
        self.assertIn("Session ID unknown", bad.string)
        ws_line = log_lines(node, re.compile(REF_RE.pattern.replace(r"(\S+) Tq", r"(101) Tq")), 1, "the ws line")[0]
        self.assertEqual(ws_line.group(4), "/ws?room=rl")
        self.assertIn(ws_line.group(10), ("closed", "client-closed", "server-closed", "dropped"))

    def test_handshake_sid_new_then_known(self):
        node = h.start_refserver(self, "r2", extra=["--log-requests"])
        body = h.http_request(node.port, "GET", "/socket.io/?EIO=4&transport=polling").body.decode()
        sid = re.search(r'"sid":"([^"]+)"', body).group(1)
        h.http_request(node.port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body=b"40")
        lines = [m for m in log_lines(node, REF_RE, 3, "handshake and post lines") if m.group(4) != "/"]
        self.assertEqual([m.group(11) for m in lines[:2]], ["new", "known"], [m.group(0) for m in lines])

    def test_off_by_default(self):
        node = h.start_refserver(self, "r3")
        h.http_request(node.port, "GET", "/")
        node.stop()
        self.assertNotIn("request ", node.log_text())


class VersionTest(unittest.TestCase):
    def test_every_program_names_version_and_commit(self):
        for prog in ("lb", "refserver", "loadgen"):
            for flag in ("--version",) + (("-V",) if prog == "loadgen" else ()):
                r = subprocess.run([os.path.join(h.BUILD, prog), flag], capture_output=True, text=True, timeout=10)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertRegex(r.stdout, rf"^{prog} \d+\.\d+\.\d+ \(commit [0-9a-f]+(-dirty)?|unknown\)\n$")


class DiscoveryTest(unittest.TestCase):
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run_here(self, *argv):
        return subprocess.run(argv, cwd=self.ROOT, capture_output=True, text=True, timeout=60)

    def test_make_help_lists_every_target(self):
        r = self.run_here("make", "--no-print-directory", "help")
        self.assertEqual(r.returncode, 0, r.stderr)
        targets = dict(re.findall(r"^  make (\S+) +(.+)$", r.stdout, re.M))
        for t in ("all", "test", "check", "bench-socketio", "scenario", "compare", "lint", "clean", "help"):
            self.assertIn(t, targets, r.stdout)
            self.assertTrue(targets[t].strip())

    def test_bench_socketio_installs_the_npm_peers_first(self):
        # -W: as if the lockfile had just changed (a fresh clone has no node_modules at all)
        r = self.run_here("make", "--no-print-directory", "-n", "-W", "tests/interop/package-lock.json",
                          "bench-socketio")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        npm = [i for i, ln in enumerate(lines) if "npm ci" in ln]
        bench = [i for i, ln in enumerate(lines) if "bench/socketio.sh" in ln]
        self.assertTrue(npm and bench and npm[0] < bench[0], r.stdout)

    def test_scenarios_listed_with_descriptions(self):
        r = self.run_here(sys.executable, "scenarios/run", "--list")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = sorted(f[:-4] for f in os.listdir(os.path.join(self.ROOT, "scenarios")) if f.endswith(".ini"))
        listed = dict(re.findall(r"^(\S+) +(.+)$", r.stdout, re.M))
        self.assertEqual(sorted(listed), names)
        self.assertIn("100 clients over 2 nodes", listed["broadcast-100"])
        self.assertNotIn("(no description)", r.stdout)
        r = self.run_here(sys.executable, "scenarios/run")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--list", r.stderr)
