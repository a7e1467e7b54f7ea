"""The [faults] timeline of a scenario: parsed strictly, played for real (a node SIGKILLed and started again, Redis
restarted, the balancer reloaded, a rolling restart), and each event accounted for from loadgen's report."""

import os
import sys
import unittest


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scenarios"))
import faults  # noqa: E402
import harness as h  # noqa: E402
import scenario  # noqa: E402
from test_scenarios import RunnerBase, topology_ports  # noqa: E402

BASE = """\
[scenario]
description = d
[topology]
nodes = 2
[load]
clients = 10
reconnect = yes
[faults]
"""


class FaultLines(unittest.TestCase):
    def test_every_action_parses(self):
        conf = scenario.parse_text(BASE + "at 1s kill node n2\nat 1.5s start node n2\nat 2s restart redis\n"
                                   "at 2500ms reload lb\nat 3s stop lb\nat 4s start lb\nat 5s rolling restart nodes\n"
                                   "at 6s restart node n1\nat 7s stop redis\nat 8s start redis\n")
        got = [(e["at_s"], e["action"], e["target"], e["name"]) for e in conf["faults"]]
        self.assertEqual(got, [(1.0, "kill", "node", "n2"), (1.5, "start", "node", "n2"),
                               (2.0, "restart", "redis", None), (2.5, "reload", "lb", None),
                               (3.0, "stop", "lb", None), (4.0, "start", "lb", None),
                               (5.0, "rolling", "nodes", None), (6.0, "restart", "node", "n1"),
                               (7.0, "stop", "redis", None), (8.0, "start", "redis", None)])

    def test_mistakes_are_reported_with_their_line(self):
        cases = {
            "at 5 kill node n2": "needs a unit",
            "at 5s explode node n2": "is not a fault such as",
            "at 5s kill node": "which node?",
            "at 5s kill redis": "kill applies to node",
            "at 5s reload redis": "reload applies to lb",
            "at 5s restart redis now": "redis takes no name",
            "at 5s rolling restart everything": "expected 'rolling restart nodes'",
        }
        for line, want in cases.items():
            with self.subTest(line=line):
                with self.assertRaises(scenario.ScenarioError) as ctx:
                    scenario.parse_text(BASE + line + "\n", "f.ini")
                self.assertIn("f.ini:9: ", str(ctx.exception))
                self.assertIn(want, str(ctx.exception))

    def test_rules_against_the_topology(self):
        cases = {
            "at 1s kill node n3\n": "no node n3 (nodes: n1, n2)",
            "at 2s kill node n1\nat 1s start node n1\n": "must be in time order",
        }
        for text, want in cases.items():
            with self.subTest(text=text):
                with self.assertRaises(scenario.ScenarioError) as ctx:
                    scenario.parse_text(BASE + text)
                self.assertIn(want, str(ctx.exception))
        with self.assertRaisesRegex(scenario.ScenarioError, "needs reconnect = yes"):
            scenario.parse_text(BASE.replace("reconnect = yes", "reconnect = no") + "at 1s kill node n1\n")
        with self.assertRaisesRegex(scenario.ScenarioError, r"needs a balancer \(lb = none\)"):
            scenario.parse_text(BASE.replace("nodes = 2", "nodes = 2\nlb = none") + "at 1s reload lb\n")

    def test_set_adds_an_event(self):
        conf = scenario.parse_text(BASE)
        scenario.apply_sets(conf, ["faults=at 2s kill node n1", "fault=at 1s stop redis"])
        self.assertEqual([e["line"] for e in conf["faults"]], ["at 1s stop redis", "at 2s kill node n1"])
        with self.assertRaisesRegex(scenario.ScenarioError, "is not a fault"):
            scenario.apply_sets(conf, ["faults=at 2s nothing"])


class Accounting(unittest.TestCase):
    """faults.account over a synthetic loadgen report: every number is what the windows hold."""

    def test_windows(self):
        zero = 1_000_000.0
        report = {
            "start_unix_ms": zero,
            "phases": {"connect_ms": 100.0, "total_ms": 10000.0},
            "reconnect": {"episodes": [[1010.0, 2010.0], [1020.0, 3020.0], [1500.0, None], [5000.0, 5100.0]]},
            "rounds": [
                {"start_ms": 800.0, "emitted": 1, "missing": 0, "missed_while_away": 0},
                {"start_ms": 1200.0, "emitted": 1, "missing": 0, "missed_while_away": 3},
                {"start_ms": 1400.0, "emitted": 0, "missing": 0, "missed_while_away": 0, "emitter_gone": True},
                {"start_ms": 2500.0, "emitted": 1, "missing": 2, "missed_while_away": 1},
                {"start_ms": 3500.0, "emitted": 1, "missing": 0, "missed_while_away": 0},
                {"start_ms": 5050.0, "emitted": 1, "missing": 0, "missed_while_away": 1},
                {"start_ms": 6000.0, "emitted": 1, "missing": 0, "missed_while_away": 0},
            ],
        }
        records = [{"line": "at 1s kill node n2", "at_s": 1.0, "unix_ms": zero + 1000.0, "error": None},
                   {"line": "at 5s start node n2", "at_s": 5.0, "unix_ms": zero + 4900.0, "error": None}]
        a, b = (r["account"] for r in faults.account(records, report))
        self.assertEqual(a["at_ms"], 1000.0)
        self.assertFalse(a["during_connect"])
        self.assertEqual(a["dropped"], 3)
        self.assertEqual(a["never_back"], 1)
        self.assertIsNone(a["back_after_ms"])  # one never came back
        self.assertEqual(a["reconnect_p50_ms"], 2000.0)
        self.assertEqual(a["rounds"], 4)
        self.assertEqual(a["emitter_gone"], 1)
        self.assertEqual(a["missed_while_away"], 4)
        self.assertEqual(a["lost"], 2)
        self.assertEqual(a["whole_after_ms"], 2500.0)  # the round at 3500 ms
        self.assertEqual(b["dropped"], 1)
        self.assertEqual(b["back_after_ms"], 200.0)
        self.assertEqual(b["missed_while_away"], 1)
        self.assertEqual(b["whole_after_ms"], 1100.0)  # the round at 6000 ms

    def test_no_report(self):
        recs = [{"line": "at 1s kill node n2", "at_s": 1.0, "unix_ms": 1.0, "error": None}]
        self.assertIsNone(faults.account(recs, None)[0]["account"])
        self.assertIn("no account", faults.table(faults.account(recs, None))[1])


class FaultRuns(RunnerBase):
    """The shipped fault scenarios, shortened, through our lb: the events really happen and the accounts add up."""

    def run_fault(self, name, *sets, lb="builtin"):
        p = self.runner(name, "--set", f"topology.lb={lb}", *sets, timeout=240 * h.SLOW)
        _, doc = self.only_result(name, lb, p)
        self.assertNothingLeft(topology_ports(doc))
        return p, doc

    def start_logs(self, doc, name):
        """The logs the runner kept for the process called name: one per start (name.log, then name.1.log)."""
        logs = sorted(f for f in os.listdir(os.path.join(scenario.ROOT, doc["logs"]))
                      if f == f"{name}.log" or f.startswith(f"{name}.") and f.endswith(".log"))
        return logs

    def test_node_kill_is_a_crash_and_a_return(self):
        p, doc = self.run_fault("node-kill", "--set", "rounds=40")
        self.assertExit(p, 0)
        kill, start = doc["faults"]
        self.assertIsNone(kill["error"])
        self.assertIn("SIGKILL", kill["did"])
        self.assertIn("answering after", start["did"])
        self.assertEqual(self.start_logs(doc, "n2"), ["n2.1.log", "n2.log"])  # started twice
        lg = doc["loadgen"]
        on_n2 = lg["nodes"].get("n2", 0)
        self.assertGreater(on_n2, 0, lg["nodes"])
        acc = kill["account"]
        self.assertEqual(acc["dropped"], on_n2)  # exactly the clients the crashed node held
        self.assertEqual(acc["never_back"], 0)
        self.assertEqual(acc["lost"], 0)
        self.assertEqual(lg["totals"]["missing"], 0)
        self.assertEqual(lg["reconnect"]["reconnected"], on_n2)
        self.assertIsNotNone(acc["whole_after_ms"])
        self.assertIn("faults", p.stdout)

    def test_lb_reload_drops_nobody(self):
        p, doc = self.run_fault("lb-reload", "--set", "rounds=40")
        self.assertExit(p, 0)
        self.assertEqual(len(doc["faults"]), 5)
        for ev in doc["faults"]:
            self.assertIsNone(ev["error"], ev)
            self.assertIn("SIGHUP", ev["did"])
            self.assertEqual(ev["account"]["dropped"], 0, ev)
            self.assertEqual(ev["account"]["lost"], 0, ev)
        self.assertEqual(doc["loadgen"]["clients"]["dropped"], 0)

    def test_rolling_restart_moves_every_client_and_loses_nothing(self):
        p, doc = self.run_fault("rolling-restart")
        self.assertExit(p, 0)
        (ev,) = doc["faults"]
        self.assertIsNone(ev["error"], ev)
        self.assertEqual(ev["did"].count("drained"), 3, ev["did"])
        for node in ("n1", "n2", "n3"):
            self.assertEqual(self.start_logs(doc, node), [f"{node}.1.log", f"{node}.log"])
        self.assertEqual(ev["account"]["lost"], 0)
        self.assertEqual(ev["account"]["never_back"], 0)
        self.assertGreaterEqual(ev["account"]["dropped"], 300)  # every client was on a node that restarted

    def test_redis_restart_is_played_and_accounted(self):
        p, doc = self.run_fault("redis-restart", "--set", "rounds=40")
        (ev,) = doc["faults"]
        self.assertIsNone(ev["error"], ev)
        self.assertEqual(self.start_logs(doc, "redis"), ["redis.1.log", "redis.log"])
        acc = ev["account"]
        self.assertEqual(acc["dropped"], 0)  # a bus outage drops no client
        lg = doc["loadgen"]
        # a loss is the finding, not a harness failure: the run fails exactly when something was lost
        self.assertEqual(p.returncode, 1 if lg["totals"]["missing"] else 0, self.show(p))
        self.assertEqual(acc["lost"], lg["totals"]["missing"])


if __name__ == "__main__":
    unittest.main()
