"""A tiny HTTP/1.1 node for the load balancer's integration tests (standard library only).

    python3 lb_backend.py --port P --name NAME [--host 127.0.0.1]

Every request is answered 200 with `X-Backend: NAME`, a Content-Length and a JSON body telling what arrived:
    {"backend": NAME, "method": ..., "path": ..., "version": "HTTP/1.1",
     "headers": {name: value, ...},          # names as sent; repeated fields joined with ", "
     "header_list": [[name, value], ...],    # every field in order, repeats kept
     "body_len": N, "body_sha256": hex, "chunked": bool}
so a test can see exactly what the balancer forwarded. GET /set-cookie?name=X&value=Y also sends
`Set-Cookie: X=Y; Path=/`; GET /chunked sends that JSON chunked (7-byte chunks, a trailer); GET /until-close sends
it without a length and closes; GET /bytes?n=N sends N bytes of PATTERN (repeated) instead; /sleep?ms=N answers after
N ms and GET /sleeping answers {"sleeping": N}, the /sleep requests it holds now (a test waits on it instead of
guessing when a request reached the node); /hop-by-hop adds hop-by-hop fields (Connection naming X-Hop, X-Hop, Keep-Alive, Proxy-Connection, Trailer,
Upgrade, TE) and the end-to-end Proxy-Authenticate and X-End; /drop-after closes the connection after its
(normally framed) answer, as a node's keep-alive timeout would; /status?code=N answers that status (with the same
JSON body), e.g. a health path that fails while clients are served.
`Expect: 100-continue` is answered `100 Continue` before the body is read. Keep-alive (HTTP/1.1 unless
`Connection: close`; HTTP/1.0 only with keep-alive); request bodies are read by Content-Length or chunked. A request
it cannot frame (a bad chunk size...) closes the connection without an answer. Nothing is printed per request;
SIGTERM and SIGINT end it with exit code 0.
"""

import argparse
import hashlib
import json
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

MAX_LINE = 65536
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"  # 64 bytes


def pattern(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]
MAX_HEADERS = 200


class BadRequest(Exception):
    pass


def read_line(rfile):
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadRequest("line too long")
    return line


def read_head(rfile):
    """(method, target, version, [(name, value)]) or None at a clean EOF before a request."""
    line = read_line(rfile)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request line
        line = read_line(rfile)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise BadRequest("EOF inside the request line")
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise BadRequest("bad request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    headers = []
    while True:
        line = read_line(rfile)
        if not line.endswith(b"\n"):
            raise BadRequest("EOF inside the head")
        line = line.rstrip(b"\r\n")
        if not line:
            break
        if b":" not in line or len(headers) >= MAX_HEADERS:
            raise BadRequest("bad header line")
        k, v = line.split(b":", 1)
        headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
    return method, target, version, headers


def header_values(headers, name):
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def read_exact(rfile, n, digest):
    """Read n bytes into digest; BadRequest when the stream ends first."""
    left = n
    while left:
        chunk = rfile.read(min(left, 65536))
        if not chunk:
            raise BadRequest("EOF inside the body")
        digest.update(chunk)
        left -= len(chunk)


def read_body(rfile, headers):
    """(length, sha256 hex, chunked) of the request body."""
    digest = hashlib.sha256()
    te = header_values(headers, "transfer-encoding")
    if te:
        if [t.strip().lower() for t in ",".join(te).split(",")] != ["chunked"]:
            raise BadRequest("unsupported transfer coding")
        total = 0
        while True:
            line = read_line(rfile)
            if not line.endswith(b"\n"):
                raise BadRequest("EOF inside a chunk size")
            size_text = line.rstrip(b"\r\n").split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest(f"bad chunk size {size_text!r}") from None
            if size < 0 or not size_text or size_text.startswith((b"-", b"+", b"0x", b"0X")):
                raise BadRequest(f"bad chunk size {size_text!r}")
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = read_line(rfile)
                    if not line.endswith(b"\n"):
                        raise BadRequest("EOF inside the trailers")
                    if line in (b"\r\n", b"\n"):
                        return total, digest.hexdigest(), True
            read_exact(rfile, size, digest)
            total += size
            if read_line(rfile) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk data not followed by CRLF")
    cl = header_values(headers, "content-length")
    if cl:
        if len(set(cl)) != 1 or not cl[0].isdigit():
            raise BadRequest("bad Content-Length")
        n = int(cl[0])
        read_exact(rfile, n, digest)
        return n, digest.hexdigest(), False
    return 0, digest.hexdigest(), False


def wants_close(version, headers):
    tokens = {t.strip().lower() for v in header_values(headers, "connection") for t in v.split(",")}
    if "close" in tokens:
        return True
    return version == "HTTP/1.0" and "keep-alive" not in tokens


class Handler(socketserver.StreamRequestHandler):
    rbufsize = 65536

    def handle(self):
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while self.one_request():
                pass
        except (BadRequest, ConnectionError, OSError):
            pass  # close without an answer: the balancer tells its client

    def one_request(self):
        head = read_head(self.rfile)
        if head is None:
            return False
        method, target, version, headers = head
        if [v.lower() for v in header_values(headers, "expect")] == ["100-continue"] and version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        body_len, sha, chunked = read_body(self.rfile, headers)
        path, _, query = target.partition("?")
        joined = {}
        for k, v in headers:
            joined[k] = f"{joined[k]}, {v}" if k in joined else v
        doc = {"backend": self.server.name, "method": method, "path": target, "version": version,
               "headers": joined, "header_list": [[k, v] for k, v in headers], "body_len": body_len,
               "body_sha256": sha, "chunked": chunked, "peer": self.client_address[0]}
        if path == "/sleeping":
            with self.server.lock:
                doc = {"sleeping": self.server.sleeping}
        body = json.dumps(doc).encode()
        q = urllib.parse.parse_qs(query)
        close = wants_close(version, headers) or path == "/until-close"
        status = int(q.get("code", ["200"])[0]) if path == "/status" else 200
        lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}", f"X-Backend: {self.server.name}",
                 "Content-Type: application/json"]
        if path == "/bytes":
            body = pattern(int(q.get("n", ["0"])[0]))
            lines[2] = "Content-Type: application/octet-stream"
        if path == "/chunked":
            lines.append("Transfer-Encoding: chunked")
            wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
            body = wire + b"0\r\nX-Trailer: done\r\n\r\n"
        elif path != "/until-close":
            lines.append(f"Content-Length: {len(body)}")
        if path == "/set-cookie":
            lines.append(f"Set-Cookie: {q.get('name', ['c'])[0]}={q.get('value', [''])[0]}; Path=/")
        if path == "/hop-by-hop":
            lines += ["Connection: keep-alive, X-Hop", "X-Hop: 1", "Keep-Alive: timeout=5, max=100",
                      "Proxy-Connection: keep-alive", "Trailer: X-Nothing", "Upgrade: h2c", "TE: trailers",
                      "Proxy-Authenticate: Basic realm=x", "X-End: 1"]
        if close:
            lines.append("Connection: close")
        out = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if method != "HEAD":
            out += body
        if path == "/sleep":
            with self.server.lock:
                self.server.sleeping += 1
            time.sleep(int(q.get("ms", ["0"])[0]) / 1000)
            with self.server.lock:
                self.server.sleeping -= 1
        self.wfile.write(out)
        self.wfile.flush()
        return not close and path != "/drop-after"


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    sleeping = 0  # /sleep requests held now (GET /sleeping)
    lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # nothing printed per request, not even a traceback


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        print(f"lb_backend {args.name}: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    server.name = args.name
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
