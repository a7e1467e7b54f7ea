"""HTML reports: one page per scenario run, per compare and per gate, and results/index.html over every run kept.

Each page is self-contained (inline CSS and SVG drawn here, no script, no external file) so it reads the same
opened from a CI artifact, a mail or a checkout. The percentile plot comes from the run's .hlog through
build/hlogdump, as in compare's gnuplot plot, so both show the same numbers."""
import glob
import html
import json
import math
import os
import statistics
import subprocess
import tempfile

import scenario

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
HISTS = (("delivery latency", "latency"), ("service time (uncorrected)", "service_time"), ("connect", "connect"),
         ("handshake", "handshake"))
QUANTILES = (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms"), ("max", "max_ms"))
# x positions of the percentile ticks: x = 1/(1-percentile)
PERCENTILE_TICKS = (("0%", 1), ("90%", 10), ("99%", 100), ("99.9%", 1e3), ("99.99%", 1e4), ("99.999%", 1e5),
                    ("99.9999%", 1e6))
CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.pass{color:#137333;font-weight:600}.fail{color:#c5221f;font-weight:600}
.note{color:#555}svg{background:#fff}pre{background:#f6f6f6;padding:.6em;overflow:auto}"""


def esc(v):
    return html.escape(str(v))


def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def hlogdump():
    """build/hlogdump (built on demand), or None."""
    for d in (scenario.build_dir(), os.path.join(scenario.ROOT, "build")):
        path = os.path.join(d, "hlogdump")
        if os.access(path, os.X_OK):
            return path
    subprocess.call(["make", "-C", scenario.ROOT, "-s", "build/hlogdump"], stdout=subprocess.DEVNULL)
    path = os.path.join(scenario.ROOT, "build", "hlogdump")
    return path if os.access(path, os.X_OK) else None


def percentile_rows(tool, hlogs):
    """hlogdump --percentiles --untagged (the delivery latency: connect and handshake are tagged) over the .hlog
    files concatenated, so all their intervals merge: the rows (value_ms, percentile, total_count,
    1/(1-percentile)) but the last (100%, which has no x on a log plot)."""
    with tempfile.NamedTemporaryFile("w", suffix=".hlog", delete=False) as tmp:
        for path in hlogs:
            with open(path, encoding="utf-8") as f:
                tmp.write(f.read())
    try:
        p = subprocess.run([tool, "--percentiles", "--untagged", tmp.name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(tmp.name)
    if p.returncode == 2:
        rel = os.path.relpath(tool, scenario.ROOT)
        raise RuntimeError(f"{rel} has no --percentiles mode: rebuild it (make {rel})")
    if p.returncode != 0:
        raise RuntimeError(f"hlogdump --percentiles failed: {p.stderr.strip()}")
    rows = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and not line.startswith("#"):
            try:
                rows.append(tuple(float(x) for x in parts))
            except ValueError:
                pass  # the header
    return rows


def percentile_series(label, hlogs):
    """(label, [(x, ms)]) for a percentile plot of the .hlog files merged, or (None, why not)."""
    hlogs = [h for h in hlogs if h and os.path.isfile(h)]
    if not hlogs:
        return None, f"{label}: no .hlog"
    tool = hlogdump()
    if not tool:
        return None, "build/hlogdump is missing and could not be built"
    try:
        rows = percentile_rows(tool, hlogs)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return None, f"{label}: {e}"
    if not rows:
        return None, f"{label}: no deliveries recorded"
    return (label, [(r[3], r[0]) for r in rows]), None


def nice_step(span, count=5, integer=False):
    raw = span / count if span > 0 else 1
    if integer:
        raw = max(raw, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def svg_chart(series, *, title, xlabel, ylabel, log_x=False, xticks=None, kind="chart"):
    """An SVG line chart of series [(label, [(x, y)])], y from 0. log_x: x on a log10 scale (percentile plots);
    xticks: [(label, x)] instead of numbers (otherwise x counts things: whole-number ticks)."""
    w, h, left, right, top, bottom = 760, 340, 64, 16, 44, 46
    pts = [p for _, s in series for p in s]
    if not pts:
        return ""
    xs = [math.log10(max(x, 1e-12)) if log_x else x for x, _ in pts]
    x0, x1 = min(xs), max(xs)
    if log_x:
        x0, x1 = 0.0, max(x1, 4.0)
    x1 = x1 if x1 > x0 else x0 + 1
    ystep = nice_step(max(y for _, y in pts) or 1)
    ytop = ystep * math.ceil((max(y for _, y in pts) or 1) / ystep)

    def px(x):
        v = math.log10(max(x, 1e-12)) if log_x else x
        return left + (v - x0) / (x1 - x0) * (w - left - right)

    def py(y):
        return top + (1 - y / ytop) * (h - top - bottom)

    out = [f'<svg class="{esc(kind)}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}">',
           f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">{esc(title)}</text>']
    y = 0.0
    while y <= ytop + ystep / 2:
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:g}</text>')
        y += ystep
    if xticks is None:
        step = nice_step(x1 - x0, integer=True)
        xticks = [(f"{v:g}", v) for v in (x0 + i * step for i in range(int((x1 - x0) / step) + 1))]
    for label, x in xticks:
        if (math.log10(x) if log_x else x) <= x1 + 1e-9:
            out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{h - bottom}" stroke="#f0f0f0"/>'
                       f'<text x="{px(x):.1f}" y="{h - bottom + 16}" text-anchor="middle" font-size="11">'
                       f'{esc(label)}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="12">{esc(xlabel)}</text>'
               f'<text x="14" y="{h / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {h / 2})">{esc(ylabel)}</text>')
    for i, (label, s) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)
        out.append(f'<polyline class="series" data-label="{esc(label)}" fill="none" stroke="{colour}" '
                   f'stroke-width="2" points="{path}"/>')
        out.append(f'<text x="{left + 150 * i}" y="{top - 8}" fill="{colour}" font-size="12">&#9632; {esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def table(header, rows):
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title, parts):
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{CSS}</style></head><body>\n' + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def verdict_html(ok, text=None):
    return f'<span class="{"pass" if ok else "fail"}">{esc(text or ("PASS" if ok else "FAIL"))}</span>'


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)  # a reader never sees half a page
    return path


def provenance(result):
    """" · commit …, N cores, kernel …" from the result's build and machine records, when it has them."""
    build, machine = result.get("build") or {}, result.get("machine") or {}
    out = f" · commit {build['commit']}" if build.get("commit") else ""
    if machine.get("cores"):
        out += f" · {machine['cores']} cores"
    if machine.get("kernel_release"):
        out += f", kernel {machine['kernel_release']}"
    return esc(out)


def run_page(result, result_path):
    """Write the run's page beside its result JSON (same name, .html); its path."""
    lg = result.get("loadgen") or {}
    verdict = lg.get("verdict") or {}
    ok = result.get("exit_code") == 0
    title = f"{result['scenario']} via {result['lb']}"
    word = f"{'PASS' if ok else 'FAIL'} (exit {result.get('exit_code')})"
    parts = [f"<h1>{esc(title)}: {verdict_html(ok, word)}</h1>",
             f'<p class="note">{esc(result.get("time", ""))} · {esc(result.get("file", ""))} · '
             f'loadgen {esc(lg.get("version", "–"))} on {esc(lg.get("host", "–"))}{provenance(result)}</p>']
    reasons = ([result["error"]] if result.get("error") else []) + list(verdict.get("reasons") or [])
    if reasons:
        parts.append("<h2>Why it failed</h2><ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    if verdict.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in verdict["warnings"]) + "</ul>")
    if lg.get("thresholds"):
        parts.append("<h2>Thresholds</h2>" + table(
            ["threshold", "actual", "verdict"],
            [[esc(t.get("expr")), esc(fmt(t.get("actual"))), verdict_html(t.get("ok"), "✓ pass" if t.get("ok")
                                                                           else "✗ fail")]
             for t in lg["thresholds"]]))
    rows = []
    for label, key in HISTS:
        hst = lg.get(key) or {}
        if hst.get("count"):
            rows.append([esc(label), hst["count"]] + [esc(fmt(hst.get(k))) for _, k in QUANTILES])
    if rows:
        parts.append("<h2>Latency (ms)</h2>" + table(["", "count"] + [q for q, _ in QUANTILES], rows))
    tot, cl = lg.get("totals") or {}, lg.get("clients") or {}
    if tot or cl:
        parts.append("<h2>Delivery and clients</h2>" + table(
            list(tot) + list(cl), [[esc(fmt(v)) for v in list(tot.values()) + list(cl.values())]]))
    hlog = os.path.join(scenario.ROOT, result["hlog"]) if result.get("hlog") else None
    series, why = percentile_series("delivery latency", [hlog])
    if series:
        parts.append("<h2>Latency by percentile</h2>" + svg_chart(
            [series], title="delivery latency by percentile", xlabel="percentile", ylabel="ms", log_x=True,
            xticks=PERCENTILE_TICKS, kind="percentiles"))
    elif lg:
        parts.append(f'<p class="note">no percentile plot: {esc(why)}</p>')
    rounds = [r for r in lg.get("rounds") or [] if r.get("p50_ms") is not None]
    if rounds:
        per = [(q, [(r["round"], r[k]) for r in rounds if r.get(k) is not None])
               for q, k in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms"))]
        parts.append("<h2>Per round</h2>" + svg_chart(per, title="delivery latency per round", xlabel="round",
                                                       ylabel="ms", kind="rounds"))
        keys = ["round", "emitted", "expected", "received", "missing", "duplicate", "reordered", "late",
                "lateness_ms", "p50_ms", "p99_ms", "max_ms"]
        parts.append(table(keys, [[esc(fmt(r.get(k))) for k in keys] for r in lg["rounds"]]))
    if result.get("faults"):
        keys = ["dropped", "reconnect_p50_ms", "reconnect_p99_ms", "never_back", "back_after_ms",
                "missed_while_away", "lost", "whole_after_ms"]
        parts.append("<h2>Faults</h2>" + table(["event"] + keys, [
            [esc(f.get("line"))] + [esc(fmt((f.get("account") or {}).get(k))) for k in keys]
            for f in result["faults"]]))
    if lg.get("nodes"):
        parts.append("<h2>Clients per node</h2>" + table(["node", "clients"],
                                                          [[esc(k), v] for k, v in sorted(lg["nodes"].items())]))
    parts.append("<h2>Settings</h2><pre>" + esc(json.dumps(result.get("settings"), indent=1)) + "</pre>")
    base = os.path.splitext(result_path)[0]
    return write(base + ".html", page(title, parts))


def summary_page(path, title, intro, sections, notes=(), plot_series=()):
    """A compare's or gate's page: intro lines, sections [(heading, header, rows of plain cells)], notes, and a
    percentile plot of plot_series [(label, [hlog paths])] (each label's runs merged)."""
    parts = [f"<h1>{esc(title)}</h1>"] + [f"<p>{esc(line)}</p>" for line in intro]
    for heading, header, rows in sections:
        parts.append(f"<h2>{esc(heading)}</h2>" + table(header, [[esc(c) for c in row] for row in rows]))
    series, why = [], []
    for label, hlogs in plot_series:
        s, w = percentile_series(label, hlogs)
        (series.append(s) if s else why.append(w))
    if series:
        parts.append("<h2>Latency by percentile</h2>" + svg_chart(
            series, title="delivery latency by percentile, each side's runs merged", xlabel="percentile",
            ylabel="ms", log_x=True, xticks=PERCENTILE_TICKS, kind="percentiles"))
    notes = list(notes) + [f"not plotted: {w}" for w in why]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return write(path, page(title, parts))


def spread(values):
    """(min, median, max) of the values that are not None, or None."""
    vals = [v for v in values if v is not None]
    return (min(vals), statistics.median(vals), max(vals)) if vals else None


def spread_text(s, digits=2):
    return "–" if s is None else f"{s[0]:.{digits}f} / {s[1]:.{digits}f} / {s[2]:.{digits}f}"


def ratio_meaningless(a, b):
    """Why the ratio of two spreads' medians says nothing, or None: their min-max ranges overlap (the difference is
    inside the run-to-run noise) or a side varied by more than 2x between its runs."""
    if a is None or b is None:
        return None
    if a[0] <= b[2] and b[0] <= a[2]:
        return "the runs' ranges overlap"
    if a[0] > 0 and a[2] / a[0] > 2 or b[0] > 0 and b[2] / b[0] > 2:
        return "a side's runs differ by more than 2x"
    return None


def _runs(root):
    """Every scenario result under root: (path, result), oldest first."""
    out = []
    for path in glob.glob(os.path.join(root, "**", "*.json"), recursive=True):
        if os.path.basename(path) in ("loadgen.json", "measured.json"):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == "wsh-scenario/1":
            out.append((path, doc))
    return sorted(out, key=lambda r: (r[1].get("time") or "", r[0]))


def index(results_root=None):
    """Write results/index.html: per scenario and balancer, the trend of delivery p50/p99 over its runs and the runs
    themselves (newest first, linked to their pages), then the compare and gate reports. Its path."""
    results_root = results_root or os.path.join(scenario.ROOT, "results")
    runs_root = os.path.join(results_root, "runs")
    groups = {}
    for path, doc in _runs(runs_root):
        groups.setdefault((doc.get("scenario"), doc.get("lb")), []).append((path, doc))
    parts = ["<h1>wsharness results</h1>",
             f'<p class="note">{sum(len(g) for g in groups.values())} runs in '
             f"{esc(os.path.relpath(runs_root, results_root))}/, by scenario and balancer; each run's page has its "
             "plots and settings.</p>"]
    for (name, lb), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        lat = [((d.get("loadgen") or {}).get("latency") or {}) for _, d in rs]
        trend = [(q, [(i + 1, h[k]) for i, h in enumerate(lat) if h.get("count") and h.get(k) is not None])
                 for q, k in (("p50", "p50_ms"), ("p99", "p99_ms"))]
        passed = sum(1 for _, d in rs if d.get("exit_code") == 0)
        parts.append(f"<h2>{esc(name)} via {esc(lb)}</h2><p>{len(rs)} runs, {passed} passed.</p>")
        if len(trend[0][1]) >= 2:
            parts.append(svg_chart(trend, title=f"{name} via {lb}: delivery latency over its runs",
                                   xlabel="run (oldest first)", ylabel="ms", kind="trend"))
        rows = []
        for path, d in reversed(rs[-20:]):
            page_path = os.path.splitext(path)[0] + ".html"
            link = os.path.relpath(page_path if os.path.exists(page_path) else path, results_root)
            h = ((d.get("loadgen") or {}).get("latency") or {})
            rows.append([f'<a href="{esc(link)}">{esc(d.get("time"))}</a>',
                         verdict_html(d.get("exit_code") == 0), esc(fmt(h.get("p50_ms"))), esc(fmt(h.get("p99_ms"))),
                         esc(h.get("count", "–"))])
        parts.append(table(["run", "verdict", "p50 ms", "p99 ms", "deliveries"], rows))
    reports = sorted(glob.glob(os.path.join(runs_root, "*", "report.html")), reverse=True)
    if reports:
        parts.append("<h2>Compare and gate reports</h2><ul>" + "".join(
            f'<li><a href="{esc(os.path.relpath(p, results_root))}">{esc(os.path.basename(os.path.dirname(p)))}'
            f"</a></li>" for p in reports) + "</ul>")
    return write(os.path.join(results_root, "index.html"), page("wsharness results", parts))
