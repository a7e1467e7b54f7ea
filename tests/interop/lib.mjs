// Shared helpers for the interop tests that start processes (the style of ws_client.test.mjs, as a module).
// Not a test file: node --test only picks up *.test.mjs here. Each test file is its own process, so the
// module-level state below (one temporary directory, the set of live children) belongs to one file.
// Every process is started on a free loopback port and stopped by its PID; every wait has a deadline.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

export async function startNode(nodeId, redisUrl, extra = []) {
  const port = await freePort();
  const proc = startProcess([REFSERVER, '--listen', `${HOST}:${port}`, '--redis', redisUrl, '--node-id', nodeId, ...extra],
    `refserver-${nodeId}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`refserver ${nodeId} exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return (await httpGet(port, '/')).status === 200;
  }, 10000 * SLOW, `refserver ${nodeId} GET /`);
  return { port, proc, nodeId };
}
