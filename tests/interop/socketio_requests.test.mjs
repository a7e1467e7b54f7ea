// Interop: the request channel of @socket.io/redis-adapter 8.3.0 in a mixed cluster on one redis-server. Node A
// (socketio_mixed_node.mjs --control: npm socket.io 4.8.4 with the official adapter, driven through POST /control) runs
// the cluster-wide operations, which publish JSON (msgpack for ack broadcasts) on socket.io-request#<nsp># and
// collect the answers on socket.io-response#<nsp>#: serverCount (PUBSUB NUMSUB), fetchSockets, allRooms, emit with
// acks (types 7/8/9), disconnectSockets, serverSideEmit; the test publishes the SOCKETS request (type 0) itself. Node
// B is a second Node node (target 'node': the proof that the test is right) or build/refserver (target 'refserver').
// Clients (npm socket.io-client 4.8.4) sit on both nodes; results are compared as exact sets with the ids the
// clients were given.
// REQUESTS_TARGETS=node or =refserver runs one target only (default: both).
// Run with: cd tests/interop && node --test socketio_requests.test.mjs
// Every process is started on a free loopback port and stopped by its PID; every wait has a deadline.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import notepack from 'notepack.io';
import { createClient } from 'redis';
import {
  QUIET_MS, SANITIZER_RE, SLOW, client, clients, closeClients, connected, httpRequest, logOf, redisCommand, removeTmp,
  sleep, startNode, startRedis, startScript, stopAll, stopProcess, waitFor, waitSubscribers,
} from './lib.mjs';

const want = process.env.REQUESTS_TARGETS || 'both';
const TARGETS = want === 'both' ? ['node', 'refserver'] : [want];
if (!['node', 'refserver', 'both'].includes(want)) throw new Error(`REQUESTS_TARGETS=${want}: node, refserver or both`);

// How long node A waits for the other nodes' answers (the adapter's requestsTimeout, 5 s by default): short, so that
// a request nobody answers (serverSideEmit) ends quickly, yet far above what an answer takes.
const REQUESTS_TIMEOUT = 2000 * SLOW;
const ACK_TIMEOUT = 2000 * SLOW; // io.timeout() of the ack broadcasts

after(async () => {
  closeClients();
  await stopAll();
  removeTmp();
});

const nodeArgs = (redis, name) => ['--redis', redis.url, '--name', name, '--namespace', '/chat',
  '--requests-timeout', String(REQUESTS_TIMEOUT)];
const startControl = (redis, name) => startScript('socketio_mixed_node.mjs', [...nodeArgs(redis, name), '--control'], name);
// Node B: another Node node (the reference run) or a refserver, on the given Redis.
const startSecond = (target, redis, name) => (target === 'node' ? startControl(redis, name)
  : startNode(name, redis.url, ['--sio-namespace', '/chat']));

// One operation on a control node (see socketio_mixed_node.mjs); the HTTP deadline is above every timeout inside.
async function ctl(node, body) {
  const r = await httpRequest(node.port, 'POST', '/control', JSON.stringify(body), 4 * REQUESTS_TIMEOUT + 5000 * SLOW);
  const out = JSON.parse(r.body);
  if (r.status !== 200) throw new Error(`control ${JSON.stringify(body)} → ${r.status}: ${out.error}`);
  return out.result;
}

const sorted = (xs) => [...xs].sort();
const ids = (socks) => sorted(socks.map((s) => s.id));
const fetched = async (node, body = {}) => (await ctl(node, { op: 'fetchSockets', ...body })).map((s) => s.id).sort();
const byJson = (xs) => xs.map((x) => JSON.stringify(x)).sort(); // a multiset of JSON values, comparable
// A multiset of id lists, comparable: each list sorted, then the lists in a fixed order.
const bag = (lists) => lists.map(sorted).sort((x, y) => (JSON.stringify(x) < JSON.stringify(y) ? -1 : 1));
const uniq = (p) => `${p}-${randomUUID().slice(0, 8)}`;

// A client that answers `ev` with `value` as its ack (what the node then forwards to A).
function acker(port, value, o) {
  const s = client(port, o);
  s.on('ask', (...a) => a.pop()(value));
  return s;
}

for (const target of TARGETS) {
  describe(`[${target}] @socket.io/redis-adapter requests from a Node node to node B (${target}) on one Redis`, () => {
    let redis;
    let A; // the Node node that issues the requests
    let B; // the node under test (Node in the reference run, refserver otherwise)
    before(async () => {
      redis = await startRedis();
      A = await startControl(redis, `req-A-${target}`);
      B = await startSecond(target, redis, `req-B-${target}`);
      // Best effort: the serverCount test below asserts the subscriptions; waiting here keeps the other tests from
      // racing a node that is still subscribing.
      for (const nsp of ['/', '/chat']) {
        await waitSubscribers(redis.port, `socket.io-request#${nsp}#`, 2).catch(() => {});
      }
    });
    // Every test counts every socket of a namespace: the clients of the previous test must be gone from both nodes
    // (a disconnect reaches the server asynchronously). No assertion here: if a node still lists one, the exact
    // sets of the next test show it.
    afterEach(async () => {
      closeClients();
      await waitFor(async () => (await fetched(A)).length === 0 && (await fetched(A, { nsp: '/chat' })).length === 0,
        5000 * SLOW, 'no socket left').catch(() => {});
    });
    after(async () => {
      closeClients();
      for (const p of [A, B, redis]) if (p) await stopProcess(p.proc);
      for (const p of [A, B]) if (p) assert.doesNotMatch(logOf(p.proc), SANITIZER_RE, `${p.nodeId} log`);
    });

    test('serverCount: node A counts node B on the request channel of / and of /chat (exactly 2)', async () => {
      assert.equal(await ctl(A, { op: 'serverCount' }), 2, '/');
      assert.equal(await ctl(A, { op: 'serverCount', nsp: '/chat' }), 2, '/chat');
    });

    test('fetchSockets: both nodes\' sockets, their ids, rooms, data and handshake; in() and except()', async () => {
      const R1 = uniq('R1');
      const R2 = uniq('R2');
      const auth = { token: 'tok-é', n: 7, list: [1, null] };
      const a1 = client(A.port, { room: R1 });
      const a2 = client(A.port, { transports: ['websocket'] });
      const b1 = client(B.port, { room: R1, auth, transports: ['websocket'] });
      const b2 = client(B.port, { room: R2, transports: ['polling'] });
      const b3 = client(B.port);
      const bChat = client(B.port, { nsp: '/chat', room: R1 });
      const all = [a1, a2, b1, b2, b3];
      await Promise.all([...all, bChat].map((s) => connected(s)));

      const got = await ctl(A, { op: 'fetchSockets' });
      assert.deepEqual(sorted(got.map((s) => s.id)), ids(all), 'every socket of /, of both nodes, once');
      const room = new Map([[a1, R1], [b1, R1], [b2, R2]]);
      for (const [name, s] of Object.entries({ a1, a2, b1, b2, b3 })) {
        const f = got.find((x) => x.id === s.id);
        assert.deepEqual(sorted(f.rooms), sorted([s.id, room.get(s)].filter(Boolean)), `the rooms of ${name}`);
        assert.deepEqual(f.data, {}, `${name}: socket.data`);
      }

      assert.deepEqual(await fetched(A, { rooms: [R1] }), ids([a1, b1]), 'in(R1)');
      assert.deepEqual(await fetched(A, { rooms: [R1, R2] }), ids([a1, b1, b2]), 'in(R1, R2)');
      assert.deepEqual(await fetched(A, { except: [R1] }), ids([a2, b2, b3]), 'except(R1)');
      assert.deepEqual(await fetched(A, { rooms: [R1], except: [b1.id] }), ids([a1]), 'in(R1).except(sid)');
      assert.deepEqual(await fetched(A, { rooms: [b2.id] }), ids([b2]), 'in(sid): a socket id is a room');
      assert.deepEqual(await fetched(A, { rooms: [uniq('none')] }), [], 'an empty room');
      assert.deepEqual(await fetched(A, { nsp: '/chat' }), ids([bChat]), '/chat: its own sockets only');
      assert.deepEqual(await fetched(A, { nsp: '/chat', rooms: [R1] }), ids([bChat]), '/chat in(R1)');
      // Last, so that the selections above are checked first. The fields of socket.handshake that a Node node fills
      // in, by kind (the values depend on the connection).
      const shape = (h) => ({
        address: h.address, eio: h.query?.EIO, transport: h.query?.transport,
        url: typeof h.url === 'string' && h.url.startsWith('/socket.io/?'),
        issued: typeof h.issued === 'number' && Math.abs(h.issued - Date.now()) < 60000, // ms since the epoch, now
        time: typeof h.time, secure: h.secure, xdomain: h.xdomain,
        headers: h.headers && typeof h.headers === 'object' && !Array.isArray(h.headers),
        room: h.query?.room, auth: h.auth,
      });
      for (const [name, s] of Object.entries({ a1, a2, b1, b2, b3 })) {
        const { handshake } = got.find((x) => x.id === s.id);
        assert.deepEqual(shape(handshake), { address: '127.0.0.1', eio: '4', transport: s.io.opts.transports?.[0] ?? 'polling',
          url: true, issued: true, time: 'string', secure: false, xdomain: false, headers: true, room: room.get(s),
          auth: s === b1 ? auth : {} },
        `the handshake of ${name} (auth: the CONNECT payload, {} when none): ${JSON.stringify(handshake)}`);
      }
    });

    // The SOCKETS request (type 0), as older versions of the adapter sent it for allSockets(); 8.3.0 still answers it
    // but no longer sends it (its allSockets() is local: RedisAdapter does not override sockets()), so it is
    // published here as-is. Every node of the namespace answers {requestId, sockets} on the response channel: A and
    // B, once each.
    async function socketsRequest(nsp, rooms) {
      const sub = createClient({ url: redis.url });
      sub.on('error', () => {});
      await sub.connect();
      const requestId = uniq('req');
      const answers = [];
      try {
        await sub.subscribe(`socket.io-response#${nsp}#`, (msg) => {
          // Decoded as the adapter's onresponse does: JSON when it starts with "{", else msgpack.
          let r;
          try {
            r = msg[0] === 0x7b ? JSON.parse(msg.toString()) : notepack.decode(msg);
          } catch (e) {
            r = { bad: e.message };
          }
          if (r.requestId === requestId || r.bad) answers.push(r);
        }, true);
        const request = JSON.stringify({ uid: 'C-test', requestId, type: 0, rooms });
        await redisCommand(redis.port, ['PUBLISH', `socket.io-request#${nsp}#`, request]);
        await waitFor(() => answers.length >= 2, 5000 * SLOW, 'two answers').catch(() => {}); // asserted by the caller
        await sleep(QUIET_MS); // a third answer shows up by then
      } finally {
        await sub.quit().catch(() => {});
      }
      return bag(answers.map((r) => (Array.isArray(r.sockets) ? r.sockets : [`not an answer: ${JSON.stringify(r)}`])));
    }

    test('the SOCKETS request (older allSockets) and allRooms include the sockets and rooms of node B', async () => {
      const R1 = uniq('R1');
      const R2 = uniq('R2');
      const a1 = client(A.port, { room: R1 });
      const b1 = client(B.port, { room: R1 });
      const b2 = client(B.port, { room: R2, transports: ['polling'] });
      const b3 = client(B.port, { transports: ['websocket'] });
      const bChat = client(B.port, { nsp: '/chat', room: R2 });
      await Promise.all([a1, b1, b2, b3, bChat].map((s) => connected(s)));
      assert.deepEqual(sorted(await ctl(A, { op: 'allSockets' })), ids([a1]), "8.3.0's allSockets(): A's own only");
      assert.deepEqual(await socketsRequest('/', []), bag([[a1.id], [b1.id, b2.id, b3.id]]), 'one answer per node');
      assert.deepEqual(await socketsRequest('/', [R1]), bag([[a1.id], [b1.id]]), 'SOCKETS in R1');
      assert.deepEqual(await socketsRequest('/', [R2, b3.id]), bag([[], [b2.id, b3.id]]), 'SOCKETS in R2 or b3');
      assert.deepEqual(await socketsRequest('/chat', []), bag([[], [bChat.id]]), 'SOCKETS of /chat');
      assert.deepEqual(sorted(await ctl(A, { op: 'allRooms' })), sorted([R1, R2, ...ids([a1, b1, b2, b3])]),
        "allRooms(): the rooms, each socket's own id included");
      assert.deepEqual(sorted(await ctl(A, { op: 'allRooms', nsp: '/chat' })), sorted([R2, bChat.id]), '/chat');
    });

    const ask = (body) => ctl(A, { op: 'emitWithAck', event: 'ask', args: ['q', { n: 1 }], timeout: ACK_TIMEOUT,
      ...body });
    // Each client got the event exactly once (with an ack callback) or not at all.
    async function expectAsked(asked, notAsked) {
      await sleep(QUIET_MS); // a duplicate, or a delivery to a client out of the selection, shows up by then
      for (const s of asked) assert.deepEqual(s.got, [['ask', 'q', { n: 1 }, '<ack fn>']], `${s.id} asked once`);
      for (const s of notAsked) assert.deepEqual(s.got, [], `${s.id} not asked`);
    }

    test('emit with acks: every client of both nodes answers: err null, one response each (objects too)', async () => {
      const socks = [acker(A.port, 'a1'), acker(A.port, 'a2', { transports: ['polling'] }),
        acker(B.port, { from: 'b1', list: [1, null, 'é'] }, { transports: ['websocket'] }),
        acker(B.port, 42, { transports: ['polling'] }), acker(B.port, 'b3')];
      await Promise.all(socks.map((s) => connected(s)));
      const r = await ask({});
      assert.equal(r.err, null, `no timeout (responses ${JSON.stringify(r.responses)})`);
      assert.deepEqual(byJson(r.responses), byJson(['a1', 'a2', { from: 'b1', list: [1, null, 'é'] }, 42, 'b3']));
      await expectAsked(socks, []);
    });

    test('emit with acks to(room) and except(room): only the selected clients are asked and answer', async () => {
      const R = uniq('R');
      const aIn = acker(A.port, 'aIn', { room: R });
      const aOut = acker(A.port, 'aOut');
      const bIn = acker(B.port, { b: 'in' }, { room: R });
      const bIn2 = acker(B.port, 2, { room: R, transports: ['polling'] });
      const bOut = acker(B.port, 'bOut', { room: uniq('other') });
      await Promise.all([aIn, aOut, bIn, bIn2, bOut].map((s) => connected(s)));
      const r = await ask({ rooms: [R] });
      assert.equal(r.err, null, `to(R): no timeout (responses ${JSON.stringify(r.responses)})`);
      assert.deepEqual(byJson(r.responses), byJson(['aIn', { b: 'in' }, 2]), 'to(R)');
      await expectAsked([aIn, bIn, bIn2], [aOut, bOut]);
      for (const s of [aIn, aOut, bIn, bIn2, bOut]) s.got.length = 0;
      const e = await ask({ except: [R] });
      assert.equal(e.err, null, `except(R): no timeout (responses ${JSON.stringify(e.responses)})`);
      assert.deepEqual(byJson(e.responses), byJson(['aOut', 'bOut']), 'except(R)');
      await expectAsked([aOut, bOut], [aIn, bIn, bIn2]);
    });

    test('emit with acks: a silent client of B ends the call with the timeout; the others answered', async () => {
      const socks = [acker(A.port, 'a1'), acker(B.port, 'b1'), acker(B.port, { b: 2 })];
      const silent = client(B.port); // no 'ask' handler: the ack callback is never called
      await Promise.all([...socks, silent].map((s) => connected(s)));
      const t0 = Date.now();
      const r = await ask({});
      assert.equal(r.err, 'operation has timed out');
      assert.ok(Date.now() - t0 >= ACK_TIMEOUT - 100, `not before the timeout (${Date.now() - t0} ms)`);
      assert.deepEqual(byJson(r.responses), byJson(['a1', 'b1', { b: 2 }]), 'the answers that came');
      await expectAsked([...socks, silent], []);
    });

    test('emit with acks in /chat: the clients of /chat on both nodes, not those of /', async () => {
      const chat = [acker(A.port, 'aChat', { nsp: '/chat' }), acker(B.port, 'bChat', { nsp: '/chat' }),
        acker(B.port, ['bChat2'], { nsp: '/chat', transports: ['polling'] })];
      const root = [acker(A.port, 'aRoot'), acker(B.port, 'bRoot')];
      await Promise.all([...chat, ...root].map((s) => connected(s)));
      const r = await ask({ nsp: '/chat' });
      assert.equal(r.err, null, `no timeout (responses ${JSON.stringify(r.responses)})`);
      assert.deepEqual(byJson(r.responses), byJson(['aChat', 'bChat', ['bChat2']]));
      await expectAsked(chat, root);
    });

    test('disconnectSockets: in(sid of a client of B): it only; close=true: a room, whole connections', async () => {
      const D = uniq('D');
      const a1 = client(A.port, { room: D });
      const a2 = client(A.port);
      // b1 and b2 share their connection with a /chat socket: close=false leaves it, close=true takes it along.
      const b1 = client(B.port, { multiplex: true });
      const b1Chat = client(B.port, { nsp: '/chat', multiplex: true });
      const b3 = client(B.port, { room: D, transports: ['polling'] });
      const b4 = client(B.port, { transports: ['websocket'] });
      await Promise.all([a1, a2, b1, b1Chat, b3, b4].map((s) => connected(s)));
      // b2 has a Manager of its own (forceNew), shared with b2Chat; b1 and b1Chat share socket.io-client's cached one.
      const b2 = client(B.port, { room: D, transports: ['websocket'] });
      const b2Chat = b2.io.socket('/chat');
      b2Chat.got = [];
      await Promise.all([connected(b2), connected(b2Chat)]);
      clients.add(b2Chat);
      const all = { a1, a2, b1, b1Chat, b2, b2Chat, b3, b4 };
      assert.equal(b1.io, b1Chat.io, 'b1 and b1Chat: one Engine.IO connection');
      const reasons = {};
      for (const [n, s] of Object.entries(all)) s.on('disconnect', (why) => { reasons[n] = why; });

      await ctl(A, { op: 'disconnectSockets', rooms: [b1.id], close: false });
      // No throw at the deadline: the assertion below says what happened instead.
      await waitFor(() => reasons.b1, 5000 * SLOW, 'b1 disconnected').catch(() => {});
      await sleep(QUIET_MS); // another disconnect shows up by then
      // Copies: the afterEach disconnects of the others would show up in a failure message later.
      assert.deepEqual({ ...reasons }, { b1: 'io server disconnect' }, 'close=false: b1 only, by the server');
      assert.deepEqual(await fetched(A), ids([a1, a2, b2, b3, b4]), 'fetchSockets after: b1 only is gone');
      assert.deepEqual(await fetched(A, { nsp: '/chat' }), ids([b1Chat, b2Chat]), '/chat: b1Chat stays');

      await ctl(A, { op: 'disconnectSockets', rooms: [D], close: true });
      await waitFor(() => Object.keys(reasons).length >= 5, 5000 * SLOW, 'the room disconnected').catch(() => {});
      await sleep(QUIET_MS);
      // What Node does: each socket of the connection gets a DISCONNECT packet, then the connection closes.
      assert.deepEqual({ ...reasons }, { b1: 'io server disconnect', a1: 'io server disconnect', b2: 'io server disconnect',
        b2Chat: 'io server disconnect', b3: 'io server disconnect' }, 'close=true: the room, and b2Chat with b2');
      assert.deepEqual(await fetched(A), ids([a2, b4]), 'fetchSockets after: the room is gone');
      assert.deepEqual(await fetched(A, { nsp: '/chat' }), ids([b1Chat]), '/chat after');
      await waitFor(() => b2.io.engine.readyState === 'closed', 5000 * SLOW, "b2's connection closed").catch(() => {});
      assert.equal(b2.io.engine.readyState, 'closed', "b2's Engine.IO connection");
    });

    test('serverSideEmit with an ack: B has no listener, so the call times out (as a Node node does)', async () => {
      const a = client(A.port);
      const b = client(B.port, { room: uniq('S') });
      await Promise.all([a, b].map((s) => connected(s)));
      await ctl(A, { op: 'serverSideEmit', event: 'hello', args: ['no ack', 1] }); // no answer expected, nothing breaks
      const t0 = Date.now();
      const r = await ctl(A, { op: 'serverSideEmitWithAck', event: 'hello', args: ['with ack', { n: 2 }] });
      assert.deepEqual(r, { err: 'timeout reached: only 0 responses received out of 1', responses: [] });
      assert.ok(Date.now() - t0 >= REQUESTS_TIMEOUT - 100, `after the requests timeout (${Date.now() - t0} ms)`);
      assert.deepEqual(await fetched(A), ids([a, b]), 'fetchSockets right after');
      await sleep(QUIET_MS);
      assert.deepEqual([a.got, b.got], [[], []], 'server-side events never reach clients');
    });

    test('negative control: a Node node on another Redis does not count node B nor see its sockets', async () => {
      const other = await startRedis();
      const L = await startControl(other, `req-L-${target}`); // alone on its Redis
      try {
        const a = client(A.port);
        const b = client(B.port, { room: uniq('N') });
        const l = acker(L.port, 'l');
        const bAsk = acker(B.port, 'b');
        await Promise.all([a, b, l, bAsk].map((s) => connected(s)));
        assert.equal(await ctl(L, { op: 'serverCount' }), 1, 'L counts itself only');
        assert.deepEqual(await fetched(L), ids([l]), "L's fetchSockets: its own socket only");
        assert.deepEqual(sorted(await ctl(L, { op: 'allRooms' })), ids([l]));
        const r = await ctl(L, { op: 'emitWithAck', event: 'ask', args: ['q', { n: 1 }], timeout: ACK_TIMEOUT });
        assert.deepEqual(r, { err: null, responses: ['l'] }, "L's ack broadcast reaches its own client only");
        // ... while A, on the Redis of B, sees B's sockets (so the above is not an artefact of the setup).
        assert.deepEqual(await fetched(A), ids([a, b, bAsk]), "A's fetchSockets: A's and B's sockets, not L's");
        await sleep(QUIET_MS);
        assert.deepEqual(bAsk.got, [], "L's ack broadcast never reached B");
      } finally {
        await stopProcess(L.proc);
        await stopProcess(other.proc);
      }
    });
  });
}
