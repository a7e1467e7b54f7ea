// Interop: build/refserver's Socket.IO v4 support (websocket transport) against npm socket.io-client 4.8.4, a client
// we did not write: two nodes on one redis-server, clients on both.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Every process is started on a free loopback port and stopped by its PID in after(); every wait has a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import {
  HOST, SANITIZER_RE, SLOW, deadline, httpGet, logOf, removeTmp, sleep, startNode, startRedis, stopAll, waitFor,
} from './lib.mjs';

const QUIET_MS = 300;
const PING_MS = 300; // --sio-ping-interval for these nodes
const PING_TIMEOUT_MS = 300;
const SID_RE = /^[A-Za-z0-9_-]{20}$/;

const clients = new Set();

// A socket.io-client socket on the websocket transport, no reconnection (a drop must stay visible); resolves once
// it is connected, with every 'chat' it receives collected in sock.got.
function connect(port, { room, nsp = '' } = {}) {
  const query = room ? { room } : {};
  const sock = io(`http://${HOST}:${port}${nsp}`, { transports: ['websocket'], reconnection: false, query, forceNew: true });
  clients.add(sock);
  sock.got = [];
  sock.on('chat', (...args) => sock.got.push(args));
  return sock;
}

async function connected(sock) {
  if (sock.connected) return sock;
  const r = await Promise.race([
    new Promise((resolve, reject) => {
      sock.once('connect', () => resolve(sock));
      sock.once('connect_error', reject);
    }),
    deadline(5000 * SLOW),
  ]);
  if (!r) throw new Error('no connect within the deadline');
  return r;
}

// Long-polling and the upgrade: socket.io-client's default transports (polling, then websocket), and polling alone.
function connectWith(port, room, transports) {
  const opts = { reconnection: false, query: { room }, forceNew: true };
  if (transports) opts.transports = transports;
  const sock = io(`http://${HOST}:${port}`, opts);
  clients.add(sock);
  sock.got = [];
  sock.on('chat', (...args) => sock.got.push(args));
  return sock;
}

// Each node PSUBSCRIBEs socket.io#/#* (the Redis adapter's channels) before it reports its Redis link up.
async function adapterReady(nodes) {
  await waitFor(async () => (await Promise.all(nodes.map((n) => httpGet(n.port, '/metrics'))))
    .every((r) => /^refserver_redis_up 1$/m.test(r.body)), 5000 * SLOW, 'both nodes on Redis');
}

describe('refserver Socket.IO v4 (websocket and polling transports) with socket.io-client', () => {
  let redis;
  let n1;
  let n2;
  const extra = ['--sio-ping-interval', String(PING_MS), '--sio-ping-timeout', String(PING_TIMEOUT_MS)];

  before(async () => {
    redis = await startRedis();
    n1 = await startNode('sio-n1', redis.url, extra);
    n2 = await startNode('sio-n2', redis.url, extra);
  });

  after(async () => {
    for (const s of clients) s.disconnect();
    await stopAll();
    for (const n of [n1, n2]) if (n) assert.doesNotMatch(logOf(n.proc), SANITIZER_RE, `${n.nodeId} log`);
    removeTmp();
  });

  test('clients on both nodes connect, and a chat reaches every other client exactly once, not the sender', async () => {
    const room = `chat-${randomUUID().slice(0, 8)}`;
    const socks = [connect(n1.port, { room }), connect(n1.port, { room }), connect(n2.port, { room }),
      connect(n2.port, { room })];
    await Promise.all(socks.map(connected));
    for (const s of socks) assert.match(s.id, SID_RE);
    assert.equal(new Set(socks.map((s) => s.id)).size, socks.length, 'socket ids are distinct');
    await adapterReady([n1, n2]);
    const other = connect(n2.port, { room: `${room}-other` }); // another room hears nothing
    await connected(other);

    socks[0].emit('chat', 'hello', { n: 1 });
    socks[2].emit('chat', 'from n2');
    await waitFor(() => socks[1].got.length === 2 && socks[3].got.length === 2 && socks[0].got.length === 1
      && socks[2].got.length === 1, 5000 * SLOW, 'both chats everywhere');
    await sleep(QUIET_MS);
    for (const s of [socks[1], socks[3]]) {
      assert.equal(s.got.length, 2, 'exactly once each');
      assert.deepEqual(new Set(s.got.map((a) => JSON.stringify(a))),
        new Set([JSON.stringify(['hello', { n: 1 }]), JSON.stringify(['from n2'])]));
    }
    assert.deepEqual(socks[0].got, [['from n2']], 'the sender does not get its own chat');
    assert.deepEqual(socks[2].got, [['hello', { n: 1 }]]);
    assert.deepEqual(other.got, []);
  });

  test('an emit with an ack callback gets its (empty) ack, and the others get the event without the ack id', async () => {
    const room = `ack-${randomUUID().slice(0, 8)}`;
    const a = await connected(connect(n1.port, { room }));
    const b = await connected(connect(n2.port, { room }));
    await adapterReady([n1, n2]);
    const acked = await Promise.race([a.timeout(3000 * SLOW).emitWithAck('chat', 'x'), deadline(4000 * SLOW)]);
    assert.equal(acked, undefined, 'an empty ack: no arguments');
    await waitFor(() => b.got.length === 1, 5000 * SLOW, 'the chat on the other node');
    assert.deepEqual(b.got, [['x']]);
  });

  test("a namespace other than '/' gets connect_error 'Invalid namespace'", async () => {
    const s = connect(n1.port, { nsp: '/nope' });
    const err = await Promise.race([new Promise((resolve) => s.once('connect_error', resolve)), deadline(5000 * SLOW)]);
    assert.ok(err, 'connect_error within the deadline');
    assert.equal(err.message, 'Invalid namespace');
  });

  test('server pings keep an idle client connected longer than pingInterval', async () => {
    const s = await connected(connect(n1.port));
    let pings = 0;
    s.io.on('ping', () => { pings++; });
    let dropped = null;
    s.on('disconnect', (why) => { dropped = why; });
    await sleep(5 * PING_MS);
    assert.equal(dropped, null, 'still connected');
    assert.ok(s.connected);
    assert.ok(pings >= 3, `pings seen: ${pings}`);
  });

  test('a client that stops answering pings is dropped', async () => {
    const s = await connected(connect(n1.port));
    const engine = s.io.engine;
    const send = engine._sendPacket.bind(engine); // engine.io-client 6.6: the pong goes through _sendPacket
    engine._sendPacket = (type, ...rest) => (type === 'pong' ? undefined : send(type, ...rest));
    const why = await Promise.race([new Promise((resolve) => s.once('disconnect', resolve)),
      deadline((PING_MS + PING_TIMEOUT_MS) * 4 * SLOW + 2000)]);
    assert.ok(why, 'dropped within the deadline');
    assert.equal(why, 'transport close');
  });

  test('the raw handshake: the open packet comes first, with the configured heartbeat', async () => {
    const ws = new WebSocket(`ws://${HOST}:${n2.port}/socket.io/?EIO=4&transport=websocket`);
    const first = await Promise.race([new Promise((resolve, reject) => {
      ws.once('message', (d, isBinary) => resolve({ d: d.toString(), isBinary }));
      ws.once('error', reject);
    }), deadline(5000 * SLOW)]);
    ws.terminate();
    assert.ok(first, 'a first frame');
    assert.equal(first.isBinary, false);
    assert.equal(first.d[0], '0');
    const open = JSON.parse(first.d.slice(1));
    assert.match(open.sid, SID_RE);
    assert.deepEqual(open.upgrades, []);
    assert.equal(open.pingInterval, PING_MS);
    assert.equal(open.pingTimeout, PING_TIMEOUT_MS);
    assert.equal(typeof open.maxPayload, 'number');
  });

  describe('refserver Socket.IO v4 (polling transport and upgrade) with socket.io-client', () => {
    test('default transports: clients on both nodes upgrade to websocket, and a chat reaches every other exactly once', async () => {
      const room = `up-${randomUUID().slice(0, 8)}`;
      const socks = [connectWith(n1.port, room), connectWith(n1.port, room), connectWith(n2.port, room),
        connectWith(n2.port, room)];
      await Promise.all(socks.map(connected));
      for (const s of socks) assert.match(s.id, SID_RE);
      await waitFor(() => socks.every((s) => s.io.engine.transport.name === 'websocket'), 5000 * SLOW,
        'every client upgraded');
      await adapterReady([n1, n2]);
      socks[0].emit('chat', 'hello', { n: 1 });
      socks[3].emit('chat', 'from n2');
      await waitFor(() => socks[1].got.length === 2 && socks[2].got.length === 2 && socks[0].got.length === 1
        && socks[3].got.length === 1, 5000 * SLOW, 'both chats everywhere');
      await sleep(QUIET_MS);
      for (const s of [socks[1], socks[2]]) {
        assert.equal(s.got.length, 2, 'exactly once each');
        assert.deepEqual(new Set(s.got.map((a) => JSON.stringify(a))),
          new Set([JSON.stringify(['hello', { n: 1 }]), JSON.stringify(['from n2'])]));
      }
      assert.deepEqual(socks[0].got, [['from n2']]);
      assert.deepEqual(socks[3].got, [['hello', { n: 1 }]]);
      for (const s of socks) assert.equal(s.io.engine.transport.name, 'websocket');
    });

    test("transports: ['polling'] only: connect, emit with an ack, receive broadcasts across nodes, stay up across pings", async () => {
      const room = `poll-${randomUUID().slice(0, 8)}`;
      const a = await connected(connectWith(n1.port, room, ['polling']));
      const b = await connected(connectWith(n2.port, room, ['polling']));
      const c = await connected(connectWith(n1.port, room, ['polling']));
      await adapterReady([n1, n2]);
      const acked = await Promise.race([a.timeout(3000 * SLOW).emitWithAck('chat', 'x'), deadline(4000 * SLOW)]);
      assert.equal(acked, undefined, 'an empty ack');
      b.emit('chat', 'y', [1, 2]);
      await waitFor(() => b.got.length === 1 && c.got.length === 2 && a.got.length === 1, 5000 * SLOW, 'chats');
      assert.deepEqual(b.got, [['x']]);
      assert.deepEqual(a.got, [['y', [1, 2]]]);
      assert.deepEqual(new Set(c.got.map((m) => JSON.stringify(m))), new Set([JSON.stringify(['x']),
        JSON.stringify(['y', [1, 2]])]));
      let dropped = null;
      a.on('disconnect', (why) => { dropped = why; });
      await sleep(5 * PING_MS);
      assert.equal(dropped, null, 'still connected after pings over polling');
      for (const s of [a, b, c]) assert.equal(s.io.engine.transport.name, 'polling');
    });

    test('a polling client and a websocket client in the same room hear each other', async () => {
      const room = `mix-${randomUUID().slice(0, 8)}`;
      const p = await connected(connectWith(n1.port, room, ['polling']));
      const w = await connected(connectWith(n2.port, room, ['websocket']));
      const w1 = await connected(connectWith(n1.port, room, ['websocket']));
      await adapterReady([n1, n2]);
      p.emit('chat', 'from polling');
      w.emit('chat', 'from websocket');
      await waitFor(() => p.got.length === 1 && w.got.length === 1 && w1.got.length === 2, 5000 * SLOW, 'both ways');
      assert.deepEqual(p.got, [['from websocket']]);
      assert.deepEqual(w.got, [['from polling']]);
    });
  });
});
