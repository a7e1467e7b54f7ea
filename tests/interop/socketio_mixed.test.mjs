// Interop: a mixed cluster on one redis-server — a Node Socket.IO node (npm socket.io 4.8.4 with the official
// @socket.io/redis-adapter 8.3.0: socketio_mixed_node.mjs) and build/refserver, which speaks the adapter's wire
// format (msgpack [uid, packet, opts] on socket.io#<nsp># and socket.io#<nsp>#<room>#). Clients (npm
// socket.io-client 4.8.4) on both sides emit; each receiver must get every message exactly once and in order.
// Each test runs twice: 'node+node' (two Node nodes: the proof that the test is right) and 'node+refserver'.
// MIXED_TARGETS=node or =refserver runs one side only (default: both).
// Run with: cd tests/interop && node --test socketio_mixed.test.mjs
// Every process is started on a free loopback port and stopped by its PID; every wait has a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import notepack from 'notepack.io';
import { createClient } from 'redis';
import {
  QUIET_MS, SANITIZER_RE, SLOW, client, closeClients, connected, emitAck, logOf, norm, probeLink, removeTmp, sleep,
  startNode, startRedis, startScript, stopAll, stopProcess, waitFor,
} from './lib.mjs';

const TARGETS = (process.env.MIXED_TARGETS || 'node,refserver').split(',').map((s) => s.trim()).filter(Boolean);

after(async () => {
  closeClients();
  await stopAll();
  removeTmp();
});

// The second node of the pair: another Node node (the reference run) or a refserver, on the given Redis.
async function startSecond(target, redis, name) {
  if (target === 'node') return startScript('socketio_mixed_node.mjs', ['--redis', redis.url, '--name', name, '--namespace', '/chat'], name);
  return startNode(name, redis.url, ['--sio-namespace', '/chat']);
}

async function linkBothWays(p1, p2, namespaces = ['', '/chat']) {
  for (const nsp of namespaces) {
    const a = await connected(client(p1, { nsp, transports: ['websocket'] }));
    const b = await connected(client(p2, { nsp, transports: ['websocket'] }));
    await probeLink(a, b, `${nsp || '/'} ${p1} → ${p2}`);
    await probeLink(b, a, `${nsp || '/'} ${p2} → ${p1}`);
    a.disconnect();
    b.disconnect();
  }
}

const seqsFrom = (sock, ev, tag) => sock.got.filter((g) => g[0] === ev && g[1] === tag).map((g) => g[2]);
const range = (n) => [...Array(n).keys()];

const TEXT_ARGS = ['ünï "cødé" 😀 \\', -7, 2.5, { deep: { list: [null, true, 'x', { y: [] }] } }, null, [[1], [2, [3]]], ''];

for (const target of TARGETS) {
  const label = target === 'node' ? 'node+node' : 'node+refserver';
  describe(`[${label}] mixed Socket.IO cluster on one Redis (@socket.io/redis-adapter wire format)`, () => {
    let redis;
    let N; // the Node node
    let R; // the node under test (Node in the reference run, refserver otherwise)
    before(async () => {
      redis = await startRedis();
      N = await startScript('socketio_mixed_node.mjs', ['--redis', redis.url, '--name', `mixed-N-${target}`, '--namespace', '/chat'],
        `mixed-N-${target}`);
      R = await startSecond(target, redis, `mixed-R-${target}`);
      try {
        await linkBothWays(N.port, R.port);
      } catch (e) {
        throw new Error(`${e.message}; ${R.nodeId} on ${R.port} ${JSON.stringify(R.proc.exited)}: ${logOf(R.proc).slice(-3000)}`);
      }
    });
    after(async () => {
      closeClients();
      for (const p of [N, R, redis]) if (p) await stopProcess(p.proc);
      for (const p of [N, R]) if (p) assert.doesNotMatch(logOf(p.proc), SANITIZER_RE, `${p.nodeId} log`);
    });

    test('text events with several arguments, both sides emitting: every other client gets each exactly once, in order', async () => {
      const socks = [
        client(N.port, { transports: ['websocket'] }), client(N.port, { transports: ['polling'] }),
        client(R.port, { transports: ['websocket'] }), client(R.port, { transports: ['polling'] }), client(R.port),
      ];
      await Promise.all(socks.map((s) => connected(s)));
      const senders = [0, 1, 2, 3];
      const COUNT = 25;
      const acks = [];
      for (let i = 0; i < COUNT; i++) {
        for (const k of senders) {
          const args = ['t', `s${k}`, i, ...(i % 3 === 0 ? TEXT_ARGS : [{ k, i }])];
          if (i % 4 === 0) acks.push(emitAck(socks[k], ...args)); // an ack from the sender's node, never forwarded
          else socks[k].emit(...args);
        }
      }
      for (const a of await Promise.all(acks)) assert.deepEqual(a, [], 'an empty ack');
      const want = (s, k) => (s === socks[k] ? 0 : COUNT);
      await waitFor(() => socks.every((s) => senders.every((k) => seqsFrom(s, 't', `s${k}`).length >= want(s, k))),
        10000 * SLOW, 'every event everywhere');
      await sleep(QUIET_MS);
      for (const [j, s] of socks.entries()) {
        for (const k of senders) {
          assert.deepEqual(seqsFrom(s, 't', `s${k}`), s === socks[k] ? [] : range(COUNT), `client ${j} from s${k}`);
        }
        assert.equal(s.got.length, senders.filter((k) => socks[k] !== s).length * COUNT, `client ${j}: nothing else`);
        for (const g of s.got) {
          assert.deepEqual(g.slice(3), g[2] % 3 === 0 ? TEXT_ARGS : [{ k: Number(g[1].slice(1)), i: g[2] }],
            `client ${j}: the arguments of ${g[1]}#${g[2]}, unchanged (no ack callback)`);
        }
      }
    });

    test('binary events, both sides emitting: the bytes arrive identical, exactly once, in order', async () => {
      const n1 = await connected(client(N.port, { transports: ['websocket'] }));
      const n2 = await connected(client(N.port, { transports: ['polling'] }));
      const r1 = await connected(client(R.port, { transports: ['websocket'] }));
      const r2 = await connected(client(R.port, { transports: ['polling'] }));
      const payload = (tag, i) => [Buffer.from([i, 0, 255, i]), `${tag}-text`,
        { nested: Buffer.from(`${tag}-${i}-é`), list: [1, Buffer.alloc(i % 2 ? 3000 : 1, i)] }];
      const COUNT = 10;
      for (let i = 0; i < COUNT; i++) {
        n1.emit('b', 'n1', i, ...payload('n1', i));
        r1.emit('b', 'r1', i, ...payload('r1', i));
      }
      const big = randomBytes(100000);
      r2.emit('big', 'r2', 0, big);
      n2.emit('big', 'n2', 0, big);
      const expectFrom = new Map([[n1, ['r1']], [n2, ['n1', 'r1']], [r1, ['n1']], [r2, ['n1', 'r1']]]);
      await waitFor(() => [...expectFrom].every(([s, tags]) => tags.every((t) => seqsFrom(s, 'b', t).length >= COUNT)
        && s.got.filter((g) => g[0] === 'big').length >= (s === n2 || s === r2 ? 1 : 2)), 10000 * SLOW,
      'every binary event everywhere');
      await sleep(QUIET_MS);
      for (const [s, tags] of expectFrom) {
        for (const t of ['n1', 'r1']) {
          const got = s.got.filter((g) => g[0] === 'b' && g[1] === t);
          const want = tags.includes(t) ? range(COUNT).map((i) => ['b', t, i, ...payload(t, i)]) : [];
          assert.deepEqual(norm(got), norm(want), `from ${t}`);
        }
        const bigs = s.got.filter((g) => g[0] === 'big');
        const wantBig = ['n2', 'r2'].filter((t) => s !== { n2, r2 }[t]);
        assert.deepEqual(bigs.map((g) => g[1]).sort(), wantBig, 'the big events of the others, once each');
        for (const g of bigs) assert.deepEqual(norm(g[3]), norm(big));
      }
    });

    test('rooms: room-A traffic from the other side reaches room A only; roomless events reach every room', async () => {
      const A = `A-${randomUUID().slice(0, 8)}`;
      const B = `B-${randomUUID().slice(0, 8)}`;
      const nA = client(N.port, { room: A, transports: ['websocket'] });
      const nB = client(N.port, { room: B, transports: ['polling'] });
      const rA = client(R.port, { room: A, transports: ['websocket'] });
      const rA2 = client(R.port, { room: A, transports: ['polling'] });
      const rB = client(R.port, { room: B });
      const nFree = client(N.port, { transports: ['websocket'] });
      const rFree = client(R.port, { transports: ['websocket'] });
      const all = { nA, nB, rA, rA2, rB, nFree, rFree };
      await Promise.all(Object.values(all).map((s) => connected(s)));
      const COUNT = 10;
      for (let i = 0; i < COUNT; i++) {
        nA.emit('r', 'nA', i, A);
        rA.emit('r', 'rA', i, A);
        nB.emit('r', 'nB', i, B);
        rB.emit('r', 'rB', i, B);
        nFree.emit('r', 'nFree', i, 'all');
        rFree.emit('r', 'rFree', i, 'all');
      }
      const expect = {
        nA: ['rA', 'nFree', 'rFree'], rA: ['nA', 'nFree', 'rFree'], rA2: ['nA', 'rA', 'nFree', 'rFree'],
        nB: ['rB', 'nFree', 'rFree'], rB: ['nB', 'nFree', 'rFree'], nFree: ['rFree'], rFree: ['nFree'],
      };
      await waitFor(() => Object.entries(all).every(([n, s]) => s.got.length >= expect[n].length * COUNT), 10000 * SLOW,
        'room traffic');
      await sleep(QUIET_MS);
      for (const [n, s] of Object.entries(all)) {
        for (const t of ['nA', 'rA', 'nB', 'rB', 'nFree', 'rFree']) {
          assert.deepEqual(seqsFrom(s, 'r', t), expect[n].includes(t) ? range(COUNT) : [], `${n} from ${t}`);
        }
        assert.equal(s.got.length, expect[n].length * COUNT, `${n}: nothing else`);
      }
    });

    test('namespaces: /chat traffic stays in /chat and / traffic in /, across nodes, multiplexed or not', async () => {
      const nRoot = await connected(client(N.port, { transports: ['websocket'] }));
      const nChat = await connected(client(N.port, { nsp: '/chat', transports: ['polling'] }));
      const muxRoot = client(R.port, { multiplex: true });
      const muxChat = client(R.port, { nsp: '/chat', multiplex: true });
      await Promise.all([connected(muxRoot), connected(muxChat)]);
      assert.equal(muxRoot.io.engine.id, muxChat.io.engine.id, 'one Engine.IO connection for both namespaces');
      const rChat = await connected(client(R.port, { nsp: '/chat', transports: ['websocket'] }));
      const COUNT = 5;
      for (let i = 0; i < COUNT; i++) {
        nRoot.emit('ns', 'nRoot', i);
        nChat.emit('ns', 'nChat', i);
        muxRoot.emit('ns', 'muxRoot', i);
        muxChat.emit('ns', 'muxChat', i);
      }
      const expect = new Map([[nRoot, ['muxRoot']], [muxRoot, ['nRoot']], [nChat, ['muxChat']], [muxChat, ['nChat']],
        [rChat, ['nChat', 'muxChat']]]);
      await waitFor(() => [...expect].every(([s, tags]) => s.got.length >= tags.length * COUNT), 8000 * SLOW, 'namespace traffic');
      await sleep(QUIET_MS);
      for (const [s, tags] of expect) {
        for (const t of ['nRoot', 'nChat', 'muxRoot', 'muxChat']) {
          assert.deepEqual(seqsFrom(s, 'ns', t), tags.includes(t) ? range(COUNT) : [], `${tags} ← ${t}`);
        }
        assert.equal(s.got.length, tags.length * COUNT);
      }
    });

    test('the Redis wire: each node publishes msgpack [uid, {type:2,data,nsp}, {rooms,except,flags}] on the adapter channels', async () => {
      const sub = createClient({ url: redis.url });
      sub.on('error', () => {});
      await sub.connect();
      const seen = [];
      try {
        await sub.pSubscribe('socket.io#*', (msg, channel) => {
          let decoded;
          try { decoded = notepack.decode(msg); } catch (e) { decoded = `undecodable: ${e.message} ${msg.toString('hex')}`; }
          seen.push({ channel: channel.toString(), decoded });
        }, true);
        const room = `W-${randomUUID().slice(0, 8)}`;
        const out = {};
        for (const [name, port] of [['N', N.port], ['R', R.port]]) {
          const free = await connected(client(port, { transports: ['websocket'] }));
          const inRoom = await connected(client(port, { room, transports: ['websocket'] }));
          const chat = await connected(client(port, { nsp: '/chat', transports: ['websocket'] }));
          free.emit('wire', name, 'free', 1.5, { o: [null] });
          inRoom.emit('wire', name, 'room', Buffer.from([0, 1, 2]));
          chat.emit('wire', name, 'chat');
          out[name] = { free: free.id, inRoom: inRoom.id, chat: chat.id };
        }
        const mine = (name) => seen.filter((m) => Array.isArray(m.decoded) && Array.isArray(m.decoded[1]?.data)
          && m.decoded[1].data[0] === 'wire' && m.decoded[1].data[1] === name);
        await waitFor(() => mine('N').length >= 3 && mine('R').length >= 3, 5000 * SLOW, 'the publications');
        await sleep(QUIET_MS);
        assert.deepEqual(seen.filter((m) => typeof m.decoded === 'string'), [], 'every publication decodes');
        const uids = {};
        for (const name of ['N', 'R']) {
          const ms = mine(name);
          assert.equal(ms.length, 3, `${name}: one publication per event`);
          const [free, inRoom, chat] = ['free', 'room', 'chat'].map((k) => ms.find((m) => m.decoded[1].data[2] === k));
          assert.ok(free && inRoom && chat, `${name}: all three`);
          assert.equal(free.channel, 'socket.io#/#', `${name}: a namespace broadcast`);
          assert.equal(inRoom.channel, `socket.io#/#${room}#`, `${name}: a single-room broadcast`);
          assert.equal(chat.channel, 'socket.io#/chat#', `${name}: /chat`);
          const uid = free.decoded[0];
          assert.equal(typeof uid, 'string');
          assert.ok(uid.length > 0);
          uids[name] = uid;
          assert.deepEqual(free.decoded[1], { type: 2, data: ['wire', name, 'free', 1.5, { o: [null] }], nsp: '/' });
          assert.equal(inRoom.decoded[1].type, 2, 'binary is type 2 with msgpack bin, never 5');
          assert.equal(inRoom.decoded[1].nsp, '/');
          assert.deepEqual(norm(inRoom.decoded[1].data), norm(['wire', name, 'room', Buffer.from([0, 1, 2])]));
          assert.ok(Buffer.isBuffer(inRoom.decoded[1].data[3]), 'the binary argument is msgpack bin');
          assert.deepEqual(chat.decoded[1], { type: 2, data: ['wire', name, 'chat'], nsp: '/chat' });
          assert.deepEqual(free.decoded[2].rooms, []);
          assert.deepEqual(inRoom.decoded[2].rooms, [room]);
          assert.equal(inRoom.decoded[0], uid, 'one uid per node and namespace');
          assert.equal(typeof chat.decoded[0], 'string', '/chat has its own adapter uid');
          assert.ok(chat.decoded[0].length > 0);
          // Last, so that everything above is checked first: what the official adapter puts in except.
          assert.deepEqual(free.decoded[2].except, [out[name].free], 'socket.broadcast: the sender in except');
          assert.deepEqual(inRoom.decoded[2].except, [out[name].inRoom], 'socket.to(room): the sender in except');
          assert.deepEqual(chat.decoded[2].except, [out[name].chat], '/chat: the sender in except');
        }
        assert.notEqual(uids.N, uids.R, 'the nodes have different uids');
      } finally {
        await sub.quit().catch(() => {});
      }
    });

    // Frames from a publisher that is neither node (uid C-test, as @socket.io/redis-emitter would send them):
    // the receive rules of the adapter (SOCKETIO.md section 3), one rule per test.
    const frame = (data, rooms, except, nsp = '/') => notepack.encode(['C-test', { type: 2, data, nsp },
      { rooms, except, flags: {} }]);
    async function withPublisher(fn) {
      const pub = createClient({ url: redis.url });
      pub.on('error', () => {});
      await pub.connect();
      try { return await fn(pub); } finally { await pub.quit().catch(() => {}); }
    }
    // Waits for `want` (name → [[event, ...args]]), then compares everything received, so a miss or an extra shows.
    async function expectGot(socks, want) {
      const got = () => Object.fromEntries(Object.entries(socks).map(([k, v]) => [k, norm(v.got)]));
      await waitFor(() => Object.entries(socks).every(([k, v]) => v.got.length >= want[k].length), 5000 * SLOW,
        'the foreign frames').catch(() => {}); // the assertion below says who missed what
      await sleep(QUIET_MS);
      assert.deepEqual(got(), norm(want), `what each client received: ${JSON.stringify(got())}`);
    }

    test('a foreign publisher (uid C-test) reaches the clients of both nodes: namespace, room (binary too), /chat', async () => {
      const room = `F-${randomUUID().slice(0, 8)}`;
      const socks = {
        nFree: client(N.port, { transports: ['websocket'] }), rFree: client(R.port, { transports: ['polling'] }),
        nRoom: client(N.port, { room, transports: ['polling'] }), rRoom: client(R.port, { room, transports: ['websocket'] }),
        nChat: client(N.port, { nsp: '/chat', transports: ['websocket'] }),
        rChat: client(R.port, { nsp: '/chat', transports: ['websocket'] }),
      };
      await Promise.all(Object.values(socks).map((s) => connected(s)));
      await withPublisher(async (pub) => {
        await pub.publish('socket.io#/#', frame(['foreign', 'all', Buffer.from([9, 9])], [], []));
        await pub.publish(`socket.io#/#${room}#`, frame(['foreign', 'room', { b: Buffer.from([1]) }], [room], []));
        await pub.publish('socket.io#/chat#', frame(['foreign', 'chat'], [], [], '/chat'));
      });
      const all = ['foreign', 'all', Buffer.from([9, 9])];
      const inRoom = ['foreign', 'room', { b: Buffer.from([1]) }];
      await expectGot(socks, { nFree: [all], rFree: [all], nRoom: [all, inRoom], rRoom: [all, inRoom],
        nChat: [['foreign', 'chat']], rChat: [['foreign', 'chat']] });
    });

    test("a foreign frame's except list leaves those sockets out", async () => {
      const room = `E-${randomUUID().slice(0, 8)}`;
      const socks = {
        nRoom: client(N.port, { room, transports: ['websocket'] }), nRoomEx: client(N.port, { room, transports: ['websocket'] }),
        rRoom: client(R.port, { room, transports: ['websocket'] }), rRoomEx: client(R.port, { room, transports: ['polling'] }),
        rFreeEx: client(R.port, { transports: ['websocket'] }),
      };
      await Promise.all(Object.values(socks).map((s) => connected(s)));
      const { nRoomEx, rRoomEx, rFreeEx } = socks;
      await withPublisher(async (pub) => {
        await pub.publish(`socket.io#/#${room}#`, frame(['foreign', 'room'], [room], [nRoomEx.id, rRoomEx.id]));
        await pub.publish('socket.io#/#', frame(['foreign', 'all'], [], [rFreeEx.id, nRoomEx.id]));
      });
      await expectGot(socks, { nRoom: [['foreign', 'room'], ['foreign', 'all']], nRoomEx: [],
        rRoom: [['foreign', 'room'], ['foreign', 'all']], rRoomEx: [['foreign', 'all']], rFreeEx: [] });
    });

    test("a foreign frame for another namespace than its channel's is dropped", async () => {
      const socks = {
        nRoot: client(N.port, { transports: ['websocket'] }), rRoot: client(R.port, { transports: ['websocket'] }),
        nChat: client(N.port, { nsp: '/chat', transports: ['websocket'] }),
        rChat: client(R.port, { nsp: '/chat', transports: ['websocket'] }),
      };
      await Promise.all(Object.values(socks).map((s) => connected(s)));
      await withPublisher(async (pub) => {
        await pub.publish('socket.io#/#', frame(['foreign', 'wrong nsp'], [], [], '/chat'));
        await pub.publish('socket.io#/chat#', frame(['foreign', 'wrong nsp 2'], [], [], '/'));
        await pub.publish('socket.io#/#', frame(['foreign', 'marker'], [], [])); // then something that does arrive
        await pub.publish('socket.io#/chat#', frame(['foreign', 'marker'], [], [], '/chat'));
      });
      const m = [['foreign', 'marker']];
      await expectGot(socks, { nRoot: m, rRoot: m, nChat: m, rChat: m });
    });

    test('negative control: a node on another Redis is not linked — neither side hears it, while the real link works', async () => {
      const other = await startRedis();
      const X = await startSecond(target, other, `mixed-X-${target}`);
      try {
        const nListen = await connected(client(N.port, { transports: ['websocket'] }));
        const rListen = await connected(client(R.port, { transports: ['websocket'] }));
        const xListen = await connected(client(X.port, { transports: ['websocket'] }));
        const xSend = await connected(client(X.port, { transports: ['websocket'] }));
        const rSend = await connected(client(R.port, { transports: ['websocket'] }));
        const nSend = await connected(client(N.port, { transports: ['websocket'] }));
        for (let i = 0; i < 5; i++) {
          xSend.emit('neg', 'x', i);
          rSend.emit('neg', 'r', i);
          nSend.emit('neg', 'n', i);
        }
        // The real link delivers (so the window was long enough) ...
        await waitFor(() => seqsFrom(nListen, 'neg', 'r').length === 5 && seqsFrom(rListen, 'neg', 'n').length === 5
          && seqsFrom(xListen, 'neg', 'x').length === 5, 5000 * SLOW, 'the control traffic');
        await sleep(3 * QUIET_MS);
        // ... and nothing crosses between the two Redis servers, in either direction.
        assert.deepEqual(seqsFrom(nListen, 'neg', 'x'), [], 'the Node node never hears the unlinked node');
        assert.deepEqual(seqsFrom(rListen, 'neg', 'x'), [], 'nor does the linked second node');
        assert.deepEqual(seqsFrom(xListen, 'neg', 'n'), [], 'the unlinked node never hears the Node node');
        assert.deepEqual(seqsFrom(xListen, 'neg', 'r'), []);
        assert.deepEqual(seqsFrom(xListen, 'neg', 'x'), range(5), 'the unlinked node still serves its own clients');
      } finally {
        await stopProcess(X.proc);
        await stopProcess(other.proc);
      }
    });
  });
}
