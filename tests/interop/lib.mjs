// Shared helpers for the interop tests that start processes (the style of ws_client.test.mjs, as a module).
// Not a test file: node --test only picks up *.test.mjs here. Each test file is its own process, so the
// module-level state below (one temporary directory, the set of live children) belongs to one file.
// Every process is started on a free loopback port and stopped by its PID; every wait has a deadline.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const build = process.env.WSH_BUILD || path.resolve(here, '../../build');
export const HOST = '127.0.0.1';
export const SLOW = build.replace(/\\/g, '/').includes('/san') ? 3 : 1; // sanitizer builds run slower
export const SANITIZER_RE = /AddressSanitizer|LeakSanitizer|runtime error:/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A deadline for Promise.race that does not keep the process alive once the race is decided.
export const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref()).then(() => null);

export async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (${lastErr.message})` : ''}`);
    await sleep(50);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A TCP connect that succeeds (then is closed at once): the port is accepting.
export function canConnect(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: HOST, port });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

// ---- processes, stopped by PID

export const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsh-interop-'));
export const live = new Set();

// A long-running child whose stdout and stderr go to tmp/NAME.log.
export function startProcess(argv, name) {
  const logPath = path.join(tmp, `${name}.log`);
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const proc = { child, pid: child.pid, name, logPath, exited: null };
  proc.exitPromise = new Promise((resolve) => {
    child.on('exit', (code, sig) => {
      proc.exited = { code, sig };
      live.delete(proc);
      resolve(proc.exited);
    });
  });
  child.on('error', () => {}); // reported through exit / the readiness wait
  live.add(proc);
  return proc;
}

export const logOf = (proc) => { try { return fs.readFileSync(proc.logPath, 'utf8'); } catch { return ''; } };

export async function stopProcess(proc, timeoutMs = 5000) {
  if (proc.exited) return proc.exited;
  try { process.kill(proc.pid, 'SIGTERM'); } catch { /* already gone */ }
  const r = await Promise.race([proc.exitPromise, deadline(timeoutMs)]);
  if (r) return r;
  try { process.kill(proc.pid, 'SIGKILL'); } catch { /* already gone */ }
  return proc.exitPromise;
}

export async function stopAll() {
  for (const p of [...live]) await stopProcess(p);
}

export function removeTmp() {
  fs.rmSync(tmp, { recursive: true, force: true });
}

process.on('exit', () => { for (const p of live) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } } });

// Run a command to its end with a deadline (SIGKILL by PID when it passes): { code, sig, stdout, stderr, timedOut }.
export function runCommand(argv, timeoutMs, name = path.basename(argv[0])) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = { child, pid: child.pid, name, exited: null };
    live.add(proc);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('error', (e) => { stderr += `spawn ${argv[0]}: ${e.message}\n`; });
    // 'close', not 'exit': every byte of stdout and stderr has been read by then.
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      proc.exited = { code, sig };
      live.delete(proc);
      resolve({ code, sig, stdout, stderr, timedOut });
    });
  });
}

// ---- redis

export function redisCommand(port, args, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ host: HOST, port });
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error('redis timeout')); }, timeoutMs);
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('connect', () => {
      s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    s.on('data', (d) => {
      buf += d.toString('latin1');
      // Enough for the replies used here: +PONG, and PUBSUB NUMSUB's two-element array ending in :N.
      if (/^\+.*\r\n$/.test(buf) || /^-.*\r\n$/.test(buf) || /:\d+\r\n$/.test(buf)) {
        clearTimeout(timer);
        s.end();
        resolve(buf);
      }
    });
  });
}

export async function startRedis() {
  const port = await freePort();
  const proc = startProcess(['redis-server', '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--dir', tmp], `redis-${port}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`redis-server exited: ${logOf(proc).slice(-1000)}`);
    return (await redisCommand(port, ['PING'])).startsWith('+PONG');
  }, 10000 * SLOW, 'redis-server PING');
  return { port, proc, url: `redis://${HOST}:${port}` };
}

export async function waitSubscribers(redisPort, channel, count) {
  await waitFor(async () => {
    const m = /:(\d+)\r\n$/.exec(await redisCommand(redisPort, ['PUBSUB', 'NUMSUB', channel]));
    return m && Number(m[1]) >= count;
  }, 5000 * SLOW, `${count} subscriber(s) on ${channel}`);
}

// ---- http

export function httpGet(port, urlPath) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: urlPath, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
  });
}

// ---- refserver

export const REFSERVER = path.join(build, 'refserver');

// redisUrl null: no --redis flag at all (refserver's own default applies).
export async function startNode(nodeId, redisUrl, extra = []) {
  const port = await freePort();
  const redisArgs = redisUrl == null ? [] : ['--redis', redisUrl];
  const proc = startProcess([REFSERVER, '--listen', `${HOST}:${port}`, ...redisArgs, '--node-id', nodeId, ...extra],
    `refserver-${nodeId}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`refserver ${nodeId} exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return (await httpGet(port, '/')).status === 200;
  }, 10000 * SLOW, `refserver ${nodeId} GET /`);
  return { port, proc, nodeId };
}

// ---- node scripts (npm socket.io servers next to this file)

// `node here/SCRIPT --port P ...args` on a free port; resolves once it printed "listening" (then GET / works).
export async function startScript(script, args, name) {
  const port = await freePort();
  const from = logOf({ logPath: path.join(tmp, `${name}.log`) }).length; // the log is appended to: only what is new
  const proc = startProcess([process.execPath, path.join(here, script), '--port', String(port), ...args], name);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`${script} ${name} exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return /^listening$/m.test(logOf(proc).slice(from));
  }, 15000 * SLOW, `${script} ${name} "listening"`);
  return { port, proc, nodeId: name };
}

// ---- Socket.IO clients (refserver_socketio_features.test.mjs, socketio_mixed.test.mjs): socket.io-client sockets that
// record what they receive, a raw Engine.IO websocket and raw long-polling requests, and a deep normalisation of
// received values so binary (Buffer, ArrayBuffer, typed arrays) compares by its bytes.

export const SID_RE = /^[A-Za-z0-9_-]{20}$/;
export const QUIET_MS = 300; // after the last expected message: long enough for a duplicate to show up

export const clients = new Set();
export function closeClients() {
  for (const s of clients) s.disconnect();
  clients.clear();
}

// A socket.io-client socket without reconnection (a drop must stay visible). Every event it receives (onAny) is
// recorded in sock.got as [event, ...args] — except the readiness probes, and except an ack callback (a function,
// present only when the server forwarded an ack id), which is recorded as the string '<ack fn>' so it shows up.
// opts: nsp ('/chat'), transports, room (handshake query), auth, multiplex (share the Manager: no forceNew).
export function client(port, { nsp = '', transports, room, auth, multiplex = false } = {}) {
  const o = { reconnection: false, forceNew: !multiplex };
  if (transports) o.transports = transports;
  if (room) o.query = { room };
  if (auth !== undefined) o.auth = auth;
  const sock = io(`http://${HOST}:${port}${nsp}`, o);
  clients.add(sock);
  sock.got = [];
  sock.onAny((ev, ...args) => {
    if (ev === 'probe') return;
    sock.got.push([ev, ...args.map((a) => (typeof a === 'function' ? '<ack fn>' : a))]);
  });
  return sock;
}

export async function connected(sock, ms = 5000 * SLOW) {
  if (sock.connected) return sock;
  let onOk;
  let onErr;
  const r = await Promise.race([
    new Promise((resolve, reject) => {
      onOk = () => resolve(sock);
      onErr = (e) => reject(new Error(`connect_error: ${e.message}${e.description?.message ? ` (${e.description.message})` : ''} on ${sock.io.uri}${sock.nsp}`));
      sock.once('connect', onOk);
      sock.once('connect_error', onErr);
    }),
    deadline(ms),
  ]).finally(() => { sock.off('connect', onOk); sock.off('connect_error', onErr); });
  if (!r) throw new Error('no connect within the deadline');
  return r;
}

// The next `ev` the socket receives (resolves with its args), or null at the deadline.
export function nextEvent(sock, ev, ms = 5000 * SLOW) {
  let h;
  return Promise.race([new Promise((resolve) => { h = (...a) => resolve(a); sock.once(ev, h); }), deadline(ms)])
    .finally(() => sock.off(ev, h));
}

// An emit with an ack callback: resolves with the ack's arguments (all of them), or throws on the ack timeout.
export function emitAck(sock, ev, ...args) {
  return new Promise((resolve, reject) => {
    sock.timeout(4000 * SLOW).emit(ev, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
  });
}

// Deep normalisation for comparisons: any binary → {bin: hex}; arrays and plain objects recursively.
// Over 64 bytes: the length and a SHA-256 instead of the hex, to keep assertion messages short.
function binKey(b) {
  if (b.length <= 64) return { bin: b.toString('hex') };
  return { binLength: b.length, sha256: createHash('sha256').update(b).digest('hex') };
}
export function norm(v) {
  if (v instanceof ArrayBuffer) return binKey(Buffer.from(v));
  if (ArrayBuffer.isView(v)) return binKey(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

// Readiness across nodes without knowing the server's subscriptions: `from` emits 'probe' every 100 ms until `to`
// receives one (probes are left out of sock.got everywhere).
export async function probeLink(from, to, what) {
  let seen = false;
  const h = () => { seen = true; };
  to.on('probe', h);
  try {
    await waitFor(() => { if (!seen) from.emit('probe', 1); return seen; }, 10000 * SLOW, `a probe ${what}`);
  } finally {
    to.off('probe', h);
  }
}

// ---- raw Engine.IO over websocket: every message queued (text as a string, binary as a Buffer); the server's
// pings ("2") are answered with "3" (unless answerPings is false) and kept out of the queue.
export class RawWs {
  constructor(port, { answerPings = true, query = '' } = {}) {
    this.queue = [];
    this.waiters = [];
    this.pings = 0; // server pings seen
    this.closeInfo = null;
    this.ws = new WebSocket(`ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket${query}`);
    this.ws.on('error', () => {}); // a close follows
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString(), at: Date.now() };
        resolve(this.closeInfo);
        this._wake();
      });
    });
    this.ws.on('message', (d, isBinary) => {
      const m = isBinary ? Buffer.from(d) : d.toString();
      if (m === '2') {
        this.pings++;
        if (answerPings) this.ws.send('3');
        this._wake();
        return;
      }
      this.queue.push(m);
      this._wake();
    });
  }

  _wake() { for (const w of this.waiters.splice(0)) w(); }

  // The next queued message, or null (closed, or the deadline passed).
  async next(ms = 3000 * SLOW) {
    const end = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.closeInfo || Date.now() >= end) return null;
      await Promise.race([new Promise((r) => this.waiters.push(r)), deadline(end - Date.now())]);
    }
    return this.queue.shift();
  }

  send(m) { this.ws.send(m); }

  // Resolves with the close info, or null when still open after ms.
  waitClosed(ms) { return Promise.race([this.closed, deadline(ms)]); }

  get isOpen() { return !this.closeInfo && this.ws.readyState === WebSocket.OPEN; }

  terminate() { this.ws.terminate(); }
}

// Open a raw websocket session: the open packet (parsed), then (unless connect is false) CONNECT to '/' with
// connectPayload and read the CONNECT reply and the first event the server sends.
export async function rawSession(port, { connect = true, connectPayload = '' } = {}) {
  const raw = new RawWs(port);
  const open = await raw.next(5000 * SLOW);
  if (typeof open !== 'string' || open[0] !== '0') throw new Error(`expected the open packet, got ${JSON.stringify(open)}`);
  raw.open = JSON.parse(open.slice(1));
  if (connect) {
    raw.send(`40${connectPayload}`);
    raw.connectReply = await raw.next();
  }
  return raw;
}

// ---- raw HTTP for long-polling

export function httpRequest(port, method, urlPath, body = null, timeoutMs = 3000 * SLOW) {
  return new Promise((resolve, reject) => {
    const headers = body != null ? { 'content-type': 'text/plain;charset=UTF-8', 'content-length': Buffer.byteLength(body) } : {};
    const req = http.request({ host: HOST, port, method, path: urlPath, headers, agent: false, timeout: timeoutMs }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
    if (body != null) req.write(body);
    req.end();
  });
}
