"""Integration tests for loadgen's outputs in CI: output files checked before the first connection, `--out -` as
pure JSON, the thresholds listed with their outcome, the build/machine/command line in the JSON, JUnit XML read back
by a JUnit reader (Debian's python3-junitparser), and the partial report of an interrupted run.
Run: python3 -m unittest discover -s tests/integration -p 'test_loadgen_output.py' -v   (WSH_BUILD: the build)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

import harness as h
from test_loadgen import TinySocketIO

try:
    import junitparser
except ImportError:  # a pyenv or venv python does not see Debian's packages: python3-junitparser is pure Python
    sys.path.append("/usr/lib/python3/dist-packages")
    import junitparser  # scripts/deps.sh installs python3-junitparser

LOADGEN = os.path.join(h.BUILD, "loadgen")
if not os.access(LOADGEN, os.X_OK):
    raise RuntimeError(f"{LOADGEN} is not built (set WSH_BUILD or run make)")

RUN_TIMEOUT = 60 * h.SLOW


def run(argv, timeout=RUN_TIMEOUT):
    p = subprocess.run([LOADGEN, *argv], capture_output=True, text=True, timeout=timeout)
    bad = [m for m in h.SANITIZER_MARKERS if m in p.stderr]
    if bad:
        raise AssertionError(f"loadgen {argv}: sanitizer report {bad}:\n{p.stderr[-4000:]}")
    return p


def show(p):
    return f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"


class BadOutputPaths(unittest.TestCase):
    """A path loadgen cannot write is exit 2 before any connection: a listener that sees none proves it."""

    def setUp(self):
        self.listener = socket.socket()
        self.listener.bind((h.HOST, 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.addCleanup(self.listener.close)
        self.url = f"ws://{h.HOST}:{self.listener.getsockname()[1]}/ws"
        self.dir = h.make_tempdir(self, "wsh-lgout-")

    def assertNoConnection(self):
        try:
            c, _ = self.listener.accept()
            c.close()
            self.fail("loadgen connected although an output path was bad")
        except BlockingIOError:
            pass

    def test_each_bad_path_is_exit_2_before_connecting(self):
        missing = os.path.join(self.dir, "no-such-dir", "x")
        cases = [("--out", missing + ".json"), ("--hlog", missing + ".hlog"), ("--junit", missing + ".xml"),
                 ("--out", self.dir)]
        for flag, path in cases:
            with self.subTest(flag=flag, path=path):
                p = run(["-c", "5", "-r", "1", flag, path, self.url])
                self.assertEqual(p.returncode, 2, show(p))
                self.assertIn(f"loadgen: {flag} {path}: ", p.stderr)
                self.assertEqual(p.stdout, "", "nothing starts: not even the header")
                self.assertNoConnection()
                self.assertEqual(os.listdir(self.dir), [], "no temporary file left behind")

    def test_stdout_for_two_outputs_is_bad_usage(self):
        p = run(["-c", "5", "-r", "1", "--out", "-", "--junit", "-", self.url])
        self.assertEqual(p.returncode, 2, show(p))
        self.assertIn("only one of --out, --hlog and --junit can be -", p.stderr)
        self.assertNoConnection()


class Outputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "n1")

    def setUp(self):
        self.dir = h.make_tempdir(self, "wsh-lgout-")
        self.url = f"ws://{h.HOST}:{self.node.port}/ws"

    def test_out_dash_is_pure_json_and_the_summary_goes_to_stderr(self):
        argv = ["-c", "10", "-r", "3", "-i", "20ms", "--progress", "10ms", "-t", "p99<30s", "--out", "-", self.url]
        p = run(argv)
        self.assertEqual(p.returncode, 0, show(p))
        doc = json.loads(p.stdout)  # the whole of stdout: no header, progress or summary mixed in
        self.assertEqual(doc["schema"], "wsh-loadgen/1")
        self.assertTrue(doc["verdict"]["pass"])
        self.assertTrue(p.stderr.startswith("loadgen "), p.stderr[:300])
        self.assertIn("verdict   PASS", p.stderr)
        self.assertRegex(p.stderr, r"(?m)^\[\d+\.\ds\] (ready|round \d+/3)  connected ")  # progress: stderr too
        # provenance: the build, the machine, the command line as given
        self.assertEqual(doc["command_line"], [LOADGEN, *argv])
        b = doc["build"]
        self.assertEqual(b["loadgen"], doc["version"])
        self.assertTrue(b["openssl"].startswith("OpenSSL "), b)
        self.assertRegex(b["libev"], r"^\d+\.\d+$")
        self.assertRegex(b["jansson"], r"^\d+\.\d+")
        self.assertIsInstance(b["commit"], str)
        if os.path.exists(os.path.join(h.REPO, ".git")):  # built by the Makefile in this tree: a commit
            self.assertNotIn(b["commit"], ("", "unknown"))
        u, m = os.uname(), doc["machine"]
        self.assertEqual((m["cores"], m["kernel"], m["kernel_release"], m["arch"]),
                         (os.cpu_count(), u.sysname, u.release, u.machine))
        self.assertGreater(m["memory_kb"], 0)

    def test_every_threshold_listed_with_its_outcome(self):
        p = run(["-c", "10", "-r", "2", "-i", "20ms", "-t", "p99<30s", "-t", "p50<1ns", "-t", "errors<1%",
                 self.url])
        self.assertEqual(p.returncode, 1, show(p))
        lines = [line for line in p.stdout.splitlines() if "\u2713" in line or "\u2717" in line]
        self.assertEqual(len(lines), 3, p.stdout)
        self.assertRegex(lines[0], r"^threshold \u2713 p99<30s +actual \S+$")
        self.assertRegex(lines[1], r"^ +\u2717 p50<1ns +actual \S+$")
        self.assertRegex(lines[2], r"^ +\u2713 errors<1% +actual 0\.000%$")
        self.assertLess(p.stdout.index("threshold "), p.stdout.index("verdict   FAIL"))

    def test_junit_read_by_a_junit_reader(self):
        path = os.path.join(self.dir, "run.xml")
        p = run(["-c", "10", "-r", "2", "-i", "20ms", "-t", "p99<30s", "-t", "p50<1ns", "--junit", path, self.url])
        self.assertEqual(p.returncode, 1, show(p))
        xml = junitparser.JUnitXml.fromfile(path)
        suites = list(xml)
        self.assertEqual(len(suites), 1)
        suite = suites[0]
        self.assertEqual((suite.tests, suite.failures, suite.errors), (5, 1, 0))
        cases = {c.name: c for c in suite}
        self.assertEqual(set(cases), {"connect", "delivery", "threshold p99<30s", "threshold p50<1ns", "run"})
        for name in ("connect", "delivery", "threshold p99<30s", "run"):
            self.assertTrue(cases[name].is_passed, name)
        bad = cases["threshold p50<1ns"]
        self.assertFalse(bad.is_passed)
        (failure,) = bad.result
        self.assertIsInstance(failure, junitparser.Failure)
        self.assertTrue(failure.message.startswith("threshold p50<1ns failed: actual "), failure.message)

    def test_junit_of_a_run_that_could_not_connect(self):
        path = os.path.join(self.dir, "run.xml")
        p = run(["-c", "5", "-r", "1", "--junit", path, f"ws://{h.HOST}:{self.node.port}/nope"])
        self.assertEqual(p.returncode, 3, show(p))
        suite = list(junitparser.JUnitXml.fromfile(path))[0]
        cases = {c.name: c for c in suite}
        self.assertFalse(cases["connect"].is_passed)
        self.assertIn("5 of 5 clients could not connect", cases["connect"].result[0].message)
        self.assertTrue(cases["delivery"].is_passed)

    def test_interrupted_run_keeps_its_partial_report(self):
        out, junit = os.path.join(self.dir, "run.json"), os.path.join(self.dir, "run.xml")
        proc = subprocess.Popen([LOADGEN, "-c", "10", "-r", "1000", "-i", "50ms", "--out", out, "--junit", junit,
                                 self.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(10)))
        h.wait_until(lambda: self.node.metric("refserver_websocket_clients") >= 10, 20 * h.SLOW, what="10 clients")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertEqual(proc.returncode, 1, stdout + stderr)
        with open(out) as f:
            doc = json.load(f)
        self.assertTrue(doc["interrupted"])
        self.assertIn("interrupted before the end of the run", doc["verdict"]["reasons"])
        self.assertGreater(len(doc["rounds"]), 0)
        cases = {c.name: c for c in list(junitparser.JUnitXml.fromfile(junit))[0]}
        self.assertIn("interrupted", cases["run"].result[0].message)


class GreetingServer(TinySocketIO):
    """A plain WebSocket server that greets each client: its first message is not an Engine.IO open packet."""

    OPEN = "welcome to the chat, stranger"


class NotSocketIO(unittest.TestCase):
    """--protocol socketio against a server that is not one: the answer says so, and does not blame CONNECT."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "n1")

    def run_sio(self, url, *extra):
        return run(["-c", "3", "-r", "1", "--protocol", "socketio", *extra, "--out", "-", url])

    def test_a_greeting_that_is_not_engine_io_fails_at_once(self):
        srv = GreetingServer()
        self.addCleanup(srv.close)
        # a connect timeout far longer than the test: only a failure at the first message ends it in time
        p = self.run_sio(srv.url(), "--connect-timeout", "600s")
        self.assertEqual(p.returncode, 3, show(p))
        doc = json.loads(p.stdout)
        self.assertEqual(doc["errors"]["bad_upgrade"]["count"], 3, doc["errors"])
        example = doc["errors"]["bad_upgrade"]["example"]
        self.assertIn("not Engine.IO: first message 'welcome to the chat, str'...", example)
        self.assertIn("--protocol websocket", example)

    def test_a_silent_websocket_server_is_not_blamed_on_connect(self):
        p = self.run_sio(f"ws://{h.HOST}:{self.node.port}/ws", "--connect-timeout", "1s")
        self.assertEqual(p.returncode, 3, show(p))
        example = json.loads(p.stdout)["errors"]["handshake_timeout"]["example"]
        self.assertIn("no Engine.IO open packet (plain WebSocket?) within 1000 ms", example)
        self.assertNotIn("CONNECT", example)

    def test_an_http_error_gets_a_hint(self):
        p = self.run_sio(f"ws://{h.HOST}:{self.node.port}/nope")
        self.assertEqual(p.returncode, 3, show(p))
        reasons = json.loads(p.stdout)["verdict"]["reasons"]
        self.assertTrue(any(r.startswith("hint: --protocol socketio: the Engine.IO handshake was answered with an "
                                         "HTTP error") for r in reasons), reasons)


if __name__ == "__main__":
    unittest.main()
