// Interop: build/loadgen --protocol socketio against real Socket.IO v4 nodes (npm socket.io 4.8 with
// @socket.io/redis-adapter, socketio_node_server.mjs as it is: on 'chat' it broadcasts to every other socket on
// every node, and on connection it emits 'hello', which loadgen must count as foreign). Two nodes on one
// redis-server, straight and through build/lb; a split brain (one node on another redis-server) is the negative
// control that shows the check can fail; an unknown namespace shows the CONNECT refusal.
// The polling transport (--transport polling, with and without the upgrade) runs against two nodes behind build/lb
// with its SRVID cookie and behind HAProxy with `cookie io prefix indirect nocache` (socket.io's own `io` cookie,
// prefixed with the server's id), each with zero loss; lb round robin without stickiness must fail with
// socketio_session_unknown.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Every process is started on a free loopback port and stopped by its PID in after(); every wait has a deadline.
// Assertions are about counts and verdicts, never about speed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  HOST, SANITIZER_RE, SLOW, build, canConnect, freePort, httpGet, logOf, removeTmp, runCommand, startProcess,
  startRedis, startScript, stopAll, stopProcess, tmp, waitFor,
} from './lib.mjs';

const LOADGEN = path.join(build, 'loadgen');
const LB = path.join(build, 'lb');
const RUN_MS = 40000 * SLOW; // one loadgen run's hard limit (a normal one takes a few seconds)
const CLIENTS = 50;
const ROUNDS = 5;

after(async () => {
  await stopAll();
  removeTmp();
});

async function startSio(name, redis) {
  const { port, proc } = await startScript('socketio_node_server.mjs', ['--redis', redis.url, '--name', name], `sio-${name}`);
  const stats = async () => JSON.parse((await httpGet(port, '/stats')).body);
  return { port, proc, name, stats, url: `ws://${HOST}:${port}/` };
}

async function startLb(n1, n2, flags = ['--sticky', 'cookie']) {
  const port = await freePort();
  const admin = await freePort();
  const proc = startProcess([LB, '--listen', `${HOST}:${port}`, '--admin', `${HOST}:${admin}`,
    '--backend', `n1=${HOST}:${n1.port}`, '--backend', `n2=${HOST}:${n2.port}`,
    ...flags, '--health', 'path=/,interval=500ms,timeout=300ms'], `lb-${port}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`lb exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    if (!(await canConnect(port))) return false;
    const r = await httpGet(admin, '/nodes');
    return r.status === 200 && (r.body.match(/ up /g) || []).length === 2;
  }, 10000 * SLOW, 'lb accepting, both nodes up on /nodes');
  return { port, proc, url: `ws://${HOST}:${port}/` };
}

const HAPROXY = process.env.HAPROXY || '/usr/sbin/haproxy';

// HAProxy in front of the two nodes with socket.io's documented stickiness: the `io` cookie the node sets, prefixed
// with the server's cookie id (`io=n1~<sid>`), stripped again on the way in.
async function startHaproxy(n1, n2) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(tmp, 'haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, [
    'global',
    '    maxconn 4000',
    'defaults',
    '    mode http',
    '    timeout connect 5s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    timeout tunnel 1h',
    'frontend fe',
    `    bind ${HOST}:${port}`,
    '    default_backend nodes',
    'backend nodes',
    '    balance roundrobin',
    '    cookie io prefix indirect nocache',
    `    server n1 ${HOST}:${n1.port} cookie n1`,
    `    server n2 ${HOST}:${n2.port} cookie n2`,
    '',
  ].join('\n'));
  const check = await runCommand([HAPROXY, '-c', '-f', cfg], 20000);
  assert.equal(check.code, 0, `haproxy -c -f ${cfg}:\n${check.stdout}${check.stderr}`);
  const proc = startProcess([HAPROXY, '-f', cfg, '-db'], `haproxy-${port}`);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`haproxy exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return canConnect(port);
  }, 10000 * SLOW, 'haproxy accepting');
  return { port, proc, url: `ws://${HOST}:${port}/` };
}

let runs = 0;
// Run loadgen --protocol socketio to its end with --out. { code, stdout, stderr, doc, what }.
async function loadgen(args) {
  runs += 1;
  const json = path.join(tmp, `sio-run-${runs}.json`);
  const argv = [LOADGEN, '--protocol', 'socketio', '--out', json, '-i', '100ms', ...args];
  const r = await runCommand(argv, RUN_MS, 'loadgen');
  const what = `loadgen ${argv.slice(1).join(' ')}\nexit ${r.code}${r.sig ? ` (${r.sig})` : ''}${r.timedOut ? ' (killed at the deadline)' : ''}` +
    `\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`;
  assert.equal(r.timedOut, false, what);
  assert.doesNotMatch(r.stderr, SANITIZER_RE, what);
  assert.ok(fs.existsSync(json), `no JSON written\n${what}`);
  const doc = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(doc.schema, 'wsh-loadgen/1', what);
  return { ...r, doc, what: `${what}\n--- json totals ${JSON.stringify(doc.totals)} errors ${JSON.stringify(doc.errors)}` };
}

// Every client connected, and every broadcast reached every other client exactly once, in order, in time.
function assertAllDelivered(r) {
  const { doc } = r;
  assert.equal(r.code, 0, `expected exit 0\n${r.what}`);
  assert.equal(doc.clients.connected, CLIENTS, r.what);
  assert.equal(doc.clients.failed, 0, r.what);
  assert.equal(doc.clients.dropped, 0, r.what);
  const t = doc.totals;
  assert.equal(t.expected, ROUNDS * (CLIENTS - 1), r.what);
  assert.equal(t.received, t.expected, r.what);
  for (const k of ['missing', 'late', 'duplicate', 'reordered']) assert.equal(t[k], 0, `${k}\n${r.what}`);
  for (const k of ['echoed', 'corrupt']) assert.equal(doc[k], 0, `${k}\n${r.what}`);
  assert.ok(doc.foreign >= CLIENTS, `every client's 'hello' is foreign\n${r.what}`);
  assert.equal(doc.verdict.pass, true, r.what);
}

describe('loadgen --protocol socketio against npm socket.io nodes', () => {
  let redis;
  let n1;
  let n2;
  before(async () => {
    assert.ok(fs.existsSync(LOADGEN), `${LOADGEN} is not built (make build/loadgen)`);
    redis = await startRedis();
    [n1, n2] = await Promise.all([startSio('n1', redis), startSio('n2', redis)]);
  });

  test('two nodes on one redis: clients spread over both, every broadcast crosses the adapter', async () => {
    const before1 = await n1.stats();
    const r = await loadgen(['-c', String(CLIENTS), '--rounds', String(ROUNDS), n1.url, n2.url]);
    assertAllDelivered(r);
    const [s1, s2] = [await n1.stats(), await n2.stats()];
    assert.equal(s1.connections - before1.connections, CLIENTS / 2, 'half the clients on n1');
    assert.equal(s1.chats + s2.chats, ROUNDS, 'one chat event per round reached a node');
    await waitFor(async () => (await n1.stats()).open === 0 && (await n2.stats()).open === 0, 5000 * SLOW,
      'every socket gone from both nodes');
  });

  test('through build/lb with --sticky cookie', async () => {
    const lb = await startLb(n1, n2);
    const r = await loadgen(['-c', String(CLIENTS), '--rounds', String(ROUNDS), lb.url]);
    assertAllDelivered(r);
  });

  test('an unknown namespace is refused: socketio_refused, exit 3', async () => {
    const r = await loadgen(['-c', '4', '--rounds', '1', '--namespace', '/nope', n1.url]);
    assert.equal(r.code, 3, r.what);
    assert.equal(r.doc.clients.failed, 4, r.what);
    assert.equal(r.doc.errors.socketio_refused?.count, 4, r.what);
    assert.match(r.doc.errors.socketio_refused.example, /socketio connect refused: Invalid namespace/, r.what);
  });

  test('negative control: a node on another redis (split brain) misses broadcasts, exit 1', async () => {
    const redis2 = await startRedis();
    const n3 = await startSio('n3', redis2);
    const r = await loadgen(['-c', String(CLIENTS), '--rounds', String(ROUNDS), '--deadline', `${1000 * SLOW}ms`,
      n1.url, n3.url]);
    assert.equal(r.code, 1, `expected exit 1\n${r.what}`);
    assert.ok(r.doc.totals.missing > 0, `missing > 0\n${r.what}`);
    assert.equal(r.doc.totals.duplicate, 0, r.what);
    assert.equal(r.doc.verdict.pass, false, r.what);
  });
});

describe('loadgen --transport polling against npm socket.io nodes behind a balancer', () => {
  let redis;
  let n1;
  let n2;
  let lb;
  let haproxy;
  const stopped = [];
  before(async () => {
    assert.ok(fs.existsSync(LOADGEN), `${LOADGEN} is not built (make build/loadgen)`);
    redis = await startRedis();
    [n1, n2] = await Promise.all([startSio('p1', redis), startSio('p2', redis)]);
    lb = await startLb(n1, n2);
    haproxy = await startHaproxy(n1, n2);
    stopped.push(lb.proc, haproxy.proc);
  });
  after(async () => { for (const p of stopped) await stopProcess(p); });

  // Every client on polling (or upgraded), both nodes used, every broadcast delivered once, in order.
  async function pollingRun(url, extra, upgraded) {
    const r = await loadgen(['--transport', 'polling', ...extra, '-c', String(CLIENTS), '--rounds', String(ROUNDS), url]);
    assertAllDelivered(r);
    assert.deepEqual(r.doc.errors, {}, r.what);
    assert.equal(r.doc.options.socketio.transport, 'polling', r.what);
    assert.deepEqual(r.doc.clients.transport, upgraded ? { upgraded: CLIENTS, polling: 0 } : { upgraded: 0, polling: CLIENTS }, r.what);
    return r;
  }

  test('lb --sticky cookie, --no-upgrade: every request of a session on its node (SRVID)', async () => {
    const before1 = await n1.stats();
    const r = await pollingRun(lb.url, ['--no-upgrade', '--cookie', 'SRVID', '--hold', '1s'], false);
    assert.deepEqual(Object.keys(r.doc.nodes).sort(), ['n1', 'n2'], r.what);
    const s1 = await n1.stats();
    assert.ok(s1.connections > before1.connections, 'some clients on p1');
    assert.equal(s1.sessionUnknown + (await n2.stats()).sessionUnknown, 0, 'no "Session ID unknown" on either node');
  });

  test('lb --sticky cookie, polling then the upgrade', async () => {
    await pollingRun(lb.url, ['--cookie', 'SRVID'], true);
  });

  test('HAProxy cookie io prefix, --no-upgrade', async () => {
    const r = await pollingRun(haproxy.url, ['--no-upgrade', '--hold', '1s'], false);
    assert.equal(r.doc.totals.duplicate, 0, r.what);
  });

  test('HAProxy cookie io prefix, polling then the upgrade', async () => {
    await pollingRun(haproxy.url, [], true);
  });

  test('negative control: lb round robin without stickiness fails with socketio_session_unknown', async () => {
    const rr = await startLb(n1, n2, ['--balance', 'roundrobin', '--sticky', 'none']);
    stopped.push(rr.proc);
    const r = await loadgen(['--transport', 'polling', '--no-upgrade', '-c', String(CLIENTS), '--rounds', '2', rr.url]);
    assert.notEqual(r.code, 0, r.what);
    assert.ok(r.doc.errors.socketio_session_unknown?.count > 0, r.what);
    assert.match(r.doc.errors.socketio_session_unknown.example, /Session ID unknown/, r.what);
    assert.equal(r.doc.verdict.pass, false, r.what);
    assert.ok((await n1.stats()).sessionUnknown + (await n2.stats()).sessionUnknown > 0, 'the nodes saw it too');
  });
});

// --binary and --ack against socketio_mixed_node.mjs (npm socket.io + @socket.io/redis-adapter): it re-broadcasts
// every event with its arguments, so a Buffer argument goes out re-encoded by socket.io-parser (451-[...] and the
// attachment, through the adapter as msgpack bin), and answers every ack request with an empty ack.
describe('loadgen --binary --ack against npm socket.io nodes that re-broadcast and ack', () => {
  let m1;
  let m2;
  let lb;
  before(async () => {
    assert.ok(fs.existsSync(LOADGEN), `${LOADGEN} is not built (make build/loadgen)`);
    const redis = await startRedis();
    const start = async (name) => {
      const { port, proc } = await startScript('socketio_mixed_node.mjs', ['--redis', redis.url, '--name', name], `mixed-${name}`);
      return { port, proc, name, url: `ws://${HOST}:${port}/` };
    };
    [m1, m2] = await Promise.all([start('b1'), start('b2')]);
    lb = await startLb(m1, m2);
  });

  // Zero loss, every emit acked exactly once, nothing foreign (this server greets nobody).
  function assertBinaryAcked(r) {
    const { doc } = r;
    assert.equal(r.code, 0, `expected exit 0\n${r.what}`);
    assert.equal(doc.clients.connected, CLIENTS, r.what);
    assert.equal(doc.clients.dropped, 0, r.what);
    const t = doc.totals;
    assert.equal(t.expected, ROUNDS * (CLIENTS - 1), r.what);
    assert.equal(t.received, t.expected, r.what);
    for (const k of ['missing', 'late', 'duplicate', 'reordered']) assert.equal(t[k], 0, `${k}\n${r.what}`);
    for (const k of ['echoed', 'corrupt', 'foreign']) assert.equal(doc[k], 0, `${k}\n${r.what}`);
    assert.deepEqual(doc.errors, {}, r.what);
    assert.equal(doc.ack.count, ROUNDS, r.what);
    assert.deepEqual(doc.acks, { expected: ROUNDS, received: ROUNDS, late: 0, missing: 0, duplicate: 0, unknown: 0 }, r.what);
  }

  for (const [name, extra] of [
    ['websocket, straight to both nodes', []],
    ['polling then the upgrade, straight to both nodes', ['--transport', 'polling']],
  ]) {
    test(name, async () => {
      assertBinaryAcked(await loadgen([...extra, '--binary', '--ack', '-c', String(CLIENTS), '--rounds', String(ROUNDS), m1.url, m2.url]));
    });
  }

  test('polling --no-upgrade through build/lb --sticky cookie', async () => {
    const r = await loadgen(['--transport', 'polling', '--no-upgrade', '--cookie', 'SRVID', '--binary', '--ack',
      '-c', String(CLIENTS), '--rounds', String(ROUNDS), lb.url]);
    assertBinaryAcked(r);
    assert.deepEqual(Object.keys(r.doc.nodes).sort(), ['n1', 'n2'], r.what);
  });

  test('websocket through build/lb, text events with acks', async () => {
    assertBinaryAcked(await loadgen(['--ack', '-c', String(CLIENTS), '--rounds', String(ROUNDS), lb.url]));
  });
});
