"""Integration tests for build/loadgen against real refserver nodes and a real redis-server.

The verdict must be able to fail: next to the passing runs are runs built to fail in a known way (a node on another
Redis, a closed port, a 404, too few descriptors, unmeetable thresholds), and each checks the exact counts.
Run: python3 -m unittest discover -s tests/integration -p 'test_*.py' -v   (WSH_BUILD selects the build directory)
"""

import base64
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

LOADGEN = os.path.join(h.BUILD, "loadgen")
if not os.access(LOADGEN, os.X_OK):
    raise RuntimeError(f"{LOADGEN} is not built (set WSH_BUILD or run make)")

RUN_TIMEOUT = 60 * h.SLOW


def run_loadgen(args, timeout=RUN_TIMEOUT, preexec_fn=None):
    """Run loadgen to the end; returns (exit code, stdout, stderr, parsed JSON or None)."""
    out = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".json", delete=False)
    out.close()
    os.unlink(out.name)
    argv = [LOADGEN, "--out", out.name, *args]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
        bad = [m for m in h.SANITIZER_MARKERS if m in p.stderr]
        if bad:
            raise AssertionError(f"loadgen {args}: sanitizer report {bad}:\n{p.stderr[-4000:]}")
        doc = None
        if os.path.exists(out.name):
            with open(out.name) as f:
                doc = json.load(f)
        return p.returncode, p.stdout, p.stderr, doc
    finally:
        if os.path.exists(out.name):
            os.unlink(out.name)


def ws_url(node, path="/ws"):
    return f"ws://{h.HOST}:{node.port}{path}"


# The shape of a report without --churn, as it was before --churn existed (plus the accounting of losses, which
# every run has).
ROUND_KEYS = {"round", "emitted", "expected", "received", "late", "missing", "duplicate", "reordered", "start_ms",
              "duration_ms", "timed_out", "p50_ms", "p99_ms", "max_ms", "missed_while_away", "emitter_gone",
              "lateness_ms"}
TOTAL_KEYS = {"emitted", "expected", "received", "late", "missing", "duplicate", "reordered", "delivery",
              "missed_while_away", "emitter_gone"}
CHURN_KEYS = {"churned", "left", "rejoined", "rejoin_failed"}


def spectator_room(i, k, s):
    """loadgen's --rooms K --spectators S mapping, written again from its contract: 0 is the big room."""
    if i == 0:
        return 0  # the publisher
    if i <= k:
        return i  # one per small room
    if i < k + s:
        return 0  # the watchers
    return 1 + (i - k - s) % k


def spectator_counts(clients, k, s, emitters, node_of=None):
    """(expected, heard) per round: every receiver of each emitter, and those on the emitter's node (node_of(id))."""
    rooms = [spectator_room(i, k, s) for i in range(clients)]
    expected = heard = 0
    for e in range(emitters):
        for i in range(clients):
            if i != e and rooms[i] == rooms[e]:
                expected += 1
                heard += node_of is not None and node_of(i) == node_of(e)
    return expected, heard


class LoadgenBase(unittest.TestCase):
    def assertRun(self, rc, want, out, err):
        self.assertEqual(rc, want, f"exit {rc}, wanted {want}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")

    def assertDelivered(self, doc, expected):
        t = doc["totals"]
        self.assertEqual(t["expected"], expected, t)
        self.assertEqual(t["received"], expected, t)
        for k in ("missing", "late", "duplicate", "reordered"):
            self.assertEqual(t[k], 0, f"{k}: {t}")

    def assertChurnAddsUp(self, doc, receivers=None, gap_covers_interval=False):
        """--churn's bookkeeping, whatever the timing: every leave ends as rejoined, rejoin_failed or pending (away
        when the close began); the rounds' counters add up to the run's; every first arrival is received, late or
        churned (the latency histogram has them all); the connect-phase figures count each client once. With
        receivers (a run where nobody is lost), a round excuses only receivers that left: a leave excuses at most
        two rounds (the one it left in or before, and the next when it came back after that one started) when the
        gap is shorter than the interval, and at least one when the gap covers the interval (it is away at the
        next start, if not in the round it left in)."""
        ch, t, rounds = doc["churn"], doc["totals"], doc["rounds"]
        self.assertEqual(ch["left"], ch["rejoined"] + ch["rejoin_failed"] + ch["pending"], ch)
        self.assertGreater(ch["left"], 0, ch)
        for k in CHURN_KEYS:
            self.assertEqual(t[k], sum(r[k] for r in rounds), k)
        for k in ("left", "rejoined", "rejoin_failed"):
            self.assertEqual(t[k], ch[k], k)
        self.assertEqual(doc["latency"]["count"], t["received"] + t["late"] + t["churned"], t)
        self.assertEqual(doc["connect"]["count"], doc["clients"]["connected"])
        self.assertEqual(sum(doc["nodes"].values()), doc["clients"]["connected"])
        if receivers:
            excused = sum(receivers - r["expected"] for r in rounds)
            self.assertLessEqual(excused, 2 * ch["left"], (excused, ch))
            if gap_covers_interval:
                self.assertGreaterEqual(excused, ch["left"], (excused, ch))
        for r in rounds:
            self.assertEqual(r["missing"], r["expected"] - r["received"] - r["late"], r)


class TwoNodes(LoadgenBase):
    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.n1 = h.start_refserver(cls, "n1", cls.redis.url)
        cls.n2 = h.start_refserver(cls, "n2", cls.redis.url)

    def test_100_clients_over_two_nodes_pass(self):
        rounds = 5
        rc, out, err, doc = run_loadgen(["-c", "100", "-r", str(rounds), "-i", "50ms", "--room", "it-pass",
                                         ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["schema"], "wsh-loadgen/1")
        self.assertEqual(doc["clients"]["connected"], 100)
        self.assertEqual(doc["clients"]["failed"], 0)
        self.assertEqual(doc["nodes"], {"n1": 50, "n2": 50})
        self.assertDelivered(doc, 99 * rounds)
        self.assertEqual(len(doc["rounds"]), rounds)
        for i, r in enumerate(doc["rounds"]):
            self.assertEqual((r["round"], r["emitted"], r["expected"], r["received"]), (i + 1, 1, 99, 99))
        self.assertEqual(doc["latency"]["count"], 99 * rounds)
        self.assertEqual(doc["connect"]["count"], 100)
        self.assertEqual(doc["clients"]["closed_clean"], 100)
        self.assertTrue(doc["verdict"]["pass"])
        self.assertIn("PASS", out)

    def test_rooms_and_emitters(self):
        # 60 clients in 3 rooms, 3 emitters (one per room): each message reaches the 19 others of its room only.
        rc, out, err, doc = run_loadgen(["-c", "60", "-r", "4", "-i", "20ms", "--rooms", "3", "-e", "3",
                                         "--room", "it-rooms", ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        self.assertDelivered(doc, 4 * 3 * 19)
        self.assertEqual(doc["corrupt"], 0)

    def test_two_workers_add_up(self):
        rc, out, err, doc = run_loadgen(["-c", "101", "-r", "3", "-i", "20ms", "-w", "2", "-e", "2",
                                         "--room", "it-workers", ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        workers = doc["self"]["workers"]
        self.assertEqual(len(workers), 2)
        self.assertEqual(sorted(w["clients"] for w in workers), [50, 51])
        self.assertEqual(doc["clients"]["connected"], 101)
        # two emitters in one room: each of the 101 clients hears the 2 emitters but itself
        self.assertDelivered(doc, 3 * (101 * 2 - 2))
        self.assertEqual(sum(doc["nodes"].values()), 101)

    def test_source_addresses(self):
        # Clients are spread over the source range; ss shows who is connected while the run holds them.
        proc = subprocess.Popen([LOADGEN, "-q", "-c", "40", "-r", "2", "-i", "2s", "--source", "127.0.0.2-127.0.0.5",
                                 ws_url(self.n1)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        seen = set()

        def forty_connected():
            ss = subprocess.run(["ss", "-Htn", "state", "established", "dst", f"{h.HOST}:{self.n1.port}"],
                                capture_output=True, text=True).stdout.split("\n")
            rows = [line.split() for line in ss if line.strip()]
            seen.clear()
            seen.update(r[-2].rsplit(":", 1)[0] for r in rows)
            return len(rows) >= 40

        h.wait_until(forty_connected, 20 * h.SLOW, what="40 connections from the source range")
        self.assertEqual(seen, {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"})
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertRun(proc.returncode, 0, out, err)

    def test_unmeetable_thresholds_exit_1(self):
        rc, out, err, doc = run_loadgen(["-c", "20", "-r", "2", "-i", "20ms", "-t", "p99<1ns", "-t", "connect.max<1ns",
                                         "-t", "delivery>=100%", ws_url(self.n1)])
        self.assertRun(rc, 1, out, err)
        th = {t["expr"]: t for t in doc["thresholds"]}
        self.assertFalse(th["p99<1ns"]["ok"])
        self.assertFalse(th["connect.max<1ns"]["ok"])
        self.assertTrue(th["delivery>=100%"]["ok"])
        self.assertDelivered(doc, 2 * 19)  # delivery itself was fine: only the thresholds failed
        self.assertTrue(any("p99<1ns" in r for r in doc["verdict"]["reasons"]), doc["verdict"])

    def test_meetable_thresholds_pass(self):
        rc, out, err, doc = run_loadgen(["-c", "20", "-r", "2", "-i", "20ms", "-t", "p99<30s", "-t", "errors<=0%",
                                         ws_url(self.n1)])
        self.assertRun(rc, 0, out, err)
        self.assertTrue(all(t["ok"] for t in doc["thresholds"]))

    def test_not_found_is_exit_3_with_the_status(self):
        rc, out, err, doc = run_loadgen(["-c", "10", "-r", "1", ws_url(self.n1, "/nope")])
        self.assertRun(rc, 3, out, err)
        self.assertEqual(doc["clients"]["failed"], 10)
        self.assertEqual(doc["http_status"], {"404": 10})

    def test_sigint_reports_and_exits_1(self):
        proc = subprocess.Popen([LOADGEN, "-c", "30", "-r", "1000", "-i", "50ms", ws_url(self.n1)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        h.wait_until(lambda: self.n1.metric("refserver_websocket_clients") >= 30, 20 * h.SLOW, what="30 clients")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertRun(proc.returncode, 1, out, err)
        self.assertIn("interrupted", out + err)
        h.wait_until(lambda: self.n1.metric("refserver_websocket_clients") == 0, 10 * h.SLOW, what="clients gone")


class Spectators(LoadgenBase):
    """--spectators: one big room (a publisher and its watchers) beside small rooms, each message due in its room."""

    CLIENTS, ROOMS, SPECTATORS, EMITTERS = 200, 10, 100, 11
    # big room: client 0 and 99 watchers (11..109); small room k: client k and 9 of 110..199
    PER_ROUND = 99 + 10 * 9

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.n1, cls.n2 = h.start_nodes(cls, 2, cls.redis.url)

    def argv(self, room, *extra):
        return ["-c", str(self.CLIENTS), "--rooms", str(self.ROOMS), "--spectators", str(self.SPECTATORS),
                "-e", str(self.EMITTERS), "--room", room, *extra, ws_url(self.n1), ws_url(self.n2)]

    def test_each_message_reaches_exactly_its_room(self):
        rounds = 3
        self.assertEqual(spectator_counts(self.CLIENTS, self.ROOMS, self.SPECTATORS, self.EMITTERS)[0],
                         self.PER_ROUND)
        rc, out, err, doc = run_loadgen(self.argv("it-spec", "-r", str(rounds), "-i", "50ms"))
        self.assertRun(rc, 0, out, err)
        self.assertEqual((doc["options"]["rooms"], doc["options"]["spectators"]), (self.ROOMS, self.SPECTATORS))
        self.assertDelivered(doc, rounds * self.PER_ROUND)
        for r in doc["rounds"]:
            self.assertEqual((r["emitted"], r["expected"], r["received"]), (self.EMITTERS, 189, 189))
        self.assertEqual((doc["corrupt"], doc["echoed"]), (0, 0))
        self.assertEqual(doc["nodes"], {"n1": 100, "n2": 100})

    def test_a_message_in_another_room_is_corrupt_for_exactly_that_room(self):
        # During --hold (the emitters are known, no round has started) a stranger sends the publisher's round-1
        # message into small room 3 and small room 3's emitter's message into the big room: valid messages from
        # active emitters, wrong only by room. Every member of those rooms must flag them: 10 + 100, nobody else.
        hold = 4 * h.SLOW
        proc = subprocess.Popen([LOADGEN, "-q", "--out", "-", *self.argv("it-leak", "-r", "2", "-i", "50ms",
                                                                        "--hold", f"{hold}s")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        clients = lambda: self.n1.metric("refserver_websocket_clients") + self.n2.metric("refserver_websocket_clients")
        h.wait_until(lambda: clients() >= self.CLIENTS, 20 * h.SLOW, what=f"{self.CLIENTS} clients")
        time.sleep(0.5 * h.SLOW)  # READY -> EMITTERS takes a few ms once the last 101 is read
        for node, room, emitter in ((self.n1, "it-leak-3", 0), (self.n2, "it-leak-0", 3)):
            stranger = node.ws(room=room)
            self.addCleanup(stranger.close)
            stranger.send_text(json.dumps({"wsh": 1, "e": emitter, "r": 1, "s": 1, "t": 1, "pad": ""},
                                          separators=(",", ":")))
        out, err = proc.communicate(timeout=RUN_TIMEOUT + hold)
        self.assertRun(proc.returncode, 1, out, err)
        doc = json.loads(out)
        self.assertEqual(doc["corrupt"], 10 + 100, doc["verdict"])
        self.assertDelivered(doc, 2 * self.PER_ROUND)  # the real messages were unaffected
        self.assertTrue(any("corrupt" in r for r in doc["verdict"]["reasons"]), doc["verdict"])


class Churn(LoadgenBase):
    """--churn: receivers leave (a close handshake) and come back (a new connection) while the rounds run; a round
    is owed only to the receivers there for the whole of it."""

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        cls.n1, cls.n2 = h.start_nodes(cls, 2, cls.redis.url)

    def test_leavers_are_excused_and_everyone_present_gets_everything(self):
        rounds, rate, gap = 20, 50, 0.1
        rc, out, err, doc = run_loadgen(["-c", "200", "--rounds", str(rounds), "--interval", "100ms", "--churn",
                                         str(rate), "--room", "it-churn", ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        t, ch = doc["totals"], doc["churn"]
        self.assertEqual((doc["options"]["churn"], doc["options"]["churn_gap_ms"]), (rate, gap * 1000))
        self.assertChurnAddsUp(doc, 199, gap_covers_interval=True)
        # every receiver present for a whole round got its message, exactly once and in order
        self.assertEqual(t["received"], t["expected"], t)
        for k in ("missing", "late", "duplicate", "reordered"):
            self.assertEqual(t[k], 0, f"{k}: {t}")
        self.assertEqual((doc["corrupt"], doc["echoed"]), (0, 0))
        for r in doc["rounds"]:
            self.assertEqual((r["received"], r["missing"]), (r["expected"], 0), r)
            self.assertLessEqual(r["expected"], 199, r)
        self.assertLess(t["expected"], rounds * 199, t)  # the leavers were excused
        # churn runs for the ~2 s of rounds at 50/s; it stops when the last round is judged, and the verify window
        # (200 ms) is longer than the gap, so a leave is pending at the end only if its return took over 100 ms
        self.assertGreater(ch["left"], rate * rounds * 0.1 / 2, ch)
        self.assertEqual(ch["rejoin_failed"], 0, ch)
        self.assertLessEqual(ch["pending"], rate * gap + 1, ch)
        self.assertEqual(ch["rejoined"], ch["left"] - ch["pending"], ch)
        self.assertEqual(doc["errors"], {})
        self.assertEqual(doc["clients"]["connected"], 200)
        self.assertEqual(doc["clients"]["dropped"], 0)
        self.assertEqual(doc["clients"]["closed_clean"], 200 - ch["pending"])  # the pending ones have no final close
        self.assertEqual(doc["nodes"], {"n1": 100, "n2": 100})  # where the 200 landed first; returns not counted
        # no warning about churn itself (the closes, the pending returns); a busy shared machine may add its own
        # about loadgen's or the machine's CPU, which says nothing about churn
        machine = ("loadgen may be the bottleneck", "the machine was contended", "schedule fell behind")
        self.assertEqual([w for w in doc["verdict"]["warnings"] if not w.startswith(machine)], [])
        self.assertIn(f"churn     {rate}/s, back after 100ms: {ch['left']} left, {ch['rejoined']} rejoined", out)

    def test_two_workers_three_rooms(self):
        # 300 clients in 3 rooms with one emitter each, two worker processes each churning its share of 200/s
        # with a 30 ms gap: the same exact bookkeeping, over workers and rooms.
        rc, out, err, doc = run_loadgen(["-c", "300", "-w", "2", "--rooms", "3", "-e", "3", "--room", "it-churn-w",
                                         "-r", "15", "-i", "50ms", "--churn", "200", "--churn-gap", "30ms",
                                         ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        t = doc["totals"]
        self.assertChurnAddsUp(doc, 297)
        self.assertEqual(t["received"], t["expected"], t)
        for k in ("missing", "late", "duplicate", "reordered"):
            self.assertEqual(t[k], 0, f"{k}: {t}")
        self.assertLess(t["expected"], 15 * 297, t)
        self.assertEqual(doc["churn"]["rejoin_failed"], 0)
        self.assertEqual(doc["corrupt"], 0)

    def test_without_churn_the_report_keeps_its_shape(self):
        rc, out, err, doc = run_loadgen(["-c", "20", "-r", "2", "-i", "20ms", "--room", "it-nochurn", ws_url(self.n1),
                                         ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        self.assertNotIn("churn", doc)
        self.assertEqual(set(doc["totals"]), TOTAL_KEYS)
        for r in doc["rounds"]:
            self.assertEqual(set(r), ROUND_KEYS)
        self.assertEqual((doc["options"]["churn"], doc["options"]["churn_gap_ms"]), (0, 100.0))
        self.assertNotIn("churn", out)
        self.assertDelivered(doc, 2 * 19)
        self.assertEqual(doc["latency"]["count"], 2 * 19)


class SplitBrain(LoadgenBase):
    """Node 2 is on another Redis, so nothing crosses between the nodes: the verdict must fail, with exact counts."""

    @classmethod
    def setUpClass(cls):
        cls.redis1 = h.start_redis(cls)
        cls.redis2 = h.start_redis(cls)
        cls.n1 = h.start_refserver(cls, "n1", cls.redis1.url)
        cls.n2 = h.start_refserver(cls, "n2", cls.redis2.url)

    def test_missing_count_is_exact(self):
        rounds = 3
        rc, out, err, doc = run_loadgen(["-c", "100", "-r", str(rounds), "-i", "20ms", "--deadline", "500ms",
                                         ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 1, out, err)
        # client 0 (on n1) emits; the 50 clients on n2 never hear it, the 49 others on n1 do.
        t = doc["totals"]
        self.assertEqual((t["expected"], t["received"], t["missing"]), (99 * rounds, 49 * rounds, 50 * rounds))
        for r in doc["rounds"]:
            self.assertEqual(r["missing"], 50)
            self.assertTrue(r["timed_out"])
        self.assertFalse(doc["verdict"]["pass"])
        self.assertTrue(any("missing" in r for r in doc["verdict"]["reasons"]), doc["verdict"])

    def test_spectators_missing_is_exact_per_room(self):
        # Client i is on node i % 2. The publisher (0, on n1) reaches the 49 watchers on n1 and misses the 50 on n2;
        # small room k's emitter (client k) is on the other node than all 9 of its room (109 + k + 10j): all missed.
        rounds = 2
        counts = spectator_counts(200, 10, 100, 11, node_of=lambda i: i % 2)
        self.assertEqual(counts, (189, 49))
        rc, out, err, doc = run_loadgen(["-c", "200", "--rooms", "10", "--spectators", "100", "-e", "11", "-r",
                                         str(rounds), "-i", "20ms", "--deadline", "500ms", "--room", "it-split",
                                         ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 1, out, err)
        t = doc["totals"]
        self.assertEqual((t["expected"], t["received"], t["missing"]), (189 * rounds, 49 * rounds, 140 * rounds))
        self.assertEqual((t["late"], t["duplicate"], doc["corrupt"]), (0, 0, 0))

    def test_churn_does_not_hide_loss(self):
        # The churn of Churn's first test, but node 2 hears nothing from node 1: client 0 (n1) emits, the receivers
        # on n1 (even ids) get every message, those on n2 (odd ids) none. A round owes its message to the receivers
        # there for the whole of it, so what it finds missing is exactly what the ones on n2 should have got:
        # expected = present on n1 + present on n2, received = present on n1 (n1 delivers everything, as Churn's
        # test shows). The receivers leave round robin by id, so about as many of n1's as of n2's are away at a
        # time: the loss charged to n2 follows its head count, and leaving is never a way out of it.
        rounds = 20
        rc, out, err, doc = run_loadgen(["-c", "200", "--rounds", str(rounds), "--interval", "100ms", "--churn", "50",
                                         "--deadline", "300ms", "--room", "it-split-churn", ws_url(self.n1),
                                         ws_url(self.n2)])
        self.assertRun(rc, 1, out, err)
        t = doc["totals"]
        self.assertChurnAddsUp(doc, 199, gap_covers_interval=True)
        self.assertEqual(doc["churn"]["rejoin_failed"], 0)
        self.assertGreater(t["missing"], 0, t)
        self.assertEqual(t["missing"], t["expected"] - t["received"], t)
        self.assertEqual((t["late"], t["duplicate"], t["reordered"], doc["corrupt"]), (0, 0, 0, 0))
        for r in doc["rounds"]:
            present_n1, present_n2 = r["received"], r["missing"]
            self.assertEqual(present_n1 + present_n2, r["expected"], r)
            self.assertTrue(0 < present_n2 <= 100 and present_n1 <= 99, r)
            away_n1, away_n2 = 99 - present_n1, 100 - present_n2
            self.assertLessEqual(abs(away_n2 - away_n1), 3, r)  # ids leave in turn: odd, even, odd, ...
            self.assertTrue(r["timed_out"], r)
        self.assertLess(t["expected"], rounds * 199, t)
        self.assertFalse(doc["verdict"]["pass"])
        self.assertTrue(any("missing" in r for r in doc["verdict"]["reasons"]), doc["verdict"])

    def test_delivery_threshold_can_tolerate_it(self):
        rc, out, err, doc = run_loadgen(["-c", "100", "-r", "2", "-i", "20ms", "--deadline", "300ms",
                                         "-t", "delivery>=40%", ws_url(self.n1), ws_url(self.n2)])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["totals"]["missing"], 100)


class ConnectFailures(LoadgenBase):
    def test_refused_is_exit_3(self):
        port = h.free_port()
        rc, out, err, doc = run_loadgen(["-c", "20", "-r", "1", f"ws://{h.HOST}:{port}/ws"])
        self.assertRun(rc, 3, out, err)
        self.assertEqual(doc["errors"]["refused"]["count"], 20)
        self.assertEqual(doc["clients"]["connected"], 0)

    def test_emfile_is_exit_3_with_a_hint(self):
        redis = h.start_redis(self)
        node = h.start_refserver(self, "n1", redis.url)

        def few_fds():
            resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

        # -w 1: --workers auto (the default) would spread the 100 clients over 5 processes and connect them all
        rc, out, err, doc = run_loadgen(["-c", "100", "-r", "1", "-w", "1", ws_url(node)], preexec_fn=few_fds)
        self.assertRun(rc, 3, out, err)
        self.assertGreater(doc["errors"]["emfile"]["count"], 0)
        self.assertIn("--workers", out + err)

    def test_bad_usage_is_exit_2(self):
        for args in (["-c", "0", "ws://127.0.0.1:1/"], ["--clients", "x", "ws://127.0.0.1:1/"], ["ftp://x/"], [],
                     ["--threshold", "p99<5", "ws://127.0.0.1:1/"], ["--source", "127.0.0.9-127.0.0.2",
                                                                     "ws://127.0.0.1:1/"], ["--bogus"]):
            p = subprocess.run([LOADGEN, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")
            lines = [ln for ln in p.stderr.split("\n") if ln.strip()]
            self.assertEqual(len(lines), 1, f"{args}: one line expected: {p.stderr!r}")

    def test_churn_usage_errors_are_exit_2(self):
        for args, want in ((["-c", "3", "-e", "2", "--churn", "10"], "needs at least 2 clients that are not emitters"),
                           (["--churn", "100001"], "--churn: expected a whole number from 0 to 100000"),
                           (["--churn", "5", "--churn-gap", "5"], "--churn-gap")):
            p = subprocess.run([LOADGEN, *args, "ws://127.0.0.1:1/"], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")
            lines = [ln for ln in p.stderr.split("\n") if ln.strip()]
            self.assertEqual(len(lines), 1, f"{args}: one line expected: {p.stderr!r}")
            self.assertIn(want, lines[0])

    def test_help(self):
        p = subprocess.run([LOADGEN, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        for opt in ("--clients", "--rounds", "--threshold", "--workers", "--source", "--hlog", "--out"):
            self.assertIn(opt, p.stdout)


class UntrustedTls(LoadgenBase):
    """wss:// and https:// polling to a TLS server whose CA loadgen does not know: every client fails as tls, and the
    example says "TLS handshake" once (it said it twice: the caller's prefix before tls.c's own)."""

    @classmethod
    def setUpClass(cls):
        d = h.make_tempdir(cls, "wsh-lgtls-")
        material = h.make_tls_material(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(material["cert"], material["key"])
        cls.sock = socket.create_server((h.HOST, 0))
        cls.sock.settimeout(0.2)
        cls.port = cls.sock.getsockname()[1]
        cls.stop = threading.Event()

        def serve():  # accept and handshake until stopped; the client's refusal ends each one
            while not cls.stop.is_set():
                try:
                    conn, _ = cls.sock.accept()
                except OSError:
                    continue
                try:
                    conn.settimeout(5.0)
                    ctx.wrap_socket(conn, server_side=True).close()
                except (OSError, ssl.SSLError):
                    conn.close()

        cls.thread = threading.Thread(target=serve, daemon=True)
        cls.thread.start()

        def stop():
            cls.stop.set()
            cls.thread.join(10)
            cls.sock.close()

        cls.addClassCleanup(stop)

    def check(self, args):
        rc, out, err, doc = run_loadgen(["-c", "2", "-r", "1", "-w", "1", *args])
        self.assertRun(rc, 3, out, err)
        self.assertEqual(doc["errors"]["tls"]["count"], 2, doc["errors"])
        self.assertIn("TLS handshake: ", out + err)
        self.assertNotIn("TLS handshake: TLS handshake", out + err)
        self.assertNotIn("TLS handshake for a", out + err)

    def test_websocket(self):
        self.check([f"wss://{h.HOST}:{self.port}/ws"])

    def test_polling(self):
        self.check(["--protocol", "socketio", "--transport", "polling", f"wss://{h.HOST}:{self.port}/"])


class NodeLoss(LoadgenBase):
    def test_node_killed_mid_run_fails_with_dropped_clients(self):
        redis = h.start_redis(self)
        n1 = h.start_refserver(self, "n1", redis.url)
        n2 = h.RefServer("n2", redis.url)
        n2.start()
        self.addCleanup(n2.stop)
        proc = subprocess.Popen([LOADGEN, "-c", "40", "-r", "40", "-i", "50ms", "--out", os.devnull, ws_url(n1),
                                 ws_url(n2)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        h.wait_until(lambda: n2.metric("refserver_websocket_clients") >= 20, 20 * h.SLOW, what="20 clients on n2")
        time.sleep(0.3)
        n2.proc.kill()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertRun(proc.returncode, 1, out, err)
        self.assertIn("dropped", out)

    def test_returns_to_a_dead_node_fail_and_stay_gone(self):
        # Churn 100/s with a 1 s gap keeps ~100 receivers away at a time. Node 2 is killed mid-run: its open clients
        # are dropped, and its clients that were away fail to come back (refused): errors of their kind, counted
        # as rejoin_failed, and gone for good. Nothing goes missing: a lost client takes back what it had not yet
        # received, and one that failed to come back is owed nothing.
        redis = h.start_redis(self)
        n1 = h.start_refserver(self, "n1", redis.url)
        n2 = h.RefServer("n2", redis.url)
        n2.start()
        self.addCleanup(n2.stop)
        out_json = tempfile.NamedTemporaryFile(prefix="wsh-lg-", suffix=".json", delete=False).name
        self.addCleanup(os.unlink, out_json)
        proc = subprocess.Popen([LOADGEN, "-c", "200", "-r", "40", "-i", "100ms", "--churn", "100", "--churn-gap",
                                 "1s", "--room", "it-churn-kill", "--out", out_json, ws_url(n1), ws_url(n2)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        h.wait_until(lambda: n2.metric("refserver_websocket_clients") >= 100, 20 * h.SLOW, what="100 clients on n2")
        time.sleep(1.5)  # the rounds begin 100 ms after the last connect; after 1.4 s of churn ~70 are away
        n2.proc.kill()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        self.assertRun(proc.returncode, 1, out, err)
        with open(out_json) as f:
            doc = json.load(f)
        t, ch = doc["totals"], doc["churn"]
        self.assertChurnAddsUp(doc)
        self.assertGreater(ch["rejoin_failed"], 0, ch)
        # each failed return is counted under the kind that stopped it: refused, or (a return caught mid-upgrade by
        # the kill) handshake_closed; the connect phase itself had no failure
        connect_kinds = ("refused", "connect_timeout", "emfile", "eaddrnotavail", "connect", "tls",
                         "handshake_timeout", "http_status", "bad_upgrade", "handshake_closed")
        errors = doc["errors"]
        self.assertEqual(sum(errors[k]["count"] for k in connect_kinds if k in errors), ch["rejoin_failed"], errors)
        self.assertGreater(errors["refused"]["count"], 0, errors)
        self.assertGreater(doc["clients"]["dropped"], 0)
        self.assertEqual(doc["clients"]["failed"], 0)  # the connect phase was fine
        self.assertEqual((t["missing"], t["late"], t["duplicate"], t["reordered"]), (0, 0, 0, 0), t)
        self.assertEqual(t["received"], t["expected"], t)
        self.assertLessEqual(doc["rounds"][-1]["expected"], 99)  # only n1's receivers are left to owe
        self.assertTrue(any("could not connect" in r and "refused" in r for r in doc["verdict"]["reasons"]),
                        doc["verdict"])


class SimpleLb:
    """build/lb in front of the given nodes, on free ports, stopped by its PID (SIGTERM) at cleanup."""

    def __init__(self, owner, nodes, *flags):
        self.port = h.free_port()
        argv = [os.path.join(h.BUILD, "lb"), "--listen", f"{h.HOST}:{self.port}", "--health", "off", *flags]
        for n in nodes:
            argv += ["--backend", f"{n.node_id}={h.HOST}:{n.port}"]
        self.logdir = h.make_tempdir(owner, "wsh-lg-lb-")
        self.proc = h.Proc(argv, os.path.join(self.logdir, "lb.log"), "lb")
        owner.addCleanup(self.proc.stop)
        h.wait_until(self._up, 10 * h.SLOW, what="lb accepting")

    def _up(self):
        if not self.proc.alive():
            raise RuntimeError(f"lb exited at start:\n{self.proc.log_text()[-2000:]}")
        socket.create_connection((h.HOST, self.port), timeout=1.0).close()
        return True

    def url(self):
        return f"ws://{h.HOST}:{self.port}/"


class SocketIOPolling(LoadgenBase):
    """--protocol socketio --transport polling against two refserver nodes on one Redis: Engine.IO long-polling with
    and without the upgrade, straight to the nodes and through lb with cookie stickiness; and through lb without
    stickiness, which must fail with socketio_session_unknown (the check can fail)."""

    CLIENTS, ROUNDS = 40, 4

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        # a short ping interval, so the runs see the server's pings and our pongs over polling
        extra = ["--sio-ping-interval", "300", "--sio-ping-timeout", "2000"]
        cls.n1, cls.n2 = h.start_nodes(cls, 2, cls.redis.url, extra)

    def argv(self, *extra):
        return ["--protocol", "socketio", "--transport", "polling", "-c", str(self.CLIENTS), "-r", str(self.ROUNDS),
                "-e", "2", "-i", "250ms", *extra]

    def assertAllPolling(self, rc, out, err, doc, upgraded):
        self.assertRun(rc, 0, out, err)
        c = doc["clients"]
        self.assertEqual((c["connected"], c["failed"], c["dropped"]), (self.CLIENTS, 0, 0), c)
        self.assertEqual(c["closed_clean"], self.CLIENTS, c)
        want = {"upgraded": self.CLIENTS, "polling": 0} if upgraded else {"upgraded": 0, "polling": self.CLIENTS}
        self.assertEqual(c["transport"], want)
        self.assertDelivered(doc, self.ROUNDS * 2 * (self.CLIENTS - 1))
        self.assertEqual(doc["errors"], {})
        self.assertEqual((doc["echoed"], doc["corrupt"]), (0, 0))
        self.assertEqual(doc["options"]["socketio"]["transport"], "polling")
        self.assertEqual(doc["options"]["socketio"]["upgrade"], upgraded)
        self.assertEqual(doc["latency"]["count"], self.ROUNDS * 2 * (self.CLIENTS - 1))

    def test_no_upgrade_straight_to_both_nodes(self):
        rc, out, err, doc = run_loadgen(self.argv("--no-upgrade", "--hold", "1s", ws_url(self.n1, "/"),
                                                  ws_url(self.n2, "/")))
        self.assertAllPolling(rc, out, err, doc, upgraded=False)
        self.assertEqual(doc["nodes"], {"n1": self.CLIENTS // 2, "n2": self.CLIENTS // 2})
        self.assertIn("transport: 0 upgraded, 40 polling", out)

    def test_upgrade_straight_to_both_nodes(self):
        rc, out, err, doc = run_loadgen(self.argv(ws_url(self.n1, "/"), ws_url(self.n2, "/")))
        self.assertAllPolling(rc, out, err, doc, upgraded=True)

    def test_no_upgrade_through_lb_with_the_sticky_cookie(self):
        lb = SimpleLb(self, [self.n1, self.n2], "--sticky", "cookie")
        rc, out, err, doc = run_loadgen(self.argv("--no-upgrade", "--cookie", "SRVID", "--hold", "1s", lb.url()))
        self.assertAllPolling(rc, out, err, doc, upgraded=False)
        self.assertEqual(sorted(doc["nodes"]), ["n1", "n2"], doc["nodes"])  # the cookie named the node
        self.assertEqual(sum(doc["nodes"].values()), self.CLIENTS)

    def test_upgrade_through_lb_with_the_sticky_cookie(self):
        lb = SimpleLb(self, [self.n1, self.n2], "--sticky", "cookie")
        rc, out, err, doc = run_loadgen(self.argv("--cookie", "SRVID", "-w", "2", lb.url()))
        self.assertAllPolling(rc, out, err, doc, upgraded=True)

    def test_through_lb_without_stickiness_fails_with_session_unknown(self):
        lb = SimpleLb(self, [self.n1, self.n2], "--balance", "roundrobin", "--sticky", "none")
        rc, out, err, doc = run_loadgen(self.argv("--no-upgrade", lb.url()))
        self.assertNotEqual(rc, 0, out)
        self.assertIn(rc, (1, 3), out)
        unknown = doc["errors"].get("socketio_session_unknown", {})
        self.assertGreater(unknown.get("count", 0), 0, doc["errors"])
        self.assertIn("Session ID unknown", unknown["example"])
        self.assertIn("sticky", out)
        self.assertFalse(doc["verdict"]["pass"])

    def test_a_port_with_nothing_is_refused(self):
        rc, out, err, doc = run_loadgen(self.argv(f"ws://{h.HOST}:{h.free_port()}/"))
        self.assertRun(rc, 3, out, err)
        self.assertEqual(doc["errors"]["refused"]["count"], self.CLIENTS)

    def test_a_404_is_http_status(self):
        """The polling handshake answered 404 (a path that is not /socket.io/): http_status, exit 3."""
        rc, out, err, doc = run_loadgen(self.argv(ws_url(self.n1, "/nope/")))
        self.assertRun(rc, 3, out, err)
        self.assertEqual(doc["errors"].get("http_status", {}).get("count"), self.CLIENTS, doc["errors"])



class TinySocketIO:
    """A raw Socket.IO server for one purpose: the Engine.IO open packet (pingInterval 200, pingTimeout 200) and the
    namespace CONNECT reply over the websocket transport, then pings every ping_every seconds, or never (None).
    Whatever the clients send after the handshake (pongs, a close) is read and dropped."""

    OPEN = '0{"sid":"tinysid0000000000000","upgrades":[],"pingInterval":200,"pingTimeout":200,"maxPayload":1000000}'
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, ping_every=None):
        self.ping_every, self.conns, self.stopping = ping_every, [], threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def url(self):
        return f"ws://{h.HOST}:{self.port}/"

    def close(self):
        self.stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
        except OSError:
            pass
        self.sock.close()
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self.threads:
            t.join(5)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _frame(text):
        data = text.encode()
        head = bytes([0x81, len(data)]) if len(data) < 126 else bytes([0x81, 126]) + struct.pack("!H", len(data))
        return head + data

    @staticmethod
    def _read_frame(f):
        """(opcode, payload) of one masked client frame, or None at EOF."""
        head = f.read(2)
        if len(head) < 2:
            return None
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", f.read(8))[0]
        mask, data = f.read(4), f.read(n)
        return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _serve(self, c):
        try:
            f = c.makefile("rb")
            key = ""
            while True:
                line = f.readline().decode("latin-1")
                if line in ("\r\n", ""):
                    break
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode() + self._frame(self.OPEN))
            while True:
                fr = self._read_frame(f)
                if fr is None:
                    return
                op, data = fr
                if op == 8:  # close: answer it, and close our end
                    c.sendall(b"\x88\x02" + data[:2])
                    c.shutdown(socket.SHUT_RDWR)
                    return
                if data.startswith(b"40"):
                    c.sendall(self._frame('40{"sid":"tinysocket0000000000"}'))
                    if self.ping_every:
                        threading.Thread(target=self._ping, args=(c,), daemon=True).start()
        except OSError:
            pass

    def _ping(self, c):
        while not self.stopping.wait(self.ping_every):
            try:
                c.sendall(self._frame("2"))
            except OSError:
                return


PROGRESS_LINE = re.compile(r"^\[\d+\.\ds\] (connect|ready|round \d+/\d+|verify|closing)  ")


class PipedOutput(LoadgenBase):
    """stdout to a pipe (a CI log): the header and the plan at once, then a plain progress line every --progress,
    then the summary; --quiet and --progress 0 silence the lines."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "n1")

    def run_piped(self, *extra):
        """Run 3 s of rounds with stdout to a pipe; returns (exit code, [(seconds, line)], stderr, the header's
        arrival: seconds, and whether loadgen was still running then)."""
        proc = subprocess.Popen([LOADGEN, "-c", "20", "-r", "15", "-i", "200ms", "--hold", "500ms", *extra,
                                 ws_url(self.node)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        t0, lines, first = time.monotonic(), [], None
        for line in proc.stdout:  # as loadgen writes them
            lines.append((time.monotonic() - t0, line.rstrip("\n")))
            if first is None:
                first = (lines[-1][0], proc.poll() is None)
        err = proc.stderr.read()
        proc.wait(timeout=RUN_TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()
        return proc.returncode, lines, err, first

    def test_header_at_once_then_progress_lines_then_the_summary(self):
        rc, lines, err, first = self.run_piped("--progress", "400ms")
        text = "\n".join(line for _, line in lines)
        self.assertRun(rc, 0, text, err)
        self.assertTrue(lines[0][1].startswith("loadgen "), lines[0])
        self.assertTrue(lines[1][1].startswith("plan      1 worker (auto"), lines[1])
        self.assertTrue(first[1], "the header came only once loadgen had exited")
        progress = [(t, line) for t, line in lines if PROGRESS_LINE.match(line)]
        self.assertGreaterEqual(len(progress), 2, text)
        verdict_at = next(t for t, line in lines if line.startswith("verdict"))
        self.assertLess(progress[1][0], verdict_at, "progress lines must come while it runs, not with the summary")
        self.assertTrue(any(line.split("] ", 1)[1].startswith("round ") for _, line in progress), text)
        self.assertNotIn("\r", text)
        self.assertNotIn("\033", text)
        last = [line for _, line in lines]
        self.assertLess(max(last.index(line) for _, line in progress), last.index("verdict   PASS"))

    def test_quiet_and_progress_0_silence_them(self):
        rc, lines, err, _ = self.run_piped("--quiet", "--progress", "400ms")
        self.assertRun(rc, 0, "\n".join(line for _, line in lines), err)
        self.assertEqual(lines, [])
        rc, lines, err, _ = self.run_piped("--progress", "0")
        text = "\n".join(line for _, line in lines)
        self.assertRun(rc, 0, text, err)
        self.assertFalse([line for _, line in lines if PROGRESS_LINE.match(line)], text)
        self.assertIn("verdict   PASS", text)


BEHIND = re.compile(r"schedule fell behind: (\d+) of (\d+) rounds started late, by up to ([\d.]+)(us|ms|s) "
                    r"\(mean [\d.]+(?:us|ms|s), interval 1\.00ms\): the server or loadgen could not keep up; "
                    r"latency is measured from the intended send times")


class LoadModel(LoadgenBase):
    """Rounds paced on intended send times (wrk2): latency counts from the intended time, so a stalled server shows
    in it instead of in fewer samples; a schedule that falls behind is reported with numbers; --duration."""

    @classmethod
    def setUpClass(cls):
        cls.node = h.start_refserver(cls, "lm1")

    def assertSchedule(self, doc):
        """The schedule object agrees with the rounds' own lateness (ms rounded to the microsecond)."""
        sc, rounds = doc["schedule"], doc["rounds"]
        tol = sc["late_tolerance_ms"]
        self.assertEqual(sc["rounds"], len(rounds))
        self.assertLessEqual(sum(r["lateness_ms"] > tol + 0.002 for r in rounds), sc["rounds_late"], sc)
        self.assertGreaterEqual(sum(r["lateness_ms"] > tol - 0.002 for r in rounds), sc["rounds_late"], sc)
        self.assertAlmostEqual(sc["lateness_max_ms"], max(r["lateness_ms"] for r in rounds), delta=0.002)
        self.assertLessEqual(sc["lateness_mean_ms"], sc["lateness_max_ms"])
        self.assertEqual(doc["latency"]["count"], doc["service_time"]["count"])

    def test_1ms_interval_warns_that_the_schedule_fell_behind(self):
        # A round is an IPC round trip to the worker and a broadcast through the server: not done in 1 ms here.
        rc, out, err, doc = run_loadgen(["-c", "20", "-r", "300", "-i", "1ms", ws_url(self.node)])
        self.assertRun(rc, 0, out, err)  # a warning, not a failure: latency already counts the lateness
        self.assertDelivered(doc, 300 * 19)
        sc = doc["schedule"]
        self.assertGreater(sc["rounds_late"], 0, sc)
        self.assertEqual((sc["interval_ms"], sc["late_tolerance_ms"], sc["rounds"]), (1.0, 1.0, 300))
        self.assertGreater(sc["lateness_max_ms"], 1.0, sc)
        self.assertSchedule(doc)
        m = BEHIND.search(out)
        self.assertTrue(m, out)
        self.assertEqual((int(m.group(1)), int(m.group(2))), (sc["rounds_late"], 300))
        self.assertIn(m.group(0), doc["verdict"]["warnings"])
        self.assertRegex(out, r"\nservice +5700 ")
        # measured from the intended times, every delivery waited at least its round's lateness
        self.assertGreaterEqual(doc["latency"]["max_ms"], sc["lateness_max_ms"])

    def test_on_time_rounds_do_not_warn(self):
        rc, out, err, doc = run_loadgen(["-c", "5", "-r", "4", "-i", "200ms", ws_url(self.node)])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["schedule"]["rounds_late"], 0, doc["schedule"])
        self.assertEqual(doc["schedule"]["late_tolerance_ms"], 20.0)
        self.assertSchedule(doc)
        self.assertNotIn("schedule fell behind", out)
        self.assertFalse([w for w in doc["verdict"]["warnings"] if "schedule" in w], doc["verdict"])

    def test_back_to_back_rounds_have_no_schedule(self):
        # --interval 0: each round as soon as the last is over; nothing is intended, so nothing is late
        rc, out, err, doc = run_loadgen(["-c", "5", "-r", "50", "-i", "0", ws_url(self.node)])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["schedule"]["rounds_late"], 0, doc["schedule"])
        self.assertEqual(doc["schedule"]["lateness_max_ms"], 0, doc["schedule"])
        self.assertEqual(doc["latency"], doc["service_time"])
        self.assertNotIn("schedule fell behind", out)

    def test_a_stalled_server_shows_in_latency_not_in_service_time(self):
        """The node is stopped for 1 s mid-run: only the round in flight waits (rounds never overlap), so the
        uncorrected service time's p99 stays small (1 round of 300), while the rounds meant for that second start
        late and carry their lateness into the latency's p99."""
        node = h.start_refserver(self, "lm-stall")
        proc = subprocess.Popen([LOADGEN, "-c", "10", "-r", "300", "-i", "10ms", "--progress", "100ms", "--out",
                                 os.path.join(self.tmp(), "stall.json"), ws_url(node)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []
        for line in proc.stdout:  # stall once the rounds are well under way
            lines.append(line)
            m = re.match(r"^\[[\d.]+s\] round (\d+)/300", line)
            if m and int(m.group(1)) >= 30:
                break
        node.proc.signal(signal.SIGSTOP)
        try:
            time.sleep(1.0)
        finally:
            node.proc.signal(signal.SIGCONT)
        out = "".join(lines) + proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout=RUN_TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()
        self.assertRun(proc.returncode, 0, out, err)
        with open(os.path.join(self.tmp(), "stall.json")) as f:
            doc = json.load(f)
        self.assertGreaterEqual(doc["latency"]["p99_ms"], 500, doc["latency"])
        self.assertLess(doc["service_time"]["p99_ms"], 250, doc["service_time"])
        self.assertGreaterEqual(doc["schedule"]["lateness_max_ms"], 500, doc["schedule"])
        self.assertSchedule(doc)
        self.assertIn("schedule fell behind", out)
        self.assertDelivered(doc, 300 * 9)

    def tmp(self):
        if not hasattr(self, "_tmp"):
            self._tmp = tempfile.mkdtemp(prefix="wsh-lm-")
            self.addCleanup(shutil.rmtree, self._tmp, True)
        return self._tmp

    def test_duration_runs_rounds_until_it_has_passed(self):
        rc, out, err, doc = run_loadgen(["-c", "5", "--duration", "1s", "-i", "100ms", ws_url(self.node)])
        self.assertRun(rc, 0, out, err)
        self.assertEqual((doc["options"]["duration_ms"], doc["options"]["rounds"]), (1000.0, 10))
        self.assertEqual(len(doc["rounds"]), 10)
        self.assertDelivered(doc, 10 * 4)
        # behind schedule, no round starts once the duration has passed (the count is only the most that fit)
        rc, out, err, doc = run_loadgen(["-c", "20", "--duration", "400ms", "-i", "1ms", ws_url(self.node)])
        self.assertRun(rc, 0, out, err)
        rounds = doc["rounds"]
        self.assertLessEqual(len(rounds), 400)
        first = rounds[0]["start_ms"]
        self.assertTrue(all(r["start_ms"] - first < 400 + 50 for r in rounds), [r["start_ms"] for r in rounds][-5:])
        self.assertDelivered(doc, len(rounds) * 19)

    def test_duration_usage_errors(self):
        url = ws_url(self.node)
        for args, msg in ((["--duration", "1s", "-r", "3"], "--rounds and --duration together"),
                          (["--duration", "1s", "-i", "0"], "--duration needs an --interval more than 0"),
                          (["--duration", "10"], "--duration"), (["--duration", "0s"], "must be more than 0")):
            with self.subTest(args):
                rc, out, err, doc = run_loadgen([*args, url])
                self.assertRun(rc, 2, out, err)
                self.assertIn(msg, err)
                self.assertIsNone(doc)


class ClosingServer(TinySocketIO):
    """A plain WebSocket server that answers our closes as the client's room says (?room=room-K, --rooms):
    "answer" (1000, after `delay` seconds), "never" (keeps the connection, silent), "wrong" (1011), "reset" (RST).
    It counts the close frames it got and the most it held unanswered at once (answer: until answered; never:
    forever)."""

    def __init__(self, modes, delay=0.0):
        self.modes, self.delay = modes, delay
        self.lock = threading.Lock()
        self.closes = self.pending = self.most_pending = 0
        super().__init__()
        self.sock.listen(512)

    def _serve(self, c):
        try:
            f = c.makefile("rb")
            key, room = "", ""
            while True:
                line = f.readline().decode("latin-1")
                if line in ("\r\n", ""):
                    break
                if line.startswith("GET ") and "room=" in line:
                    room = line.split("room=", 1)[1].split()[0].split("&")[0]
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            while True:
                fr = self._read_frame(f)
                if fr is None:
                    return
                if fr[0] == 8:
                    self._on_close(c, self.modes.get(room, "answer"))
                    return
        except OSError:
            pass

    def _on_close(self, c, mode):
        with self.lock:
            self.closes += 1
            self.pending += 1
            self.most_pending = max(self.most_pending, self.pending)
        if mode == "never":  # silent until loadgen gives up and closes its end
            c.settimeout(0.1)
            while not self.stopping.is_set():
                try:
                    if not c.recv(4096):
                        return
                except socket.timeout:
                    pass
            return
        time.sleep(self.delay)
        with self.lock:  # before the answer: once loadgen has it, its next close may come at once
            self.pending -= 1
        if mode == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            c.sendall(b"\x88\x02" + struct.pack("!H", 1011 if mode == "wrong" else 1000))
            c.shutdown(socket.SHUT_RDWR)


class ClosePhase(LoadgenBase):
    """The close phase: paced by --max-inflight as connects are, with a limit that grows with the clients unless
    --close-timeout is given; a close that ran out of time (close_timeout) is told apart from one the server
    answered wrongly or reset (close)."""

    def serve(self, modes, delay=0.0):
        srv = ClosingServer(modes, delay)
        self.addCleanup(srv.close)
        return srv

    def test_out_of_time_is_close_timeout_apart_from_wrong_answers(self):
        # 200 clients in 4 rooms, all closes at once (--max-inflight 256): 50 answered, 50 never, 50 with 1011, 50
        # reset
        srv = self.serve({"room-0": "answer", "room-1": "never", "room-2": "wrong", "room-3": "reset"})
        rc, out, err, doc = run_loadgen(["-c", "200", "--rooms", "4", "-r", "0", "--close-timeout", "1s", srv.url()],
                                        timeout=30 * h.SLOW)
        self.assertRun(rc, 1, out, err)
        c, errors = doc["clients"], doc["errors"]
        self.assertEqual((c["connected"], c["failed"], c["dropped"], c["closed_clean"]), (200, 0, 0, 50), c)
        self.assertEqual(set(errors), {"close", "close_timeout"}, errors)
        self.assertEqual(errors["close_timeout"]["count"], 50, errors)
        self.assertIn("no answer to our close before the close phase's 1.0s ran out", errors["close_timeout"]["example"])
        self.assertEqual(errors["close"]["count"], 100, errors)
        self.assertRegex(errors["close"]["example"], r"our close answered with 1011|reset by peer")
        self.assertEqual((doc["plan"]["close_timeout_ms"], doc["plan"]["close_timeout_auto"]), (1000.0, False))
        self.assertGreaterEqual(doc["phases"]["close_ms"], 1000.0)
        self.assertTrue(any("150 closing handshake(s) failed (50 out of time)" in r for r in doc["verdict"]["reasons"]),
                        doc["verdict"])
        self.assertRegex(out, r"close_timeout 50 \(client \d+: no answer to our close")

    def test_closes_are_paced_by_max_inflight(self):
        # each close answered after 100 ms: at most 4 at once, all clean, within the automatic limit (2 s + 40 ms)
        srv = self.serve({}, delay=0.1)
        rc, out, err, doc = run_loadgen(["-c", "40", "-r", "0", "--max-inflight", "4", srv.url()], timeout=30 * h.SLOW)
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["clients"]["closed_clean"], 40)
        self.assertEqual(srv.closes, 40)
        self.assertLessEqual(srv.most_pending, 4)
        self.assertGreaterEqual(srv.most_pending, 2)  # paced, not one by one
        self.assertEqual((doc["plan"]["close_timeout_ms"], doc["plan"]["close_timeout_auto"]), (2040.0, True))
        self.assertGreaterEqual(doc["phases"]["close_ms"], 900.0)  # 10 turns of 100 ms

    def test_closes_never_answered_hold_their_slots_and_the_rest_never_start(self):
        srv = self.serve({"room": "never"})
        rc, out, err, doc = run_loadgen(["-c", "40", "--room", "room", "-r", "0", "--max-inflight", "4",
                                         "--close-timeout", "1s", srv.url()], timeout=30 * h.SLOW)
        self.assertRun(rc, 1, out, err)
        errors = doc["errors"]
        self.assertEqual(set(errors), {"close_timeout"}, errors)
        self.assertEqual(errors["close_timeout"]["count"], 40, errors)
        self.assertEqual(srv.closes, 4)  # the other 36 were still queued when the phase ran out
        self.assertIn("no answer to our close", errors["close_timeout"]["example"])


class SocketIOPingWatchdog(LoadgenBase):
    """Engine.IO v4: a client treats the link as dead when no ping arrives for pingInterval + pingTimeout
    (../shared/SOCKETIO.md section 1); loadgen counts it as socketio_ping_timeout and drops the client."""

    def serve(self, ping_every):
        srv = TinySocketIO(ping_every)
        self.addCleanup(srv.close)
        return srv

    def argv(self, srv):
        return ["--protocol", "socketio", "-c", "3", "--rounds", "0", "--hold", "2s", "--quiet", srv.url()]

    def test_a_server_that_never_pings_drops_every_client(self):
        srv = self.serve(None)
        started = time.monotonic()
        rc, out, err, doc = run_loadgen(self.argv(srv), timeout=30 * h.SLOW)
        elapsed = time.monotonic() - started
        self.assertRun(rc, 1, out, err)
        self.assertLess(elapsed, 10 * h.SLOW)
        self.assertEqual(doc["clients"]["connected"], 3, doc["clients"])
        self.assertEqual(doc["clients"]["dropped"], 3, doc["clients"])
        self.assertEqual(doc["errors"].get("socketio_ping_timeout", {}).get("count"), 3, doc["errors"])
        self.assertIn("no Engine.IO ping", doc["errors"]["socketio_ping_timeout"]["example"])
        self.assertIn("socketio_ping_timeout", err)

    def test_a_server_that_pings_keeps_them(self):
        srv = self.serve(0.1)
        rc, out, err, doc = run_loadgen(self.argv(srv), timeout=30 * h.SLOW)
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["clients"]["dropped"], 0, doc["clients"])
        self.assertNotIn("socketio_ping_timeout", json.dumps(doc["errors"]))


    def test_each_client_keeps_its_own_servers_heartbeat(self):
        """Two nodes with different heartbeats behind one run: a client of the slow one must be judged by the slow
        one's pingInterval + pingTimeout, not by whichever open packet the worker saw last (the fast node's,
        opened second here), or it is dropped between two of its own pings."""
        slow = h.start_refserver(self, "hb-slow", "none", ["--sio-ping-interval", "1500", "--sio-ping-timeout", "1000"])
        fast = h.start_refserver(self, "hb-fast", "none", ["--sio-ping-interval", "100", "--sio-ping-timeout", "100"])
        rc, out, err, doc = run_loadgen(["--protocol", "socketio", "-c", "2", "--connect-rate", "5", "--rounds", "0",
                                         "--hold", "3500ms", "--quiet", ws_url(slow, "/"), ws_url(fast, "/")],
                                        timeout=30 * h.SLOW)
        self.assertRun(rc, 0, out, err)
        self.assertEqual((doc["clients"]["connected"], doc["clients"]["dropped"]), (2, 0), doc["clients"])
        self.assertEqual(doc["errors"], {}, doc["errors"])


class SocketIOBinaryAck(LoadgenBase):
    """--binary (each message a BINARY_EVENT whose one attachment is the message) and --ack (every emit asks for an
    ack, 43<id>[] from refserver's broadcast profile) against two refserver nodes on one Redis, over the websocket
    transport and long-polling with and without the upgrade, straight and through lb; refserver forwards the packet
    and its attachment, so the receivers reassemble it. The negative controls: the conformance profile acks only
    message-with-ack, so --event chat --ack must report every ack missing."""

    CLIENTS, ROUNDS, EMITTERS = 30, 4, 2

    @classmethod
    def setUpClass(cls):
        cls.redis = h.start_redis(cls)
        extra = ["--sio-ping-interval", "300", "--sio-ping-timeout", "2000"]
        cls.n1, cls.n2 = h.start_nodes(cls, 2, cls.redis.url, extra)

    def run_sio(self, *extra, urls=None):
        urls = urls or [ws_url(self.n1, "/"), ws_url(self.n2, "/")]
        return run_loadgen(["--protocol", "socketio", "-c", str(self.CLIENTS), "-r", str(self.ROUNDS), "-e",
                            str(self.EMITTERS), "-i", "150ms", *extra, *urls])

    def assertZeroLoss(self, rc, out, err, doc, ack):
        self.assertRun(rc, 0, out, err)
        c = doc["clients"]
        self.assertEqual((c["connected"], c["failed"], c["dropped"]), (self.CLIENTS, 0, 0), c)
        self.assertDelivered(doc, self.ROUNDS * self.EMITTERS * (self.CLIENTS - 1))
        self.assertEqual(doc["errors"], {})
        self.assertEqual((doc["echoed"], doc["corrupt"], doc["foreign"]), (0, 0, 0))
        self.assertTrue(doc["options"]["binary"])
        emits = self.ROUNDS * self.EMITTERS
        self.assertEqual(doc["totals"]["emitted"], emits)
        if not ack:
            self.assertNotIn("ack", doc)
            self.assertNotIn("acks", doc)
            return
        self.assertTrue(doc["options"]["socketio"]["ack"])
        self.assertEqual(doc["ack"]["count"], emits, doc["ack"])
        self.assertEqual(doc["acks"], {"expected": emits, "received": emits, "late": 0, "missing": 0,
                                       "duplicate": 0, "unknown": 0})
        self.assertGreater(doc["ack"]["max_ms"], 0)
        self.assertIn(f"acks      {emits}/{emits} acked, 0 missing", out)
        self.assertRegex(out, r"\nack +%d " % emits)

    def test_websocket_binary_and_ack(self):
        hlog = os.path.join(tempfile.mkdtemp(prefix="wsh-ack-"), "run.hlog")
        self.addCleanup(shutil.rmtree, os.path.dirname(hlog), True)
        rc, out, err, doc = self.run_sio("--binary", "--ack", "-t", "ack.p99<5s", "--hlog", hlog)
        self.assertZeroLoss(rc, out, err, doc, ack=True)
        self.assertEqual(doc["thresholds"][0]["expr"], "ack.p99<5s")
        self.assertTrue(doc["thresholds"][0]["ok"])
        # the acks are in the .hlog too, as one interval tagged "ack" holding every ack
        dump = subprocess.run([os.path.join(h.BUILD, "hlogdump"), hlog], capture_output=True, text=True, timeout=30)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        acks = [ln for ln in dump.stdout.splitlines() if ln.endswith(" tag=ack")]
        self.assertEqual(len(acks), 1, dump.stdout)
        self.assertTrue(acks[0].startswith(f"count={self.ROUNDS * self.EMITTERS} "), acks[0])

    def test_websocket_binary_only(self):
        rc, out, err, doc = self.run_sio("--binary")
        self.assertZeroLoss(rc, out, err, doc, ack=False)

    def test_websocket_text_with_ack(self):
        rc, out, err, doc = self.run_sio("--ack")
        self.assertRun(rc, 0, out, err)
        self.assertDelivered(doc, self.ROUNDS * self.EMITTERS * (self.CLIENTS - 1))
        self.assertEqual(doc["ack"]["count"], self.ROUNDS * self.EMITTERS)
        self.assertEqual(doc["acks"]["missing"], 0)

    def test_polling_upgrade_binary_and_ack(self):
        rc, out, err, doc = self.run_sio("--transport", "polling", "--binary", "--ack")
        self.assertZeroLoss(rc, out, err, doc, ack=True)
        self.assertEqual(doc["clients"]["transport"], {"upgraded": self.CLIENTS, "polling": 0})

    def test_polling_no_upgrade_binary_and_ack(self):
        rc, out, err, doc = self.run_sio("--transport", "polling", "--no-upgrade", "--binary", "--ack", "--hold", "1s")
        self.assertZeroLoss(rc, out, err, doc, ack=True)
        self.assertEqual(doc["clients"]["transport"], {"upgraded": 0, "polling": self.CLIENTS})

    def test_polling_no_upgrade_through_lb_two_workers(self):
        lb = SimpleLb(self, [self.n1, self.n2], "--sticky", "cookie")
        rc, out, err, doc = self.run_sio("--transport", "polling", "--no-upgrade", "--binary", "--ack", "--cookie",
                                         "SRVID", "-w", "2", urls=[lb.url()])
        self.assertZeroLoss(rc, out, err, doc, ack=True)
        self.assertEqual(sorted(doc["nodes"]), ["n1", "n2"], doc["nodes"])

    def test_ack_threshold_needs_ack(self):
        rc, out, err, _ = run_loadgen(["--protocol", "socketio", "-t", "ack.p99<50ms", ws_url(self.n1, "/")])
        self.assertRun(rc, 2, out, err)
        self.assertIn("needs --ack", err)

    def test_conformance_profile_never_acks_chat(self):
        """refserver --profile conformance acknowledges message-with-ack only: every ack of 'chat' is missing."""
        node = h.start_refserver(self, "c1", "none", ["--profile", "conformance"])
        for transport in (["--transport", "websocket"], ["--transport", "polling", "--no-upgrade"]):
            rc, out, err, doc = run_loadgen(["--protocol", "socketio", *transport, "--event", "chat", "--ack",
                                             "--binary", "-c", "3", "-r", "3", "-i", "100ms", "--deadline", "500ms",
                                             ws_url(node, "/")])
            self.assertRun(rc, 1, out, err)
            self.assertEqual(doc["acks"]["expected"], 3, doc["acks"])
            self.assertEqual(doc["acks"]["missing"], 3, doc["acks"])
            self.assertEqual(doc["ack"]["count"], 0)
            self.assertIn("3 of 3 ack(s) missing", " ".join(doc["verdict"]["reasons"]))

    def test_conformance_profile_acks_message_with_ack(self):
        """The positive side of the control: the event it does acknowledge is acked once per emit."""
        node = h.start_refserver(self, "c2", "none", ["--profile", "conformance"])
        rc, out, err, doc = run_loadgen(["--protocol", "socketio", "--event", "message-with-ack", "--expect", "x",
                                         "--ack", "-c", "2", "-r", "3", "-i", "100ms", "-t", "delivery>=0%",
                                         ws_url(node, "/")])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["acks"]["received"], 3, doc["acks"])
        self.assertEqual(doc["ack"]["count"], 3)


class ScriptedSocketIO(TinySocketIO):
    """TinySocketIO that, after the CONNECT reply, sends a script of frames: (opcode, bytes) pairs (1 text, 2
    binary). It pings every 100 ms so the ping watchdog stays quiet."""

    def __init__(self, script):
        self.script = script
        super().__init__(ping_every=0.1)

    @staticmethod
    def _raw_frame(op, data):
        head = bytes([0x80 | op, len(data)]) if len(data) < 126 else bytes([0x80 | op, 126]) + struct.pack(
            "!H", len(data))
        return head + data

    def _ping(self, c):
        # the script right after the CONNECT reply, then pings: the first well within pingInterval + pingTimeout
        try:
            for op, data in self.script:
                c.sendall(self._raw_frame(op, data))
        except OSError:
            return
        super()._ping(c)


class SocketIOBinaryErrors(LoadgenBase):
    """A binary packet whose attachments never come, a binary frame nobody announced, a text packet in the middle
    of an assembly and more than 10 attachments: each a protocol error with its own message, never a crash."""

    HEAD = b'451-["chat",{"_placeholder":true,"num":0}]'

    def run_script(self, script):
        srv = ScriptedSocketIO(script)
        self.addCleanup(srv.close)
        return run_loadgen(["--protocol", "socketio", "-c", "2", "--rounds", "0", "--hold", "1500ms",
                            "--deadline", "400ms", "--quiet", srv.url()], timeout=30 * h.SLOW)

    def assertProtocolError(self, script, words):
        rc, out, err, doc = self.run_script(script)
        self.assertRun(rc, 1, out, err)
        self.assertEqual(doc["clients"]["dropped"], 2, doc["clients"])
        self.assertEqual(doc["errors"].get("protocol", {}).get("count"), 2, doc["errors"])
        self.assertIn(words, doc["errors"]["protocol"]["example"])

    def test_attachments_that_never_come(self):
        self.assertProtocolError([(1, self.HEAD)], "attachments did not come within 400 ms (0 of 1 came)")

    def test_a_stray_binary_frame(self):
        self.assertProtocolError([(2, b"\x00\x01")], "a binary message that no binary packet announced")

    def test_more_attachments_than_announced(self):
        self.assertProtocolError([(1, self.HEAD), (2, b"abc"), (2, b"def")],
                                 "a binary message that no binary packet announced")

    def test_a_text_packet_during_the_assembly(self):
        self.assertProtocolError([(1, b'452-["chat",{"_placeholder":true,"num":0}]'), (2, b"x"), (1, b'42["chat","x"]')],
                                 "a text packet while 1 of 2 attachment(s)")

    def test_over_ten_attachments(self):
        self.assertProtocolError([(1, b'4511-["chat",1]')], "more than 10 attachments")

    def test_a_foreign_binary_event_is_reassembled_and_foreign(self):
        rc, out, err, doc = self.run_script([(1, b'452-["other",{"_placeholder":true,"num":1}]'), (2, b"a"),
                                             (2, b"b")])
        self.assertRun(rc, 0, out, err)
        self.assertEqual(doc["foreign"], 2, doc)
        self.assertEqual(doc["errors"], {})


class PollingSocketIO(TinySocketIO):
    """TinySocketIO's listener with an Engine.IO long-polling server behind it (no websocket, upgrades: []), for
    scripted failures of a polling client once it is open. The open packet gives pingInterval 300, pingTimeout 200;
    the namespace CONNECT is answered through the held GET; an emit (42...) is relayed as is to every other
    connected session; a held GET is answered with what is queued for its session, or with a ping after ping_every
    seconds (never when ping_every is None); a POST is answered "ok". hang chooses the one thing it never answers:
    "post", each session's first POST after its CONNECT (a pong or an emit); "get", each GET after the one that
    carried the CONNECT reply. A request left unanswered stays held (the connection open) until close()."""

    PING_INTERVAL, PING_TIMEOUT = 300, 200

    def __init__(self, hang=None, ping_every=0.1):
        self.hang, self.sessions, self.cond = hang, {}, threading.Condition()
        self.hung = []  # (sid, "GET"/"POST") of each request left unanswered
        super().__init__(ping_every=ping_every)

    def _respond(self, c, body, status="200 OK"):
        data = body.encode()
        c.sendall((f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {len(data)}\r\n"
                   "Connection: keep-alive\r\n\r\n").encode() + data)

    def _hold(self, sid, method):
        with self.cond:
            self.hung.append((sid, method))
        self.stopping.wait()  # until close(): never answered

    def _serve(self, c):
        try:
            f = c.makefile("rb")
            while not self.stopping.is_set():
                line = f.readline().decode("latin-1")
                if not line:
                    return
                method, target = line.split()[:2]
                length = 0
                while True:
                    hl = f.readline().decode("latin-1")
                    if hl in ("\r\n", ""):
                        break
                    if hl.lower().startswith("content-length:"):
                        length = int(hl.split(":", 1)[1])
                body = f.read(length).decode() if length else ""
                query = dict(p.split("=", 1) for p in target.split("?", 1)[-1].split("&") if "=" in p)
                sid = query.get("sid")
                if method == "GET" and sid is None:
                    self._open(c)
                elif sid not in self.sessions:
                    self._respond(c, '{"code":1,"message":"Session ID unknown"}', "400 Bad Request")
                elif method == "GET":
                    if not self._get(c, sid):
                        return self._hold(sid, "GET")
                elif not self._post(c, sid, body):
                    return self._hold(sid, "POST")
        except (OSError, ValueError):
            pass

    def _open(self, c):
        with self.cond:
            sid = f"pollsid{len(self.sessions):013d}"
            self.sessions[sid] = {"queue": [], "connected": False, "replied": False}
        self._respond(c, '0{"sid":"%s","upgrades":[],"pingInterval":%d,"pingTimeout":%d,"maxPayload":1000000}' % (
            sid, self.PING_INTERVAL, self.PING_TIMEOUT))

    def _get(self, c, sid):
        """Answer a GET with the session's queue, or a ping when due; False to leave it unanswered."""
        s = self.sessions[sid]
        if self.hang == "get" and s["replied"]:
            return False
        waited = 0.0
        with self.cond:
            while not s["queue"] and not self.stopping.is_set():
                if self.ping_every is not None and waited >= self.ping_every:
                    s["queue"].append("2")
                    break
                self.cond.wait(0.02)
                waited += 0.02
            packets, s["queue"] = s["queue"], []
            s["replied"] = s["replied"] or s["connected"]
        if packets:
            self._respond(c, "\x1e".join(packets))
        return True

    def _post(self, c, sid, body):
        """Take a POST's packets and answer "ok"; False to leave it unanswered."""
        s = self.sessions[sid]
        if self.hang == "post" and s["connected"]:
            return False
        with self.cond:
            for pkt in body.split("\x1e"):
                if pkt.startswith("40"):
                    s["connected"] = True
                    s["queue"].append('40{"sid":"sock%s"}' % sid)
                elif pkt.startswith("42"):
                    for other, o in self.sessions.items():
                        if other != sid and o["connected"]:
                            o["queue"].append(pkt)
                elif pkt == "1":
                    s["queue"].append("6")  # the close: a noop ends the held GET
            self.cond.notify_all()
        self._respond(c, "ok")
        return True


class SocketIOPollTimeout(LoadgenBase):
    """--transport polling --no-upgrade against PollingSocketIO: an open client whose POST gets no answer within
    --connect-timeout is dropped as socketio_poll_timeout, naming the POST; a GET held forever with no ping is caught
    first by the Engine.IO ping rule (pingInterval + pingTimeout, 500 ms here, always before the GET's own limit of
    pingInterval + pingTimeout + 5 s, which counts from a GET sent after the last ping): socketio_ping_timeout. The
    control, the same server answering everything, passes with zero errors."""

    CLIENTS, ROUNDS = 3, 3

    def run_polling(self, hang, ping_every=0.1):
        srv = PollingSocketIO(hang, ping_every)
        self.addCleanup(srv.close)
        rc, out, err, doc = run_loadgen(["--protocol", "socketio", "--transport", "polling", "--no-upgrade",
                                         "-c", str(self.CLIENTS), "-r", str(self.ROUNDS), "-i", "200ms",
                                         "--hold", "1500ms", "--deadline", "500ms", "--connect-timeout", "1s",
                                         "--close-timeout", "1s", srv.url()], timeout=30 * h.SLOW)
        return srv, rc, out, err, doc

    def assertAllOpenThenDropped(self, rc, out, err, doc):
        self.assertNotEqual(rc, 0, f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
        self.assertRun(rc, 1, out, err)
        c = doc["clients"]
        self.assertEqual((c["connected"], c["failed"], c["dropped"]), (self.CLIENTS, 0, self.CLIENTS), c)
        self.assertFalse(doc["verdict"]["pass"])

    def test_an_unanswered_post_is_a_poll_timeout(self):
        srv, rc, out, err, doc = self.run_polling("post")
        self.assertAllOpenThenDropped(rc, out, err, doc)
        self.assertEqual(set(doc["errors"]), {"socketio_poll_timeout"}, doc["errors"])
        e = doc["errors"]["socketio_poll_timeout"]
        self.assertEqual(e["count"], self.CLIENTS, e)
        self.assertRegex(e["example"], r"polling POST unanswered after \d+ ms \(limit 1000 ms\)")
        waited = int(e["example"].split("after ")[1].split(" ms")[0])
        self.assertGreater(waited, 1000, e)  # never before its limit
        self.assertRegex(out, r"socketio_poll_timeout 3 \(.*polling POST unanswered after \d+ ms \(limit 1000 ms\)")
        self.assertEqual(sorted(m for _, m in srv.hung), ["POST"] * self.CLIENTS, srv.hung)

    def test_a_get_held_forever_without_pings_is_a_ping_timeout(self):
        srv, rc, out, err, doc = self.run_polling("get", ping_every=None)
        self.assertAllOpenThenDropped(rc, out, err, doc)
        self.assertEqual(set(doc["errors"]), {"socketio_ping_timeout"}, doc["errors"])
        e = doc["errors"]["socketio_ping_timeout"]
        self.assertEqual(e["count"], self.CLIENTS, e)
        self.assertIn("no Engine.IO ping for pingInterval + pingTimeout = 500 ms", e["example"])
        self.assertIn("socketio_ping_timeout 3", out)
        self.assertEqual(sorted(m for _, m in srv.hung), ["GET"] * self.CLIENTS, srv.hung)

    def test_the_same_server_answering_everything_passes(self):
        srv, rc, out, err, doc = self.run_polling(None)
        self.assertRun(rc, 0, out, err)
        c = doc["clients"]
        self.assertEqual((c["connected"], c["failed"], c["dropped"], c["closed_clean"]),
                         (self.CLIENTS, 0, 0, self.CLIENTS), c)
        self.assertEqual(c["transport"], {"upgraded": 0, "polling": self.CLIENTS})
        self.assertEqual(doc["errors"], {})
        self.assertDelivered(doc, self.ROUNDS * (self.CLIENTS - 1))
        self.assertEqual(srv.hung, [])
        self.assertIn("errors    none", out)


if __name__ == "__main__":
    unittest.main()
