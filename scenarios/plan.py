"""A scenario's plan: how many processes of each kind, which kernel settings, and whether this machine can hold it.

The scenario names a client count and a topology; the plan turns that into numbers before anything starts:

- descriptors: one process may hold `nofile` (RLIMIT_NOFILE) of them. A tunnel through a balancer costs it 2 (the
  client's side and the node's), a client costs a node 1, and a long-polling client costs 2 on every hop (a held GET
  and a POST). Workers share a port through SO_REUSEPORT, which spreads connections by a hash, not evenly, so each
  worker is planned to fill at most FILL of its descriptors.
- ports: a connection needs a local port unique for its (source address, destination) pair; the kernel hands them
  out of net.ipv4.ip_local_port_range, quickly for the first half of it only. The builtin lb gets as many source
  addresses towards the nodes as that takes (its `source` directive); loadgen plans its own (`loadgen --plan`).
- memory: per client in user space (loadgen, balancer, node, measured by `make bench-scale`), per socket in the
  kernel (idle), and the socket buffers of one round of fan-out in flight, against MemAvailable and tcp_mem.

Kernel settings the plan needs are named; the runner raises them only where it may (root, and not told not to), and
puts them back afterwards. A plan the machine cannot hold is refused with the reason and the remedy.
Standard library only; `plan()` is pure (the machine is passed in) so tests can plan for machines we do not have.
"""

import math
import os
import resource

FILL = 0.8                 # the share of a process's descriptors a plan may fill (SO_REUSEPORT's uneven spread)
PORT_FILL = 0.9            # the share of the ephemeral port range a plan may use per (source, destination)
RESERVE_FDS = 100          # a process's own descriptors: listeners, epoll, Redis links, pipes, logs
LB_SOURCE_NET = "127.0.1"  # the builtin lb's source addresses towards the nodes, when one is not enough
MAX_PROCS = 256            # per process kind: more is a mistake, not a plan

# Measured on this project's own processes (make bench-scale; README "Scale"): bytes of user-space memory per client
# at 10k-100k clients, and per-process baselines. The kernel's side was measured here on bookworm's kernel with 9000
# loopback pairs: Slab grows 4.0 KB per idle TCP socket, and one 100-byte message waiting in each receive queue takes
# 1.2 KB of real memory but is charged a whole page against tcp_mem (which counts pages per socket, not bytes).
USER_BYTES = {"loadgen": 900, "builtin": 1200, "haproxy": 1500, "nginx": 2500, "refserver": 900}
BASE_BYTES = {"loadgen": 12 << 20, "builtin": 4 << 20, "haproxy": 16 << 20, "nginx": 4 << 20, "refserver": 4 << 20}
KERNEL_SOCKET_BYTES = 4000
SKB_BYTES = 1200
SKB_PAGES = 2  # charged per connection with a message in flight: the sender's queue until acked, the receiver's


def read_machine():
    """This machine's limits, as plan() takes them."""
    def first_line(path, default=None):
        try:
            with open(path) as f:
                return f.read().split()
        except OSError:
            return default

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    mem = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            mem[k] = int(v.split()[0]) * 1024
    ports = first_line("/proc/sys/net/ipv4/ip_local_port_range", ["32768", "60999"])
    tcp_mem = first_line("/proc/sys/net/ipv4/tcp_mem", ["0", "0", "0"])
    conntrack_max = first_line("/proc/sys/net/netfilter/nf_conntrack_max")
    conntrack_count = first_line("/proc/sys/net/netfilter/nf_conntrack_count")
    return {
        "nofile": hard,  # the runner raises each child's soft limit to the hard one
        "port_range": (int(ports[0]), int(ports[1])),
        "tcp_mem_pages": tuple(int(x) for x in tcp_mem),
        "page": os.sysconf("SC_PAGE_SIZE"),
        "file_max": int(first_line("/proc/sys/fs/file-max", ["0"])[0]),
        "mem_available": mem.get("MemAvailable", 0),
        "cpus": os.cpu_count() or 1,
        # conntrack only matters where it tracks loopback connections at all (a count above 0)
        "conntrack_max": int(conntrack_max[0]) if conntrack_max and conntrack_count and
        int(conntrack_count[0]) > 0 else None,
        "may_tune": os.geteuid() == 0 and os.access("/proc/sys/net/ipv4/ip_local_port_range", os.W_OK)
        and os.environ.get("WSH_NO_SYSCTL", "") in ("", "0"),
    }


def per_client_fds(load):
    """Descriptors one client costs on each hop: a long-polling client that never upgrades holds a GET and a POST."""
    polling = load["protocol"] == "socketio" and load["transport"] == "polling"
    return 2 if polling and not load["upgrade"] else 1


def workers_for(connections, fds_each, nofile):
    """Processes needed to hold `connections`, each costing fds_each descriptors, at FILL of nofile per process."""
    per_process = max(1, int((nofile - RESERVE_FDS) * FILL) // fds_each)
    return max(1, math.ceil(connections / per_process)), per_process


def port_capacity(port_range):
    """Connections one (source address, destination) pair takes while connect() stays fast: it hands out the range's
    odd ports first and, once they are used, scans them all before each even one (measured: 25k/s, then 1.2k/s)."""
    lo, hi = port_range
    return int((hi - lo + 1) // 2 * PORT_FILL)


class Plan(dict):
    """The plan as a dict (it lands in the result JSON), with problems (refusals) and tunings (sysctls) apart."""

    @property
    def problems(self):
        return self["problems"]


def _plan_balancer(p, t, conns, m):
    lb = t["lb"]
    if lb == "none":
        p["lb"] = None
        return
    want, cap = workers_for(conns, 2, m["nofile"])  # 2 descriptors per tunnel: client side and node side
    given = t["lb_workers"]
    workers = want if given == "auto" else given
    if lb == "haproxy":
        # one process however many threads (nbthread shares one descriptor table); as many threads as our lb
        # would have workers, so the two are compared at the same parallelism
        limit = (m["nofile"] - RESERVE_FDS) // 2
        p["lb"] = {"kind": lb, "processes": 1, "threads": workers, "tunnels_per_process": limit}
        if conns > limit:
            p["problems"].append(
                f"HAProxy runs as one process, and its {m['nofile']} descriptors hold at most {limit} tunnels "
                f"(2 each): this scenario needs {conns}. Remedy: raise the open-files hard limit, or use "
                f"lb = builtin or nginx, whose worker processes each have their own limit.")
        return
    p["lb"] = {"kind": lb, "processes": workers, "tunnels_per_process": math.ceil(conns / workers),
               "descriptors_per_process": 2 * math.ceil(conns / workers) + RESERVE_FDS}
    if given != "auto" and given < want:
        p["problems"].append(
            f"lb_workers = {given} cannot hold {conns} tunnels: each worker holds at most {cap} at "
            f"{int(FILL * 100)}% of its {m['nofile']} descriptors (2 per tunnel). Remedy: lb_workers = {want} "
            f"or auto.")
    if workers > MAX_PROCS:
        p["problems"].append(f"{workers} balancer workers is more than {MAX_PROCS}: too many clients for one box")


def _plan_nodes(p, t, conns, m):
    nodes = t["nodes"]
    per_node = math.ceil(conns / nodes)
    want, cap = workers_for(per_node, 1, m["nofile"])
    given = t["node_workers"]
    workers = want if given == "auto" else given
    p["nodes"] = {"count": nodes, "workers_per_node": workers, "clients_per_node": per_node,
                  "clients_per_worker": math.ceil(per_node / workers)}
    if given != "auto" and given < want:
        p["problems"].append(
            f"node_workers = {given} cannot hold {per_node} clients per node: a refserver process holds at most "
            f"{cap} at {int(FILL * 100)}% of its {m['nofile']} descriptors. Remedy: node_workers = {want} or auto, "
            f"or more nodes.")
    if nodes * workers > MAX_PROCS:
        p["problems"].append(f"{nodes} nodes x {workers} workers is more than {MAX_PROCS} refserver processes")


def _plan_ports(p, t, conns, m):
    """The balancer reaches each node from its own addresses: more connections to one node than one address
    connects quickly (half the port range, see port_capacity) take more source addresses (lb's `source`)."""
    if t["lb"] == "none":
        return
    per_node = math.ceil(conns / t["nodes"])
    have = port_capacity(m["port_range"])
    if per_node <= have:
        return
    need = math.ceil(per_node / have)
    if t["lb"] == "builtin" and need <= 254:
        p["lb"]["sources"] = f"{LB_SOURCE_NET}.1-{LB_SOURCE_NET}.{need}"
        p["lb"]["source_note"] = (f"{per_node} connections to each node, {have} a source address at most: "
                                  f"{need} addresses")
        return
    p["problems"].append(
        f"the balancer would open {per_node} connections to each of {t['nodes']} nodes from one address, more than "
        f"the {have} that connect quickly (half of {m['port_range'][0]}-{m['port_range'][1]}, less 10%). Remedy: "
        f"nodes = {math.ceil(conns / have)} or more, or lb = builtin (it spreads them over source addresses).")


def _plan_memory(p, t, load, conns, m):
    """User space per client and per process, kernel sockets, and one round's skbs in flight."""
    n = load["clients"]
    hops = 1 if t["lb"] == "none" else 2
    sockets = conns * 2 * hops  # each connection has two ends, both on this machine
    user = n * USER_BYTES["loadgen"] + n * USER_BYTES["refserver"]
    procs = p["nodes"]["count"] * p["nodes"]["workers_per_node"]
    user += procs * BASE_BYTES["refserver"] + p["loadgen_processes_estimate"] * BASE_BYTES["loadgen"]
    if p["lb"]:
        user += n * USER_BYTES[t["lb"]] + p["lb"]["processes"] * BASE_BYTES[t["lb"]]
    kernel = sockets * KERNEL_SOCKET_BYTES
    # one round at worst: every receiver's message waits in its queue on every hop at once
    queued = n * hops
    skbs = queued * max(1, load["emitters"]) * (SKB_BYTES + load["payload"])
    skbs = min(skbs, queued * 64 * 1024)  # a queue that long means the reader is gone: the node closes it
    p["memory"] = {"user_bytes": user, "kernel_sockets_bytes": kernel, "kernel_buffers_bytes": skbs,
                   "sockets": sockets, "available_bytes": m["mem_available"]}
    total = user + kernel + skbs
    if total > m["mem_available"] * 0.8:
        p["problems"].append(
            f"the run needs about {gib(total)} ({gib(user)} user, {gib(kernel + skbs)} kernel) and "
            f"{gib(m['mem_available'])} is available: too much for this machine. Remedy: fewer clients.")
    pages = queued * SKB_PAGES
    low, pressure, high = m["tcp_mem_pages"]
    if high and pages > pressure:
        want = [max(low, pages), max(pressure, pages * 3 // 2), max(high, pages * 2)]
        p["sysctl"]["net.ipv4.tcp_mem"] = (
            " ".join(map(str, want)), f"{low} {pressure} {high}",
            f"one round of fan-out is charged up to {pages} pages of socket buffers (a page per queue holding a "
            f"message), over the pressure mark {pressure}")
    fds = sockets + 64 * (procs + 4)
    if m["file_max"] and fds > m["file_max"] * 0.9:
        p["sysctl"]["fs.file-max"] = (str(fds * 2), str(m["file_max"]),
                                      f"{fds} open files at once, near the system-wide limit {m['file_max']}")
    if m["conntrack_max"] is not None and conns * hops > m["conntrack_max"] * 0.9:
        p["sysctl"]["net.netfilter.nf_conntrack_max"] = (
            str(conns * hops * 2), str(m["conntrack_max"]),
            f"connection tracking is on and {conns * hops} connections would fill its table")


def gib(b):
    return f"{b / (1 << 30):.1f} GiB" if b >= 1 << 30 else f"{b / (1 << 20):.0f} MiB"


def plan(conf, machine):
    """The plan for a parsed scenario conf on machine (read_machine()). Pure: reads and writes nothing."""
    t, load = conf["topology"], conf["load"]
    conns = load["clients"] * per_client_fds(load)
    p = Plan(problems=[], sysctl={}, clients=load["clients"], connections=conns, nofile=machine["nofile"],
             port_range=list(machine["port_range"]))
    # loadgen plans its own workers and sources (loadgen --plan); this estimate only sizes the memory check
    p["loadgen_processes_estimate"] = workers_for(conns, 1, machine["nofile"])[0]
    _plan_balancer(p, t, conns, machine)
    _plan_nodes(p, t, conns, machine)
    _plan_ports(p, t, conns, machine)
    _plan_memory(p, t, load, conns, machine)
    for name, (want, _, why) in list(p["sysctl"].items()):
        if not machine["may_tune"]:
            p["problems"].append(f"{name} must be raised to '{want}' ({why}); the runner may not change it here "
                                 f"(not root, or WSH_NO_SYSCTL). Remedy: sysctl -w {name}='{want}'")
    return p


def resolve(conf, p):
    """conf with the topology's autos replaced by the plan's numbers (loadgen's stay auto: loadgen plans them)."""
    out = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in conf.items()}
    if p["lb"]:
        out["topology"]["lb_workers"] = p["lb"].get("threads", p["lb"]["processes"])
        out["topology"]["lb_source"] = p["lb"].get("sources", "")
    elif out["topology"]["lb_workers"] == "auto":
        out["topology"]["lb_workers"] = 1
    out["topology"]["node_workers"] = p["nodes"]["workers_per_node"]
    return out


def describe(p, loadgen_plan=None):
    """loadgen_plan: loadgen's own lines (loadgen --plan), which plans its workers and source addresses."""
    lines = [f"plan: {p['clients']} clients, {p['connections']} connections per hop, {p['nofile']} descriptors "
             f"per process, ports {p['port_range'][0]}-{p['port_range'][1]}"]
    if p["lb"]:
        lb = p["lb"]
        if lb.get("sources"):
            lines.append(f"plan: {lb['kind']}: source addresses {lb['sources']} towards the nodes "
                         f"({lb['source_note']})")
        if lb["kind"] == "haproxy":
            lines.append(f"plan: haproxy: 1 process, {lb['threads']} thread(s), at most {lb['tunnels_per_process']} "
                         f"tunnels")
        else:
            lines.append(f"plan: {lb['kind']}: {lb['processes']} worker(s), about {lb['tunnels_per_process']} "
                         f"tunnels ({lb['descriptors_per_process']} descriptors) each")
    nd = p["nodes"]
    lines.append(f"plan: {nd['count']} node(s) x {nd['workers_per_node']} worker(s), about "
                 f"{nd['clients_per_worker']} clients each")
    for line in loadgen_plan or []:
        lines.append(f"plan: loadgen: {line}")
    mem = p["memory"]
    lines.append(f"plan: memory: {gib(mem['user_bytes'])} user space, {gib(mem['kernel_sockets_bytes'])} kernel for "
                 f"{mem['sockets']} sockets, up to {gib(mem['kernel_buffers_bytes'])} of socket buffers per round; "
                 f"{gib(mem['available_bytes'])} available")
    for name, (want, old, why) in p["sysctl"].items():
        lines.append(f"plan: {name}: {old} -> {want} ({why})")
    return lines


def apply_sysctls(p):
    """Raise what the plan needs; returns [(path, old text)] to restore. Only called when the machine may_tune."""
    done = []
    for name, (want, _, _) in p["sysctl"].items():
        path = "/proc/sys/" + name.replace(".", "/")
        with open(path) as f:
            old = f.read()
        with open(path, "w") as f:
            f.write(want)
        done.append((path, old))
    return done


def restore_sysctls(done):
    for path, old in reversed(done):
        try:
            with open(path, "w") as f:
                f.write(old)
        except OSError:
            pass
