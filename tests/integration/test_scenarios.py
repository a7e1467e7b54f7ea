"""Integration tests for the scenario runner: scenarios/scenario.py (the library), scenarios/run and scenarios/gate.

- a scenario file is read strictly: each mistake is named with its file and line, the run exits 2, nothing starts;
- the balancer configurations the runner writes are accepted by the real tools (haproxy -c, nginx -t, lb --check);
- a run starts redis, the nodes and a balancer, runs loadgen, writes its results and stops every process it started,
  on success, on failure, on SIGINT/SIGTERM and when the topology cannot start: after the runner exits no process of
  the run is alive and every port of its topology is free again;
- the gate's judgement (ratios against a baseline, with a tolerance) on synthetic measurements, without runs.

Leftover processes are found two ways: this test process becomes a child subreaper (prctl), so whatever the runner
leaves behind is re-parented to us, and /proc is scanned for processes started after the run whose command line names
the run's output directory or one of its ports. Whatever is found is reported, then killed by its PID.
Run: python3 -m unittest discover -s tests/integration -p 'test_scenarios.py' -v   (WSH_BUILD selects the build)
"""

import ctypes
import glob
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

import harness as h

SCENARIOS = os.path.join(h.REPO, "scenarios")
RUN = os.path.join(SCENARIOS, "run")
GATE = os.path.join(SCENARIOS, "gate")
sys.path.insert(0, SCENARIOS)
import scenario  # noqa: E402

for _b in ("refserver", "loadgen", "lb"):
    # the runner would otherwise call make: a test must not build
    if not os.access(os.path.join(h.BUILD, _b), os.X_OK):
        raise RuntimeError(f"{os.path.join(h.BUILD, _b)} is not built (set WSH_BUILD or run make)")

HAPROXY = "/usr/sbin/haproxy"
NGINX = "/usr/sbin/nginx"
LB = os.path.join(h.BUILD, "lb")
SMALL = ["--set", "clients=20", "--set", "rounds=3", "--set", "interval=50ms"]
RUN_TIMEOUT = 60 * h.SLOW
TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------------------------------------
# processes and ports


def now_ticks():
    """Clock ticks since boot, the unit of a process's start time in /proc/PID/stat."""
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * TICKS)


def proc_table():
    """{pid: (ppid, state, start ticks, command line)} of every process."""
    rows = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        rows[int(d)] = (int(fields[1]), fields[0], int(fields[19]), cmd)
    return rows


def run_processes(out_dir, ports, since):
    """Live processes of a run: started at or after `since` (ticks) and naming out_dir or one of the ports, their
    descendants, and any live process re-parented to us (we are a subreaper). [(pid, command line)]"""
    me = os.getpid()
    table = proc_table()
    port_re = re.compile(r"127\.0\.0\.1:(%s)(?!\d)" % "|".join(str(p) for p in ports)) if ports else None
    found = set()
    for pid, (ppid, state, start, cmd) in table.items():
        if pid == me:
            continue
        if ppid == me:
            found.add(pid)
        elif start >= since - TICKS and (out_dir in cmd or (port_re and port_re.search(cmd))):
            found.add(pid)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    live = []
    for pid in sorted(found):
        ppid, state, _, cmd = table[pid]
        if state in ("Z", "X"):
            if ppid == me:
                _reap(pid)
            continue
        live.append((pid, cmd))
    return live


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kill_pids(rows):
    """SIGKILL exactly these PIDs (found by run_processes: ours) and reap the ones re-parented to us."""
    for pid, _ in rows:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    for pid, _ in rows:
        _reap(pid)


def listening(port):
    """True when a socket listens on the TCP port (any address), per /proc/net/tcp{,6}."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def established(port):
    """How many established TCP connections have port as their local port (the server side)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def port_free(port):
    """A server could listen on 127.0.0.1:port now (SO_REUSEADDR, as servers do: TIME_WAIT does not count)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((h.HOST, port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def topology_ports(result):
    t = (result or {}).get("topology") or {}
    ports = list(t.get("node_ports", []))
    ports += [t[k] for k in ("redis_port", "lb_port", "lb_admin_port") if k in t]
    return ports


def ports_in_logs(out_dir):
    """Ports named in the "$ argv" first line of every log, and in the balancer configurations, of the runs under
    out_dir (for a run that has no result yet)."""
    ports = set()
    for log in glob.glob(os.path.join(out_dir, "*", "*", "*.log")):
        with open(log, errors="replace") as f:
            first = f.readline()
        ports.update(int(p) for p in re.findall(r"(?:--port |127\.0\.0\.1:)(\d+)", first))
    for cfg in glob.glob(os.path.join(out_dir, "*", "*", "*.c*f*")):  # lb.conf, haproxy.cfg, nginx.conf
        with open(cfg, errors="replace") as f:
            ports.update(int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", f.read()))
    return sorted(ports)


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def load_gate():
    loader = importlib.machinery.SourceFileLoader("scenario_gate", GATE)
    spec = importlib.util.spec_from_loader("scenario_gate", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class RunnerBase(unittest.TestCase):
    """Runs scenarios/run as a child with --out in a temp dir; checks and cleans what a run leaves behind."""

    @classmethod
    def setUpClass(cls):
        # Whatever the runner leaves behind when it exits is re-parented to this process, where we can see it.
        if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        cls.addClassCleanup(_libc.prctl, PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

    def setUp(self):
        self.out = h.make_tempdir(self, "wsh-scn-")
        self.since = now_ticks()
        self.addCleanup(self._kill_leftovers)

    def _kill_leftovers(self):
        # safety net after an assertion failed: never leave a run's process behind
        kill_pids(run_processes(self.out, ports_in_logs(self.out), self.since))

    def runner(self, *args, env=None, timeout=RUN_TIMEOUT):
        """Run scenarios/run ARGS --out OUT to the end: CompletedProcess (text)."""
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([RUN, *args, "--out", self.out], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, env=e)

    def results(self, name):
        """The result documents written under OUT/NAME, [(path, doc)]."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.out, name, "*.json"))):
            with open(path) as f:
                out.append((path, json.load(f)))
        return out

    def only_result(self, name, lb, p):
        res = self.results(name)
        self.assertEqual(len(res), 1, f"one result in {self.out}/{name}: {[r[0] for r in res]}\n{self.show(p)}")
        path, doc = res[0]
        self.assertTrue(os.path.basename(path).endswith(f"-{lb}.json"), path)
        self.assertRegex(os.path.basename(path), r"^\d{8}T\d{6}\d*Z-" + lb + r"\.json$")
        self.assertEqual(doc["schema"], "wsh-scenario/1")
        self.assertEqual(doc["scenario"], name)
        self.assertEqual(doc["lb"], lb)
        return path, doc

    @staticmethod
    def show(p):
        return f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"

    def assertExit(self, p, want):
        self.assertEqual(p.returncode, want, self.show(p))

    def assertNothingLeft(self, ports):
        """No process of the run alive, and every port of its topology free, right after the runner exited."""
        left = run_processes(self.out, ports, self.since)
        if left:
            kill_pids(left)
        self.assertEqual(left, [], "processes left running after the runner exited (killed now)")
        for port in ports:
            self.assertFalse(listening(port), f"port {port} still has a listener")
            self.assertTrue(port_free(port), f"port {port} cannot be bound again")


# ---------------------------------------------------------------------------------------------------------------
# 1. the scenario file


GOOD = """\
# a comment
[scenario]
description = two nodes ; a trailing comment
[topology]
nodes = 3
lb = haproxy
[load]
clients = 50   # another comment
interval = 20ms
[thresholds]
p99 < 50ms
delivery >= 99.9%
"""

# name -> (text, [(line or None, substring of the message)]); line None: "bad.ini: ..." without a line number
BAD = {
    "unknown section": ("[scenario]\ndescription = d\n[load]\nclients = 5\n\n[loads]\nrounds = 3\n",
                        [(6, "unknown section [loads]")]),
    "unknown key": ("[scenario]\ndescription = d\n[load]\nclients = 5\nclinets = 6\n",
                    [(5, "unknown key 'clinets' in [load]")]),
    "bad value": ("[scenario]\ndescription = d\n[load]\n# how many\nclients = many\n",
                  [(5, "clients: expected a whole number from 1 to 1000000, got 'many'")]),
    "bad duration": ("[scenario]\ndescription = d\n[load]\nclients = 5\ninterval = 50\n",
                     [(5, "interval: expected a duration with a unit")]),
    "duplicate key": ("[scenario]\ndescription = d\n[load]\nclients = 5\nrounds = 3\n\nrounds = 4\n",
                      [(7, "'rounds' given twice in [load] (first on line 5)")]),
    "key before any section": ("\n# header\nclients = 5\n[scenario]\ndescription = d\n[load]\nclients = 5\n",
                               [(3, "a key before any [section]")]),
    "bad threshold": ("[scenario]\ndescription = d\n[load]\nclients = 5\n[thresholds]\np99 < 50ms\np99 about 1s\n",
                      [(7, "'p99 about 1s' is not a threshold")]),
    "not key = value": ("[scenario]\ndescription = d\n[load]\nclients 5\nclients = 5\n",
                        [(4, "expected key = value, got 'clients 5'")]),
    "missing description and clients": ("[scenario]\n[topology]\nnodes = 2\n[load]\nrounds = 3\n",
                                        [(None, "[scenario] description is required"),
                                         (None, "[load] clients is required")]),
    "nginx with sticky cookie": ("[scenario]\ndescription = d\n[topology]\nlb = nginx\nsticky = cookie\n"
                                 "[load]\nclients = 5\n",
                                 [(None, "sticky = cookie needs lb = builtin or haproxy")]),
    "more emitters than clients": ("[scenario]\ndescription = d\n[load]\nclients = 5\nemitters = 6\n",
                                   [(None, "emitters (6) cannot exceed clients (5)")]),
}

ALL_MISTAKES = """\
# every mistake at once: each is reported, with its line
stray = 1
[scenario]
[nonsense]
whatever = 1
[load]
clients = many
rounds = 3
rounds = 4
colour = blue
[thresholds]
p99 about 50ms
"""
ALL_MISTAKES_LINES = {2: "a key before any [section]", 4: "unknown section [nonsense]",
                      7: "clients: expected a whole number", 9: "'rounds' given twice in [load] (first on line 8)",
                      10: "unknown key 'colour' in [load]", 12: "'p99 about 50ms' is not a threshold"}


import plan as planner  # noqa: E402

# a machine like this one, fixed so the tests plan the same everywhere
MACHINE = {"nofile": 20000, "port_range": (32768, 60999), "tcp_mem_pages": (287907, 383876, 575814), "page": 4096,
           "file_max": 2466235, "mem_available": 24 << 30, "cpus": 2, "conntrack_max": None, "may_tune": True}


class Plan(unittest.TestCase):
    """scenarios/plan.py: the topology computed from the client count, and refusals with their remedy."""

    def plan(self, name, sets=(), **machine):
        _, conf = scenario.load(name, sets)
        return planner.plan(conf, dict(MACHINE, **machine)), conf

    def test_small_runs_stay_one_process_each(self):
        p, conf = self.plan("broadcast-100")
        self.assertEqual((p["lb"]["processes"], p["nodes"]["workers_per_node"], p.problems, p["sysctl"]),
                         (1, 1, [], {}))
        resolved = planner.resolve(conf, p)
        self.assertEqual((resolved["topology"]["lb_workers"], resolved["topology"]["node_workers"]), (1, 1))
        self.assertEqual(conf["topology"]["lb_workers"], "auto", "resolve must not change the parsed conf")

    def test_30k_through_the_lb(self):
        p, _ = self.plan("broadcast-30k")
        # 2 descriptors a tunnel, 80% of 19900 per worker: 7960 tunnels each
        self.assertEqual(p["lb"]["processes"], 4)
        self.assertEqual(p["nodes"]["workers_per_node"], 1)
        self.assertEqual(p.problems, [])
        # a file that sets too few workers is refused with the number that would do
        p, _ = self.plan("broadcast-30k", ["lb_workers=2"])
        self.assertEqual(len(p.problems), 1)
        self.assertIn("lb_workers = 2 cannot hold 30000 tunnels", p.problems[0])
        self.assertIn("Remedy: lb_workers = 4 or auto", p.problems[0])

    def test_haproxy_cannot_pass_one_process_limit(self):
        p, _ = self.plan("broadcast-30k", ["lb=haproxy"])
        self.assertEqual(len(p.problems), 1)
        self.assertIn("HAProxy runs as one process", p.problems[0])
        self.assertIn("at most 9950 tunnels", p.problems[0])
        p, _ = self.plan("broadcast-100k", ["lb=haproxy", "clients=9000"])
        self.assertEqual(p.problems, [])

    def test_100k_needs_node_workers_and_tcp_mem(self):
        p, _ = self.plan("broadcast-100k")
        self.assertEqual(p["lb"]["processes"], 13)
        self.assertEqual((p["nodes"]["count"], p["nodes"]["workers_per_node"]), (4, 2))
        self.assertIn("net.ipv4.tcp_mem", p["sysctl"])
        self.assertEqual(p.problems, [])
        p, _ = self.plan("broadcast-100k", may_tune=False)  # not allowed to raise it: refused, with the command
        self.assertEqual(len(p.problems), 1)
        self.assertIn("sysctl -w net.ipv4.tcp_mem=", p.problems[0])

    def test_ports_to_each_node(self):
        # the lb reaches a node from its own addresses: 25000 connections to each of 4 nodes are past the 12705 one
        # address connects quickly (half of 32768-60999, less 10%): 2 addresses
        p, conf = self.plan("broadcast-100k")
        self.assertEqual(p["lb"]["sources"], "127.0.1.1-127.0.1.2")
        self.assertIn("source 127.0.1.1-127.0.1.2", scenario.lb_conf(planner.resolve(conf, p), 1, 2, [3, 4]))
        p, conf = self.plan("broadcast-30k")  # 7500 a node: none
        self.assertNotIn("sources", p["lb"])
        self.assertNotIn("source ", scenario.lb_conf(planner.resolve(conf, p), 1, 2, [3, 4]))
        # nginx cannot spread them: refused, with the node count that would do
        p, _ = self.plan("broadcast-100k", ["lb=nginx", "sticky=source", "nodes=2"])
        self.assertTrue(any("Remedy: nodes = 8 or more" in x for x in p.problems), p.problems)
        # straight to the nodes loadgen plans its own sources: nothing for the lb
        p, _ = self.plan("broadcast-100k", ["nodes=1", "lb=none"])
        self.assertIsNone(p["lb"])

    def test_a_million_spectators(self):
        p, _ = self.plan("spectators-1m")
        self.assertIsNone(p["lb"])
        self.assertEqual(p["nodes"]["count"] * p["nodes"]["workers_per_node"], 64)
        self.assertLessEqual(p["nodes"]["clients_per_worker"], 0.8 * 19900)
        self.assertEqual(p["memory"]["sockets"], 2000000)
        self.assertEqual(p.problems, [])
        # the same on a machine with 8 GiB is refused: the sockets alone take more
        p, _ = self.plan("spectators-1m", mem_available=8 << 30)
        self.assertTrue(any("too much for this machine" in x for x in p.problems), p.problems)

    def test_run_plan_flag(self):
        out = subprocess.run([RUN, "broadcast-100k", "--plan"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("plan: builtin: 13 worker(s)", out.stderr)
        out = subprocess.run([RUN, "broadcast-100k", "--plan", "--set", "lb_workers=3"], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 3, out.stderr)
        self.assertIn("cannot run on this machine: lb_workers = 3 cannot hold", out.stderr)


class ScenarioFile(unittest.TestCase):
    """parse_text and apply_sets directly."""

    def test_parse_good_text_with_defaults(self):
        conf = scenario.parse_text(GOOD, "good.ini")
        self.assertEqual(conf["scenario"]["description"], "two nodes")
        self.assertEqual(conf["topology"], {"nodes": 3, "redis": "embedded", "lb": "haproxy", "sticky": "cookie",
                                            "lb_workers": "auto", "node_workers": "auto",
                                            "ping_interval": "25s", "target": ""})
        self.assertEqual(conf["load"]["clients"], 50)
        self.assertEqual(conf["load"]["interval"], "20ms")
        self.assertEqual(conf["load"]["rounds"], 10)
        self.assertEqual(conf["thresholds"], ["p99<50ms", "delivery>=99.9%"])
        self.assertEqual(conf["gate"], {"enabled": False, "tolerance": 1.0, "runs": 3})

    def test_parse_the_shipped_scenarios(self):
        for path in glob.glob(os.path.join(SCENARIOS, "*.ini")):
            with self.subTest(path=path), open(path) as f:
                conf = scenario.parse_text(f.read(), path)
                self.assertTrue(conf["scenario"]["description"])

    def test_parse_errors_have_lines(self):
        for what, (text, want) in BAD.items():
            with self.subTest(what):
                with self.assertRaises(scenario.ScenarioError) as cm:
                    scenario.parse_text(text, "bad.ini")
                lines = str(cm.exception).splitlines()
                self.assertEqual(len(lines), len(want), lines)
                for (lineno, msg), got in zip(want, lines):
                    prefix = f"bad.ini:{lineno}: " if lineno else "bad.ini: "
                    self.assertTrue(got.startswith(prefix), f"{got!r} should start with {prefix!r}")
                    self.assertIn(msg, got)

    def test_parse_reports_every_mistake(self):
        with self.assertRaises(scenario.ScenarioError) as cm:
            scenario.parse_text(ALL_MISTAKES, "bad.ini")
        lines = str(cm.exception).splitlines()
        numbered = {int(m.group(1)): line for line in lines for m in [re.match(r"bad\.ini:(\d+): ", line)] if m}
        self.assertEqual(sorted(numbered), sorted(ALL_MISTAKES_LINES), lines)
        for n, msg in ALL_MISTAKES_LINES.items():
            self.assertIn(msg, numbered[n])
        self.assertIn("bad.ini: [scenario] description is required", lines)

    def test_apply_sets(self):
        conf = scenario.parse_text(GOOD, "good.ini")
        scenario.apply_sets(conf, ["clients=7", "topology.nodes=4", "load.rounds = 2", "sticky=source"])
        self.assertEqual((conf["load"]["clients"], conf["topology"]["nodes"], conf["load"]["rounds"],
                          conf["topology"]["sticky"]), (7, 4, 2, "source"))
        for bad, msg in (("colour=blue", "unknown key"), ("nodes=lots", "expected a whole number"),
                         ("clients", "expected key=value"), ("load.nodes=2", "unknown key"),
                         ("lb=nginx", "sticky = cookie needs")):
            with self.subTest(bad):
                conf = scenario.parse_text(GOOD, "good.ini")
                with self.assertRaises(scenario.ScenarioError) as cm:
                    scenario.apply_sets(conf, [bad])
                self.assertIn(msg, str(cm.exception))
                self.assertIn(f"--set", str(cm.exception))

    def test_duration_instead_of_rounds(self):
        """[load] duration runs loadgen --duration, never --rounds beside it (loadgen refuses both)."""
        argv = scenario.loadgen_argv(scenario.parse_text(GOOD, "good.ini"), "b", ["ws://x/"], "o.json", "o.hlog")
        self.assertIn("--rounds", argv)
        self.assertNotIn("--duration", argv)
        conf = scenario.apply_sets(scenario.parse_text(GOOD, "good.ini"), ["duration=2m"])
        argv = scenario.loadgen_argv(conf, "b", ["ws://x/"], "o.json", "o.hlog")
        self.assertEqual(argv[argv.index("--duration") + 1], "2m")
        self.assertNotIn("--rounds", argv)
        for sets in (["duration=30s", "rounds=5"], ["duration=soon"]):
            with self.subTest(sets):
                with self.assertRaises(scenario.ScenarioError) as cm:
                    scenario.apply_sets(scenario.parse_text(GOOD, "good.ini"), sets)
                self.assertIn("duration", str(cm.exception))

    def test_socketio_scenario(self):
        path, conf = scenario.load("socketio-broadcast-1k")
        self.assertEqual((conf["load"]["protocol"], conf["load"]["event"], conf["load"]["clients"]),
                         ("socketio", "chat", 1000))
        self.assertEqual(conf["thresholds"], ["delivery>=100%"])
        argv = scenario.loadgen_argv(conf, "b", ["ws://127.0.0.1:9/"], "o.json", "o.hlog")
        self.assertEqual(argv[argv.index("--protocol") + 1], "socketio")
        self.assertEqual(argv[argv.index("--event") + 1], "chat")
        conf = scenario.parse_text(GOOD, "good.ini")  # websocket: neither option
        argv = scenario.loadgen_argv(conf, "b", ["ws://127.0.0.1:9/ws"], "o.json", "o.hlog")
        self.assertNotIn("--protocol", argv)
        self.assertNotIn("--event", argv)

    def test_polling_transport(self):
        path, conf = scenario.load("socketio-polling-1k")
        self.assertEqual((conf["load"]["transport"], conf["load"]["upgrade"], conf["topology"]["sticky"]),
                         ("polling", False, "cookie"))
        argv = scenario.loadgen_argv(conf, "b", ["ws://127.0.0.1:9/"], "o.json", "o.hlog")
        self.assertEqual(argv[argv.index("--transport") + 1], "polling")
        self.assertIn("--no-upgrade", argv)
        conf = scenario.apply_sets(conf, ["upgrade=yes"])
        self.assertNotIn("--no-upgrade", scenario.loadgen_argv(conf, "b", ["ws://x/"], "o.json", "o.hlog"))
        with self.assertRaises(scenario.ScenarioError) as cm:
            scenario.apply_sets(scenario.load("socketio-polling-1k")[1], ["protocol=websocket"])
        self.assertIn("need protocol = socketio", str(cm.exception))
        # A polling client holds two connections (GET and POST): HAProxy's maxconn must count both, or clients queue.
        ws = scenario.apply_sets(scenario.load("socketio-polling-1k")[1], ["transport=websocket"])
        self.assertEqual(scenario.haproxy_maxconn(conf) - 100, 2 * (scenario.haproxy_maxconn(ws) - 100))
        # Without stickiness the scenario is allowed, and fails: showing that is what it is for.
        scenario.apply_sets(scenario.load("socketio-polling-1k")[1], ["sticky=none"])

    def test_event_needs_socketio(self):
        for text in (GOOD.replace("[load]", "[load]\nevent = news"), GOOD.replace("[load]", "[load]\nevent = chat")):
            with self.assertRaises(scenario.ScenarioError) as cm:
                scenario.parse_text(text, "bad.ini")
            self.assertIn("needs protocol = socketio", str(cm.exception))
        conf = scenario.parse_text(GOOD, "good.ini")
        with self.assertRaises(scenario.ScenarioError) as cm:
            scenario.apply_sets(conf, ["event=news"])
        self.assertIn("needs protocol = socketio", str(cm.exception))
        conf = scenario.apply_sets(scenario.parse_text(GOOD, "good.ini"), ["protocol=socketio", "event=news"])
        self.assertEqual(conf["load"]["event"], "news")
        with self.assertRaises(scenario.ScenarioError) as cm:
            scenario.apply_sets(scenario.parse_text(GOOD, "good.ini"), ["protocol=socketio", "event=a b"])
        self.assertIn("expected an event name", str(cm.exception))


class BadScenarioRuns(RunnerBase):
    """scenarios/run on bad files and bad --set: exit 2, the mistake named, nothing started."""

    def assertNothingStarted(self, p):
        self.assertEqual(os.listdir(self.out), [], f"a bad scenario must not create results\n{self.show(p)}")
        self.assertNothingLeft([])

    def test_bad_files(self):
        d = h.make_tempdir(self, "wsh-scn-ini-")
        for what, (text, want) in BAD.items():
            with self.subTest(what):
                path = write(os.path.join(d, "bad.ini"), text)
                p = self.runner(path, *SMALL)
                self.assertExit(p, 2)
                for lineno, msg in want:
                    prefix = f"bad.ini:{lineno}: " if lineno else "bad.ini: "
                    hit = [line for line in p.stderr.splitlines() if prefix in line and msg in line]
                    self.assertTrue(hit, f"stderr should name {prefix!r} with {msg!r}:\n{p.stderr}")
                self.assertNotIn("Traceback", p.stderr)
                self.assertNothingStarted(p)

    def test_every_mistake_at_once(self):
        d = h.make_tempdir(self, "wsh-scn-ini-")
        path = write(os.path.join(d, "bad.ini"), ALL_MISTAKES)
        p = subprocess.run([RUN, "bad.ini", "--out", self.out], cwd=d, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
        self.assertExit(p, 2)
        err = p.stderr.splitlines()
        for n, msg in ALL_MISTAKES_LINES.items():
            self.assertTrue([line for line in err if line.startswith(f"bad.ini:{n}: ") and msg in line],
                            f"line {n} ({msg}) not named:\n{p.stderr}")
        self.assertIn("bad.ini: [scenario] description is required", err)
        self.assertNothingStarted(p)
        self.assertTrue(os.path.exists(path))

    def test_bad_sets(self):
        for args, msg in ((["--set", "colour=blue"], "--set 'colour=blue': unknown key"),
                          (["--set", "clients=many"], "--set 'clients=many': expected a whole number"),
                          (["--set", "interval=5"], "expected a duration"),
                          (["--set", "topology.nodes"], "expected key=value"),
                          (["--lb", "nginx"], "sticky = cookie needs lb = builtin or haproxy"),
                          (["--set", "event=news"], "event = news needs protocol = socketio"),
                          (["--set", "protocol=carrier-pigeon"], "expected one of websocket, socketio")):
            with self.subTest(args=args):
                p = self.runner("broadcast-100", *SMALL, *args)
                self.assertExit(p, 2)
                self.assertIn(msg, p.stderr)
                self.assertNothingStarted(p)

    def test_bad_threshold_set_is_a_usage_error_before_anything_starts(self):
        # The same mistake in a file is exit 2 with nothing started; by --set it must be too.
        p = self.runner("broadcast-100", *SMALL, "--set", "thresholds.x=p99 about 1s")
        self.assertExit(p, 2)
        self.assertIn("p99 about 1s", p.stderr)
        self.assertNothingStarted(p)

    def test_unknown_scenario(self):
        p = self.runner("no-such-scenario", *SMALL)
        self.assertExit(p, 2)
        self.assertIn("no scenario 'no-such-scenario'", p.stderr)
        self.assertIn("broadcast-100", p.stderr)  # the known ones are listed
        self.assertNothingStarted(p)


# ---------------------------------------------------------------------------------------------------------------
# 2. the generated balancer configurations, checked by the real tools


class GeneratedConfigs(unittest.TestCase):
    def setUp(self):
        self.dir = h.make_tempdir(self, "wsh-scn-cfg-")
        with open(os.path.join(SCENARIOS, "broadcast-100.ini")) as f:
            self.conf = scenario.parse_text(f.read(), "b.ini")

    def with_sticky(self, sticky, workers=1):
        conf = json.loads(json.dumps(self.conf))
        conf["topology"]["sticky"] = sticky
        conf["topology"]["lb_workers"] = workers
        return conf

    def check(self, argv, path, text, accepted=True):
        write(path, text)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if accepted:
            self.assertEqual(p.returncode, 0, f"{argv}:\n{p.stdout}{p.stderr}\n--- config\n{text}")
        else:
            self.assertNotEqual(p.returncode, 0, f"{argv} accepted a broken config:\n{text}")
        return p

    @unittest.skipUnless(os.access(HAPROXY, os.X_OK), "haproxy is not installed")
    def test_haproxy_cfg(self):
        for sticky in scenario.STICKY:
            with self.subTest(sticky=sticky):
                text = scenario.haproxy_cfg(self.with_sticky(sticky, 2), 18080, [18081, 18082])
                path = os.path.join(self.dir, f"haproxy-{sticky}.cfg")
                self.check([HAPROXY, "-c", "-f", path], path, text)
                self.assertIn("bind 127.0.0.1:18080", text)
                self.assertIn("server n2 127.0.0.1:18082", text)
                self.assertEqual("cookie SRVID insert" in text, sticky == "cookie")
                self.assertEqual("balance source" in text, sticky == "source")
        # the check can fail: haproxy rejects a broken copy
        path = os.path.join(self.dir, "broken.cfg")
        self.check([HAPROXY, "-c", "-f", path], path, text + "    bogus-keyword 1\n", accepted=False)

    @unittest.skipUnless(os.access(NGINX, os.X_OK), "nginx is not installed")
    def test_nginx_conf(self):
        for sticky in ("source", "none"):
            with self.subTest(sticky=sticky):
                run_dir = os.path.join(self.dir, f"nginx-{sticky}")
                os.mkdir(run_dir)  # the runner's run dir exists; nginx -t creates the temp dirs inside it
                text = scenario.nginx_conf(self.with_sticky(sticky, 2), 18080, [18081, 18082], run_dir)
                path = os.path.join(run_dir, "nginx.conf")
                argv = [NGINX, "-t", "-p", run_dir, "-c", path, "-e", os.path.join(run_dir, "err.log")]
                self.check(argv, path, text)
                self.assertEqual("hash $remote_addr consistent" in text, sticky == "source")
                self.assertIn("listen 127.0.0.1:18080;", text)
        path = os.path.join(run_dir, "broken.conf")
        argv = [NGINX, "-t", "-p", run_dir, "-c", path, "-e", os.path.join(run_dir, "err.log")]
        self.check(argv, path, text.replace("proxy_pass", "proxy_passs"), accepted=False)

    def test_lb_conf(self):
        for sticky in scenario.STICKY:
            with self.subTest(sticky=sticky):
                text = scenario.lb_conf(self.with_sticky(sticky, 2), 18080, 18090, [18081, 18082])
                path = os.path.join(self.dir, f"lb-{sticky}.conf")
                p = self.check([LB, "--check", "-c", path], path, text)
                self.assertIn("2 node(s)", p.stdout + p.stderr)
        path = os.path.join(self.dir, "broken.conf")
        p = self.check([LB, "--check", "-c", path], path, text + "sticky sometimes\n", accepted=False)
        self.assertEqual(p.returncode, 2)
        n = len(text.splitlines()) + 1
        self.assertIn(f":{n}", p.stdout + p.stderr)


# ---------------------------------------------------------------------------------------------------------------
# 3. the runner's lifecycle


class RunnerLifecycle(RunnerBase):
    def test_success_builtin(self):
        p = self.runner("broadcast-100", *SMALL)
        self.assertExit(p, 0)
        path, doc = self.only_result("broadcast-100", "builtin", p)
        self.assertEqual(doc["exit_code"], 0)
        self.assertIsNone(doc["error"])
        self.assertEqual((doc["settings"]["load"]["clients"], doc["settings"]["load"]["rounds"],
                          doc["settings"]["load"]["interval"]), (20, 3, "50ms"))
        self.assertEqual(doc["settings"]["thresholds"], ["delivery>=100%"])
        lg = doc["loadgen"]
        self.assertEqual(lg["schema"], "wsh-loadgen/1")
        self.assertTrue(lg["verdict"]["pass"], lg["verdict"])
        self.assertEqual(lg["totals"]["expected"], 19 * 3)
        self.assertEqual(lg["totals"]["received"], 19 * 3)
        self.assertEqual(lg["clients"]["connected"], 20)
        # the .hlog and every process's log, each starting with the command that was run
        self.assertTrue(os.path.isfile(path[:-5] + ".hlog"), path)
        self.assertEqual(os.path.normpath(os.path.join(scenario.ROOT, doc["hlog"])), path[:-5] + ".hlog")
        logs = os.path.normpath(os.path.join(scenario.ROOT, doc["logs"]))
        self.assertEqual(logs, path[:-5])
        for name in ("redis", "n1", "n2", "lb", "loadgen"):
            with self.subTest(log=name):
                with open(os.path.join(logs, name + ".log"), errors="replace") as f:
                    self.assertTrue(f.readline().startswith("$ "))
        self.assertTrue(os.path.isfile(os.path.join(logs, "lb.conf")))
        t = doc["topology"]
        self.assertEqual(len(t["node_ports"]), 2)
        for k in ("redis_port", "lb_port", "lb_admin_port"):
            self.assertIn(k, t)
        ports = topology_ports(doc)
        self.assertEqual(len(set(ports)), 5, ports)
        self.assertIn("PASS (exit 0)", p.stderr)
        self.assertIn("verdict   PASS", p.stdout)
        self.assertNothingLeft(ports)

    def test_ci_output(self):
        """Piped (a CI log): the runner's phases on stderr, loadgen's header passed through while loadgen still runs,
        every threshold listed, JUnit XML read back by a JUnit reader, and the build and machine in the result."""
        junit = os.path.join(self.out, "run.xml")
        runner = subprocess.Popen([RUN, "broadcast-100", "--set", "clients=10", "--set", "rounds=30", "--set",
                                   "interval=100ms", "--junit", junit, "--out", self.out], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: runner.poll() is None and (runner.kill(), runner.wait(10)))
        lines, header_while_running = [], None
        for line in runner.stdout:
            lines.append(line)
            if header_while_running is None and line.startswith("loadgen "):
                # loadgen renames its report into place only at its end
                done = glob.glob(os.path.join(self.out, "broadcast-100", "*", "loadgen.json"))
                header_while_running = not done
        err = runner.stderr.read()
        runner.wait(RUN_TIMEOUT)
        runner.stdout.close()
        runner.stderr.close()
        text = "".join(lines)
        p = subprocess.CompletedProcess([], runner.returncode, text, err)
        self.assertExit(p, 0)
        self.assertTrue(header_while_running, "loadgen's output came only after it had ended\n" + self.show(p))
        for phase in ("scenario: starting redis-server", "scenario: starting 2 node(s)",
                      "scenario: starting the balancer (builtin)", "scenario: running loadgen"):
            self.assertIn(phase, err)
        self.assertRegex(text, r"(?m)^threshold \u2713 delivery>=100% +actual 100\.000%$")
        self.assertIn("PASS (exit 0), 1/1 thresholds passed", err)
        _, doc = self.only_result("broadcast-100", "builtin", p)
        self.assertEqual(doc["build"], doc["loadgen"]["build"])
        self.assertEqual(doc["machine"]["cores"], os.cpu_count())
        self.assertEqual(doc["machine"]["kernel_release"], os.uname().release)
        self.assertEqual(doc["command_line"][1:3], ["broadcast-100", "--set"])
        self.assertIn("--junit", doc["loadgen"]["command_line"])
        try:
            import junitparser
        except ImportError:  # a pyenv python does not see Debian's python3-junitparser (scripts/deps.sh)
            sys.path.append("/usr/lib/python3/dist-packages")
            import junitparser
        suite = list(junitparser.JUnitXml.fromfile(junit))[0]
        self.assertEqual((suite.tests, suite.failures), (4, 0))
        self.assertIn("threshold delivery>=100%", [c.name for c in suite])
        self.assertNothingLeft(topology_ports(doc))

    def test_socketio_builtin(self):
        p = self.runner("socketio-broadcast-1k", "--set", "clients=20", "--set", "rounds=3")
        self.assertExit(p, 0)
        path, doc = self.only_result("socketio-broadcast-1k", "builtin", p)
        self.assertEqual((doc["settings"]["load"]["protocol"], doc["settings"]["load"]["clients"]), ("socketio", 20))
        lg = doc["loadgen"]
        self.assertTrue(lg["verdict"]["pass"], lg["verdict"])
        self.assertEqual(lg["options"]["protocol"], "socketio")
        self.assertEqual((lg["totals"]["expected"], lg["totals"]["received"]), (19 * 3, 19 * 3))
        self.assertEqual(lg["clients"]["connected"], 20)
        with open(os.path.join(path[:-5], "loadgen.log"), errors="replace") as f:
            cmd = f.readline()
        self.assertIn("--protocol socketio --event chat", cmd)
        self.assertRegex(cmd.rstrip(), r"ws://127\.0\.0\.1:\d+/$")  # loadgen makes it /socket.io/?EIO=4...
        self.assertNothingLeft(topology_ports(doc))

    def test_unmeetable_threshold_fails(self):
        d = h.make_tempdir(self, "wsh-scn-ini-")
        with open(os.path.join(SCENARIOS, "broadcast-100.ini")) as f:
            text = f.read().replace("delivery >= 100%", "delivery >= 100%\np99 < 1us")
        path = write(os.path.join(d, "too-fast.ini"), text)
        p = self.runner(path, *SMALL)
        self.assertExit(p, 1)
        _, doc = self.only_result("too-fast", "builtin", p)
        self.assertEqual(doc["exit_code"], 1)
        self.assertIn("p99<1us", doc["settings"]["thresholds"])
        self.assertFalse(doc["loadgen"]["verdict"]["pass"])
        self.assertEqual(doc["loadgen"]["totals"]["received"], 19 * 3)  # delivered, only too slow
        self.assertIn("FAIL (exit 1)", p.stderr)
        self.assertNothingLeft(topology_ports(doc))

    def _interrupt(self, sig):
        log = os.path.join(self.out, "runner.log")
        with open(log, "wb") as f:
            runner = subprocess.Popen([RUN, "broadcast-100", "--set", "clients=20", "--set", "rounds=1000",
                                       "--set", "interval=100ms", "--out", self.out], stdin=subprocess.DEVNULL,
                                      stdout=f, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: runner.poll() is None and (runner.kill(), runner.wait(10)))

        def loadgen_connected():
            # loadgen is under way once the lb holds its 20 client connections
            if runner.poll() is not None:
                return True
            if not glob.glob(os.path.join(self.out, "broadcast-100", "*", "loadgen.log")):
                return False
            with open(glob.glob(os.path.join(self.out, "broadcast-100", "*", "lb.conf"))[0]) as f:
                lb_port = int(re.search(r"^listen 127\.0\.0\.1:(\d+)", f.read(), re.M).group(1))
            return established(lb_port) >= 20

        h.wait_until(loadgen_connected, 15 * h.SLOW, what="loadgen's 20 clients to connect through the lb")
        self.assertIsNone(runner.poll(), "the runner ended before it was interrupted")
        time.sleep(0.3)  # some rounds under way
        ports = ports_in_logs(self.out)
        t0 = time.monotonic()
        os.kill(runner.pid, sig)
        try:
            rc = runner.wait(15)
        except subprocess.TimeoutExpired:
            self.fail(f"the runner did not exit within 15 s of {sig.name}")
        took = time.monotonic() - t0
        with open(log, errors="replace") as f:
            text = f.read()
        self.assertEqual(rc, 128 + sig, text[-3000:])
        self.assertLess(took, 15)
        self.assertIn(f"interrupted by {sig.name}", text)
        _, doc = self.only_result("broadcast-100", "builtin", subprocess.CompletedProcess([], rc, text, ""))
        self.assertEqual(doc["exit_code"], 128 + sig)
        self.assertIn("interrupted", doc["error"])
        # loadgen was stopped in order: its partial report is kept, marked as such
        self.assertIsNotNone(doc["loadgen"], text[-3000:])
        self.assertTrue(doc["loadgen"]["interrupted"])
        self.assertFalse(doc["loadgen"]["verdict"]["pass"])
        self.assertGreater(doc["loadgen"]["clients"]["connected"], 0)
        self.assertEqual(sorted(topology_ports(doc)), ports)
        self.assertNothingLeft(ports)

    def test_sigint_stops_everything(self):
        self._interrupt(signal.SIGINT)

    def test_sigterm_stops_everything(self):
        self._interrupt(signal.SIGTERM)

    def test_sigkill_of_the_runner_leaves_nothing(self):
        # "not even a SIGKILLed runner leaves processes behind": each child has SIGTERM as its parent-death signal
        runner = subprocess.Popen([RUN, "broadcast-100", "--set", "clients=20", "--set", "rounds=1000",
                                   "--set", "interval=100ms", "--out", self.out, "--quiet"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: runner.poll() is None and (runner.kill(), runner.wait(10)))
        h.wait_until(lambda: glob.glob(os.path.join(self.out, "broadcast-100", "*", "loadgen.log"))
                     or runner.poll() is not None, 15 * h.SLOW, what="loadgen to start")
        self.assertIsNone(runner.poll())
        time.sleep(0.3)
        ports = ports_in_logs(self.out)
        self.assertEqual(len(ports), 5, ports)
        self.assertTrue(run_processes(self.out, ports, self.since), "the run's processes should be running")
        runner.kill()
        runner.wait(10)
        # the children get SIGTERM when the runner dies, and stop in their own time: a bounded wait
        try:
            h.wait_until(lambda: not run_processes(self.out, ports, self.since), 10 * h.SLOW,
                         what="the run's processes to end after the runner was killed")
        except TimeoutError as e:
            left = run_processes(self.out, ports, self.since)
            kill_pids(left)
            self.fail(f"{e}: {left}")
        for port in ports:
            self.assertTrue(port_free(port), f"port {port} cannot be bound again")

    # -- the topology cannot start: exit 3, a clear message, nothing left

    def _setup_failure(self, haproxy, *expect):
        p = self.runner("broadcast-100", "--lb", "haproxy", *SMALL, env={"HAPROXY": haproxy})
        self.assertExit(p, 3)
        self.assertNotIn("Traceback", p.stderr)
        for text in expect:
            self.assertIn(text, p.stderr)
        self.assertIn("COULD NOT RUN (exit 3)", p.stderr)
        _, doc = self.only_result("broadcast-100", "haproxy", p)
        self.assertEqual(doc["exit_code"], 3)
        self.assertTrue(doc["error"])
        self.assertIsNone(doc["loadgen"])
        t = doc["topology"]
        self.assertEqual(len(t["node_ports"]), 2, t)  # redis and the two nodes had started
        self.assertIn("redis_port", t)
        ports = topology_ports(doc)
        self.assertNothingLeft(ports)
        return doc

    def test_balancer_that_fails_its_check(self):
        self._setup_failure("/bin/false", "haproxy -c rejects")

    def test_balancer_that_dies_at_start(self):
        d = h.make_tempdir(self, "wsh-scn-bin-")
        fake = write(os.path.join(d, "haproxy"), '#!/bin/sh\n[ "$1" = -c ] && exit 0\n'
                                                 'echo "fake haproxy: cannot go on" >&2\nexit 7\n')
        os.chmod(fake, 0o755)
        doc = self._setup_failure(fake, "haproxy exited (7)", "fake haproxy: cannot go on")
        self.assertIn("haproxy exited (7)", doc["error"])

    def test_balancer_program_missing(self):
        # HAPROXY names a program that does not exist: the topology cannot start (exit 3), not a Python traceback
        self._setup_failure(os.path.join(self.out, "no-such-haproxy"), "no-such-haproxy")

    # -- a process that dies during the run

    def test_redis_dying_during_the_run(self):
        runner = subprocess.Popen([RUN, "broadcast-100", "--set", "clients=20", "--set", "rounds=15",
                                   "--set", "interval=100ms", "--set", "deadline=1s", "--out", self.out],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: runner.poll() is None and (runner.kill(), runner.wait(10)))
        h.wait_until(lambda: glob.glob(os.path.join(self.out, "broadcast-100", "*", "loadgen.log"))
                     or runner.poll() is not None, 15 * h.SLOW, what="loadgen to start")
        self.assertIsNone(runner.poll())
        with open(glob.glob(os.path.join(self.out, "broadcast-100", "*", "redis.log"))[0]) as f:
            port = int(re.search(r"--port (\d+)", f.readline()).group(1))
        # redis-server shows itself as "redis-server 127.0.0.1:PORT"; only a process of this run matches
        redis = [pid for pid, cmd in run_processes(self.out, [port], self.since)
                 if "redis-server" in cmd.split(" ")[0] and cmd.endswith(f"127.0.0.1:{port}")]
        self.assertEqual(len(redis), 1, run_processes(self.out, [port], self.since))
        time.sleep(0.3)
        os.kill(redis[0], signal.SIGKILL)
        try:
            out, err = runner.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("the runner did not end")
        p = subprocess.CompletedProcess([], runner.returncode, out, err)
        self.assertNotEqual(p.returncode, 0, self.show(p))
        _, doc = self.only_result("broadcast-100", "builtin", p)
        self.assertNothingLeft(topology_ports(doc))
        # the death is reported once (not once per 100 ms poll), and the result says what happened
        with self.subTest("reported once"):
            self.assertEqual(err.count("redis died during the run"), 1,
                             f"reported {err.count('redis died during the run')} times")
        with self.subTest("named in the result"):
            self.assertIn("redis", doc["error"] or "", f"the result's error should name the process that died: "
                                                       f"error = {doc['error']!r}")

    # -- each balancer

    def test_each_balancer(self):
        for lb, extra, log in (("haproxy", [], "haproxy"), ("nginx", ["--set", "sticky=source"], "nginx"),
                               ("none", [], None)):
            if lb != "none" and not os.access(HAPROXY if lb == "haproxy" else NGINX, os.X_OK):
                continue
            with self.subTest(lb=lb):
                p = self.runner("broadcast-100", "--lb", lb, *SMALL, *extra)
                self.assertExit(p, 0)
                path, doc = [(pth, d) for pth, d in self.results("broadcast-100") if d["lb"] == lb][0]
                self.assertEqual(doc["exit_code"], 0)
                self.assertTrue(doc["loadgen"]["verdict"]["pass"])
                self.assertEqual(doc["loadgen"]["totals"]["received"], 19 * 3)
                t = doc["topology"]
                if log:
                    self.assertTrue(os.path.isfile(os.path.join(path[:-5], log + ".log")))
                    self.assertIn("lb_port", t)
                else:
                    self.assertNotIn("lb_port", t)
                    self.assertEqual(doc["loadgen"]["nodes"], {"n1": 10, "n2": 10})
                self.assertNotIn("lb_admin_port", t)
                self.assertNothingLeft(topology_ports(doc))


# ---------------------------------------------------------------------------------------------------------------
# 4. the gate's judgement, on synthetic measurements


class ExternalTarget(RunnerBase):
    """[topology] target: the runner starts nothing and points loadgen at the URLs (a server we did not start)."""

    def write_ini(self, text):
        path = os.path.join(self.out, "ext.ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_runs_against_a_server_it_did_not_start(self):
        node = h.start_refserver(self, "x1")  # one node, no Redis: a relay of its own clients
        ini = self.write_ini(f"[scenario]\ndescription = external\n[topology]\ntarget = ws://127.0.0.1:{node.port}/ws\n"
                             "[load]\nclients = 10\nrounds = 3\ninterval = 100ms\n")
        p = self.runner(ini)
        self.assertEqual(p.returncode, 0, self.show(p))
        self.assertIn(f"external target ws://127.0.0.1:{node.port}/ws", p.stderr)
        path, doc = self.only_result("ext", "external", p)
        self.assertEqual(doc["lb"], "external")
        self.assertEqual(doc["topology"]["target"], [f"ws://127.0.0.1:{node.port}/ws"])
        self.assertEqual(doc["loadgen"]["totals"]["received"], 27)  # 9 receivers x 3 rounds, all via that node
        self.assertEqual(doc["loadgen"]["nodes"], {"x1": 10})
        self.assertTrue(node.proc.alive(), "the runner must not stop a server it did not start")

    def test_message_shape_keys_reach_loadgen_whole(self):
        # the relay passes the wrapped message through; --find digs loadgen's out of it. The regex holds ';' and
        # '#': comment characters elsewhere in a scenario file, kept whole in these keys.
        node = h.start_refserver(self, "x1")
        ini = self.write_ini(
            f"[scenario]\ndescription = shaped\n[topology]\ntarget = ws://127.0.0.1:{node.port}/ws\n"
            "[load]\nclients = 5\nrounds = 2\ninterval = 100ms\n"
            'send = {"type":"chat#1;","text":"{{payload}}"}\n'
            'find = re:"text":"([^;#]*)"}$\n')
        p = self.runner(ini)
        self.assertEqual(p.returncode, 0, self.show(p))
        _, doc = self.only_result("ext", "external", p)
        self.assertEqual(doc["loadgen"]["totals"]["received"], 8)
        self.assertEqual(doc["loadgen"]["options"].get("send"), '{"type":"chat#1;","text":"{{payload}}"}')

    def test_target_excludes_what_the_runner_would_start(self):
        ini = self.write_ini("[scenario]\ndescription = external\n[topology]\ntarget = ws://127.0.0.1:1/ws\n"
                             "nodes = 3\n[load]\nclients = 10\n[faults]\nat 1s kill node n1\n")
        p = self.runner(ini)
        self.assertEqual(p.returncode, 2, self.show(p))
        self.assertIn("nodes cannot be set with it", p.stderr)
        self.assertIn("[faults] need a topology this runner starts", p.stderr)
        p = self.runner(self.write_ini("[scenario]\ndescription = x\n[topology]\ntarget = ftp://a/b\n"
                                       "[load]\nclients = 1\n"))
        self.assertEqual(p.returncode, 2, self.show(p))
        self.assertIn("expected ws://, wss://, http:// or https:// URLs", p.stderr)


class ScaleSmoke(RunnerBase):
    """broadcast-30k as shipped, through the builtin lb: the size at which the lb used to fall over (checks starved
    by its own loop, EMFILE taken for a dead node) and loadgen's close phase ran out of time."""

    @unittest.skipIf(h.SLOW > 1, "30000 clients under the sanitizers would take the CI's whole budget")
    def test_broadcast_30k_through_the_lb(self):
        p = self.runner("broadcast-30k", "--set", "rounds=2", timeout=600)
        self.assertExit(p, 0)
        _, doc = self.only_result("broadcast-30k", "builtin", p)
        lg = doc["loadgen"]
        self.assertEqual(lg["clients"]["connected"], 30000, lg["clients"])
        self.assertEqual(lg["totals"]["received"], lg["totals"]["expected"])
        self.assertEqual(lg["totals"]["expected"], 29999 * 2)
        self.assertEqual(lg["clients"]["closed_clean"], 30000, lg.get("errors"))
        self.assertGreater(lg["plan"]["workers"], 1)  # planned, not pinned: one process cannot hold 30000
        with open(os.path.join(scenario.ROOT, doc["logs"], "lb.log"), errors="replace") as f:
            log = f.read()
        self.assertNotIn("is down", log)
        self.assertNothingLeft(topology_ports(doc))


class Gate(unittest.TestCase):
    def setUp(self):
        self.dir = h.make_tempdir(self, "wsh-scn-gate-")
        self.baselines = os.path.join(self.dir, "baselines")
        os.mkdir(self.baselines)
        write(os.path.join(self.baselines, "demo.json"),
              json.dumps({"schema": "wsh-baseline/1", "scenario": "demo",
                          "ratios": {"lb/direct": 1.2, "lb/haproxy": 0.9}, "tolerance": 0.5}))

    def measured(self, ratios, failures=(), name="demo", tolerance=0.5):
        m = {"p99_ms": {"none": 1.0, "builtin": 1.0 * ratios.get("lb/direct", 1), "haproxy": 1.0},
             "p99_runs_ms": {"none": [1.0], "builtin": [1.0], "haproxy": [1.0]},
             "ratios": ratios, "runs": 1, "tolerance": tolerance}
        path = os.path.join(self.dir, f"measured-{len(os.listdir(self.dir))}.json")
        write(path, json.dumps({"measured": {name: m}, "failures": list(failures)}))
        return path

    def gate(self, *args):
        return subprocess.run([GATE, *args], capture_output=True, text=True, timeout=30)

    def assertGate(self, p, rc):
        self.assertEqual(p.returncode, rc, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")

    def test_within_tolerance_passes(self):
        p = self.gate("--measured", self.measured({"lb/direct": 1.75, "lb/haproxy": 1.3}), "--baselines",
                      self.baselines)
        self.assertGate(p, 0)
        self.assertIn("gate: PASS", p.stdout)
        self.assertRegex(p.stdout, r"demo\s+lb/direct\s+1\.75\s+baseline\s+1\.20\s+limit\s+1\.80\s+ok")
        self.assertNotIn("REGRESSION", p.stdout)

    def test_beyond_the_limit_fails(self):
        p = self.gate("--measured", self.measured({"lb/direct": 1.9, "lb/haproxy": 1.0}), "--baselines",
                      self.baselines)
        self.assertGate(p, 1)
        self.assertIn("gate: FAIL: demo: lb/direct = 1.90, worse than the baseline 1.20 by more than 50% "
                      "(limit 1.80)", p.stdout)
        self.assertNotIn("lb/haproxy = ", p.stdout)
        self.assertTrue(p.stdout.rstrip().endswith("gate: FAIL"))

    def test_recorded_failure_fails(self):
        failure = "demo via haproxy, run 2: exit 1 (results/runs/x.json)"
        p = self.gate("--measured", self.measured({"lb/direct": 1.0, "lb/haproxy": 0.9}, [failure]),
                      "--baselines", self.baselines)
        self.assertGate(p, 1)
        self.assertIn(f"gate: FAIL: {failure}", p.stdout)
        self.assertTrue(p.stdout.rstrip().endswith("gate: FAIL"))

    def test_ratio_not_measured_fails(self):
        p = self.gate("--measured", self.measured({"lb/direct": 1.0}), "--baselines", self.baselines)
        self.assertGate(p, 1)
        self.assertIn("demo: lb/haproxy was not measured", p.stdout)

    def test_no_baseline_fails(self):
        p = self.gate("--measured", self.measured({"lb/direct": 1.0}, name="other"), "--baselines", self.baselines)
        self.assertGate(p, 1)
        self.assertIn("other: no baseline", p.stdout)
        self.assertIn("make baseline", p.stdout)

    def test_judge_uses_the_baseline_tolerance_when_none_measured(self):
        gate = load_gate()
        base = {"demo": {"ratios": {"lb/direct": 1.2}, "tolerance": 0.5}}
        lines, bad = gate.judge({"demo": {"ratios": {"lb/direct": 1.7}}}, base)
        self.assertEqual(bad, [])
        self.assertEqual(len(lines), 1)
        _, bad = gate.judge({"demo": {"ratios": {"lb/direct": 1.85}}}, base)
        self.assertEqual(len(bad), 1)
        self.assertIn("limit 1.80", bad[0])
        # the measurement's tolerance (the scenario's [gate] tolerance) wins over the baseline's
        _, bad = gate.judge({"demo": {"ratios": {"lb/direct": 1.85}, "tolerance": 1.0}}, base)
        self.assertEqual(bad, [])

    def test_update_writes_the_baseline(self):
        out = os.path.join(self.dir, "new-baselines")
        p = self.gate("--update", "--measured", self.measured({"lb/direct": 1.23456, "lb/haproxy": 0.8}),
                      "--baselines", out)
        self.assertGate(p, 0)
        with open(os.path.join(out, "demo.json")) as f:
            doc = json.load(f)
        self.assertEqual(doc["schema"], "wsh-baseline/1")
        self.assertEqual(doc["scenario"], "demo")
        self.assertEqual(doc["ratios"], {"lb/direct": 1.235, "lb/haproxy": 0.8})
        self.assertEqual(doc["tolerance"], 0.5)
        # and the written baseline judges the same measurement as a pass
        p = self.gate("--measured", self.measured({"lb/direct": 1.23456, "lb/haproxy": 0.8}), "--baselines", out)
        self.assertGate(p, 0)

    def test_update_refuses_failed_runs(self):
        out = os.path.join(self.dir, "new-baselines")
        p = self.gate("--update", "--measured", self.measured({"lb/direct": 1.0, "lb/haproxy": 0.8}, ["x: exit 1"]),
                      "--baselines", out)
        self.assertGate(p, 1)
        self.assertIn("not updating the baselines", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "demo.json")))


if __name__ == "__main__":
    unittest.main()
