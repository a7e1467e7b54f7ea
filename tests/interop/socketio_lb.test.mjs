// Interop: build/lb in front of two real Socket.IO v4 nodes (npm socket.io + @socket.io/redis-adapter on one
// redis-server, socketio_node_server.mjs), driven by npm socket.io-client with its default transports (long-polling
// first, then the upgrade to WebSocket), the flow that needs every polling request routed to the node that holds
// the engine.io session. HAProxy with `cookie SRVID insert indirect nocache` is the control, and lb without
// stickiness is the negative control that shows the checks can fail.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Every process is started on a free loopback port and stopped by its PID in after(); every wait has a deadline.
//
// Cookies: engine.io-client (6.5+) keeps a cookie jar in Node when `withCredentials: true`; one per client here.
// The jar is wrapped to record what the responses set and what each later request carried (the first request is
// sent from the constructor, before the wrap, with an empty jar by construction).
// All clients of a case share one keep-alive http.Agent, so one TCP connection to the balancer carries polling
// requests of several clients, possibly bound for both nodes: each request must be routed by its own cookie.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { io as ioClient } from 'socket.io-client';
import {
  HOST, SANITIZER_RE, SLOW, build, canConnect, deadline, freePort, httpGet, logOf, removeTmp, runCommand,
  sleep, startProcess, startRedis, startScript, stopAll, stopProcess, tmp, waitFor, waitSubscribers,
} from './lib.mjs';

const LB = path.join(build, 'lb');
const HAPROXY = process.env.HAPROXY || '/usr/sbin/haproxy';
const CLIENTS = 10;
const CASE_MS = 60000 * SLOW;

let redis;
const nodes = {}; // name -> { port, proc, name }
const procs = []; // every process of this file, for the logs on failure

after(async () => {
  await stopAll();
  removeTmp();
});

function tail(proc, n = 4000) {
  const s = logOf(proc);
  return s.length > n ? `...${s.slice(-n)}` : s;
}
const logs = (extra = []) => [...procs, ...extra].map((p) => `--- ${p.name} (pid ${p.pid}${p.exited ? `, exited ${JSON.stringify(p.exited)}` : ''})\n${tail(p)}`).join('\n');

// Run fn; on failure, rethrow with every process log appended.
async function withLogs(fn, extra = []) {
  try {
    return await fn();
  } catch (e) {
    e.message = `${e.message}\n=== process logs\n${logs(extra)}`;
    throw e;
  }
}

async function startSio(name) {
  const { port, proc } = await startScript('socketio_node_server.mjs', ['--redis', redis.url, '--name', name], `sio-${name}`);
  procs.push(proc);
  return { port, proc, name };
}

const nodeStats = async () => Object.fromEntries(await Promise.all(Object.values(nodes).map(async (n) =>
  [n.name, JSON.parse((await httpGet(n.port, '/stats')).body)])));

// ---- the balancers

async function startLb(sticky, name, extra = []) {
  const port = await freePort();
  const admin = await freePort();
  const argv = [LB, '--listen', `${HOST}:${port}`, '--admin', `${HOST}:${admin}`,
    '--backend', `n1=${HOST}:${nodes.n1.port}`, '--backend', `n2=${HOST}:${nodes.n2.port}`,
    '--sticky', sticky, '--health', 'path=/,interval=500ms,timeout=300ms', ...extra];
  const proc = startProcess(argv, name);
  await waitFor(async () => {
    if (proc.exited) throw new Error(`lb exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    if (!(await canConnect(port))) return false;
    const r = await httpGet(admin, '/nodes');
    return r.status === 200 && (r.body.match(/ up /g) || []).length === 2;
  }, 10000 * SLOW, `${name} accepting, both nodes up on /nodes`);
  return { port, admin, proc, argv };
}

async function startHaproxy() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(tmp, 'haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, [
    'global',
    '    maxconn 4000',
    'defaults',
    '    mode http',
    '    timeout connect 5s',
    '    timeout client 30s',
    '    timeout server 30s',
    '    timeout tunnel 1h',
    'frontend fe',
    `    bind ${HOST}:${port}`,
    '    default_backend nodes',
    'backend nodes',
    '    balance roundrobin',
    '    cookie SRVID insert indirect nocache',
    '    option httpchk GET /',
    `    server n1 ${HOST}:${nodes.n1.port} cookie n1 check inter 500ms`,
    `    server n2 ${HOST}:${nodes.n2.port} cookie n2 check inter 500ms`,
    '',
  ].join('\n'));
  const check = await runCommand([HAPROXY, '-c', '-f', cfg], 20000);
  assert.equal(check.code, 0, `haproxy -c -f ${cfg} says the config is invalid:\n${check.stdout}${check.stderr}\n${fs.readFileSync(cfg, 'utf8')}`);
  const proc = startProcess([HAPROXY, '-f', cfg, '-db'], 'haproxy');
  await waitFor(async () => {
    if (proc.exited) throw new Error(`haproxy exited ${JSON.stringify(proc.exited)}: ${logOf(proc)}`);
    return canConnect(port);
  }, 10000 * SLOW, 'haproxy accepting');
  return { port, proc };
}

// ---- socket.io clients

// A keep-alive agent shared by a case's clients that records, for each TCP connection, the cookie of every
// request it carried (the ws upgrade request included).
class TrackingAgent extends http.Agent {
  constructor() {
    super({ keepAlive: true });
    this.conns = new Map(); // socket -> [cookie header of each request]
  }

  addRequest(req, options) {
    req.once('socket', (s) => {
      if (!this.conns.has(s)) this.conns.set(s, []);
      this.conns.get(s).push(String(req.getHeader('cookie') ?? ''));
    });
    return super.addRequest(req, options);
  }
}

const errText = (e) => {
  if (e === undefined || e === null) return String(e);
  if (typeof e === 'string') return e;
  const desc = e.description instanceof Error ? e.description.message : e.description;
  const body = e.context?.responseText;
  return [e.message, desc !== undefined ? `description=${desc}` : '', body ? `body=${body}` : ''].filter(Boolean).join(' ');
};

function startClient(url, i, agent, extra = {}) {
  const rec = {
    i, hello: null, helloAt: 0, chats: [],
    connectErrors: [], engineErrors: [], upgradeErrors: [], disconnects: [],
    upgraded: null, setCookies: [], pollCookies: [], wsCookies: [],
  };
  const socket = ioClient(url, {
    autoConnect: false, forceNew: true, reconnection: false, withCredentials: true, agent,
    timeout: 15000 * SLOW, ...extra,
  });
  socket.on('hello', (h) => { rec.hello = h; rec.helloAt = Date.now(); });
  socket.on('chat', (m) => rec.chats.push(m));
  socket.on('connect_error', (e) => rec.connectErrors.push(errText(e)));
  socket.on('disconnect', (reason, d) => rec.disconnects.push(`${reason}${d ? ` ${errText(d)}` : ''}`));
  socket.connect(); // creates the engine and sends the handshake request, synchronously
  const engine = socket.io.engine;
  assert.ok(engine?._cookieJar, 'engine.io-client made no cookie jar: withCredentials in Node needs engine.io-client >= 6.5');
  engine.on('error', (e) => rec.engineErrors.push(errText(e)));
  engine.on('upgradeError', (e) => rec.upgradeErrors.push(errText(e)));
  engine.on('upgrade', (t) => { rec.upgraded = t.name; });

  // Record the jar's traffic: what each response set, what each later polling request and the ws upgrade carried.
  const jar = engine._cookieJar;
  const getter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(jar), 'cookies').get;
  let inPolling = false;
  Object.defineProperty(jar, 'cookies', {
    configurable: true,
    get() {
      const list = [...getter.call(jar)];
      (inPolling ? rec.pollCookies : rec.wsCookies).push(list.map(([n, c]) => `${n}=${c.value}`).join('; '));
      return list;
    },
  });
  const add = jar.addCookies;
  jar.addCookies = function addCookies(xhr) {
    inPolling = true;
    try { return add.call(this, xhr); } finally { inPolling = false; }
  };
  const parse = jar.parseCookies;
  jar.parseCookies = function parseCookies(values) {
    if (values && values.length) rec.setCookies.push([].concat(values));
    return parse.call(this, values);
  };
  return { socket, rec };
}

const summary = (clients) => clients.map(({ socket, rec }) => JSON.stringify({
  i: rec.i, hello: rec.hello, transport: socket.io.engine?.transport?.name, upgraded: rec.upgraded, connected: socket.connected,
  setCookies: rec.setCookies, pollCookies: rec.pollCookies.slice(0, 4), nPoll: rec.pollCookies.length, wsCookies: rec.wsCookies,
  connectErrors: rec.connectErrors, engineErrors: rec.engineErrors, upgradeErrors: rec.upgradeErrors, disconnects: rec.disconnects,
  chats: rec.chats.length,
})).join('\n');

function closeAll(clients, agent) {
  for (const { socket } of clients) socket.close();
  agent.destroy();
}

const cookieOf = (header, name) => {
  const m = new RegExp(`(?:^|;\\s*)${name}=([^;]*)`).exec(header);
  return m ? m[1] : null;
};

// The sticky flow, end to end: CLIENTS clients with default transports; every one says hello, both nodes get
// some, every one upgrades, the cookie is set on the first response and carried after, no session error anywhere,
// and one client's chat reaches the 9 others exactly once (through Redis to the other node).
// stickyCookie: 'SRVID' (value = node name) or 'io' (value = NODE~sid, the prefix mode).
async function stickyCase(t, port, stickyCookie) {
  const url = `http://${HOST}:${port}`;
  const before = await nodeStats();
  const agent = new TrackingAgent();
  const clients = [];
  try {
    for (let i = 0; i < CLIENTS; i++) clients.push(startClient(url, i, agent));
    const recs = clients.map((c) => c.rec);
    const why = () => `\n${summary(clients)}`;
    const anyError = () => recs.find((r) => r.connectErrors.length || r.engineErrors.length || r.upgradeErrors.length || r.disconnects.length);

    await waitFor(() => {
      const bad = anyError();
      if (bad) throw new Error(`client ${bad.i} failed`);
      return recs.every((r) => r.hello);
    }, 20000 * SLOW, `'hello' on all ${CLIENTS} clients${why()}`).catch((e) => { e.message += why(); throw e; });
    await waitFor(() => {
      const bad = anyError();
      if (bad) throw new Error(`client ${bad.i} failed`);
      return clients.every(({ socket, rec }) => rec.upgraded === 'websocket' && socket.io.engine.transport.name === 'websocket');
    }, 20000 * SLOW, 'every client upgraded to websocket').catch((e) => { e.message += why(); throw e; });

    // Spread over both nodes.
    const perNode = {};
    for (const r of recs) perNode[r.hello.node] = (perNode[r.hello.node] || 0) + 1;
    assert.deepEqual(Object.keys(perNode).sort(), ['n1', 'n2'], `clients on both nodes: ${JSON.stringify(perNode)}${why()}`);
    t.diagnostic(`clients per node: ${JSON.stringify(perNode)}`);
    t.diagnostic(`client 0: first response Set-Cookie ${JSON.stringify(recs[0].setCookies[0])}; ` +
      `request 2 Cookie "${recs[0].pollCookies[0]}"; ws upgrade Cookie "${recs[0].wsCookies[0]}"`);

    // The cookie: set by the first polling response, naming the node the client landed on; carried by every later
    // polling request and by the websocket upgrade request.
    for (const { socket, rec } of clients) {
      const node = rec.hello.node;
      const sid = socket.io.engine.id;
      const want = stickyCookie === 'SRVID' ? node : `${node}~${sid}`;
      const first = rec.setCookies[0] || [];
      const set = first.find((c) => c.startsWith(`${stickyCookie}=`));
      assert.ok(set, `client ${rec.i}: the first polling response set ${stickyCookie}: ${JSON.stringify(first)}${why()}`);
      assert.equal(cookieOf(set, stickyCookie), want, `client ${rec.i}: ${set}${why()}`);
      assert.ok(rec.pollCookies.length >= 1, `client ${rec.i}: polling requests after the first${why()}`);
      rec.pollCookies.forEach((h, k) => assert.equal(cookieOf(h, stickyCookie), want,
        `client ${rec.i}: polling request ${k + 2} carried "${h}"${why()}`));
      assert.ok(rec.wsCookies.length >= 1, `client ${rec.i}: the websocket upgrade request read the jar${why()}`);
      rec.wsCookies.forEach((h) => assert.equal(cookieOf(h, stickyCookie), want, `client ${rec.i}: ws upgrade carried "${h}"${why()}`));
      // A later Set-Cookie naming another node would be a re-balance: there must be none.
      for (const list of rec.setCookies) {
        for (const c of list.filter((x) => x.startsWith(`${stickyCookie}=`))) {
          const v = cookieOf(c, stickyCookie);
          assert.ok(stickyCookie === 'SRVID' ? v === node : v.startsWith(`${node}~`), `client ${rec.i}: later Set-Cookie ${c}${why()}`);
        }
      }
      if (stickyCookie === 'io') {
        assert.ok(!rec.setCookies.flat().some((c) => c.startsWith('SRVID=')), `prefix mode inserts no SRVID${why()}`);
      }
    }

    // Connections that carried requests bound for both nodes: the per-request routing was exercised.
    const mixed = [...agent.conns.values()].filter((hs) => {
      const ns = new Set(hs.map((h) => (cookieOf(h, stickyCookie) || '').split('~')[0]).filter(Boolean));
      return ns.size > 1;
    }).length;
    t.diagnostic(`keep-alive connections: ${agent.conns.size}, requests: ${[...agent.conns.values()].reduce((a, h) => a + h.length, 0)}, ` +
      `connections that carried requests for both nodes: ${mixed}`);

    // One chat, to the 9 others exactly once, never back to the sender.
    const nonce = randomUUID();
    const sender = clients[0];
    sender.socket.emit('chat', { from: 0, nonce });
    const gotIt = (r) => r.chats.filter((m) => m?.nonce === nonce).length;
    await waitFor(() => recs.slice(1).every((r) => gotIt(r) >= 1), 10000 * SLOW, `the chat on all ${CLIENTS - 1} others${why()}`);
    await sleep(500 * SLOW); // a duplicate would arrive within this
    recs.slice(1).forEach((r) => assert.equal(gotIt(r), 1, `client ${r.i} (on ${r.hello.node}) got the chat ${gotIt(r)} times${why()}`));
    assert.equal(gotIt(sender.rec), 0, `the sender got its own chat back${why()}`);
    const other = recs.filter((r) => r.hello.node !== sender.rec.hello.node).length;
    assert.ok(other > 0, 'some receivers were on the other node');
    t.diagnostic(`chat from client 0 on ${sender.rec.hello.node}: reached ${CLIENTS - 1} (${other} on the other node)`);

    // Nothing failed, on either side.
    const bad = anyError();
    assert.equal(bad, undefined, `no connect_error, transport error, upgrade error or disconnect${why()}`);
    const afterStats = await nodeStats();
    for (const n of ['n1', 'n2']) {
      assert.equal(afterStats[n].sessionUnknown - before[n].sessionUnknown, 0, `${n} answered "Session ID unknown": ${JSON.stringify(afterStats)}`);
      assert.equal(afterStats[n].connections - before[n].connections, perNode[n], `${n} counted the connections its hellos claim`);
    }
    assert.equal(afterStats.n1.chats + afterStats.n2.chats - before.n1.chats - before.n2.chats, 1, 'one chat reached a node');
  } finally {
    closeAll(clients, agent);
  }
  // Every socket gone from the nodes.
  await waitFor(async () => {
    const s = await nodeStats();
    return s.n1.open === 0 && s.n2.open === 0;
  }, 10000 * SLOW, 'every socket gone from both nodes');
}

async function stopLb(lb) {
  const exit = await stopProcess(lb.proc, 10000 * SLOW);
  assert.ok(exit.code === 0 || exit.sig === 'SIGTERM', `${lb.proc.name}: ${JSON.stringify(exit)}\n${logOf(lb.proc)}`);
  assert.doesNotMatch(logOf(lb.proc), SANITIZER_RE, logOf(lb.proc));
}

describe('lb in front of two Socket.IO nodes (npm socket.io + redis adapter), npm socket.io-client', () => {
  before(async () => {
    assert.ok(fs.existsSync(LB), `${LB} is not built (make build/lb)`);
    redis = await startRedis();
    procs.push(redis.proc);
    nodes.n1 = await startSio('n1');
    nodes.n2 = await startSio('n2');
    await withLogs(() => waitSubscribers(redis.port, 'socket.io-request#/#', 2));
  });

  test('--sticky cookie: polling then websocket, SRVID set and carried, chat across nodes', { timeout: CASE_MS }, async (t) => {
    const lb = await startLb('cookie', 'lb-cookie');
    await withLogs(async () => {
      await stickyCase(t, lb.port, 'SRVID');
      await stopLb(lb);
    }, [lb.proc]);
  });

  test('--sticky prefix:io: Socket.IO\'s io cookie prefixed with the node, same flow', { timeout: CASE_MS }, async (t) => {
    const lb = await startLb('prefix:io', 'lb-prefix');
    await withLogs(async () => {
      await stickyCase(t, lb.port, 'io');
      await stopLb(lb);
    }, [lb.proc]);
  });

  test('control: HAProxy with cookie SRVID insert indirect nocache, same flow', { timeout: CASE_MS }, async (t) => {
    const hp = await startHaproxy();
    await withLogs(async () => {
      await stickyCase(t, hp.port, 'SRVID');
      const exit = await stopProcess(hp.proc, 10000 * SLOW);
      assert.ok(exit.code === 0 || exit.sig === 'SIGTERM' || exit.code === 143, `haproxy: ${JSON.stringify(exit)}`);
    }, [hp.proc]);
  });

  test('negative control: --sticky none, polling only: sessions break ("Session ID unknown")', { timeout: CASE_MS }, async (t) => {
    // A client that failed can leave a long-poll GET held by the node that knows its session; lb (like HAProxy
    // without abortonclose) still waits for that response after the client has gone, and on SIGTERM finishes
    // requests in flight: up to the node's next ping (pingInterval, 25 s). The grace time bounds the stop.
    const lb = await startLb('none', 'lb-none', ['--timeout', 'grace=2s']);
    await withLogs(async () => {
      const before = await nodeStats();
      const agent = new TrackingAgent();
      const clients = [];
      try {
        for (let i = 0; i < CLIENTS; i++) clients.push(startClient(`http://${HOST}:${lb.port}`, i, agent, { transports: ['polling'] }));
        const recs = clients.map((c) => c.rec);
        const failed = (r) => r.connectErrors.length || r.engineErrors.length || r.disconnects.length;
        // Every client either fails, or says hello and stays up for 2 s.
        await waitFor(() => recs.every((r) => failed(r) || (r.hello && Date.now() - r.helloAt > 2000 * SLOW)),
          20000 * SLOW, `every client failed or stayed\n${summary(clients)}`);
        const nFailed = recs.filter(failed).length;
        t.diagnostic(`without stickiness: ${nFailed} of ${CLIENTS} clients failed; hello on ${recs.filter((r) => r.hello).length}`);
        assert.ok(nFailed >= 1, `at least one client fails without stickiness\n${summary(clients)}`);
        const errors = recs.flatMap((r) => [...r.connectErrors, ...r.engineErrors, ...r.disconnects]);
        assert.ok(errors.some((e) => /description=400/.test(e) && /Session ID unknown/.test(e)),
          `the failures are the node's 400 "Session ID unknown": ${JSON.stringify(errors)}`);
        assert.ok(!recs.some((r) => r.setCookies.flat().some((c) => c.startsWith('SRVID='))), '--sticky none inserts no SRVID');
        const s = await nodeStats();
        const unknown = s.n1.sessionUnknown + s.n2.sessionUnknown - before.n1.sessionUnknown - before.n2.sessionUnknown;
        assert.ok(unknown >= 1, `the nodes counted "Session ID unknown": ${JSON.stringify(s)}`);
        t.diagnostic(`nodes answered "Session ID unknown" ${unknown} times`);
      } finally {
        closeAll(clients, agent);
      }
      await stopLb(lb);
    }, [lb.proc]);
  });

  test('the nodes and redis stop cleanly', { timeout: 30000 * SLOW }, async () => {
    for (const n of Object.values(nodes)) {
      const e = await stopProcess(n.proc, 10000 * SLOW);
      assert.deepEqual(e, { code: 0, sig: null }, `${n.name}:\n${tail(n.proc)}`);
    }
    await Promise.race([stopProcess(redis.proc), deadline(10000 * SLOW)]);
  });
});
