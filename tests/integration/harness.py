"""Helpers for the integration tests: real processes (redis-server, refserver) on free loopback ports, a minimal
RFC 6455 client written on the socket module, a raw HTTP/1.1 client, a tiny RESP client. Standard library only.

Rules kept here so the tests need not repeat them:
- every wait has a deadline (Deadline, wait_until); nothing blocks forever;
- every process started is stopped by its own PID (terminate, then kill after a timeout, then wait()); the tests
  register the stop with addCleanup/addClassCleanup, and an atexit hook stops whatever is still running;
- a refserver's stderr goes to a temp file (RefServer.log_text()) so assertions can show it.
"""

import atexit
import base64
import hashlib
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("WSH_BUILD") or os.path.join(REPO, "build")
REFSERVER = os.path.join(BUILD, "refserver")
REDIS_SERVER = shutil.which("redis-server") or "redis-server"
HOST = "127.0.0.1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Sanitizer builds (make check) run several times slower: scale start-up waits, never the behaviour asserted.
SLOW = 3.0 if "/san" in BUILD.replace(os.sep, "/") else 1.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


# ---------------------------------------------------------------------------------------------------------------
# time


class Deadline:
    """A point in time; remaining() is never negative."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value (returned) or timeout seconds pass (TimeoutError)."""
    dl = Deadline(timeout)
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ProtocolError, RespError) as e:  # a server not up yet, a connection refused
            last_exc = e
        if dl.expired():
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(min(interval, dl.remaining()))


# ---------------------------------------------------------------------------------------------------------------
# processes

_live = set()  # every Proc not yet stopped, for the atexit safety net


def free_port():
    """A loopback TCP port that was free a moment ago (bind port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Proc:
    """A child process whose stdout and stderr go to a log file; stopped by its PID only."""

    def __init__(self, argv, log_path, name, preexec_fn=None):
        """preexec_fn runs in the child before exec (e.g. to set a resource limit)."""
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        _live.add(self)

    def alive(self):
        return self.proc.poll() is None

    def returncode(self):
        return self.proc.poll()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit code, or TimeoutError when it is still running after timeout seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} (pid {self.pid}) still running after {timeout:.1f}s") from None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout; always reaps. Returns the exit code. Idempotent."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._close_log()
        return self.proc.returncode

    def kill(self):
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._close_log()
        return self.proc.returncode

    def _close_log(self):
        _live.discard(self)
        if not self._log.closed:
            self._log.close()


@atexit.register
def _stop_leftovers():
    for p in list(_live):
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def make_tempdir(testcase=None, prefix="wsh-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    if testcase is not None:
        _add_cleanup(testcase, shutil.rmtree, d, True)
    return d


def _add_cleanup(owner, fn, *args):
    """owner: a TestCase instance (addCleanup) or class (addClassCleanup); None: caller's job."""
    if owner is None:
        return
    if isinstance(owner, type):
        owner.addClassCleanup(fn, *args)
    else:
        owner.addCleanup(fn, *args)


class ThreadedServer:
    """A fake node on a free loopback port: a thread accepts, and serve(conn) runs on a thread per connection."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopped = True
        self.thread.join(5.0)
        self.sock.close()


# ---------------------------------------------------------------------------------------------------------------
# redis


class RespError(Exception):
    pass


class Resp:
    """A blocking RESP2 client for assertions and barriers (PING, PUBSUB NUMSUB); plain or TLS."""

    def __init__(self, port, host=HOST, tls_ca=None, timeout=3.0):
        s = socket.create_connection((host, port), timeout=timeout)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            s = ctx.wrap_socket(s, server_hostname=host)
        self.sock = s
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def read_reply(self):
        """The next reply, or the next message pushed to a connection that SUBSCRIBEd."""
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError(f"bad RESP type {line!r}")


class Redis:
    """redis-server on a loopback port (TLS when tls= dict(cert, key, ca) is given: plain port off)."""

    def __init__(self, port=None, tls=None, workdir=None):
        self.port = port or free_port()
        self.tls = tls
        self.workdir = workdir or tempfile.mkdtemp(prefix="wsh-redis-")
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}://{HOST}:{self.port}"

    def argv(self):
        a = [REDIS_SERVER, "--bind", HOST, "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", self.workdir]
        if self.tls:
            a += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls["cert"],
                  "--tls-key-file", self.tls["key"], "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"]
        else:
            a += ["--port", str(self.port)]
        return a

    def start(self, timeout=10.0):
        """Start (or restart on the same port) and wait until PING answers PONG."""
        assert self.proc is None or not self.proc.alive(), "redis already running"
        self.starts += 1
        log = os.path.join(self.workdir, f"redis-{self.starts}.log")
        self.proc = Proc(self.argv(), log, f"redis-server:{self.port}")

        def pong():
            if not self.proc.alive():
                raise RuntimeError(f"redis-server exited {self.proc.returncode()}:\n{self.proc.log_text()[-2000:]}")
            with self.client(timeout=1.0) as r:
                return r.command("PING") == "PONG"

        wait_until(pong, timeout * SLOW, what=f"redis-server on port {self.port} to answer PING")
        return self

    def client(self, timeout=3.0):
        return Resp(self.port, tls_ca=self.tls["ca"] if self.tls else None, timeout=timeout)

    def command(self, *args):
        with self.client() as r:
            return r.command(*args)

    def numsub(self, channel):
        reply = self.command("PUBSUB", "NUMSUB", channel)
        return int(reply[1])

    def wait_subscribers(self, channel, count, timeout=5.0):
        """Barrier: wait until channel has at least count subscribers (one per node with the room open)."""
        wait_until(lambda: self.numsub(channel) >= count, timeout * SLOW,
                   what=f"{count} subscriber(s) on {channel}")

    def stop(self):
        if self.proc:
            self.proc.stop()

    def kill(self):
        """SIGKILL (a crash, not a shutdown)."""
        if self.proc:
            self.proc.kill()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(owner=None, **kw):
    """A running Redis whose stop is registered with owner (TestCase instance or class)."""
    r = Redis(**kw)
    _add_cleanup(owner, r.cleanup)
    r.start()
    return r


# ---------------------------------------------------------------------------------------------------------------
# refserver


class RefServer:
    def __init__(self, node_id, redis_url="none", extra=(), port=None, logdir=None):
        self.node_id = node_id
        self.redis_url = redis_url
        self.extra = list(extra)
        self.port = port
        self.logdir = logdir or tempfile.mkdtemp(prefix="wsh-ref-")
        self.proc = None

    def argv(self):
        return [REFSERVER, "--listen", f"{HOST}:{self.port}", "--redis", self.redis_url, "--node-id", self.node_id,
                *self.extra]

    def start(self, timeout=10.0):
        """Start on a free port and wait until GET / answers 200. A lost race for the port is retried."""
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            log = os.path.join(self.logdir, f"refserver-{self.node_id}-{attempt}.log")
            self.proc = Proc(self.argv(), log, f"refserver {self.node_id}")
            try:
                wait_until(self._healthy, timeout * SLOW, what=f"refserver {self.node_id} to answer GET /")
                return self
            except _Exited:
                text = self.proc.log_text()
                self.proc.stop()
                if not fixed and self.proc.returncode() == 2 and "in use" in text.lower():
                    continue
                raise RuntimeError(f"refserver {self.node_id} exited {self.proc.returncode()} at start:\n{text}")
            except TimeoutError:
                self.proc.stop()
                raise RuntimeError(f"refserver {self.node_id} did not come up:\n{self.proc.log_text()[-3000:]}")
        raise RuntimeError(f"refserver {self.node_id}: no free port after 3 attempts")

    def _healthy(self):
        if not self.proc.alive():
            raise _Exited()
        return http_request(self.port, "GET", "/", timeout=1.0).status == 200

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def metrics(self):
        return get_metrics(self.port)

    def metric(self, name):
        return self.metrics()[name]

    def ws(self, room=None, **kw):
        path = "/ws" if room is None else f"/ws?room={room}"
        return WSClient.connect(self.port, path, **kw)

    def stop(self, timeout=5.0):
        return self.proc.stop(timeout) if self.proc else None

    def cleanup(self):
        """Stop (SIGTERM) and check how it ended: exit code 0 and no sanitizer report. AssertionError otherwise, so a
        crash at shutdown, a leak or a hang past the SIGTERM grace time fails the test that owned the node."""
        if self.proc is None:
            return
        rc = self.stop()
        text = self.log_text()
        shutil.rmtree(self.logdir, ignore_errors=True)
        bad = [m for m in SANITIZER_MARKERS if m in text]
        if rc != 0 or bad:
            raise AssertionError(f"refserver {self.node_id} ended badly (exit {rc}, {bad or 'no sanitizer report'}):\n"
                                 f"{text[-4000:]}")


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


class _Exited(Exception):
    pass


def start_refserver(owner, node_id, redis_url="none", extra=(), **kw):
    s = RefServer(node_id, redis_url, extra, **kw)
    _add_cleanup(owner, s.cleanup)
    s.start()
    return s


def start_nodes(owner, n, redis_url, extra=(), prefix="n"):
    """n refservers named prefix1..prefixN sharing one Redis."""
    return [start_refserver(owner, f"{prefix}{i + 1}", redis_url, extra) for i in range(n)]


def run_refserver(args, timeout=10.0):
    """Run refserver with args to completion (CLI tests): CompletedProcess with text stdout/stderr."""
    return subprocess.run([REFSERVER, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout * SLOW)


# ---------------------------------------------------------------------------------------------------------------
# HTTP


class ProtocolError(Exception):
    """The peer broke HTTP or WebSocket framing as this client reads it."""


class HttpResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def __repr__(self):
        return f"<HttpResponse {self.status} {self.reason} {self.headers} {self.body[:200]!r}>"


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        if ":" not in line:
            raise ProtocolError(f"bad header line {line!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return int(m.group(1)), m.group(2), headers


class HttpConn:
    """One TCP connection for raw HTTP/1.1 exchanges (keep-alive, pipelining, malformed heads)."""

    def __init__(self, port, host=HOST, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, dl):
        if self.eof:
            return False
        self.sock.settimeout(max(0.001, dl.remaining()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out reading an HTTP response") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, head_only=False, timeout=None):
        """One response: by Content-Length, or up to EOF when there is none."""
        dl = Deadline(timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(dl):
                raise ProtocolError(f"connection closed before a complete response head; got {self.buf[:300]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, reason, headers = _parse_head(head)
        resp = HttpResponse(status, reason, headers, b"")
        if head_only or status == 101 or status == 204 or status == 304:
            return resp
        cl = resp.header("Content-Length")
        if cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._fill(dl):
                    raise ProtocolError(f"connection closed inside a body ({len(self.buf)}/{n} bytes)")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._fill(dl):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def request(self, method="GET", path="/", headers=None, body=b""):
        hdrs = {"Host": f"{HOST}"}
        hdrs.update(headers or {})
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return self.read_response(head_only=(method == "HEAD"))

    def wait_closed(self, timeout=5.0):
        """True once the server closed the connection (EOF or reset) within timeout; data read meanwhile is kept."""
        dl = Deadline(timeout)
        try:
            while self._fill(dl):
                pass
        except TimeoutError:
            return False
        return True


def http_request(port, method="GET", path="/", headers=None, body=b"", timeout=5.0):
    with HttpConn(port, timeout=timeout) as c:
        return c.request(method, path, headers, body)


def http_raw(port, data, timeout=5.0):
    """Send raw bytes, read one response."""
    with HttpConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_response()


def parse_metrics(text):
    """Prometheus text -> {name: float} for unlabelled samples."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2 and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out


def get_metrics(port):
    r = http_request(port, "GET", "/metrics")
    if r.status != 200:
        raise ProtocolError(f"/metrics answered {r.status}")
    return parse_metrics(r.body.decode())


# ---------------------------------------------------------------------------------------------------------------
# WebSocket (RFC 6455, client side)


class HandshakeError(Exception):
    def __init__(self, response):
        super().__init__(f"handshake refused: {response.status} {response.reason} {response.body[:200]!r}")
        self.response = response


class ConnectionClosed(Exception):
    """A close frame arrived (code, reason) or the TCP connection ended (code None, eof True)."""

    def __init__(self, code=None, reason=b"", eof=False):
        super().__init__(f"closed: code={code} reason={reason!r} eof={eof}")
        self.code = code
        self.reason = reason
        self.eof = eof


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload")

    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    def __repr__(self):
        return f"<Frame fin={self.fin} rsv={self.rsv} op={self.opcode} len={len(self.payload)} {self.payload[:40]!r}>"


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def mask_bytes(data, key):
    n = len(data)
    if n == 0:
        return b""
    m = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key or os.urandom(4)
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class WSClient:
    """A minimal blocking WebSocket client. Nothing is automatic unless asked: recv_message(auto_pong=True) answers
    pings; recv_frame() never does."""

    def __init__(self, sock, port, response, leftover):
        self.sock = sock
        self.port = port
        self.response = response  # the 101 HttpResponse
        self.buf = bytearray(leftover)
        self.pings = []  # payloads of pings seen by recv_message
        self.pongs = []
        self.close_code = None
        self.eof = False

    @classmethod
    def connect(cls, port, path="/ws", headers=None, rcvbuf=None, timeout=5.0, host=HOST):
        """Open, handshake, verify Sec-WebSocket-Accept. HandshakeError when the answer is not 101."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            hdrs = {"Host": f"{host}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
            hdrs.update(headers or {})
            req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None)
            sock.sendall((req + "\r\n").encode())
            buf = b""
            dl = Deadline(timeout)
            while b"\r\n\r\n" not in buf:
                sock.settimeout(max(0.001, dl.remaining()))
                chunk = sock.recv(4096)
                if not chunk:
                    raise ProtocolError(f"connection closed during the handshake; got {buf!r}")
                buf += chunk
                if len(buf) > 65536:
                    raise ProtocolError("handshake response head too large")
            head, rest = buf.split(b"\r\n\r\n", 1)
            status, reason, headers_out = _parse_head(head)
            resp = HttpResponse(status, reason, headers_out, b"")
            if status != 101:
                # read the body for the error's reason
                cl = int(resp.header("Content-Length", "0") or 0)
                while len(rest) < cl and not dl.expired():
                    sock.settimeout(max(0.001, dl.remaining()))
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    rest += chunk
                resp.body = rest[:cl]
                raise HandshakeError(resp)
            if resp.header("Upgrade", "").lower() != "websocket":
                raise ProtocolError(f"101 without 'Upgrade: websocket': {headers_out}")
            if "upgrade" not in [t.strip().lower() for t in resp.header("Connection", "").split(",")]:
                raise ProtocolError(f"101 without 'Connection: Upgrade': {headers_out}")
            if resp.header("Sec-WebSocket-Accept") != accept_key(key):
                raise ProtocolError(f"bad Sec-WebSocket-Accept {resp.header('Sec-WebSocket-Accept')!r}")
            return cls(sock, port, resp, rest)
        except BaseException:
            sock.close()
            raise

    # -- sending

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, b"" if code is None else close_payload(code, reason))

    # -- receiving

    def _fill(self, dl):
        """Read more bytes before the deadline; TimeoutError when none came, ConnectionClosed(eof) at EOF."""
        if self.eof:
            raise ConnectionClosed(eof=True)
        rem = dl.remaining()
        if rem <= 0:
            raise TimeoutError("timed out waiting for a frame")
        self.sock.settimeout(rem)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("timed out waiting for a frame") from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed(eof=True)
        self.buf += chunk

    def _need(self, n, dl):
        while len(self.buf) < n:
            self._fill(dl)

    def recv_frame(self, timeout=5.0):
        """The next frame, whatever it is. TimeoutError; ConnectionClosed(eof=True) when TCP ended first."""
        dl = Deadline(timeout)
        self._need(2, dl)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ProtocolError("server sent a masked frame")
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4, dl)
            n = struct.unpack_from("!H", self.buf, 2)[0]
            off = 4
        elif n == 127:
            self._need(10, dl)
            n = struct.unpack_from("!Q", self.buf, 2)[0]
            off = 10
        self._need(off + n, dl)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)

    def recv_message(self, timeout=5.0, auto_pong=True):
        """The next whole data message as (opcode, payload), fragments joined. Pings are recorded (and answered
        when auto_pong); a close frame raises ConnectionClosed(code) after recording close_code."""
        dl = Deadline(timeout)
        opcode, parts = None, []
        while True:
            f = self.recv_frame(dl.remaining() if not dl.expired() else 0.0001)
            if f.rsv:
                raise ProtocolError(f"frame with reserved bits set: {f!r}")
            if f.opcode == OP_PING:
                self.pings.append(f.payload)
                if auto_pong:
                    self.send_pong(f.payload)
                continue
            if f.opcode == OP_PONG:
                self.pongs.append(f.payload)
                continue
            if f.opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", f.payload[:2])[0] if len(f.payload) >= 2 else None
                raise ConnectionClosed(self.close_code, f.payload[2:])
            if f.opcode in (OP_TEXT, OP_BINARY):
                if opcode is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                opcode = f.opcode
            elif f.opcode == OP_CONT:
                if opcode is None:
                    raise ProtocolError("continuation frame without a message")
            else:
                raise ProtocolError(f"unknown opcode {f.opcode}")
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def recv_text(self, timeout=5.0):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise ProtocolError(f"expected a text message, got opcode {op}")
        return data.decode("utf-8")

    def recv_nothing(self, duration=0.3):
        """Listen for duration seconds; return the data messages that arrived (a test expects [])."""
        got = []
        dl = Deadline(duration)
        while not dl.expired():
            try:
                got.append(self.recv_message(dl.remaining()))
            except TimeoutError:
                break
        return got

    def recv_close(self, timeout=5.0):
        """Skip data and pings until a close frame; return its code (None for a close without one).
        ConnectionClosed(eof=True) when TCP ended without a close frame."""
        dl = Deadline(timeout)
        while True:
            f = self.recv_frame(dl.remaining() if not dl.expired() else 0.0001)
            if f.opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", f.payload[:2])[0] if len(f.payload) >= 2 else None
                return self.close_code

    def wait_eof(self, timeout=5.0):
        """True when the server ends the TCP connection within timeout with no further frame bytes; False on
        timeout. Bytes arriving meanwhile are a ProtocolError (nothing may follow a close frame)."""
        dl = Deadline(timeout)
        while True:
            if self.buf:
                raise ProtocolError(f"bytes after the close frame: {bytes(self.buf[:40])!r}")
            try:
                self._fill(dl)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ws_connect(owner, port, path="/ws", **kw):
    """WSClient.connect with its socket closed at cleanup."""
    c = WSClient.connect(port, path, **kw)
    _add_cleanup(owner, c.close)
    return c


# ---------------------------------------------------------------------------------------------------------------
# TLS material for rediss://


def make_tls_material(directory):
    """A CA and a server certificate for 127.0.0.1/localhost made with the openssl CLI. dict(ca, cert, key)."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    cert, ext = os.path.join(directory, "server.pem"), os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=wsh test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{r.stderr}")
    os.chmod(key, 0o600)
    return {"ca": ca, "cert": cert, "key": key}
