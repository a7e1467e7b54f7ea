"""Checks for the Docker Compose topology (docker-compose.yml, docker/) without a Docker engine.

Nothing is built or run in Docker here. What can be checked on the host is:
- `docker-compose config` (Debian's docker-compose 1.29, installed by `make deps`) accepts the file, with and
  without the profiles, and the resolved services are the ones described (parsed from its YAML output with a small
  reader for the block style it prints: the tests use the standard library only);
- docker/lb.conf passes `lb --check` and docker/haproxy.cfg passes `haproxy -c` once the container host names are
  replaced by 127.0.0.1, and the node lists of compose, lb.conf and haproxy.cfg agree;
- loadgen accepts the compose service's arguments, and docker/http-probe (the healthchecks) answers for a real node;
- docker/Dockerfile installs only packages apt knows, runs make targets the Makefile has, copies what the build
  needs, and its runtime stage installs every library package the binaries link against.
Run: python3 -m unittest discover -s tests/integration -p 'test_compose.py' -v   (WSH_BUILD selects the build directory)
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also runnable as tests.integration.test_compose
import harness as h  # noqa: E402

REPO = h.REPO
COMPOSE_FILE = os.path.join(REPO, "docker-compose.yml")
DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")
LB_CONF = os.path.join(REPO, "docker", "lb.conf")
HAPROXY_CFG = os.path.join(REPO, "docker", "haproxy.cfg")
PROBE = os.path.join(REPO, "docker", "http-probe")
DOCKERIGNORE = os.path.join(REPO, ".dockerignore")
LB = os.path.join(h.BUILD, "lb")
LOADGEN = os.path.join(h.BUILD, "loadgen")
DOCKER_COMPOSE = shutil.which("docker-compose")
HAPROXY = shutil.which("haproxy")
NODES = ("node1", "node2")
HEALTHY = {"condition": "service_healthy"}
BASE_PACKAGES = {"libc6", "libgcc-s1"}  # already in debian:bookworm-slim (libc6 is no longer Priority: required)


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kw)


def make_dry_run(targets, cwd):
    """`make -n TARGETS` as the Dockerfile's build stage runs it: a plain build, whatever make called these tests
    (make check exports SANITIZE=1 through MAKEFLAGS, which would move every target under build/san)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE")}
    return run(["make", "-n", *targets], cwd=cwd, env=env)


def read(path):
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------------------------------------------------------
# a reader for the YAML that `docker-compose config` prints (PyYAML safe_dump, block style): mappings, sequences
# (indented or not under their key, of scalars or of mappings), plain and quoted scalars, {} and []. Scalars stay
# strings. Anything else raises ValueError, so a change in the output fails loudly instead of being misread.


def _scalar(text):
    if text in ("{}", "[]"):
        return {} if text == "{}" else []
    if text[:1] == "'":
        if len(text) < 2 or text[-1] != "'":
            raise ValueError(f"unterminated quoted scalar {text!r}")
        return text[1:-1].replace("''", "'")
    if text[:1] == '"':
        return json.loads(text)
    if text[:1] in "|>&*!{[":
        raise ValueError(f"YAML construct outside the subset read here: {text!r}")
    return text


def _split_key(text):
    """(key, rest) for 'key: rest' / 'key:' (key plain or quoted), else None."""
    if text[:1] in ("'", '"'):
        q = text[0]
        i = 1
        while i < len(text):
            if text[i] == q:
                if q == "'" and text[i + 1:i + 2] == "'":
                    i += 2
                    continue
                if q == '"' and text[i - 1] == "\\":
                    i += 1
                    continue
                break
            i += 1
        after = text[i + 1:]
        if after == ":" or after.startswith(": "):
            return _scalar(text[:i + 1]), after[1:].strip()
        return None
    if text.endswith(":") and " " not in text:
        return text[:-1], ""
    key, sep, rest = text.partition(": ")
    if sep and " " not in key and key:
        return key, rest.strip()
    return None


def parse_compose_yaml(text):
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in text.splitlines()
             if raw.strip() and not raw.lstrip().startswith("#")]
    pos = 0

    def is_item(i):
        return lines[i][1] == "-" or lines[i][1].startswith("- ")

    def block(indent):
        return sequence(indent) if is_item(pos) else mapping(indent)

    def mapping(indent):
        nonlocal pos
        out = {}
        while pos < len(lines) and lines[pos][0] == indent and not is_item(pos):
            kv = _split_key(lines[pos][1])
            if kv is None:
                raise ValueError(f"expected 'key: value' at {lines[pos][1]!r}")
            key, rest = kv
            pos += 1
            if rest:
                out[key] = _scalar(rest)
            elif pos < len(lines) and (lines[pos][0] > indent or (lines[pos][0] == indent and is_item(pos))):
                out[key] = block(lines[pos][0])
            else:
                out[key] = None
        return out

    def sequence(indent):
        nonlocal pos
        out = []
        while pos < len(lines) and lines[pos][0] == indent and is_item(pos):
            rest = lines[pos][1][1:].strip()
            if rest and _split_key(rest) is not None:  # "- key: v" opens a mapping indented by 2
                lines[pos] = (indent + 2, rest)
                out.append(mapping(indent + 2))
            elif rest:
                pos += 1
                out.append(_scalar(rest))
            else:
                pos += 1
                out.append(block(lines[pos][0]) if pos < len(lines) and lines[pos][0] > indent else None)
        return out

    result = block(lines[0][0]) if lines else {}
    if pos != len(lines):
        raise ValueError(f"unread line: {lines[pos][1]!r}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# docker/Dockerfile, read as text: RUN commands with their continuation lines joined, per stage


def dockerfile_instructions():
    """[(stage, INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out, stage, cur = [], None, ""
    for raw in read(DOCKERFILE).splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        cur += " " + line[:-1] if line.endswith("\\") else " " + line
        if line.endswith("\\"):
            continue
        word, _, args = cur.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", args, re.I)
            stage = m.group(1) if m else None
        out.append((stage, word, args.strip()))
        cur = ""
    return out


def apt_packages(stage=None):
    """Packages named by `apt-get install` in RUN lines (of one stage, or all)."""
    pkgs = []
    for st, word, args in dockerfile_instructions():
        if word != "RUN" or (stage is not None and st != stage):
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def make_targets():
    targets = []
    for _, word, args in dockerfile_instructions():
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            words = cmd.split()
            if words and words[0] == "make":
                targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


# ---------------------------------------------------------------------------------------------------------------


def need_docker_compose(test):
    if not DOCKER_COMPOSE:
        test.fail("docker-compose not found: run `make deps` (scripts/deps.sh installs Debian's docker-compose, "
                  "which validates docker-compose.yml without a Docker engine)")


def compose(*args):
    return run([DOCKER_COMPOSE, "-f", COMPOSE_FILE, *args], cwd=REPO)


def lb_backends(text):
    """[(name, host, port)] of the backend lines of an lb.conf."""
    out = []
    for line in text.splitlines():
        w = line.split("#", 1)[0].split()
        if len(w) >= 3 and w[0] == "backend":
            host, _, port = w[2].rpartition(":")
            out.append((w[1], host, port))
    return out


def haproxy_servers(text):
    out = []
    for line in text.splitlines():
        w = line.split("#", 1)[0].split()
        if len(w) >= 3 and w[0] == "server":
            host, _, port = w[2].rpartition(":")
            out.append((w[1], host, port))
    return out


def resolves(name):
    try:
        socket.getaddrinfo(name, None)
        return True
    except OSError:
        return False


class ComposeConfigTest(unittest.TestCase):
    """docker-compose.yml as docker-compose 1.29 resolves it."""

    config = None

    def setUp(self):
        need_docker_compose(self)
        if ComposeConfigTest.config is None:
            p = compose("--profile", "haproxy", "--profile", "loadgen", "config")
            self.assertEqual(p.returncode, 0, f"docker-compose config failed:\n{p.stderr}")
            ComposeConfigTest.config = parse_compose_yaml(p.stdout)
        self.services = self.config["services"]

    def argv(self, name):
        svc = self.services[name]
        return list(svc.get("entrypoint") or []) + list(svc.get("command") or [])

    def test_validates_quietly_with_and_without_profiles(self):
        for profiles in ([], ["--profile", "haproxy"], ["--profile", "loadgen"],
                         ["--profile", "haproxy", "--profile", "loadgen"]):
            with self.subTest(profiles=profiles):
                p = compose(*profiles, "config", "-q")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout, "")
                self.assertEqual(p.stderr.strip(), "", "no warnings (deprecated keys, unknown options ...)")

    def test_services_and_profiles(self):
        self.assertEqual(set(self.services), {"redis", *NODES, "lb", "haproxy", "loadgen"})
        for name in ("redis", *NODES, "lb"):
            self.assertNotIn("profiles", self.services[name], f"{name} starts with a plain `up`")
        self.assertEqual(self.services["haproxy"].get("profiles"), ["haproxy"])
        self.assertEqual(self.services["loadgen"].get("profiles"), ["loadgen"])
        p = compose("config", "--profiles")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(p.stdout.split()), ["haproxy", "loadgen"])

    def test_images_come_from_the_dockerfile(self):
        stages = {st for st, word, _ in dockerfile_instructions() if word == "FROM"}
        for name, svc in self.services.items():
            with self.subTest(service=name):
                build = svc.get("build")
                self.assertIsInstance(build, dict, f"{name} is built here, not pulled")
                self.assertEqual(build["context"], REPO)
                self.assertEqual(build["dockerfile"], "docker/Dockerfile")
                self.assertIn(build["target"], stages)
        for _, word, args in dockerfile_instructions():
            if word == "FROM":
                self.assertTrue(args.startswith("debian:bookworm-slim"), f"FROM {args}")

    def test_nodes(self):
        for name in NODES:
            with self.subTest(node=name):
                svc = self.services[name]
                argv = self.argv(name)
                self.assertEqual(argv[0], "refserver")
                opts = dict(zip(argv[1::2], argv[2::2]))
                self.assertEqual(len(argv[1:]) % 2, 0, argv)
                self.assertEqual(opts, {"--listen": "0.0.0.0:9001", "--redis": "redis://redis:6379",
                                        "--node-id": name})
                self.assertEqual(svc["depends_on"], {"redis": HEALTHY})
                self.assertEqual(svc["healthcheck"]["test"], ["CMD", "http-probe", "127.0.0.1", "9001", "/"])
                self.assertNotIn("ports", svc, "nodes are reached through a balancer only")
        self.assertEqual(self.services["redis"]["healthcheck"]["test"], ["CMD", "redis-cli", "ping"])

    def test_lb(self):
        lb = self.services["lb"]
        self.assertEqual(self.argv("lb"), ["lb", "-c", "/etc/wsh/lb.conf"])
        self.assertIn("127.0.0.1:8080:8080/tcp", lb["ports"])
        for name in ("lb", "haproxy", *NODES):
            self.assertEqual(self.services[name].get("ulimits", {}).get("nofile"), {"soft": "65536", "hard": "65536"},
                             f"{name}: descriptors for 10k connections")
        self.assertIn(f"{LB_CONF}:/etc/wsh/lb.conf:ro", lb["volumes"])
        self.assertEqual(lb["depends_on"], {n: HEALTHY for n in NODES})
        self.assertEqual(lb["healthcheck"]["test"], ["CMD", "http-probe", "127.0.0.1", "9100", "/health"])

    def test_haproxy(self):
        hp = self.services["haproxy"]
        self.assertIn("127.0.0.1:8081:8080/tcp", hp["ports"])
        self.assertEqual(hp["build"]["target"], "haproxy")
        self.assertEqual(hp["depends_on"], {n: HEALTHY for n in NODES})

    def test_loadgen(self):
        lg = self.services["loadgen"]
        argv = self.argv("loadgen")
        self.assertEqual(argv[0], "loadgen")
        self.assertEqual(argv[-1], "ws://lb:8080/ws")
        self.assertEqual(argv[1:-1], ["-c", "100", "--rounds", "10", "--cookie", "SRVID"])
        self.assertEqual(lg["depends_on"], {"lb": HEALTHY})
        self.assertEqual(lg.get("restart"), "no")

    def test_loadgen_accepts_the_arguments(self):
        """Our loadgen parses the service's arguments: pointed at a closed port it gets to connecting (exit 3,
        refused), not to bad usage (exit 2)."""
        if not os.access(LOADGEN, os.X_OK):
            self.fail(f"{LOADGEN} is not built (set WSH_BUILD or run make)")
        port = h.free_port()
        argv = [LOADGEN, *self.argv("loadgen")[1:-1], f"ws://127.0.0.1:{port}/ws"]
        p = run(argv, timeout=30 * h.SLOW)
        self.assertEqual(p.returncode, 3, f"{argv}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        self.assertIn("refused", p.stdout + p.stderr)

    def test_every_node_is_a_backend_of_both_balancers(self):
        """The node3 recipe in the header: a node service, an lb.conf backend, a haproxy.cfg server, and lb's
        depends_on must name the same set (the name is also the sticky cookie value)."""
        nodes = {n for n in self.services if self.argv(n)[:1] == ["refserver"]}
        self.assertEqual(nodes, set(NODES))
        self.assertEqual({(n, f"{n}:9001") for n in nodes},
                         {(name, f"{host}:{port}") for name, host, port in lb_backends(read(LB_CONF))})
        servers = haproxy_servers(read(HAPROXY_CFG))
        self.assertEqual({(n, f"{n}:9001") for n in nodes}, {(s, f"{host}:{port}") for s, host, port in servers})
        for line in read(HAPROXY_CFG).splitlines():
            w = line.split()
            if w[:1] == ["server"]:
                self.assertIn(f"cookie {w[1]}", line, "the cookie value is the node name, as with lb")
        self.assertEqual(set(self.services["lb"]["depends_on"]), nodes)


class LbConfTest(unittest.TestCase):
    def setUp(self):
        if not os.access(LB, os.X_OK):
            self.fail(f"{LB} is not built (set WSH_BUILD or run make)")
        self.dir = h.make_tempdir(self)

    def test_docker_lb_conf_passes_check_with_loopback_hosts(self):
        text = read(LB_CONF)
        backends = lb_backends(text)
        self.assertEqual([b[0] for b in backends], list(NODES))
        local = text
        for i, (name, host, port) in enumerate(backends):
            local = re.sub(rf"^(backend\s+{name}\s+){re.escape(host)}:{port}\b", rf"\g<1>127.0.0.1:{9001 + i}",
                           local, flags=re.M)
        self.assertEqual([b[1] for b in lb_backends(local)], ["127.0.0.1"] * len(backends))
        path = os.path.join(self.dir, "lb.conf")
        with open(path, "w") as f:
            f.write(local)
        p = run([LB, "--check", "-c", path], timeout=10 * h.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.strip(), "")
        self.assertIn(f"{len(backends)} node(s)", p.stdout)
        for directive in ("listen 0.0.0.0:8080", "admin  0.0.0.0:9100", "sticky  cookie"):
            self.assertRegex(text, rf"(?m)^{re.escape(directive)}(\s|$)")
        self.assertRegex(text, r"(?m)^health\s+path=/")

    def test_unresolved_names_fail_clearly(self):
        if resolves("node1"):
            self.skipTest("node1 resolves on this host")
        p = run([LB, "--check", "-c", LB_CONF], timeout=30 * h.SLOW)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"lb\.conf:\d+: .*'node1'")


class HaproxyCfgTest(unittest.TestCase):
    def setUp(self):
        if not HAPROXY:
            self.fail("haproxy not found: run `make deps`")
        self.dir = h.make_tempdir(self)

    def check(self, path):
        return run([HAPROXY, "-c", "-f", path], timeout=30 * h.SLOW)

    def test_as_written(self):
        """init-addr libc,none: names that do not resolve here (node1, node2) are accepted, the servers start
        disabled until Compose's DNS answers."""
        p = self.check(HAPROXY_CFG)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("[ALERT]", p.stdout + p.stderr)

    def test_with_loopback_hosts_no_warning(self):
        text = read(HAPROXY_CFG)
        local = re.sub(r"(?m)^(\s*server\s+\S+\s+)[^\s:]+:", r"\g<1>127.0.0.1:", text)
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(local)
        p = self.check(path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("[WARNING]", p.stdout + p.stderr)
        self.assertNotIn("[ALERT]", p.stdout + p.stderr)

    def test_directives(self):
        text = read(HAPROXY_CFG)
        self.assertRegex(text, r"(?m)^\s*cookie SRVID insert indirect nocache\s*$")
        self.assertRegex(text, r"(?m)^\s*timeout tunnel 1h\s*$")
        self.assertRegex(text, r"(?m)^\s*bind :8080\s*$")
        self.assertRegex(text, r"(?m)^\s*bind :8404\s*$")


class HttpProbeTest(unittest.TestCase):
    """docker/http-probe, the healthcheck of the nodes, lb and haproxy, against a real refserver."""

    def setUp(self):
        self.assertTrue(os.access(PROBE, os.X_OK), f"{PROBE} must be executable (the image copies its mode)")

    def test_probe(self):
        node = h.start_refserver(self, "probe1", "none")
        p = run([PROBE, "127.0.0.1", str(node.port), "/"], timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run([PROBE, "127.0.0.1", str(node.port), "/nothing-here"], timeout=10)
        self.assertEqual(p.returncode, 1, "a 404 is unhealthy")
        p = run([PROBE, "127.0.0.1", str(h.free_port()), "/"], timeout=10)
        self.assertEqual(p.returncode, 1, "a closed port is unhealthy")

    def test_probe_lb_admin_health(self):
        """lb's healthcheck: /health on the admin port is 200 while a node is up, not once it is down."""
        if not os.access(LB, os.X_OK):
            self.fail(f"{LB} is not built (set WSH_BUILD or run make)")
        node = h.RefServer("probe2", "none")
        node.start()
        self.addCleanup(node.cleanup)
        admin = h.free_port()
        logdir = h.make_tempdir(self)
        lb = h.Proc([LB, "--listen", f"127.0.0.1:{h.free_port()}", "--backend", f"node1=127.0.0.1:{node.port}",
                     "--admin", f"127.0.0.1:{admin}", "--health", "path=/,interval=200ms,timeout=150ms,rise=1,fall=1"],
                    os.path.join(logdir, "lb.log"), "lb")
        self.addCleanup(lb.stop)

        def probe():
            return run([PROBE, "127.0.0.1", str(admin), "/health"], timeout=10).returncode

        h.wait_until(lambda: probe() == 0, 10 * h.SLOW, what=f"lb /health to pass:\n{lb.log_text()}")
        node.cleanup()
        h.wait_until(lambda: probe() == 1, 10 * h.SLOW, what="lb /health to fail with its only node down")


class DockerfileTest(unittest.TestCase):
    def test_apt_packages_exist(self):
        if not shutil.which("apt-cache"):
            self.fail("apt-cache not found: the images are Debian bookworm; check on a Debian host (make deps)")
        pkgs = apt_packages()
        self.assertTrue({"build-essential", "libev-dev", "libev4", "redis-server", "haproxy"} <= set(pkgs), pkgs)
        # One call (each takes about a second); it exits 0 when any package is known, so read which ones are.
        p = run(["apt-cache", "show", *sorted(set(pkgs))])
        found = set(re.findall(r"(?m)^Package: (\S+)$", p.stdout))
        for pkg in sorted(set(pkgs)):
            with self.subTest(package=pkg):
                self.assertIn(pkg, found, f"apt-cache show {pkg}: unknown here (apt-get update?)\n{p.stderr.strip()}")

    def test_runtime_stage_has_the_linked_libraries(self):
        """Every shared library the built binaries load comes from a package the wsh stage installs, or from one
        debian:bookworm-slim already has (libc6)."""
        if not shutil.which("ldd") or not shutil.which("dpkg"):
            self.skipTest("no ldd/dpkg here")
        runtime = set(apt_packages("wsh"))
        # The image builds without SANITIZE: under `make check` (build/san) look at the plain build, if there is one.
        build = h.BUILD if h.SLOW == 1.0 else os.path.join(REPO, "build")
        for prog in ("refserver", "loadgen", "lb"):
            binary = os.path.join(build, prog)
            if not os.access(binary, os.X_OK):
                if build != h.BUILD:
                    self.skipTest(f"sanitizer build; {binary} (the image's flavour) is not built")
                self.fail(f"{binary} is not built (set WSH_BUILD or run make)")
            p = run(["ldd", binary])
            self.assertEqual(p.returncode, 0, p.stderr)
            for soname, path in re.findall(r"^\s*(\S+) => (/\S+)", p.stdout, re.M):
                with self.subTest(binary=prog, library=soname):
                    pkg = self.owner(path)
                    self.assertIsNotNone(pkg, f"no Debian package owns {path}")
                    self.assertIn(pkg, runtime | BASE_PACKAGES, f"{prog} needs {soname} from {pkg}: add it to the "
                                                                f"wsh stage of docker/Dockerfile")

    _owners = {}

    @classmethod
    def owner(cls, path):
        if path not in cls._owners:
            cls._owners[path] = cls._dpkg_owner(path)
        return cls._owners[path]

    @staticmethod
    def _dpkg_owner(path):
        candidates = [path, os.path.realpath(path)]
        candidates += ["/usr" + c for c in list(candidates) if c.startswith("/lib")]
        for c in candidates:
            p = run(["dpkg", "-S", c])
            if p.returncode == 0:
                return p.stdout.split(":", 1)[0].strip()
        return None

    def test_make_targets_exist(self):
        targets = make_targets()
        self.assertEqual(sorted(targets), ["build/lb", "build/loadgen", "build/refserver"])
        for t in targets:
            with self.subTest(target=t):
                p = make_dry_run([t], REPO)
                self.assertEqual(p.returncode, 0, f"make -n {t}: {p.stderr.strip()}")

    def test_build_context_suffices(self):
        """The build stage COPYs enough for its make targets (make -n in a copy of only those paths), and
        .dockerignore lets every copied path into the context."""
        sources = []
        for stage, word, args in dockerfile_instructions():
            if word == "COPY" and not args.startswith("--from"):
                sources += [s.rstrip("/") for s in args.split()[:-1] if not s.startswith("--")]
        ignore = [ln.strip() for ln in read(DOCKERIGNORE).splitlines() if ln.strip() and not ln.startswith("#")]
        self.assertEqual(ignore[0], "*", ".dockerignore lists what goes in (whitelist)")
        allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
        for src in sources:
            with self.subTest(copy=src):
                self.assertTrue(os.path.exists(os.path.join(REPO, src)), f"COPY {src}: no such path")
                top = src.split("/")[0]
                self.assertTrue(src in allowed or top in allowed, f"COPY {src} but .dockerignore leaves it out")
        build_sources = [src for stage, word, args in dockerfile_instructions() if stage == "build" and word == "COPY"
                         for src in args.split()[:-1]]
        tmp = tempfile.mkdtemp(prefix="wsh-dctx-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for src in build_sources:
            src = src.rstrip("/")
            dst = os.path.join(tmp, src)
            if os.path.isdir(os.path.join(REPO, src)):
                shutil.copytree(os.path.join(REPO, src), dst, ignore=shutil.ignore_patterns("*.o", "*.d"))
            else:
                shutil.copy2(os.path.join(REPO, src), dst)
        p = make_dry_run(make_targets(), tmp)
        self.assertEqual(p.returncode, 0, f"make -n in the build stage's context: {p.stderr.strip()}")
        self.assertIn("-o build/lb", p.stdout)

    def test_probe_and_configs_are_in_the_images(self):
        copies = {(stage, args) for stage, word, args in dockerfile_instructions() if word == "COPY"}
        self.assertIn(("wsh", "docker/http-probe /usr/local/bin/http-probe"), copies)
        self.assertIn(("haproxy", "docker/http-probe /usr/local/bin/http-probe"), copies)
        self.assertIn(("haproxy", "docker/haproxy.cfg /etc/haproxy/haproxy.cfg"), copies)
        self.assertIn("redis-tools", apt_packages("redis"), "redis-cli for the healthcheck")


if __name__ == "__main__":
    unittest.main()
