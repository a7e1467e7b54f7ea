#!/usr/bin/env python3
"""bench/reload.py: new connections lost to reloads, our lb against `haproxy -W` (SIGUSR2), in the same run.

A storm of short HTTP sessions (connect, GET with Connection: close, read to the end) from --concurrency
asyncio tasks through the balancer to two tests/integration/lb_backend.py nodes, while the balancer is reloaded
--reloads times, one every --interval seconds: SIGHUP to our lb (2 workers), SIGUSR2 to HAProxy's master (2 threads).
Each session ends ok, reset, refused, timeout, or closed (EOF before a whole response); every one not ok is printed
as a count per balancer. A benchmark, not a test (`make bench-reload`): loopback, about a minute.
"""

import argparse
import asyncio
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("WSH_BUILD", os.path.join(ROOT, "build"))
BACKEND = os.path.join(ROOT, "tests", "integration", "lb_backend.py")
HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"reload.py: {what} exited {proc.returncode} at start")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"reload.py: {what} did not listen on {port} within {timeout}s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def session(port, timeout):
    """One short session: its outcome."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except (asyncio.TimeoutError, OSError):
        return "timeout"
    try:
        writer.write(REQUEST)
        data = await asyncio.wait_for(reader.read(), timeout)
        return "ok" if data.startswith(b"HTTP/1.1 200") else "closed"
    except ConnectionResetError:
        return "reset"
    except asyncio.TimeoutError:
        return "timeout"
    except OSError:
        return "reset"
    finally:
        writer.close()


async def storm(port, concurrency, stop_at, timeout):
    counts = collections.Counter()

    async def task():
        while time.monotonic() < stop_at:
            counts[await session(port, timeout)] += 1

    await asyncio.gather(*(task() for _ in range(concurrency)))
    return counts


def run(name, port, master_pid, sig, args):
    """The storm against port while master_pid gets sig --reloads times; the outcome counts."""
    loop = asyncio.new_event_loop()
    duration = args.interval * (args.reloads + 2)
    stop_at = time.monotonic() + duration

    def reloads(i=0):
        if i < args.reloads:
            os.kill(master_pid, sig)
            loop.call_later(args.interval, reloads, i + 1)

    loop.call_later(args.interval, reloads)
    counts = loop.run_until_complete(storm(port, args.concurrency, stop_at, args.timeout))
    loop.close()
    total = sum(counts.values())
    bad = {k: v for k, v in sorted(counts.items()) if k != "ok"}
    print(f"{name:10} {total:7d} sessions in {duration:.1f}s, {args.reloads} reloads: "
          f"{sum(bad.values())} not ok {bad or ''}", flush=True)
    return counts


def lb_conf(port, nodes):
    return (f"listen {HOST}:{port}\nworkers 2\nhealth off\ntimeout grace 10s\n" +
            "".join(f"backend n{i + 1} {HOST}:{p}\n" for i, p in enumerate(nodes)))


def haproxy_conf(port, nodes):
    return ("global\n  nbthread 2\n  maxconn 5000\n\ndefaults\n  mode http\n  timeout connect 5s\n"
            "  timeout client 30s\n  timeout server 30s\n\n"
            f"frontend fe\n  bind {HOST}:{port}\n  default_backend be\n\nbackend be\n" +
            "".join(f"  server n{i + 1} {HOST}:{p}\n" for i, p in enumerate(nodes)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reloads", type=int, default=30)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between reloads")
    ap.add_argument("--concurrency", type=int, default=64, help="sessions open at once")
    ap.add_argument("--timeout", type=float, default=10.0, help="a session not done in this long is a timeout")
    ap.add_argument("--lb", choices=("both", "builtin", "haproxy"), default="both")
    args = ap.parse_args()
    if args.reloads < 0 or args.interval <= 0 or args.concurrency < 1:
        ap.error("--reloads >= 0, --interval > 0 and --concurrency >= 1")
    tmp = tempfile.mkdtemp(prefix="wsh-reload-")
    procs = []
    try:
        ports = [free_port(), free_port()]
        for i, p in enumerate(ports):
            procs.append(subprocess.Popen([sys.executable, BACKEND, "--port", str(p), "--name", f"n{i + 1}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(p, procs[-1], f"node n{i + 1}")
        print(f"reload.py: {args.concurrency} concurrent short HTTP sessions, {args.reloads} reloads every "
              f"{args.interval}s, 2 nodes (lb_backend.py)", flush=True)
        if args.lb in ("both", "builtin"):
            port, conf = free_port(), os.path.join(tmp, "lb.conf")
            with open(conf, "w") as f:
                f.write(lb_conf(port, ports))
            log = open(os.path.join(tmp, "lb.log"), "w")
            lb = subprocess.Popen([os.path.join(BUILD, "lb"), "-c", conf, "--log-level", "warn"], stdout=log,
                                  stderr=subprocess.STDOUT)
            procs.append(lb)
            wait_port(port, lb, "lb")
            run("lb", port, lb.pid, signal.SIGHUP, args)
            stop(lb)
        if args.lb in ("both", "haproxy"):
            if not shutil.which("haproxy"):
                print("haproxy     not installed: skipped")
                return 0
            port, conf = free_port(), os.path.join(tmp, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(haproxy_conf(port, ports))
            log = open(os.path.join(tmp, "haproxy.log"), "w")
            hp = subprocess.Popen(["haproxy", "-W", "-db", "-f", conf], stdout=log, stderr=subprocess.STDOUT)
            procs.append(hp)
            wait_port(port, hp, "haproxy")
            run("haproxy -W", port, hp.pid, signal.SIGUSR2, args)
            stop(hp)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
