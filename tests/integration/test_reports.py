"""Integration tests for the HTML reports (scenarios/htmlreport.py): a real run's page, read back by headless
Chromium and checked for its plots; results/index.html over a results tree; the spread rules compare uses.
Run: python3 -m unittest discover -s tests/integration -p 'test_*.py' -v   (WSH_BUILD selects the build directory)
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness as h
from test_compare import browser_dom

SCENARIOS = os.path.join(h.REPO, "scenarios")
sys.path.insert(0, SCENARIOS)
import htmlreport  # noqa: E402


class Spread(unittest.TestCase):
    def test_spread_ignores_missing_values(self):
        self.assertEqual(htmlreport.spread([3.0, None, 1.0, 2.0]), (1.0, 2.0, 3.0))
        self.assertIsNone(htmlreport.spread([None]))

    def test_ratio_meaningless_when_ranges_overlap(self):
        # compare's example from the issue: runs of 8.4, 89.3 and 20.0 ms against a steady side
        self.assertEqual(htmlreport.ratio_meaningless((8.4, 20.0, 89.3), (10.0, 11.0, 12.0)),
                         "the runs' ranges overlap")
        self.assertEqual(htmlreport.ratio_meaningless((1.0, 1.5, 2.5), (3.0, 3.1, 3.2)),
                         "a side's runs differ by more than 2x")
        self.assertIsNone(htmlreport.ratio_meaningless((1.0, 1.1, 1.2), (2.0, 2.1, 2.2)))
        self.assertIsNone(htmlreport.ratio_meaningless(None, (2.0, 2.1, 2.2)))

    def test_chart_draws_one_polyline_per_series_inside_its_box(self):
        svg = htmlreport.svg_chart([("a", [(1, 0.0), (2, 5.0)]), ("b<c", [(1, 1.0), (2, 2.0)])], title="t",
                                   xlabel="x", ylabel="y")
        lines = re.findall(r'<polyline class="series" data-label="([^"]*)"[^>]*points="([^"]*)"', svg)
        self.assertEqual([label for label, _ in lines], ["a", "b&lt;c"])
        for _, points in lines:
            for pair in points.split():
                x, y = (float(v) for v in pair.split(","))
                self.assertTrue(0 <= x <= 760 and 0 <= y <= 340, pair)


class RunPage(unittest.TestCase):
    """One small real run: its page and the index over a results tree that holds it."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="wsh-reports-")
        runs = os.path.join(cls.root, "runs")
        cls.p = subprocess.run([os.path.join(SCENARIOS, "run"), "broadcast-100", "--set", "clients=20",
                                "--set", "rounds=4", "--out", runs, "--quiet"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=120 * h.SLOW, cwd=h.REPO)
        found = glob.glob(os.path.join(runs, "broadcast-100", "*.json"))
        cls.result_path = found[0] if len(found) == 1 else None

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.p.returncode, 0, self.p.stderr[-3000:])
        self.assertTrue(self.result_path, os.listdir(self.root))

    def test_run_page_has_its_plots_as_chromium_reads_it(self):
        page = os.path.splitext(self.result_path)[0] + ".html"
        self.assertIn(f"report {os.path.relpath(page, h.REPO)}", self.p.stderr)
        dom = browser_dom(page)
        self.assertIn("broadcast-100 via builtin", dom)
        self.assertIn('class="pass">PASS (exit 0)', dom)
        percentiles = re.search(r'<svg class="percentiles".*?</svg>', dom, re.S)
        self.assertTrue(percentiles, "no percentile plot")
        points = re.findall(r'points="([^"]*)"', percentiles.group(0))
        self.assertEqual(len(points), 1)
        self.assertGreater(len(points[0].split()), 5, "a percentile curve of a handful of points")
        rounds = re.search(r'<svg class="rounds".*?</svg>', dom, re.S)
        self.assertTrue(rounds, "no per-round plot")
        curves = re.findall(r'data-label="(p50|p99|max)"[^>]*points="([^"]*)"', rounds.group(0))
        self.assertEqual([c for c, _ in curves], ["p50", "p99", "max"])
        self.assertTrue(all(len(p.split()) == 4 for _, p in curves), "one point per round")
        self.assertIn("delivery&gt;=100%", dom)  # the scenario's threshold, listed with its verdict
        self.assertIn("✓ pass", dom)

    def test_index_lists_the_run_and_links_its_page(self):
        index = htmlreport.index(self.root)
        with open(index, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("broadcast-100 via builtin", text)
        links = re.findall(r'<a href="([^"]+)">', text)
        self.assertEqual(len(links), 1, links)
        self.assertTrue(os.path.exists(os.path.join(self.root, links[0])), links[0])
        with open(self.result_path, encoding="utf-8") as f:
            p99 = json.load(f)["loadgen"]["latency"]["p99_ms"]
        self.assertIn(f"<td>{p99:.3f}</td>", text)

    def test_index_draws_a_trend_once_a_scenario_has_two_runs(self):
        copy = os.path.join(os.path.dirname(self.result_path), "19990101T000000000Z-builtin.json")
        with open(self.result_path, encoding="utf-8") as f:
            doc = json.load(f)
        doc["time"] = "1999-01-01T00:00:00+00:00"
        with open(copy, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        try:
            with open(htmlreport.index(self.root), encoding="utf-8") as f:
                text = f.read()
        finally:
            os.unlink(copy)
        trend = re.search(r'<svg class="trend".*?</svg>', text, re.S)
        self.assertTrue(trend, "no trend plot")
        self.assertEqual(len(re.findall(r'<polyline class="series"', trend.group(0))), 2)  # p50 and p99
        # newest first: the copy dated 1999 is listed last
        times = re.findall(r'<a href="[^"]+">([^<]+)</a>', text)
        self.assertEqual(times[-1], "1999-01-01T00:00:00+00:00")


if __name__ == "__main__":
    unittest.main()
