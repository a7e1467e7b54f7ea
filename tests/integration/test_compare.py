"""Integration tests for scenarios/compare and hlogdump --percentiles (the data behind its latency plot).

hlogdump --percentiles is checked on a log whose values are known (hlogdump --write); compare runs a small
broadcast-100 through our lb, HAProxy and nginx once each and the report, its ratios and both images are checked.
Run: python3 -m unittest discover -s tests/integration -p 'test_*.py' -v   (WSH_BUILD selects the build directory)
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness as h

HLOGDUMP = os.path.join(h.BUILD, "hlogdump")
COMPARE = os.path.join(h.REPO, "scenarios", "compare")
if not os.access(HLOGDUMP, os.X_OK):
    raise RuntimeError(f"{HLOGDUMP} is not built (set WSH_BUILD or run make)")


def have(program):
    return shutil.which(program) or os.access(f"/usr/sbin/{program}", os.X_OK)


def run(argv, timeout=60 * h.SLOW):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=h.REPO)
    bad = [m for m in h.SANITIZER_MARKERS if m in p.stderr]
    if bad:
        raise AssertionError(f"{argv}: sanitizer report {bad}:\n{p.stderr[-4000:]}")
    return p


def browser_dom(path):
    """The DOM headless Chromium builds from the page at path (the report as a browser reads it)."""
    chromium = shutil.which("chromium")
    if not chromium:
        raise AssertionError("chromium is not installed (scripts/deps.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                            "--dump-dom", "file://" + os.path.abspath(path)],
                           capture_output=True, text=True, timeout=60 * h.SLOW)
    if p.returncode != 0 or "<html" not in p.stdout:
        raise AssertionError(f"chromium --dump-dom {path}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p.stdout


def parse_percentiles(text):
    """(rows, footer): rows as lists of numbers (4 per row, 3 on the last), footer {'max': ms, 'total': n}."""
    rows, footer = [], {}
    for line in text.splitlines():
        m = re.match(r"#\[Max\s*=\s*([\d.]+), Total count\s*=\s*(\d+)\]", line)
        if m:
            footer = {"max": float(m.group(1)), "total": int(m.group(2))}
        if not line.strip() or line.startswith("#") or line.split()[0] == "Value":
            continue
        rows.append([float(x) for x in line.split()])
    return rows, footer


class HlogdumpPercentiles(unittest.TestCase):
    N = 10000

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wsh-pct-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.hlog = os.path.join(cls.dir, "t.hlog")
        p = run([HLOGDUMP, "--write", cls.hlog, "42", str(cls.N)])
        if p.returncode != 0:
            raise RuntimeError(f"hlogdump --write: exit {p.returncode}: {p.stderr}")
        cls.written = json.loads(p.stdout)["intervals"]
        # the decoded intervals' max (the top bucket's highest value: what the distribution must end at)
        p = run([HLOGDUMP, cls.hlog])
        cls.decoded_max = [int(re.search(r"max=(\d+)", line).group(1)) for line in p.stdout.splitlines()]

    def percentiles(self, *opts):
        p = run([HLOGDUMP, "--percentiles", *opts, self.hlog])
        self.assertEqual(p.returncode, 0, p.stderr)
        return parse_percentiles(p.stdout)

    def check_distribution(self, rows, footer, count, exact_max, decoded_max):
        self.assertGreater(len(rows), 20)
        for r in rows[:-1]:
            self.assertEqual(len(r), 4, r)
            self.assertAlmostEqual(r[3], 1 / (1 - r[1]), delta=0.01 + r[3] * 1e-6)
        for a, b in zip(rows, rows[1:]):
            self.assertLessEqual(a[0], b[0], f"value not monotonic: {a} then {b}")
            self.assertLess(a[1], b[1], f"percentile not increasing: {a} then {b}")
            self.assertLessEqual(a[2], b[2], f"count not monotonic: {a} then {b}")
        self.assertEqual(rows[0][1], 0.0)
        last = rows[-1]
        self.assertEqual(len(last), 3, last)
        self.assertEqual(last[1], 1.0)
        self.assertEqual(int(last[2]), count)
        self.assertEqual(footer["total"], count)
        last_ns = round(last[0] * 1e6)
        self.assertEqual(last_ns, decoded_max)
        self.assertEqual(round(footer["max"] * 1e6), decoded_max)
        # the recorded max, to within the histogram's 3 significant digits
        self.assertGreaterEqual(last_ns, exact_max)
        self.assertLessEqual(last_ns, exact_max * 1.001)
        # HdrHistogram's ticks: 5 per half distance to 100%, so 0.1, 0.2, ... 0.5, then 0.55 ...
        levels = [r[1] for r in rows[:-1]]
        self.assertEqual([round(x, 6) for x in levels[:8]], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6])

    def test_every_interval_merged(self):
        rows, footer = self.percentiles()
        self.check_distribution(rows, footer, self.N, max(i["max"] for i in self.written), max(self.decoded_max))

    def test_untagged_and_tagged(self):
        rows, footer = self.percentiles("--untagged")
        self.check_distribution(rows, footer, self.written[0]["count"], self.written[0]["max"], self.decoded_max[0])
        rows, footer = self.percentiles("--tag", "ws")
        self.check_distribution(rows, footer, self.written[1]["count"], self.written[1]["max"], self.decoded_max[1])

    def test_nothing_selected_is_empty(self):
        rows, footer = self.percentiles("--tag", "nope")
        self.assertEqual(rows, [])
        self.assertEqual(footer["total"], 0)

    def test_usage(self):
        self.assertEqual(run([HLOGDUMP, "--percentiles"]).returncode, 2)
        self.assertEqual(run([HLOGDUMP, "--percentiles", "--bogus", self.hlog]).returncode, 2)


@unittest.skipUnless(have("haproxy") and have("nginx") and have("redis-server"), "needs haproxy, nginx, redis-server")
class Compare(unittest.TestCase):
    def test_three_balancers(self):
        p = run([COMPARE, "broadcast-100", "--runs", "1", "--set", "clients=20", "--set", "rounds=3"],
                timeout=120 * h.SLOW)
        m = re.search(r"^report: (.+)$", p.stdout, re.M)
        self.assertTrue(m, f"no report path\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
        report = os.path.join(h.REPO, m.group(1))
        out_dir = os.path.dirname(report)
        self.assertEqual(p.returncode, 0, f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
        self.assertRegex(os.path.basename(out_dir), r"^compare-\d{8}T\d{6}Z")
        with open(report, encoding="utf-8") as f:
            text = f.read()

        header = next(line for line in text.splitlines() if line.startswith("| balancer | p50 |"))
        cols = [c.strip() for c in header.strip("|").split("|")]
        table = {}
        for line in text.splitlines()[text.splitlines().index(header) + 2:]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            table[cells[0]] = dict(zip(cols, cells))
        self.assertEqual(sorted(table), ["HAProxy", "builtin (our lb)", "nginx"], text)
        for lb, row in table.items():
            self.assertEqual(row["verdicts"], "1/1 PASS", row)
            self.assertEqual(row["delivered/expected"], "57/57", row)  # 19 receivers x 3 rounds
            for c in ("p50", "p99", "max", "connect p99"):
                self.assertGreater(float(row[c]), 0, row)
            for c in ("p50 vs HAProxy", "p99 vs HAProxy"):
                self.assertRegex(row[c], r"^\d+\.\d\d$", row)
        self.assertEqual(table["HAProxy"]["p50 vs HAProxy"], "1.00")
        self.assertEqual(table["HAProxy"]["p99 vs HAProxy"], "1.00")
        self.assertIn("nginx ran with sticky = source", text)
        self.assertIn("(latency.png)", text)
        self.assertIn("(latency.svg)", text)
        self.assertIn("HAProxy version", text)
        self.assertIn("nginx version", text)
        self.assertIn("clients = 20", text)
        self.assertIn("Spread over the runs, min / median / max (ms):", text)
        spread = text[text.index("Spread over the runs"):]
        self.assertRegex(spread, r"\| HAProxy \| 1 \| (\d+\.\d\d) / \1 / \1 \|")  # one run: min = median = max

        page = os.path.join(out_dir, "report.html")
        self.assertIn(f"html report: {os.path.relpath(page, h.REPO)}", p.stdout)
        dom = browser_dom(page)
        self.assertEqual(len(re.findall(r'<polyline class="series"', dom)), 3, "one percentile curve per balancer")
        self.assertIn("Spread over the runs: min / median / max (ms)", dom)

        with open(os.path.join(out_dir, "latency.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(out_dir, "latency.svg"), "rb") as f:
            head = f.read(200).lstrip()
        self.assertTrue(head.startswith(b"<?xml") or head.startswith(b"<svg"), head[:40])
        self.assertGreater(os.path.getsize(os.path.join(out_dir, "latency.svg")), 1000)
        shutil.rmtree(out_dir)  # kept when an assertion fails, for a look

    def test_unknown_scenario_is_a_usage_error(self):
        p = run([COMPARE, "no-such-scenario-xyz"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no scenario", p.stderr)
        self.assertNotIn("report:", p.stdout)

    def test_bad_options_are_usage_errors(self):
        for args in (["--lbs", "builtin,squid"], ["--runs", "0"], ["--set", "clients=abc"], ["--set", "lb=nginx"]):
            p = run([COMPARE, "broadcast-100", *args])
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")


if __name__ == "__main__":
    unittest.main()
