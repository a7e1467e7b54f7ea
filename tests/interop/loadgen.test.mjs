// Interop: build/loadgen against peers we did not write: a broadcast server on npm `ws` (ws_broadcast_server.mjs,
// with fault modes that echo, drop or duplicate deliveries and count what they did), its .hlog read by npm
// `hdr-histogram-js`, and wss:// through HAProxy's TLS termination in front of two refserver nodes on one redis-server.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Every process is started on a free loopback port and stopped by its PID in after(); every wait has a deadline.
// Assertions are about counts and verdicts, never about speed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as hdr from 'hdr-histogram-js';
import {
  HOST, SANITIZER_RE, SLOW, build, canConnect, freePort, here, httpGet, logOf, removeTmp, runCommand, startNode,
  startProcess, startRedis, stopAll, stopProcess, tmp, waitFor,
} from './lib.mjs';

const LOADGEN = path.join(build, 'loadgen');
const SERVER = path.join(here, 'ws_broadcast_server.mjs');
const HAPROXY = process.env.HAPROXY || '/usr/sbin/haproxy';
const RUN_MS = 40000 * SLOW; // one loadgen run's hard limit (a normal one takes a second or two)
const UNIT = 512; // the histogram's unit at our layout (HIST_NS_* in common/hist.h: 1 us lowest, 3 digits)

after(async () => {
  await stopAll();
  removeTmp();
});

// ---- loadgen

let runs = 0;
// Run loadgen to its end with --out (and --hlog when asked). { code, stdout, stderr, doc, json, hlog, what }.
async function loadgen(args, { hlog = false } = {}) {
  runs += 1;
  const json = path.join(tmp, `run-${runs}.json`);
  const hlogPath = hlog ? path.join(tmp, `run-${runs}.hlog`) : null;
  const argv = [LOADGEN, '--out', json, ...(hlogPath ? ['--hlog', hlogPath] : []), ...args];
  const r = await runCommand(argv, RUN_MS, 'loadgen');
  const what = `loadgen ${argv.slice(1).join(' ')}\nexit ${r.code}${r.sig ? ` (${r.sig})` : ''}${r.timedOut ? ' (killed at the deadline)' : ''}` +
    `\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`;
  assert.equal(r.timedOut, false, what);
  assert.doesNotMatch(r.stderr, SANITIZER_RE, what);
  let doc = null;
  if (fs.existsSync(json)) doc = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.ok(doc, `no JSON written\n${what}`);
  assert.equal(doc.schema, 'wsh-loadgen/1', what);
  return { ...r, doc, json, hlog: hlogPath, what: `${what}\n--- json totals ${JSON.stringify(doc.totals)}` };
}

function assertExit(r, code) {
  assert.equal(r.code, code, `expected exit ${code}\n${r.what}`);
}

// Every expected delivery arrived exactly once, in order, in time.
function assertClean(r, { connected, rounds, expected }) {
  const { doc } = r;
  assertExit(r, 0);
  assert.equal(doc.clients.connected, connected, r.what);
  assert.equal(doc.clients.failed, 0, r.what);
  assert.equal(doc.rounds.length, rounds, r.what);
  const t = doc.totals;
  assert.equal(t.expected, expected, r.what);
  assert.equal(t.received, expected, r.what);
  for (const k of ['missing', 'late', 'duplicate', 'reordered']) assert.equal(t[k], 0, `${k}\n${r.what}`);
  for (const k of ['echoed', 'corrupt']) assert.equal(doc[k], 0, `${k}\n${r.what}`);
  assert.equal(doc.latency.count, expected, r.what);
  assert.equal(doc.verdict.pass, true, r.what);
}

// ---- the npm ws broadcast server

async function startBroadcast(flags = []) {
  const port = await freePort();
  const proc = startProcess([process.execPath, SERVER, String(port), ...flags], `ws-broadcast-${port}`);
  await waitFor(() => {
    if (proc.exited) throw new Error(`ws_broadcast_server exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return logOf(proc).includes('listening');
  }, 10000 * SLOW, 'ws_broadcast_server "listening"');
  const stats = async () => JSON.parse((await httpGet(port, '/stats')).body);
  return { port, proc, stats, url: `ws://${HOST}:${port}/` };
}

// The server saw every client go (loadgen closes them all before it exits), then stops cleanly.
async function finishServer(srv) {
  await waitFor(async () => (await srv.stats()).open === 0, 5000 * SLOW, 'every client gone from the ws server');
  const stats = await srv.stats();
  const exit = await stopProcess(srv.proc);
  assert.deepEqual(exit, { code: 0, sig: null }, logOf(srv.proc));
  return stats;
}

describe('loadgen against a broadcast server on npm ws', () => {
  before(() => {
    assert.ok(fs.existsSync(LOADGEN), `${LOADGEN} is not built (make build/loadgen)`);
  });

  test('50 clients, 5 rounds: each of the 49 others gets every message once, in order', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast();
    const r = await loadgen(['-c', '50', '-r', '5', '-i', '50ms', srv.url]);
    assertClean(r, { connected: 50, rounds: 5, expected: 49 * 5 });
    r.doc.rounds.forEach((rd, i) => {
      assert.equal(rd.round, i + 1, r.what);
      assert.equal(rd.emitted, 1, r.what);
      assert.equal(rd.expected, 49, r.what);
      assert.equal(rd.received, 49, r.what);
    });
    assert.equal(r.doc.clients.closed_clean, 50, r.what);
    const s = await finishServer(srv);
    assert.equal(s.connections, 50, JSON.stringify(s));
    assert.deepEqual(s.rooms, { all: 0 }, 'no room parameter without --room/--rooms');
    assert.equal(s.messages, 5, 'one emitter, one message a round');
    assert.equal(s.binary, 0, 'text frames by default');
    assert.equal(s.delivered, r.doc.totals.received, 'what ws delivered is what loadgen counted');
  });

  test('--binary -s 1000: binary frames of the requested size, same verdict', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast();
    const r = await loadgen(['-c', '20', '-r', '3', '-i', '50ms', '--binary', '-s', '1000', srv.url]);
    assertClean(r, { connected: 20, rounds: 3, expected: 19 * 3 });
    const s = await finishServer(srv);
    assert.equal(s.messages, 3);
    assert.equal(s.binary, 3, 'ws saw binary frames');
  });

  test('--rooms 5 -e 5: each room hears only its own emitter', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast();
    const r = await loadgen(['-c', '50', '-r', '5', '-i', '50ms', '--rooms', '5', '-e', '5', srv.url]);
    assertClean(r, { connected: 50, rounds: 5, expected: 5 * 5 * 9 });
    r.doc.rounds.forEach((rd) => {
      assert.equal(rd.emitted, 5, r.what);
      assert.equal(rd.expected, 5 * 9, r.what);
    });
    // While connected the server saw 5 rooms of 10; they are empty now.
    const s = await finishServer(srv);
    assert.equal(s.connections, 50);
    const names = Object.keys(s.rooms);
    assert.equal(names.length, 5, `5 distinct room parameters, got ${JSON.stringify(names)}`);
    assert.ok(!names.includes('all'), 'every client named its room');
    assert.equal(s.messages, 25);
    assert.equal(s.delivered, 5 * 5 * 9, 'ws delivered within the rooms only');
  });

  test('a server that echoes to the sender: exit 1 with echoed > 0, and exit 0 with --echo', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast(['--echo']);
    const bad = await loadgen(['-c', '50', '-r', '5', '-i', '50ms', srv.url]);
    assertExit(bad, 1);
    assert.equal(bad.doc.verdict.pass, false, bad.what);
    assert.equal(bad.doc.echoed, 5, `the emitter got each of its 5 messages back\n${bad.what}`);
    // The others were served right: the echo is the only fault.
    assert.equal(bad.doc.totals.expected, 49 * 5, bad.what);
    assert.equal(bad.doc.totals.received, 49 * 5, bad.what);
    assert.equal(bad.doc.totals.missing, 0, bad.what);
    assert.equal(bad.doc.totals.duplicate, 0, bad.what);
    assert.ok(bad.doc.verdict.reasons.some((x) => /echo/i.test(x)), `a reason names the echo\n${bad.what}`);

    const good = await loadgen(['-c', '50', '-r', '5', '-i', '50ms', '--echo', srv.url]);
    assertClean(good, { connected: 50, rounds: 5, expected: 50 * 5 });
    const s = await finishServer(srv);
    assert.equal(s.echoed, 10, 'ws echoed 5 messages in each run');
  });

  test('a server that drops every 7th delivery: exit 1, missing == what it dropped', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast(['--drop-every', '7']);
    // Every round misses some, so each one waits out its deadline: keep it short. A slow delivery past it still
    // counts as arrived (late), never as missing.
    const r = await loadgen(['-c', '50', '-r', '3', '-i', '50ms', '--deadline', `${1000 * SLOW}ms`, srv.url]);
    assertExit(r, 1);
    const s = await finishServer(srv);
    assert.equal(s.dropped, Math.floor((49 * 3) / 7), `ws dropped what it was told to: ${JSON.stringify(s)}`);
    const t = r.doc.totals;
    assert.equal(t.expected, 49 * 3, r.what);
    assert.equal(t.missing, s.dropped, `loadgen's missing is exactly what ws dropped\n${r.what}`);
    assert.equal(t.received + t.late, s.delivered, r.what);
    assert.equal(t.duplicate, 0, r.what);
    assert.equal(r.doc.rounds.reduce((a, rd) => a + rd.missing, 0), s.dropped, 'the rounds add up to the total');
    assert.equal(r.doc.verdict.pass, false, r.what);
    assert.ok(r.doc.verdict.reasons.some((x) => /missing/.test(x)), `a reason names the missing messages\n${r.what}`);
  });

  test('a server that sends every 10th delivery twice: exit 1, duplicate == what it doubled', { timeout: 60000 * SLOW }, async () => {
    const srv = await startBroadcast(['--dup-every', '10']);
    const r = await loadgen(['-c', '50', '-r', '5', '-i', '50ms', srv.url]);
    assertExit(r, 1);
    const s = await finishServer(srv);
    assert.equal(s.duplicated, Math.floor((49 * 5) / 10), JSON.stringify(s));
    const t = r.doc.totals;
    assert.equal(t.received, 49 * 5, `every first copy arrived\n${r.what}`);
    assert.equal(t.missing, 0, r.what);
    assert.equal(t.duplicate, s.duplicated, `loadgen's duplicate is exactly what ws doubled\n${r.what}`);
    assert.ok(r.doc.verdict.reasons.some((x) => /duplicate/.test(x)), `a reason names the duplicates\n${r.what}`);
  });
});

// ---- .hlog and wss:// through HAProxy, two refserver nodes on one redis-server

// hdr-histogram-js reads the interval log; splits untagged (delivery) from tagged intervals, with their raw lines.
function readHlog(file) {
  const text = fs.readFileSync(file, 'utf8');
  const reader = new hdr.HistogramLogReader(text);
  const hists = [];
  for (let h = reader.nextIntervalHistogram(); h; h = reader.nextIntervalHistogram()) hists.push(h);
  const lines = text.split('\n').filter((l) => /^(Tag=[^,]*,)?\d/.test(l));
  assert.equal(lines.length, hists.length, 'one histogram per interval line');
  const intervals = hists.map((h, i) => {
    const tag = h.tag === 'NO TAG' ? null : h.tag; // the reader's NO_TAG
    const fields = lines[i].replace(/^Tag=[^,]*,/, '').split(',');
    return { h, tag, maxMs: Number(fields[2]) };
  });
  return { text, intervals };
}

// Two values the histogram cannot tell apart: 1/1000 of the value plus a unit (hdr-histogram-js reports a decoded
// max up to a unit above the bucket's top: allow two).
// The JSON gives milliseconds truncated to whole microseconds: one more microsecond of slack.
function assertWithinPrecision(actual, expected, what) {
  const tol = expected / 1000 + 2 * UNIT + 1000;
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);
}

function sh(argv, timeoutMs = 20000) {
  return runCommand(argv, timeoutMs).then((r) => {
    assert.equal(r.code, 0, `${argv.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    return r;
  });
}

// A CA, and server certificates it signs for the given subjectAltName, made with the openssl CLI in dir.
async function makeCa(dir) {
  const ca = { key: path.join(dir, 'ca.key'), pem: path.join(dir, 'ca.pem') };
  await sh(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', ca.key, '-out', ca.pem, '-days', '2', '-subj', '/CN=wsh interop test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return ca;
}

async function makeServerCert(dir, ca, name, san) {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const crt = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  const pem = path.join(dir, `${name}.pem`);
  fs.writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  await sh(['openssl', 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  await sh(['openssl', 'x509', '-req', '-in', csr, '-CA', ca.pem, '-CAkey', ca.key, '-CAcreateserial', '-out', crt,
    '-days', '2', '-extfile', ext]);
  await sh(['openssl', 'verify', '-CAfile', ca.pem, crt]);
  fs.writeFileSync(pem, fs.readFileSync(crt, 'utf8') + fs.readFileSync(key, 'utf8')); // HAProxy: cert then key
  return pem;
}

describe('loadgen with refserver nodes: .hlog read by hdr-histogram-js, wss:// through HAProxy', () => {
  let redis;
  let n1;
  let n2;
  let ca;
  let hp; // { port, badPort, proc }

  before(async () => {
    assert.ok(fs.existsSync(LOADGEN), `${LOADGEN} is not built (make build/loadgen)`);
    redis = await startRedis();
    n1 = await startNode('n1', redis.url);
    n2 = await startNode('n2', redis.url);

    // TLS material, then HAProxy: one frontend, two binds: one with a certificate for 127.0.0.1, one for another
    // address (the name check must refuse it), round robin over the two nodes.
    const dir = fs.mkdtempSync(path.join(tmp, 'tls-'));
    ca = await makeCa(dir);
    const good = await makeServerCert(dir, ca, 'server', 'IP:127.0.0.1');
    const wrong = await makeServerCert(dir, ca, 'other', 'IP:127.0.0.2,DNS:other.invalid');
    const port = await freePort();
    const badPort = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, [
      'global',
      '    maxconn 4000',
      'defaults',
      '    mode http',
      '    timeout connect 5s',
      '    timeout client 30s',
      '    timeout server 30s',
      '    timeout tunnel 60s',
      'frontend wss',
      `    bind ${HOST}:${port} ssl crt ${good}`,
      `    bind ${HOST}:${badPort} ssl crt ${wrong}`,
      '    default_backend nodes',
      'backend nodes',
      '    balance roundrobin',
      '    cookie SRVID insert indirect nocache httponly',
      `    server n1 ${HOST}:${n1.port} cookie c1`,
      `    server n2 ${HOST}:${n2.port} cookie c2`,
      '',
    ].join('\n'));
    const check = await runCommand([HAPROXY, '-c', '-f', cfg], 20000);
    assert.equal(check.code, 0, `haproxy -c -f ${cfg} says the config is invalid:\n${check.stdout}${check.stderr}\n${fs.readFileSync(cfg, 'utf8')}`);
    const proc = startProcess([HAPROXY, '-f', cfg, '-db'], 'haproxy');
    await waitFor(async () => {
      if (proc.exited) throw new Error(`haproxy exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
      return (await canConnect(port)) && (await canConnect(badPort));
    }, 10000 * SLOW, 'haproxy accepting on both binds');
    hp = { port, badPort, proc };
  });

  test('--hlog: hdr-histogram-js reads counts, max and p99 that agree with the JSON', { timeout: 60000 * SLOW }, async () => {
    const room = `hlog-${randomUUID().slice(0, 8)}`;
    const r = await loadgen(['-c', '100', '-r', '5', '-i', '50ms', '--room', room,
      `ws://${HOST}:${n1.port}/ws`, `ws://${HOST}:${n2.port}/ws`], { hlog: true });
    assertClean(r, { connected: 100, rounds: 5, expected: 99 * 5 });
    assert.deepEqual(r.doc.nodes, { n1: 50, n2: 50 }, r.what);

    const { text, intervals } = readHlog(r.hlog);
    assert.match(text, /^#\[Histogram log format version 1\.3\]$/m);
    const delivery = intervals.filter((x) => x.tag === null);
    const tagged = (t) => intervals.filter((x) => x.tag === t);
    assert.equal(tagged('connect').length, 1, 'one connect interval');
    assert.equal(tagged('handshake').length, 1, 'one handshake interval');
    assert.equal(intervals.length, delivery.length + 2, `no other tags: ${intervals.map((x) => x.tag)}`);
    assert.ok(delivery.length >= 5, `an interval per round at least: ${delivery.length}`);

    // The untagged intervals add up to the JSON's delivery latency.
    // (into a fresh histogram: reduce() without a seed would add into the first round's own)
    const sum = delivery.reduce((acc, x) => { acc.add(x.h); return acc; },
      hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3600e9, numberOfSignificantValueDigits: 3 }));
    const lat = r.doc.latency;
    assert.equal(sum.totalCount, lat.count, 'count');
    assert.equal(sum.totalCount, 99 * 5);
    assertWithinPrecision(sum.maxValue, lat.max_ms * 1e6, 'max');
    assertWithinPrecision(sum.getValueAtPercentile(99), lat.p99_ms * 1e6, 'p99');
    assertWithinPrecision(sum.getValueAtPercentile(50), lat.p50_ms * 1e6, 'p50');
    // The max column is the exact max in ms (%.3f): the largest one is the JSON's max.
    const maxMs = Math.max(...delivery.map((x) => x.maxMs));
    assert.ok(Math.abs(maxMs - lat.max_ms) <= 0.0015, `max column ${maxMs} ms vs JSON max ${lat.max_ms} ms`);
    // Each round's interval carries that round's max.
    r.doc.rounds.forEach((rd, i) => {
      assert.equal(delivery[i].h.totalCount, rd.received + rd.late, `round ${i + 1} count`);
      assert.ok(Math.abs(delivery[i].maxMs - rd.max_ms) <= 0.0015, `round ${i + 1} max ${delivery[i].maxMs} ms vs ${rd.max_ms} ms`);
    });

    // The tagged intervals: one sample per connected client.
    const [connect] = tagged('connect');
    const [handshake] = tagged('handshake');
    assert.equal(connect.h.totalCount, r.doc.clients.connected, 'connect count == connected clients');
    assert.equal(connect.h.totalCount, r.doc.connect.count);
    assert.equal(handshake.h.totalCount, r.doc.handshake.count);
    assert.equal(handshake.h.totalCount, 100);
    assertWithinPrecision(connect.h.maxValue, r.doc.connect.max_ms * 1e6, 'connect max');
    assertWithinPrecision(handshake.h.maxValue, r.doc.handshake.max_ms * 1e6, 'handshake max');
  });

  test('wss:// through HAProxy with --cacert: exit 0, clients on both nodes', { timeout: 60000 * SLOW }, async () => {
    const room = `tls-${randomUUID().slice(0, 8)}`;
    const r = await loadgen(['-c', '40', '-r', '3', '-i', '50ms', '--room', room, '--cacert', ca.pem,
      `wss://${HOST}:${hp.port}/ws`]);
    assertClean(r, { connected: 40, rounds: 3, expected: 39 * 3 });
    const nodes = r.doc.nodes;
    assert.ok(nodes.n1 > 0 && nodes.n2 > 0, `both nodes got clients: ${JSON.stringify(nodes)}\n${r.what}`);
    assert.equal(nodes.n1 + nodes.n2, 40, JSON.stringify(nodes));
    assert.equal(r.doc.clients.closed_clean, 40, r.what);
  });

  test('--cookie SRVID: where clients landed, read from the HAProxy cookie on the 101', { timeout: 60000 * SLOW }, async () => {
    const room = `ck-${randomUUID().slice(0, 8)}`;
    const r = await loadgen(['-c', '40', '-r', '2', '-i', '50ms', '--room', room, '--cacert', ca.pem,
      '--node-header', 'X-Not-There', '--cookie', 'SRVID', `wss://${HOST}:${hp.port}/ws`]);
    assertClean(r, { connected: 40, rounds: 2, expected: 39 * 2 });
    const nodes = r.doc.nodes;
    assert.deepEqual(Object.keys(nodes).sort(), ['c1', 'c2'], JSON.stringify(nodes));
    assert.equal(nodes.c1 + nodes.c2, 40, JSON.stringify(nodes));
  });

  test('wss:// without --cacert: the system store does not know our CA, exit 3 with TLS errors', { timeout: 60000 * SLOW }, async () => {
    const r = await loadgen(['-c', '40', '-r', '3', '-i', '50ms', `wss://${HOST}:${hp.port}/ws`]);
    assertExit(r, 3);
    assert.equal(r.doc.clients.connected, 0, r.what);
    assert.equal(r.doc.clients.failed, 40, r.what);
    assert.ok(r.doc.errors.tls, `errors name the tls kind: ${JSON.stringify(r.doc.errors)}`);
    assert.equal(r.doc.errors.tls.count, 40, JSON.stringify(r.doc.errors));
    assert.equal(r.doc.verdict.pass, false, r.what);
  });

  test('wss:// with --insecure: exit 0 without verifying', { timeout: 60000 * SLOW }, async () => {
    const room = `ins-${randomUUID().slice(0, 8)}`;
    const r = await loadgen(['-c', '40', '-r', '3', '-i', '50ms', '--room', room, '--insecure',
      `wss://${HOST}:${hp.port}/ws`]);
    assertClean(r, { connected: 40, rounds: 3, expected: 39 * 3 });
  });

  test('wss:// to a certificate our CA signed for another address: exit 3, the name check refuses it', { timeout: 60000 * SLOW }, async () => {
    const r = await loadgen(['-c', '5', '-r', '1', '--cacert', ca.pem, `wss://${HOST}:${hp.badPort}/ws`]);
    assertExit(r, 3);
    assert.equal(r.doc.clients.connected, 0, r.what);
    assert.equal(r.doc.errors.tls?.count, 5, JSON.stringify(r.doc.errors));
  });

  test('haproxy and the nodes stop cleanly', { timeout: 30000 * SLOW }, async () => {
    const exit = await stopProcess(hp.proc, 10000 * SLOW);
    assert.ok(exit.code === 0 || exit.sig === 'SIGTERM' || exit.code === 143, `haproxy: ${JSON.stringify(exit)}\n${logOf(hp.proc)}`);
    for (const node of [n1, n2]) {
      const e = await stopProcess(node.proc, 10000 * SLOW);
      assert.deepEqual(e, { code: 0, sig: null }, `${node.nodeId}:\n${logOf(node.proc).slice(-2000)}`);
      assert.doesNotMatch(logOf(node.proc), SANITIZER_RE);
    }
  });
});
