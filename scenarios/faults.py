"""A scenario's [faults] timeline: parse it, play it against a running topology while loadgen runs, and account for
each event from loadgen's report.

A line is `at DURATION ACTION`, the time counted from loadgen's start (the connect phase included: put the first
event after it; the result says when one came too early). Actions:

    kill node NAME        SIGKILL to the node (its workers die with it): a crash
    stop node NAME        SIGTERM: the node closes its clients with 1001 and exits
    start node NAME       the node again, same port and arguments; waits until it answers
    restart node NAME     stop, then start
    stop redis | start redis | restart redis     the embedded Redis, same port (SIGTERM: nothing persisted)
    reload lb             our lb: SIGHUP; HAProxy (-W): SIGUSR2; nginx: SIGHUP
    stop lb | start lb    SIGTERM to the balancer; the same balancer again
    rolling restart nodes each node in turn: drained at the balancer (our lb's admin API, HAProxy's runtime API;
                          nginx has none: it is not drained), SIGTERM, started, ready, put back in rotation

Each event's account comes from loadgen's JSON (`start_unix_ms`, `reconnect.episodes`, `rounds[]`), over the
window from the event to the next one (or the end): clients dropped, reconnect p50/p99 (loss to usable again),
clients never back, messages missed while away and lost (owed while connected), the time until every client
dropped in the window was back, and the time until delivery was whole again (the first round from the event on with
nothing lost or missed and an emitter present).
"""

import re
import time

DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)")
UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0}
TARGETS = {
    "kill": ("node",), "stop": ("node", "redis", "lb"), "start": ("node", "redis", "lb"),
    "restart": ("node", "redis"), "reload": ("lb",), "rolling": ("restart",),
}
LINE = re.compile(r"at\s+(\S+)\s+(kill|stop|start|restart|reload|rolling)\s+(node|redis|lb|restart)(?:\s+(\S+))?")


class FaultError(Exception):
    """A [faults] line that does not parse, or one this topology cannot play; str() says which and why."""


def parse_line(line):
    """'at 5s kill node n2' -> {'at_s': 5.0, 'action': 'kill', 'target': 'node', 'name': 'n2', 'line': ...}."""
    m = LINE.fullmatch(line.strip())
    if not m:
        raise FaultError(f"'{line}' is not a fault such as 'at 5s kill node n2', 'at 10s restart redis', "
                         "'at 12s reload lb', 'at 3s rolling restart nodes'")
    when, action, target, name = m.groups()
    d = DURATION.fullmatch(when)
    if not d:
        raise FaultError(f"'{line}': the time '{when}' needs a unit (ms, s, m), e.g. at 5s")
    if target not in TARGETS[action]:
        raise FaultError(f"'{line}': {action} applies to {' or '.join(TARGETS[action])}")
    if action == "rolling":
        if name != "nodes":
            raise FaultError(f"'{line}': expected 'rolling restart nodes'")
        target, name = "nodes", None
    elif target == "node" and not name:
        raise FaultError(f"'{line}': which node? e.g. node n1")
    elif target != "node" and name:
        raise FaultError(f"'{line}': {target} takes no name")
    return {"at_s": float(d.group(1)) * UNIT_S[d.group(2)], "action": action, "target": target, "name": name,
            "line": re.sub(r"\s+", " ", line.strip())}


def check(events, conf):
    """Rules between the timeline and the topology; a list of messages."""
    out, nodes = [], {f"n{i + 1}" for i in range(conf["topology"]["nodes"])}
    for e in events:
        if e["target"] == "node" and e["name"] not in nodes:
            out.append(f"'{e['line']}': no node {e['name']} (nodes: {', '.join(sorted(nodes))})")
        if e["target"] == "lb" and conf["topology"]["lb"] == "none":
            out.append(f"'{e['line']}' needs a balancer (lb = none)")
        if e["target"] == "redis" and conf["topology"]["redis"] != "embedded":
            out.append(f"'{e['line']}' needs redis = embedded (the runner cannot restart another Redis)")
    if events and not conf["load"]["reconnect"]:
        out.append("a [faults] timeline needs reconnect = yes in [load]: without it a dropped client stays gone")
    times = [e["at_s"] for e in events]
    if times != sorted(times):
        out.append("[faults] lines must be in time order")
    return out


class Timeline:
    """The events to play against topo (a scenario.Run) from t0 (time.time() at loadgen's start). poll() plays
    those that are due; the runner calls it from its main thread, because a process started from another thread
    would get its parent-death signal when that thread ends. Each played event's record gets `unix_ms` (when it
    began), `took_ms`, `did` (what happened) and `error` (or None)."""

    def __init__(self, topo, events, t0):
        self.topo, self.pending, self.t0 = topo, list(events), t0
        self.records = []

    def poll(self):
        while self.pending and time.time() >= self.t0 + self.pending[0]["at_s"]:
            rec = dict(self.pending.pop(0), unix_ms=time.time() * 1000.0)
            try:
                rec["did"], rec["error"] = self.topo.fault(rec), None
            except Exception as ex:  # noqa: BLE001 - the run goes on; the record says what failed
                rec["did"], rec["error"] = None, str(ex)
            rec["took_ms"] = round(time.time() * 1000.0 - rec["unix_ms"], 1)
            self.records.append(rec)


def _pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def account(records, report):
    """Each played event with its account from loadgen's report (schema wsh-loadgen/1 with --reconnect)."""
    if not report or "start_unix_ms" not in report:
        return [dict(r, account=None) for r in records]
    zero = report["start_unix_ms"]
    rec_ = report.get("reconnect") or {}
    episodes = rec_.get("episodes") or []
    rounds = report.get("rounds") or []
    connect_end = (report.get("phases") or {}).get("connect_ms", 0.0)
    end = report.get("phases", {}).get("total_ms", float("inf"))
    out = []
    for i, r in enumerate(records):
        start = r["unix_ms"] - zero
        stop = records[i + 1]["unix_ms"] - zero if i + 1 < len(records) else end
        lost_here = [(a, b) for a, b in episodes if start <= a < stop]
        away = [b - a for a, b in lost_here if b is not None]
        never = sum(1 for _, b in lost_here if b is None)
        backs = [b for _, b in lost_here if b is not None]
        in_window = [x for x in rounds if start <= x["start_ms"] < stop]
        whole = next((x for x in rounds if x["start_ms"] >= start and not x.get("emitter_gone")
                      and x["missing"] == 0 and x.get("missed_while_away", 0) == 0 and x["emitted"] > 0), None)
        out.append(dict(r, account={
            "at_ms": round(start, 1),
            "during_connect": start < connect_end,
            "dropped": len(lost_here),
            "reconnect_p50_ms": _pct(away, 0.50),
            "reconnect_p99_ms": _pct(away, 0.99),
            "never_back": never,
            "back_after_ms": (round(max(backs) - start, 1) if backs and not never else None),
            "rounds": len(in_window),
            "emitter_gone": sum(1 for x in in_window if x.get("emitter_gone")),
            "missed_while_away": sum(x.get("missed_while_away", 0) for x in in_window),
            "lost": sum(x["missing"] for x in in_window),
            "whole_after_ms": round(whole["start_ms"] - start, 1) if whole else None,
        }))
    return out


def _ms(v):
    return "-" if v is None else f"{v:.0f}"


def table(accounted):
    """The fault accounts as text lines for the terminal."""
    head = (f"{'at':>7} {'event':<26} {'dropped':>7} {'recon p50':>9} {'recon p99':>9} {'never':>5} "
            f"{'back ms':>8} {'missed':>7} {'lost':>5} {'whole ms':>8}")
    lines = [head]
    for r in accounted:
        a = r.get("account")
        event = r["line"].split(None, 2)[2]
        if r["error"]:
            lines.append(f"{r['at_s']:>6.1f}s {event:<26} FAILED: {r['error']}")
            continue
        if not a:
            lines.append(f"{r['at_s']:>6.1f}s {event:<26} (no account: loadgen's report is missing)")
            continue
        lines.append(f"{a['at_ms'] / 1000:>6.1f}s {event:<26} {a['dropped']:>7} {_ms(a['reconnect_p50_ms']):>9} "
                     f"{_ms(a['reconnect_p99_ms']):>9} {a['never_back']:>5} {_ms(a['back_after_ms']):>8} "
                     f"{a['missed_while_away']:>7} {a['lost']:>5} {_ms(a['whole_after_ms']):>8}"
                     + ("  (during the connect phase)" if a["during_connect"] else ""))
    return lines


def play(topo, e):
    """Do one event to topo (a scenario.Run); what happened, as text. Raises on failure."""
    import signal
    act, target, name = e["action"], e["target"], e["name"]
    if target == "nodes":
        return rolling_restart(topo)
    if target == "lb":
        name = topo.lb if topo.lb != "builtin" else "lb"
        if act == "reload":
            return topo.signal_lb(signal.SIGUSR2 if topo.lb == "haproxy" else signal.SIGHUP)
    name = name or target
    if act == "kill":
        return topo.kill(name, signal.SIGKILL)
    if act == "stop":
        return topo.kill(name, signal.SIGTERM)
    if act == "start":
        return topo.respawn(name)
    return topo.kill(name, signal.SIGTERM) + "; " + topo.respawn(name)  # restart


def rolling_restart(topo):
    """Each node in turn: out of rotation at the balancer, SIGTERM (its clients get 1001 and reconnect elsewhere),
    started again, answering, back in rotation. A rolling deploy."""
    import signal
    steps = []
    for i in range(topo.conf["topology"]["nodes"]):
        node = f"n{i + 1}"
        drained = topo.set_node_state(node, "drain")
        steps.append(f"{node}: " + ("drained, " if drained else "not drained (no admin API), ")
                     + topo.kill(node, signal.SIGTERM) + ", " + topo.respawn(node))
        if drained and not topo.set_node_state(node, "ready"):
            raise RuntimeError(f"{node} could not be put back in rotation")
        topo.wait_node_up(node)  # the balancer routes to it again before the next one goes
    return "; ".join(steps)
