#!/usr/bin/env python3
"""make bench-scale: the broadcast at 10k, 30k and 100k clients, through our lb and straight to the nodes, in one go,
beside the kernel's own floor for the same N.

For each N and each path it plans and starts the topology as `make scenario broadcast-100k` would (scenarios/plan.py
picks the lb workers, node workers and loadgen workers and sources), runs loadgen, and samples every process of the
run (the lb's, the nodes', Redis, loadgen's, each with its children) a few times a second. It reports:

  delivery p50 / p99        loadgen's histogram over every delivery
  connect rate              clients connected / connect phase
  RSS per client            per process class: (RSS of all its processes while every client is connected and
                            idle, in a 4 s hold before the rounds - their RSS before loadgen) / N;
                            loadgen: (its workers' peak RSS - workers x the RSS of a 1-client loadgen) / N
  CPU per delivered message CPU seconds of every process during the rounds / deliveries
  floor                     ../shared/bench/fanout-floor.c for the same N: one process holds both ends of its
                            connections, so above (nofile - 10) / 2 the N is split over k processes that run at once,
                            and the floor is the slowest of their medians (all of them share the 2 cores, as the
                            real run's processes do)
  p99 / floor               the target at 100k through the lb is <= 3x

Writes results/bench/scale-<UTC time>.txt and .json. Exit 0 when every run delivered everything, 1 otherwise
(targets missed are reported, not fatal). Usage: bench/scale.py [--sizes 10000,30000,100000] [--paths lb,direct]
[--rounds N]
"""
import argparse
import datetime
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scenarios"))
import plan as planner  # noqa: E402
import scenario  # noqa: E402

FLOOR_SRC = os.path.join(ROOT, "..", "shared", "bench", "fanout-floor.c")
TICK = os.sysconf("SC_CLK_TCK")
CLASSES = ("lb", "refserver", "redis", "loadgen")
HOLD_S = 4  # seconds every client is held connected and idle before the rounds: memory is read in the middle


def log(msg):
    print(f"bench-scale: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# sampling processes


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def stat(pid):
    """(cpu ticks, rss bytes) of one process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return None


def klass(name):
    if name in ("lb", "haproxy", "nginx"):
        return "lb"
    if name == "redis":
        return "redis"
    if name == "loadgen":
        return "loadgen"
    return "refserver"


class Sampler:
    """Per class: RSS summed over its processes (the peak), and CPU ticks per process (the last seen: a process
    that exits keeps what it used), with a timeline of each class's total CPU to cut the rounds out of."""

    def __init__(self, run):
        self.run, self.peak, self.cpu, self.timeline = run, {c: 0 for c in CLASSES}, {}, []

    def sample(self):
        rss = {c: 0 for c in CLASSES}
        for proc in self.run.procs:
            c = klass(proc.name)
            for pid in tree(proc.pid):
                s = stat(pid)
                if s:
                    self.cpu[pid] = (c, s[0])
                    rss[c] += s[1]
        for c in CLASSES:
            self.peak[c] = max(self.peak[c], rss[c])
        totals = {c: 0 for c in CLASSES}
        for c, ticks in self.cpu.values():
            totals[c] += ticks
        self.timeline.append((time.monotonic(), totals, rss))
        return rss

    def rss_at(self, t):
        """RSS per class at the sample nearest t."""
        return min(self.timeline, key=lambda row: abs(row[0] - t))[2]

    def cpu_between(self, t0, t1):
        """CPU seconds per class between two monotonic times (the nearest samples)."""
        def at(t):
            return min(self.timeline, key=lambda row: abs(row[0] - t))[1]
        a, b = at(t0), at(t1)
        return {c: (b[c] - a[c]) / TICK for c in CLASSES}


# ---------------------------------------------------------------------------------------------------------------
# the kernel's floor


def build_floor(build):
    binary = os.path.join(build, "fanout-floor")
    if not os.path.exists(FLOOR_SRC):
        return None
    if subprocess.call(["cc", "-O2", "-o", binary, FLOOR_SRC]) != 0:
        raise SystemExit("bench-scale: cannot compile " + FLOOR_SRC)
    return binary


def run_floor(binary, n, rounds):
    """The floor for N: k processes of N/k connections at once; (median ms, max ms, k), the slowest process's."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per = max(1, (nofile - 10) // 2)
    k = math.ceil(n / per)
    procs = [subprocess.Popen([binary, str(math.ceil(n / k)), str(rounds)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for _ in range(k)]
    medians, maxes = [], []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            out = ""
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its forked reader may outlive a failed writer
            except OSError:
                pass
        words = out.split()
        if "median" not in words:
            log(f"fanout-floor {n}/{k} failed: {out.strip()[-200:]}")
            return None
        medians.append(float(words[words.index("median") + 1]))
        maxes.append(float(words[words.index("max") + 1].rstrip(";")))
    return max(medians), max(maxes), k


# ---------------------------------------------------------------------------------------------------------------
# one run


def one_run(n, path, rounds, out_root, extra=()):
    sets = [f"clients={n}", f"rounds={rounds}", f"hold={HOLD_S}s",
            "topology.lb=" + ("builtin" if path == "lb" else "none")] + list(extra)
    _, conf = scenario.load("broadcast-100k", sets)
    conf, p = scenario.make_plan(conf, quiet=True)
    if p.problems:
        return {"n": n, "path": path, "error": "; ".join(p.problems)}
    tuned = planner.apply_sysctls(p)
    run = scenario.Run(f"bench-scale-{n}-{path}", "bench", conf, out_root, quiet=True)
    sampler = Sampler(run)
    try:
        run.start()
        time.sleep(1)
        idle = sampler.sample()
        started = time.monotonic()
        rc = run.loadgen(on_tick=sampler.sample)
        ended = time.monotonic()
        died = [q.name for q in run.procs if q.name != "loadgen" and not q.alive()]
    finally:
        run.stop()
        planner.restore_sysctls(tuned)
    with open(run.loadgen_json) as f:
        report = json.load(f)
    ph = report["phases"]
    t0 = ended - ph["total_ms"] / 1e3
    t0 = max(t0, started)
    held = t0 + ph["connect_ms"] / 1e3  # every client connected and quiet: memory per client is read here
    r0 = held + HOLD_S
    cpu = sampler.cpu_between(r0, r0 + ph["rounds_ms"] / 1e3)
    rss = sampler.rss_at(held + HOLD_S / 2)
    delivered = report["totals"]["received"]
    workers = report["self"]["workers"]
    return {
        "n": n, "path": path, "exit_code": rc, "died": died, "plan": dict(p),
        "delivery": report["totals"]["delivery"], "delivered": delivered,
        "closed_clean": report["clients"]["closed_clean"], "connected": report["clients"]["connected"],
        "p50_ms": report["latency"]["p50_ms"], "p99_ms": report["latency"]["p99_ms"],
        "connect_per_s": report["clients"]["connected"] / max(ph["connect_ms"] / 1e3, 1e-3),
        "rss_per_client": {c: (rss[c] - idle[c]) / n for c in ("lb", "refserver")},
        "rss_peak_per_client": {c: (sampler.peak[c] - idle[c]) / n for c in ("lb", "refserver")},
        "loadgen_rss_kb": [w["rss_kb"] for w in workers],
        "cpu_rounds_s": cpu,
        "cpu_per_message_us": {c: cpu[c] / max(delivered, 1) * 1e6 for c in CLASSES},
        "rounds_ms": ph["rounds_ms"], "connect_ms": ph["connect_ms"], "close_ms": ph["close_ms"],
        "loadgen_workers": len(workers), "reasons": report["verdict"]["reasons"],
    }


def loadgen_unit_rss(build, extra=()):
    """A 1-client loadgen worker's RSS (KB): straight to a standalone node, connect and close only."""
    run = scenario.Run("bench-scale-base", "bench", scenario.load("broadcast-100", ["clients=2", "rounds=0"] + list(extra))[1],
                       None, quiet=True)
    run.conf = scenario.make_plan(run.conf, quiet=True)[0]
    try:
        run.start()
        run.loadgen()
    finally:
        run.stop()
    with open(run.loadgen_json) as f:
        return max(w["rss_kb"] for w in json.load(f)["self"]["workers"])


# ---------------------------------------------------------------------------------------------------------------
# the report


def table(rows, floors, base_kb):
    out = []
    head = (f"{'N':>7} {'path':<6} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} {'floor ms':>9} {'p99/floor':>9} "
            f"{'conn/s':>7} {'KB/cl lb':>8} {'KB/cl ref':>9} {'KB/cl lg':>8} {'us/msg':>7}  cpu/msg lb/ref/redis/lg us")
    out.append(head)
    for r in rows:
        if "error" in r:
            out.append(f"{r['n']:>7} {r['path']:<6} could not run: {r['error']}")
            continue
        fl = floors.get(r["n"])
        ratio = f"{r['p99_ms'] / fl[0]:.2f}x" if fl and fl[0] > 0 else "-"
        lg = (sum(r["loadgen_rss_kb"]) - base_kb * len(r["loadgen_rss_kb"])) / r["n"] if base_kb else float("nan")
        per = r["cpu_per_message_us"]
        lbkb = f"{r['rss_per_client']['lb'] / 1024:.2f}" if r["path"] == "lb" else "-"
        out.append(
            f"{r['n']:>7} {r['path']:<6} {r['delivery'] * 100:>8.2f}% {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{(fl[0] if fl else float('nan')):>9.1f} {ratio:>9} {r['connect_per_s']:>7.0f} {lbkb:>8} "
            f"{r['rss_per_client']['refserver'] / 1024:>9.2f} {lg:>8.2f} {sum(per.values()):>7.2f}  "
            + "/".join(f"{per[c]:.2f}" for c in CLASSES))
        r["loadgen_rss_per_client_kb"] = lg
        if r["exit_code"] != 0 or r["died"]:
            out.append(f"{'':>7} FAILED: exit {r['exit_code']}; {'; '.join(r['reasons'])} "
                       f"{'died: ' + ', '.join(r['died']) if r['died'] else ''}")
    out.append("")
    out.append("floor: fanout-floor at the same N (k processes at once above the descriptor limit: " +
               ", ".join(f"N={n} k={f[2]} median {f[0]:.1f} ms max {f[1]:.1f} ms" for n, f in floors.items()) + ")")
    out.append("targets at 100k through the lb: 100% delivered, no failed close, p99 <= 3x floor; per client "
               "lb <= 1.2 KB, refserver <= 1 KB, loadgen <= 1 KB")
    return out


def main():
    ap = argparse.ArgumentParser(description="broadcast at scale, through the lb and direct, beside the floor")
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--paths", default="lb,direct")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a scenario key for every run, as scenarios/run --set takes it")
    ap.add_argument("--no-floor", action="store_true", help="skip fanout-floor")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    paths = args.paths.split(",")
    build = scenario.ensure_built()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_root = os.path.join(ROOT, "results", "bench", f"scale-{stamp}")
    floor_bin = None if args.no_floor else build_floor(build)
    base_kb = loadgen_unit_rss(build, args.set)
    rows, floors = [], {}
    for n in sizes:
        if floor_bin:
            log(f"floor at N={n}")
            f = run_floor(floor_bin, n, 20)
            if f:
                floors[n] = f
        for path in paths:
            log(f"N={n} {path}")
            rows.append(one_run(n, path, args.rounds, out_root, args.set))
    lines = table(rows, floors, base_kb)
    print("\n".join(lines))
    os.makedirs(os.path.dirname(out_root), exist_ok=True)
    with open(out_root + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(out_root + ".json", "w") as f:
        json.dump({"time": stamp, "rows": rows, "floors": {str(k): v for k, v in floors.items()},
                   "loadgen_unit_rss_kb": base_kb}, f, indent=1)
    log(f"written {os.path.relpath(out_root, ROOT)}.txt and .json")
    bad = [r for r in rows if "error" in r or r["exit_code"] != 0 or r["died"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
