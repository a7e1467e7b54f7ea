"""Scenarios: a named topology and load in an .ini file, run on loopback and judged by loadgen.

This module is the runner's library (scenarios/run, scenarios/gate and scenarios/compare are thin command lines over
it, and the tests import it). It reads a scenario file strictly (every mistake reported with its line), starts
redis-server, the refserver nodes and the balancer on free ports (our lb, HAProxy or nginx, whose configurations it
writes), waits until each answers, runs loadgen, writes the results, and stops every process it started, by PID, on
success, on failure and on Ctrl-C. Standard library only: it must run wherever the project builds.

Exit codes (the runner's, which are loadgen's where loadgen ran): 0 pass, 1 verification or threshold failure,
2 bad scenario or usage, 3 the topology could not start or loadgen could not connect.
"""

import ctypes
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import faults as faultlib
import plan as planner

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_SETUP = 0, 1, 2, 3
LOADGEN_STOP_S = 30.0  # an interrupted loadgen's close phase and report, before it is killed
LBS = ("builtin", "haproxy", "nginx", "none")
STICKY = ("cookie", "source", "none")
DURATION = re.compile(r"^(\d+(\.\d+)?)(ns|us|ms|s|m|h)$")
THRESHOLD = re.compile(r"[a-z0-9_.]+\s*(<=|>=|<|>)\s*[0-9.]+(ns|us|ms|s|m|h|%)?")
UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(Exception):
    """A mistake in a scenario file or a --set: str() is the whole message, with file and line."""


class SetupError(Exception):
    """The topology could not be started (a missing program, a process that died, a port that never opened)."""


# ---------------------------------------------------------------------------------------------------------------
# the scenario file


def _int(lo, hi):
    def parse(v):
        if not re.fullmatch(r"\d+", v) or not lo <= int(v) <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}, got '{v}'")
        return int(v)
    return parse


def _choice(*options):
    def parse(v):
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got '{v}'")
        return v
    return parse


def _duration(v):
    if not DURATION.match(v):
        raise ValueError(f"expected a duration with a unit (ns, us, ms, s, m, h), e.g. 500ms, got '{v}'")
    return v


def _bool(v):
    if v not in ("yes", "no", "true", "false", "on", "off"):
        raise ValueError(f"expected yes or no, got '{v}'")
    return v in ("yes", "true", "on")


def _ratio(v):
    try:
        f = float(v)
    except ValueError:
        f = -1
    if not 0 <= f <= 100 or not re.fullmatch(r"\d+(\.\d+)?", v):
        raise ValueError(f"expected a fraction such as 0.5 (50% worse allowed), got '{v}'")
    return f


def _redis(v):
    if v != "embedded" and not re.match(r"^rediss?://", v):
        raise ValueError(f"expected 'embedded' or a redis:// or rediss:// URL, got '{v}'")
    return v


def _targets(v):
    """A comma-separated list of ws://, wss://, http:// or https:// URLs (loadgen's URL forms), or empty."""
    urls = [u.strip() for u in v.split(",") if u.strip()]
    for u in urls:
        if not re.fullmatch(r"(wss?|https?)://[^/\s:]+(:\d{1,5})?(/\S*)?", u):
            raise ValueError(f"expected ws://, wss://, http:// or https:// URLs separated by commas, got '{u}'")
    return urls


def _source(v):
    if v and v != "auto" and not re.fullmatch(r"[0-9a-fA-F.:,\-]+", v):
        raise ValueError(f"expected addresses such as 127.0.0.2-127.0.0.40, or auto, got '{v}'")
    return v


def _auto_int(lo, hi):
    """A count, or auto: the plan (scenarios/plan.py) computes it from the client count."""
    whole = _int(lo, hi)

    def parse(v):
        if v == "auto":
            return v
        try:
            return whole(v)
        except ValueError:
            raise ValueError(f"expected auto or a whole number from {lo} to {hi}, got '{v}'") from None
    return parse


def _text(v):
    return v


def _event(v):
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", v):
        raise ValueError(f"expected an event name such as chat (letters, digits, _ . : -), got '{v}'")
    return v


# [load] keys whose value runs to the end of the line: loadgen --send, --find and --on-open (JSON, regexes).
RAW_KEYS = ("send", "find", "on_open")


# section -> key -> (parser, default); None as default: required.
SCHEMA = {
    "scenario": {
        "description": (_text, None),
    },
    "topology": {
        "nodes": (_int(1, 32), 2),
        "redis": (_redis, "embedded"),
        "lb": (_choice(*LBS), "builtin"),
        "sticky": (_choice(*STICKY), "cookie"),
        "lb_workers": (_auto_int(1, 256), "auto"),
        "node_workers": (_auto_int(1, 64), "auto"),
        "ping_interval": (_duration, "25s"),
        "target": (_targets, ""),
    },
    "load": {
        "clients": (_int(1, 1000000), None),
        "protocol": (_choice("websocket", "socketio"), "websocket"),
        "event": (_event, "chat"),
        "transport": (_choice("websocket", "polling"), "websocket"),
        "upgrade": (_bool, "yes"),
        "rounds": (_int(0, 100000), 10),
        "interval": (_duration, "500ms"),
        "duration": (_duration, "0s"),
        "payload": (_int(87, 16 * 1024 * 1024), 100),
        "rooms": (_int(1, 1000000), 1),
        "spectators": (_int(0, 1000000), 0),
        "emitters": (_int(1, 1000000), 1),
        "connect_rate": (_int(0, 10000000), 0),
        "max_inflight": (_int(1, 1000000), 256),
        "loadgen_workers": (_auto_int(1, 256), "auto"),
        "source": (_source, "auto"),
        "deadline": (_duration, "5s"),
        "hold": (_duration, "0s"),
        "churn": (_int(0, 100000), 0),
        "churn_gap": (_duration, "100ms"),
        "reconnect": (_bool, False),
        "send": (_text, ""),
        "find": (_text, ""),
        "on_open": (_text, ""),
    },
    "thresholds": {},  # free lines: loadgen --threshold expressions
    "faults": {},  # free lines: the fault timeline (faults.py)
    "gate": {
        "enabled": (_bool, False),
        "tolerance": (_ratio, 1.0),
        "runs": (_int(1, 20), 3),
    },
}


def parse_text(text, name="<scenario>"):
    """Parse a scenario's text into {section: {key: value}} with defaults filled in and 'thresholds' a list.
    Raises ScenarioError listing every mistake, one per line, each as "name:LINE: message"."""
    errors, seen = [], {}
    conf = {s: {} for s in SCHEMA}
    conf["thresholds"], conf["faults"] = [], []
    section = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip() if not raw.strip().startswith(("#", ";")) else ""
        if not line:
            continue

        def err(msg, lineno=lineno):
            errors.append(f"{name}:{lineno}: {msg}")

        m = re.fullmatch(r"\[([a-z_]+)\]", line)
        if m:
            section = m.group(1)
            if section not in SCHEMA:
                err(f"unknown section [{section}] (sections: {', '.join('[' + s + ']' for s in SCHEMA)})")
                section = "?"
            continue
        if section is None:
            err("a key before any [section]")
            continue
        if section == "?":
            continue
        if section == "thresholds":
            if not THRESHOLD.fullmatch(line):
                err(f"'{line}' is not a threshold such as p99<50ms, connect.p95<1s, errors<1%, delivery>=99.9%")
            else:
                conf["thresholds"].append(re.sub(r"\s+", "", line))
            continue
        if section == "faults":
            try:
                conf["faults"].append(faultlib.parse_line(line))
            except faultlib.FaultError as e:
                err(str(e))
            continue
        if "=" not in line:
            err(f"expected key = value, got '{line}'")
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        if section == "load" and key in RAW_KEYS:  # JSON and regexes hold '#' and ';': no comment after these
            value = raw.split("=", 1)[1].strip()
        if key not in SCHEMA[section]:
            err(f"unknown key '{key}' in [{section}] (keys: {', '.join(SCHEMA[section])})")
            continue
        if (section, key) in seen:
            err(f"'{key}' given twice in [{section}] (first on line {seen[section, key]})")
            continue
        seen[section, key] = lineno
        try:
            conf[section][key] = SCHEMA[section][key][0](value)
        except ValueError as e:
            err(f"{key}: {e}")
    for section, keys in SCHEMA.items():
        for key, (_, default) in keys.items():
            if key in conf[section] or (section, key) in seen:  # seen with a bad value: already reported
                continue
            if default is None:
                errors.append(f"{name}: [{section}] {key} is required")
            else:
                conf[section][key] = default
    if not errors:
        errors = [f"{name}: {e}" for e in check(conf, seen)]
    if errors:
        raise ScenarioError("\n".join(errors))
    return conf


def check(conf, given=()):
    """Rules between keys; a list of messages. given: the (section, key) pairs written out (not defaults)."""
    out = []
    t, load = conf["topology"], conf["load"]
    if t["target"]:
        ours = [k for k in ("nodes", "redis", "lb", "sticky", "lb_workers", "node_workers", "ping_interval")
                if ("topology", k) in given]
        if ours:
            out.append(f"target names servers this runner does not start: {', '.join(ours)} cannot be set with it")
        if conf.get("faults"):
            out.append("[faults] need a topology this runner starts: not with target")
    if t["lb"] == "nginx" and t["sticky"] == "cookie":
        out.append("sticky = cookie needs lb = builtin or haproxy: open-source nginx cannot insert a sticky cookie "
                   "(use sticky = source)")
    if (load["event"] != "chat" or ("load", "event") in given) and load["protocol"] != "socketio":
        out.append(f"event = {load['event']} needs protocol = socketio")
    if (load["transport"] != "websocket" or ("load", "upgrade") in given) and load["protocol"] != "socketio":
        out.append("transport and upgrade need protocol = socketio")
    if seconds(load["duration"]) > 0 and ("load", "rounds") in given:
        out.append("rounds and duration together: give one (duration = 0s runs a count of rounds)")
    if load["emitters"] > load["clients"]:
        out.append(f"emitters ({load['emitters']}) cannot exceed clients ({load['clients']})")
    if load["rooms"] > load["clients"]:
        out.append(f"rooms ({load['rooms']}) cannot exceed clients ({load['clients']})")
    if load["spectators"] > 0 and load["spectators"] + load["rooms"] > load["clients"]:
        out.append(f"spectators + rooms ({load['spectators']} + {load['rooms']}) cannot exceed clients "
                   f"({load['clients']})")
    return out + faultlib.check(conf.get("faults", []), conf)


def apply_sets(conf, sets, name="--set"):
    """Apply 'section.key=value' or 'key=value' (a key found in one section only) overrides; returns conf."""
    errors, given = [], set()
    for item in sets:
        if "=" not in item:
            errors.append(f"{name} '{item}': expected key=value")
            continue
        key, value = (p.strip() for p in item.split("=", 1))
        if "." in key:
            section, key = key.split(".", 1)
        elif key in ("thresholds", "threshold", "faults", "fault"):
            section = "thresholds" if key.startswith("threshold") else "faults"
        else:
            owners = [s for s in SCHEMA if key in SCHEMA[s]]
            section = owners[0] if len(owners) == 1 else None
        if section == "thresholds":
            if THRESHOLD.fullmatch(value):
                conf["thresholds"].append(re.sub(r"\s+", "", value))
            else:
                errors.append(f"{name} '{item}': '{value}' is not a threshold such as p99<50ms, errors<1%")
            continue
        if section == "faults":
            try:
                conf["faults"].append(faultlib.parse_line(value))
                conf["faults"].sort(key=lambda e: e["at_s"])
            except faultlib.FaultError as e:
                errors.append(f"{name} '{item}': {e}")
            continue
        if section not in SCHEMA or key not in SCHEMA[section]:
            errors.append(f"{name} '{item}': unknown key")
            continue
        try:
            conf[section][key] = SCHEMA[section][key][0](value)
            given.add((section, key))
        except ValueError as e:
            errors.append(f"{name} '{item}': {e}")
    errors += [f"{name}: {e}" for e in check(conf, given)]
    if errors:
        raise ScenarioError("\n".join(errors))
    return conf


def find(name):
    """The scenario file for NAME (scenarios/NAME.ini) or a path."""
    if os.sep in name or name.endswith(".ini"):
        path = name
    else:
        path = os.path.join(HERE, name + ".ini")
    if not os.path.isfile(path):
        known = sorted(f[:-4] for f in os.listdir(HERE) if f.endswith(".ini"))
        raise ScenarioError(f"no scenario '{name}' ({path} not found); known: {', '.join(known)}")
    return path


def load(name, sets=()):
    path = find(name)
    with open(path, encoding="utf-8") as f:
        conf = parse_text(f.read(), os.path.relpath(path, os.getcwd()))
    return path, apply_sets(conf, sets)


def seconds(duration):
    m = DURATION.match(duration)
    return float(m.group(1)) * UNIT_S[m.group(3)]


# ---------------------------------------------------------------------------------------------------------------
# processes


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    """In the child: its own session (a terminal's Ctrl-C reaches only the runner, which stops everything in
    order), and SIGTERM when the runner dies, so not even a SIGKILLed runner leaves processes behind."""
    os.setsid()
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the plan counts on the hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    """A process we started: its log file, and a stop() that ends it by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name, argv, log_path, cwd=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "wb")
        self.log.write(("$ " + " ".join(argv) + "\n").encode())
        self.log.flush()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                  cwd=cwd, preexec_fn=_child_setup)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=5.0):
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()
        return self.p.returncode

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


class Ports:
    """Free loopback ports, never the same one twice in one run."""

    def __init__(self):
        self.taken = set()

    def take(self):
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self.taken:
                self.taken.add(port)
                return port
        raise SetupError("no free port")


def wait_for(what, pred, procs, timeout):
    """Poll pred() until true; SetupError when timeout passes or a process we started has died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if not p.alive():
                raise SetupError(f"{p.name} exited ({p.p.returncode}) while waiting for {what}:\n{p.tail()}")
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(port, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(64)
    return re.match(rb"HTTP/1\.[01] 200", data) is not None


def http_post(port, path):
    """POST path on 127.0.0.1:port; True on a 2xx answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(64)
    return re.match(rb"HTTP/1\.[01] 2", data) is not None


def haproxy_command(path, command):
    """One command on HAProxy's runtime API (its stats socket); True when it answered without an error."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return not answer.strip() or not re.search(rb"(?i)unknown|error|not found|require", answer)


def redis_pong(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def tool(name, env_var=None):
    """The path of a program we need, or SetupError with how to get it."""
    path = os.environ.get(env_var) if env_var else None
    if path and not os.access(path, os.X_OK):
        raise SetupError(f"{env_var}={path} is not an executable program")
    path = path or shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        raise SetupError(f"{name} is not installed: run `make deps` (or apt-get install {name})")
    return path


def build_dir():
    return os.environ.get("WSH_BUILD") or os.path.join(ROOT, "build")


def ensure_built():
    """Build the binaries when one is missing (make also installs missing Debian packages)."""
    build = build_dir()
    if all(os.access(os.path.join(build, b), os.X_OK) for b in ("refserver", "loadgen", "lb")):
        return build
    print("scenario: building (make all)", file=sys.stderr)
    if subprocess.call(["make", "-C", ROOT, "-s", "all"]) != 0:
        raise SetupError("the build failed (make all)")
    return build


# ---------------------------------------------------------------------------------------------------------------
# balancer configurations


def lb_conf(conf, listen, admin, nodes):
    t = conf["topology"]
    lines = [f"# written by scenarios/scenario.py for lb = builtin",
             f"listen 127.0.0.1:{listen}", f"admin 127.0.0.1:{admin}"]
    lines += [f"backend n{i + 1} 127.0.0.1:{port}" for i, port in enumerate(nodes)]
    lines += [f"sticky {t['sticky']}", "balance roundrobin", f"workers {t['lb_workers']}",
              "health path=/ interval=1s timeout=500ms rise=2 fall=2",
              # grace as long as a tunnel: a reload never cuts one, as HAProxy without hard-stop-after and nginx
              # without worker_shutdown_timeout (lb-reload compares them); at the end loadgen has closed everything
              "timeout tunnel 1h", "timeout grace 1h"]  # max-connections: the lb derives it from its descriptors
    if t.get("lb_source"):  # set by the plan when one address cannot reach a node fast enough (plan.py)
        lines.append(f"source {t['lb_source']}")
    return "\n".join(lines) + "\n"


def haproxy_maxconn(conf):
    # HAProxy needs 2 descriptors per proxied connection and refuses a maxconn whose total exceeds the hard limit.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    load = conf["load"]
    per_client = 2 if load["protocol"] == "socketio" and load["transport"] == "polling" else 1  # a GET and a POST
    return max(100, min(load["clients"] * per_client + 100, (limit - 100) // 2))


def haproxy_cfg(conf, listen, nodes, admin_socket=None):
    t = conf["topology"]
    sticky = t["sticky"]
    servers = "\n".join(
        f"    server n{i + 1} 127.0.0.1:{port} check inter 1s rise 2 fall 2"
        + (f" cookie n{i + 1}" if sticky == "cookie" else "")
        for i, port in enumerate(nodes))
    return f"""# written by scenarios/scenario.py for lb = haproxy
global
    maxconn {haproxy_maxconn(conf)}
    nbthread {t['lb_workers']}
{f"    stats socket {admin_socket} mode 600 level admin" if admin_socket else ""}

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    timeout http-request 10s

frontend fe
    bind 127.0.0.1:{listen}
    default_backend nodes

backend nodes
    balance {'source' if sticky == 'source' else 'roundrobin'}
    hash-type consistent
    option httpchk GET /
    # as HAProxy's docs advise with cookie persistence, and as our lb does: a refused connect tries another node
    option redispatch
    retries 3
{"    cookie SRVID insert indirect nocache" if sticky == "cookie" else ""}
{servers}
"""


def nginx_conf(conf, listen, nodes, run_dir):
    t = conf["topology"]
    nofile = planner.read_machine()["nofile"]
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in nodes)
    hashing = "        hash $remote_addr consistent;\n" if t["sticky"] == "source" else ""
    return f"""# written by scenarios/scenario.py for lb = nginx
daemon off;
worker_processes {t['lb_workers']};
worker_rlimit_nofile {nofile};
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections {nofile - planner.RESERVE_FDS}; }}
http {{
    access_log off;
    client_body_temp_path {run_dir}/nginx-body;
    proxy_temp_path {run_dir}/nginx-proxy;
    fastcgi_temp_path {run_dir}/nginx-fastcgi;
    uwsgi_temp_path {run_dir}/nginx-uwsgi;
    scgi_temp_path {run_dir}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream nodes {{
{hashing}{servers}
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


# ---------------------------------------------------------------------------------------------------------------
# running


def loadgen_argv(conf, build, urls, out_json, out_hlog, junit=None):
    load = conf["load"]
    length = ["--duration", load["duration"]] if seconds(load["duration"]) > 0 else ["--rounds", str(load["rounds"])]
    argv = [os.path.join(build, "loadgen"), "-c", str(load["clients"]), *length,
            "--interval", load["interval"], "--payload", str(load["payload"]), "--emitters", str(load["emitters"]),
            "--deadline", load["deadline"], "--workers", str(load["loadgen_workers"]),
            "--max-inflight", str(load["max_inflight"]), "--out", out_json, "--hlog", out_hlog]
    if load["protocol"] == "socketio":
        argv += ["--protocol", "socketio", "--event", load["event"], "--transport", load["transport"]]
        if not load["upgrade"]:
            argv += ["--no-upgrade"]
    if load["rooms"] > 1:
        argv += ["--rooms", str(load["rooms"]), "--room", "room"]
    if load["spectators"] > 0:
        argv += ["--spectators", str(load["spectators"])]
    if load["connect_rate"]:
        argv += ["--connect-rate", str(load["connect_rate"])]
    if load["source"]:
        argv += ["--source", load["source"]]
    if seconds(load["hold"]) > 0:
        argv += ["--hold", load["hold"]]
    if load["churn"] > 0:
        argv += ["--churn", str(load["churn"]), "--churn-gap", load["churn_gap"]]
    if load["reconnect"]:
        argv += ["--reconnect"]
    for key, flag in (("send", "--send"), ("find", "--find"), ("on_open", "--on-open")):
        if load[key]:
            argv += [flag, load[key]]
    for t in conf["thresholds"]:
        argv += ["--threshold", t]
    if junit:
        argv += ["--junit", junit]
    return argv + urls


class LogTail:
    """Passes a log's new complete lines to stdout as they come (loadgen's header, progress and summary), the first
    line (the command) left out."""

    def __init__(self, path):
        self.path, self.pos, self.skip = path, 0, True

    def pump(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        if not end:
            return
        self.pos += end
        lines = data[:end].splitlines(keepends=True)
        if self.skip:
            lines, self.skip = lines[1:], False
        sys.stdout.write(b"".join(lines).decode(errors="replace"))
        sys.stdout.flush()


def build_info(report):
    """The build a run used: loadgen's own account when it wrote one, else the commit of this tree."""
    if report and report.get("build"):
        return report["build"]
    try:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"commit": commit or "unknown"}


def machine_info():
    """Cores, memory and kernel of this machine, as loadgen's report names them."""
    u = os.uname()
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        pass
    return {"cores": os.cpu_count(), "memory_kb": mem, "kernel": u.sysname, "kernel_release": u.release,
            "arch": u.machine}


class Run:
    """One run of a scenario: start() the topology, loadgen(), and stop() (always, in a finally)."""

    def __init__(self, name, path, conf, out_root=None, quiet=False, junit=None):
        self.name, self.path, self.conf, self.quiet = name, path, conf, quiet
        self.junit = os.path.abspath(junit) if junit else None
        self.loadgen_json, self.tail = None, None
        self.target = conf["topology"]["target"]
        self.lb = "external" if self.target else conf["topology"]["lb"]
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
        self.stamp = stamp.replace(".", "")
        out_root = out_root or os.path.join(ROOT, "results", "runs")
        self.out_dir = os.path.join(out_root, name)
        self.base = os.path.join(self.out_dir, f"{self.stamp}-{self.lb}")
        self.run_dir = self.base  # logs and generated configs
        os.makedirs(self.run_dir, exist_ok=True)
        self.procs, self.ports, self.topology = [], Ports(), {}
        self.specs = {}  # name -> (argv, ready predicate): what a fault's start or restart runs again
        self.faults = []  # the played [faults] events, with their accounts after the run

    def log(self, msg):
        if not self.quiet:
            print(f"scenario: {msg}", file=sys.stderr, flush=True)

    def spawn(self, name, argv, ready=None):
        """Start a process; with ready (a predicate), remember how to start it again for a fault."""
        if ready:
            self.specs[name] = (argv, ready)
        restarts = sum(1 for p in self.procs if p.name == name)
        log_name = name + (f".{restarts}" if restarts else "")
        p = Proc(name, argv, os.path.join(self.run_dir, log_name + ".log"))
        self.procs.append(p)
        return p

    def current(self, name):
        """The newest process of that name (after a fault restarted it), or None."""
        return next((p for p in reversed(self.procs) if p.name == name), None)

    def write(self, filename, text):
        path = os.path.join(self.run_dir, filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def start_redis(self):
        url = self.conf["topology"]["redis"]
        if url != "embedded":
            return url
        port = self.ports.take()
        p = self.spawn("redis", [tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], ready=lambda: redis_pong(port))
        wait_for("redis-server", lambda: redis_pong(port), [p], 15)
        self.topology["redis_port"] = port
        return f"redis://127.0.0.1:{port}"

    def start_nodes(self, build, redis_url):
        ports = []
        for i in range(self.conf["topology"]["nodes"]):
            port = self.ports.take()
            node = f"n{i + 1}"
            workers = self.conf["topology"]["node_workers"]
            # The node's keepalive: a ping after this much quiet, a close after 2.4 times it (the refserver's own
            # 25 s / 60 s ratio), so a longer interval never closes a client that answers its pings.
            ping = max(1, round(seconds(self.conf["topology"]["ping_interval"])))
            self.spawn(node, [os.path.join(build, "refserver"), "--listen", f"127.0.0.1:{port}", "--redis",
                              redis_url, "--node-id", node, "--ping-interval", str(ping),
                              "--idle-timeout", str(round(ping * 2.4) + 1)]
                       + (["--workers", str(workers)] if workers > 1 else []), ready=lambda port=port: http_ok(port))
            ports.append(port)
        for i, port in enumerate(ports):
            wait_for(f"node n{i + 1} on port {port}", lambda port=port: http_ok(port), self.procs, 15)
        self.topology["node_ports"] = ports
        return ports

    def start_balancer(self, build, nodes):
        """The URL(s) loadgen gets."""
        path = "/" if self.conf["load"]["protocol"] == "socketio" else "/ws"  # loadgen makes / into /socket.io/
        if self.lb == "none":
            return [f"ws://127.0.0.1:{p}{path}" for p in nodes]
        listen = self.ports.take()
        self.topology["lb_port"] = listen
        if self.lb == "builtin":
            admin = self.ports.take()
            cfg = self.write("lb.conf", lb_conf(self.conf, listen, admin, nodes))
            p = self.spawn("lb", [os.path.join(build, "lb"), "-c", cfg], ready=lambda: http_ok(admin, "/health"))
            wait_for("lb's /health", lambda: http_ok(admin, "/health"), [p] + self.procs, 15)
            self.topology["lb_admin_port"] = admin
        elif self.lb == "haproxy":
            haproxy = tool("haproxy", "HAPROXY")
            cfg = self.write("haproxy.cfg", haproxy_cfg(self.conf, listen, nodes, self.haproxy_socket()))
            check = subprocess.run([haproxy, "-c", "-f", cfg], capture_output=True, text=True)
            if check.returncode != 0:
                raise SetupError(f"haproxy -c rejects {cfg}:\n{check.stdout}{check.stderr}")
            # -W: master-worker mode, so that a reload (SIGUSR2) is HAProxy's hitless one, as deployed
            p = self.spawn("haproxy", [haproxy, "-W", "-f", cfg, "-db"], ready=lambda: http_ok(listen, "/"))
            wait_for("haproxy", lambda: http_ok(listen, "/"), [p] + self.procs, 15)
        else:
            nginx = tool("nginx", "NGINX")
            cfg = self.write("nginx.conf", nginx_conf(self.conf, listen, nodes, self.run_dir))
            args = ["-p", self.run_dir, "-c", cfg, "-e", os.path.join(self.run_dir, "nginx-error.log")]
            check = subprocess.run([nginx, "-t", "-q"] + args, capture_output=True, text=True)
            if check.returncode != 0:
                raise SetupError(f"nginx -t rejects {cfg}:\n{check.stdout}{check.stderr}")
            p = self.spawn("nginx", [nginx] + args, ready=lambda: http_ok(listen, "/"))
            wait_for("nginx", lambda: http_ok(listen, "/"), [p] + self.procs, 15)
        return [f"ws://127.0.0.1:{listen}{path}"]

    # ---- what a fault does to the topology (faults.py decides when and what) ----

    def fault(self, event):
        return faultlib.play(self, event)

    def kill(self, name, sig):
        """Send sig to the named process and wait for its exit; what happened, as text."""
        p = self.current(name)
        if p is None or not p.alive():
            raise SetupError(f"{name} is not running")
        self.expected_down.add(p)
        t = time.monotonic()
        p.p.send_signal(sig)
        try:
            rc = p.p.wait(30)
        except subprocess.TimeoutExpired:
            p.p.kill()
            rc = p.p.wait(5)
            return f"{name} (pid {p.pid}) did not exit within 30 s of {signal.Signals(sig).name}: killed"
        return f"{name} (pid {p.pid}) {signal.Signals(sig).name}: exited {rc} after {time.monotonic() - t:.2f} s"

    def respawn(self, name):
        """Start the named process again with its first argv (same port) and wait until it answers."""
        old = self.current(name)
        if old is not None and old.alive():
            raise SetupError(f"{name} is still running (pid {old.pid})")
        argv, ready = self.specs[name]
        t = time.monotonic()
        p = self.spawn(name, argv)
        wait_for(f"{name} to answer again", ready, [p], 15)
        return f"{name} started (pid {p.pid}), answering after {time.monotonic() - t:.2f} s"

    def signal_lb(self, sig):
        p = self.current(self.lb if self.lb != "builtin" else "lb")
        p.p.send_signal(sig)
        return f"{p.name} (pid {p.pid}) {signal.Signals(sig).name}"

    def set_node_state(self, node, state):
        """Take a node out of rotation (drain) or put it back (ready) at the balancer; False when it cannot."""
        if self.lb == "builtin":
            return http_post(self.topology["lb_admin_port"], f"/nodes/{node}/{state}")
        if self.lb == "haproxy":
            return haproxy_command(self.haproxy_socket(), f"set server nodes/{node} state {state}")
        return False

    def wait_node_up(self, node, timeout=10.0):
        """Until the balancer sees node up again: our lb's GET /nodes; the others' checks (rise 2, every 1 s) by
        waiting them out."""
        if self.lb != "builtin":
            time.sleep(3.0)
            return
        port = self.topology["lb_admin_port"]

        def up():
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                body = b""
                while chunk := s.recv(4096):
                    body += chunk
            return re.search(rb"(?m)^" + node.encode() + rb" \S+ up ", body) is not None
        wait_for(f"the lb to see {node} up", up, [], timeout)

    def haproxy_socket(self):
        # not in run_dir: a unix socket's path has at most 107 bytes, and a clone's path may be long
        return os.path.join("/tmp", f"wsh-haproxy-{os.getpid()}-{self.stamp}.sock")

    def start(self):
        self.expected_down = set()  # processes a fault ended on purpose: not reported as died
        build = ensure_built()
        self.build = build
        if self.target:  # servers we did not write, or did not start: loadgen only
            self.urls = list(self.target)
            self.topology["target"] = self.urls
            self.log(f"{self.name}: external target " + ", ".join(self.urls))
            return
        if self.conf["topology"]["redis"] == "embedded":
            self.log("starting redis-server")
        redis_url = self.start_redis()
        self.log(f"starting {self.conf['topology']['nodes']} node(s)")
        nodes = self.start_nodes(build, redis_url)
        if self.lb != "none":
            self.log(f"starting the balancer ({self.lb})")
        self.urls = self.start_balancer(build, nodes)
        self.log(f"{self.name}: {len(nodes)} node(s), lb {self.lb}, " + ", ".join(self.urls))

    def loadgen(self, on_tick=None):
        """Run loadgen in the foreground; returns its exit code. Its summary goes to stdout (and its log).
        on_tick: called every 0.1 s while loadgen runs (a benchmark's sampler)."""
        json_path, hlog_path = os.path.join(self.run_dir, "loadgen.json"), self.base + ".hlog"
        argv = loadgen_argv(self.conf, self.build, self.urls, json_path, hlog_path, self.junit)
        if self.quiet:
            argv.insert(1, "--quiet")
        self.loadgen_json = json_path  # set first: an interrupted run still has loadgen's partial report
        self.log("running loadgen")
        t0 = time.time()
        p = self.spawn("loadgen", argv)
        self.tail = None if self.quiet else LogTail(p.log_path)
        timeline = faultlib.Timeline(self, self.conf["faults"], t0)
        reported = set()
        while p.alive():
            timeline.poll()
            for other in self.procs:
                if other is not p and not other.alive() and other not in self.expected_down \
                        and other.name not in reported:
                    reported.add(other.name)
                    self.log(f"{other.name} died during the run:\n{other.tail()}")
            if on_tick:
                on_tick()
            if self.tail:
                self.tail.pump()
            time.sleep(0.1)
        rc = p.p.returncode
        self.faults = timeline.records
        if timeline.pending:
            self.log(f"{len(timeline.pending)} fault(s) never played: loadgen ended first")
        p.log.flush()
        if self.tail:
            self.tail.pump()
        return rc

    def stop(self):
        """Stop everything, newest first; returns the names of processes that died or would not stop."""
        bad = []
        for p in reversed(self.procs):
            if p.name != "loadgen" and not p.alive() and p not in self.expected_down:
                bad.append(f"{p.name} had exited ({p.p.returncode})")
            # loadgen, stopped early (an interrupted run), closes its clients and writes its partial report
            p.stop(timeout=LOADGEN_STOP_S if p.name == "loadgen" else 5.0)
            if p.name == "loadgen" and self.tail:
                self.tail.pump()
        if self.lb == "haproxy":
            try:
                os.unlink(self.haproxy_socket())
            except FileNotFoundError:
                pass
        return bad

    def write_result(self, rc, started, error=None):
        try:
            with open(self.loadgen_json, encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError, TypeError):
            report = None
        result = {
            "schema": "wsh-scenario/1",
            "scenario": self.name,
            "file": os.path.relpath(self.path, ROOT),
            "lb": self.lb,
            "time": started,
            "build": build_info(report),
            "machine": machine_info(),
            "command_line": list(sys.argv),
            "settings": self.conf,
            "topology": self.topology,
            "exit_code": rc,
            "error": error,
            "logs": os.path.relpath(self.run_dir, ROOT),
            "hlog": os.path.relpath(self.base + ".hlog", ROOT) if report else None,
            "loadgen": report,
            "faults": faultlib.account(self.faults, report),
        }
        path = self.base + ".json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        return path, result


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def loadgen_plan(conf, build):
    """loadgen's own plan for conf (loadgen --plan): (its lines, None) or (None, why it cannot run). The URLs are
    stand-ins with the run's count of loopback destinations (the plan depends on nothing else of theirs), or the
    external target's own."""
    t = conf["topology"]
    n = 1 if t["lb"] != "none" else t["nodes"]
    urls = t["target"] or [f"ws://127.0.0.1:{10001 + i}/ws" for i in range(n)]
    argv = loadgen_argv(conf, build, urls, os.devnull, os.devnull) + ["--plan"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return None, (p.stderr.strip() or p.stdout.strip()).replace("loadgen: ", "loadgen: ", 1)
    return [line.split(None, 1)[1] for line in p.stdout.splitlines() if line.startswith("plan")], None


def make_plan(conf, quiet=False, machine=None):
    """The plan for conf on this machine, printed; (resolved conf, plan). plan.problems lists refusals.
    An external target has no topology to plan: only loadgen's own plan."""
    if conf["topology"]["target"]:
        lines, why = loadgen_plan(conf, ensure_built())
        p = planner.Plan(problems=[why] if why else [], sysctl={}, target=conf["topology"]["target"], loadgen=lines)
        if not quiet:
            for line in [f"external target {', '.join(p['target'])}: nothing started here"] + (lines or []):
                print(f"scenario: plan: {line}", file=sys.stderr, flush=True)
        return conf, p
    p = planner.plan(conf, machine or planner.read_machine())
    resolved = planner.resolve(conf, p)
    lines, why = loadgen_plan(resolved, ensure_built())
    p["loadgen"] = lines
    if why:
        p["problems"].append(why)
    if not quiet:
        for line in planner.describe(p, lines):
            print(f"scenario: {line}", file=sys.stderr, flush=True)
    return resolved, p


def run_scenario(name, sets=(), out_root=None, quiet=False, plan_only=False, junit=None):
    """Run one scenario end to end. Returns (exit code, result dict, path of the result file or None).
    plan_only: print the plan and its verdict, start nothing."""
    try:
        path, conf = load(name, sets)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE, None, None
    scenario_name = os.path.splitext(os.path.basename(path))[0]
    conf, plan = make_plan(conf, quiet and not plan_only)
    for problem in plan.problems:
        print(f"scenario: {scenario_name}: cannot run on this machine: {problem}", file=sys.stderr)
    if plan.problems or plan_only:
        return (EXIT_SETUP if plan.problems else EXIT_PASS), None, None
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run, rc, error, tuned = None, EXIT_SETUP, None, []
    try:
        tuned = planner.apply_sysctls(plan)
        for path_, old_value in tuned:
            print(f"scenario: raised {path_[len('/proc/sys/'):].replace('/', '.')} from {old_value.split()} "
                  f"(put back at the end)", file=sys.stderr)
        run = Run(scenario_name, path, conf, out_root, quiet, junit)
        run.topology["plan"] = dict(plan)
        run.start()
        rc = run.loadgen()
    except (SetupError, OSError) as e:  # OSError: a program that could not be started at all
        error = str(e)
        print(f"scenario: {scenario_name}: {e}", file=sys.stderr)
    except Interrupted as e:
        error = f"interrupted by {e}"
        rc = 128 + e.signum
        print(f"scenario: {error}; stopping everything", file=sys.stderr)
    finally:
        # teardown must not itself be interrupted half-way
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        died = run.stop() if run else []
        planner.restore_sysctls(tuned)
        for s, h in old.items():
            signal.signal(s, h)
    if died:  # a process that died explains a failure too: always in the result
        error = "; ".join(([error] if error else []) + died)
        rc = EXIT_FAIL if rc == EXIT_PASS else rc
        print(f"scenario: {'; '.join(died)}", file=sys.stderr)
    if run is None:
        return rc, None, None
    failed_faults = [f"{r['line']}: {r['error']}" for r in run.faults if r["error"]]
    if failed_faults:  # the scenario did not do what it says: it proves nothing
        error = "; ".join(([error] if error else []) + failed_faults)
        rc = EXIT_FAIL if rc == EXIT_PASS else rc
    result_path, result = run.write_result(rc, started, error)
    pages = html_pages(result, result_path)
    if result["faults"] and not quiet:
        print("faults    " + "\n          ".join(faultlib.table(result["faults"])), flush=True)
    print(f"scenario: {scenario_name} via {run.lb}: {verdict_line(rc, result)}; "
          f"results {os.path.relpath(result_path, os.getcwd())}" + (f", report {pages}" if pages else ""),
          file=sys.stderr)
    return rc, result, result_path


def html_pages(result, result_path):
    """The run's HTML page and results/index.html; the page's path for the verdict line, or None. A report that
    cannot be drawn is said, never a failed run: the JSON beside it holds every number."""
    import htmlreport  # here, not at the top: it imports this module
    try:
        page = htmlreport.run_page(result, result_path)
        if os.path.abspath(result_path).startswith(os.path.join(ROOT, "results", "runs") + os.sep):
            htmlreport.index()  # a run kept elsewhere (--out) is not in the checkout's history
        return os.path.relpath(page, os.getcwd())
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"scenario: no HTML report ({type(e).__name__}: {e}); the JSON has the results", file=sys.stderr)
        return None


def verdict_line(rc, result):
    words = {EXIT_PASS: "PASS", EXIT_FAIL: "FAIL", EXIT_USAGE: "USAGE ERROR", EXIT_SETUP: "COULD NOT RUN"}
    text = f"{words.get(rc, 'INTERRUPTED')} (exit {rc})"
    lg = (result or {}).get("loadgen") or {}
    th = lg.get("thresholds") or []
    if th:
        text += f", {sum(1 for t in th if t.get('ok'))}/{len(th)} thresholds passed"
    lat = lg.get("latency")
    if lat and lat.get("count"):
        text += f", delivery p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms over {lat['count']} deliveries"
    return text
