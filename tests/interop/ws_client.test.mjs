// Interop: build/refserver against npm `ws` (a client we did not write), two nodes on one redis-server.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Every process is started on a free loopback port and stopped by its PID in after(); every wait has a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const build = process.env.WSH_BUILD || path.resolve(here, '../../build');
const REFSERVER = path.join(build, 'refserver');
const HOST = '127.0.0.1';
const SLOW = build.replace(/\\/g, '/').includes('/san') ? 3 : 1; // sanitizer builds start slower
const QUIET_MS = 300;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A deadline for Promise.race that does not keep the process alive once the race is decided.
const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref()).then(() => null);

async function waitFor(pred, timeoutMs, what) {
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

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- processes, stopped by PID

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsh-interop-'));
const live = new Set();

function startProcess(argv, name) {
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
  child.on('error', () => {}); // reported through exit / the health wait
  live.add(proc);
  return proc;
}

const logOf = (proc) => { try { return fs.readFileSync(proc.logPath, 'utf8'); } catch { return ''; } };

async function stopProcess(proc, timeoutMs = 5000) {
  if (proc.exited) return proc.exited;
  try { process.kill(proc.pid, 'SIGTERM'); } catch { /* already gone */ }
  const r = await Promise.race([proc.exitPromise, deadline(timeoutMs)]);
  if (r) return r;
  try { process.kill(proc.pid, 'SIGKILL'); } catch { /* already gone */ }
  return proc.exitPromise;
}

process.on('exit', () => { for (const p of live) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } } });

// ---- redis

function redisCommand(port, args, timeoutMs = 2000) {
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

async function startRedis() {
  const port = await freePort();
  const proc = startProcess(['redis-server', '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--dir', tmp], `redis-${port}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`redis-server exited: ${logOf(proc).slice(-1000)}`);
    return (await redisCommand(port, ['PING'])).startsWith('+PONG');
  }, 10000 * SLOW, 'redis-server PING');
  return { port, proc, url: `redis://${HOST}:${port}` };
}

async function waitSubscribers(redisPort, channel, count) {
  await waitFor(async () => {
    const m = /:(\d+)\r\n$/.exec(await redisCommand(redisPort, ['PUBSUB', 'NUMSUB', channel]));
    return m && Number(m[1]) >= count;
  }, 5000 * SLOW, `${count} subscriber(s) on ${channel}`);
}

// ---- refserver

function httpGet(port, urlPath) {
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

async function startNode(nodeId, redisUrl, extra = []) {
  const port = await freePort();
  const proc = startProcess([REFSERVER, '--listen', `${HOST}:${port}`, '--redis', redisUrl, '--node-id', nodeId, ...extra],
    `refserver-${nodeId}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`refserver ${nodeId} exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return (await httpGet(port, '/')).status === 200;
  }, 10000 * SLOW, `refserver ${nodeId} GET /`);
  return { port, proc, nodeId };
}

// ---- ws helpers

function open(port, room) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${HOST}:${port}/ws?room=${encodeURIComponent(room)}`);
    ws.messages = [];
    ws.on('upgrade', (res) => { ws.nodeId = res.headers['x-node-id']; });
    ws.on('message', (data, isBinary) => ws.messages.push({ data, isBinary }));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function closed(ws, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no close event')), timeoutMs);
    ws.once('close', (code, reason) => { clearTimeout(t); resolve({ code, reason: reason.toString() }); });
  });
}

const sockets = new Set();
function track(ws) { sockets.add(ws); return ws; }

// ---------------------------------------------------------------------------------------------------------------

describe('refserver with npm ws', () => {
  let redis;
  let n1;
  let n2;

  before(async () => {
    assert.ok(fs.existsSync(REFSERVER), `${REFSERVER} is not built`);
    redis = await startRedis();
    n1 = await startNode('i1', redis.url, ['--max-message', '65536']);
    n2 = await startNode('i2', redis.url, ['--max-message', '65536']);
  });

  after(async () => {
    for (const ws of sockets) ws.terminate();
    for (const p of [...live]) await stopProcess(p);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('text and binary cross nodes exactly once; the sender gets nothing', { timeout: 30000 }, async () => {
    const room = `x-${randomUUID().slice(0, 8)}`;
    const a = track(await open(n1.port, room));
    const b = track(await open(n2.port, room));
    assert.equal(a.nodeId, 'i1');
    assert.equal(b.nodeId, 'i2');
    await waitSubscribers(redis.port, `wsh#${room}`, 2);
    const bin = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 10, 13]);
    a.send('héllo from ws ✓');
    a.send(bin);
    await waitFor(() => b.messages.length >= 2, 5000, 'two messages on node 2');
    await sleep(QUIET_MS);
    assert.equal(b.messages.length, 2, 'exactly once each');
    assert.equal(b.messages[0].isBinary, false);
    assert.equal(b.messages[0].data.toString('utf8'), 'héllo from ws ✓');
    assert.equal(b.messages[1].isBinary, true);
    assert.ok(Buffer.isBuffer(b.messages[1].data), 'binary arrives as a Buffer');
    assert.deepEqual(b.messages[1].data, bin);
    assert.equal(a.messages.length, 0, 'the sender gets nothing back');
  });

  test('a fragmented message from ws arrives whole on the other node', { timeout: 30000 }, async () => {
    const room = `f-${randomUUID().slice(0, 8)}`;
    const a = track(await open(n1.port, room));
    const b = track(await open(n2.port, room));
    await waitSubscribers(redis.port, `wsh#${room}`, 2);
    a.send('first part, ', { fin: false });
    a.send('second part, ', { fin: false });
    a.send('last part', { fin: true });
    await waitFor(() => b.messages.length >= 1, 5000, 'the message on node 2');
    await sleep(QUIET_MS);
    assert.equal(b.messages.length, 1);
    assert.equal(b.messages[0].data.toString(), 'first part, second part, last part');
  });

  test('close(1000) gets a clean close with 1000', { timeout: 30000 }, async () => {
    const ws = track(await open(n1.port, 'close'));
    const done = closed(ws);
    ws.close(1000, 'done');
    const { code } = await done;
    assert.equal(code, 1000, 'the server echoed 1000 (1006 would mean no close frame)');
  });

  test('ping from ws gets a pong with the same payload', { timeout: 30000 }, async () => {
    const ws = track(await open(n2.port, 'ping'));
    const pong = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no pong')), 5000);
      ws.once('pong', (data) => { clearTimeout(t); resolve(data); });
    });
    ws.ping(Buffer.from('are you there'));
    assert.equal((await pong).toString(), 'are you there');
  });

  test('a message over --max-message closes the ws client with 1009', { timeout: 30000 }, async () => {
    const ws = track(await open(n1.port, 'big'));
    const done = closed(ws);
    ws.send(Buffer.alloc(100000, 1));
    const { code } = await done;
    assert.equal(code, 1009);
  });

  test('the two nodes exit 0 on SIGTERM after serving all of the above', { timeout: 30000 }, async () => {
    for (const ws of sockets) ws.terminate();
    for (const node of [n1, n2]) {
      const exit = await stopProcess(node.proc, 10000 * SLOW);
      assert.deepEqual(exit, { code: 0, sig: null }, `${node.nodeId}:\n${logOf(node.proc).slice(-2000)}`);
      assert.doesNotMatch(logOf(node.proc), /AddressSanitizer|LeakSanitizer|runtime error:/);
    }
  });

  test('server pings reach ws, whose automatic pongs keep it past the idle timeout', { timeout: 30000 }, async () => {
    const node = await startNode('i4', 'none', ['--ping-interval', '0.3', '--idle-timeout', '1']);
    const ws = track(await open(node.port, 'idle'));
    let pings = 0;
    let closedCode = null;
    ws.on('ping', () => { pings += 1; });
    ws.on('close', (code) => { closedCode = code; });
    await sleep(2000);
    assert.ok(pings >= 2, `expected server pings, got ${pings}`);
    assert.equal(closedCode, null, 'a client answering pings must not be closed as idle');
    assert.equal(ws.readyState, WebSocket.OPEN);
    const done = closed(ws);
    ws.close(1000);
    assert.equal((await done).code, 1000);
    const exit = await stopProcess(node.proc, 10000 * SLOW);
    assert.deepEqual(exit, { code: 0, sig: null }, logOf(node.proc));
  });

  test('SIGTERM closes a ws client with 1001 and the node exits 0', { timeout: 30000 }, async () => {
    const node = await startNode('i3', 'none');
    const ws = track(await open(node.port, 'term'));
    const done = closed(ws);
    process.kill(node.proc.pid, 'SIGTERM');
    const { code } = await done;
    assert.equal(code, 1001);
    const exit = await Promise.race([node.proc.exitPromise, deadline(15000 * SLOW)]);
    assert.ok(exit, 'the node exited');
    assert.equal(exit.code, 0, logOf(node.proc));
  });
});
