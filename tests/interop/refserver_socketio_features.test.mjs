// Interop: refserver's Socket.IO features against npm socket.io-client 4.8.4 and raw Engine.IO/Socket.IO packets.
// Every test runs twice, against a Node reference that behaves the same way (npm socket.io 4.8.4: the proof that
// the test itself is right) and against build/refserver:
//  - the conformance profile (`refserver --profile conformance`), the reference server of the official
//    socket.io-protocol test suite (socketio_conformance_node.mjs): auth echoed, message → message-back,
//    message-with-ack, /custom, heartbeat 300/200, maxPayload 1e6, connectTimeout 1 s, protocol errors;
//  - the default profile: two nodes on one redis-server (socketio_mixed_node.mjs --namespace /chat, or refserver
//    --sio-namespace /chat): broadcasts to the other clients of the namespace (binary too), empty acks, namespaces
//    multiplexed on one connection, rooms from the handshake query.
// SIO_FEATURE_TARGETS=node or =refserver runs one side only (default: both).
// Run with: cd tests/interop && node --test refserver_socketio_features.test.mjs
// Every process is started on a free loopback port and stopped by its PID; every wait has a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  QUIET_MS, SANITIZER_RE, SID_RE, SLOW, client, closeClients, connected, emitAck, httpGet, httpRequest, logOf,
  nextEvent, norm, probeLink, rawSession, removeTmp, sleep, startNode, startRedis, startScript, stopAll, stopProcess,
  waitFor,
} from './lib.mjs';

const TARGETS = (process.env.SIO_FEATURE_TARGETS || 'node,refserver').split(',').map((s) => s.trim()).filter(Boolean);
const TRANSPORTS = [
  ['websocket', ['websocket']],
  ['polling then upgrade', undefined],
  ['polling', ['polling']],
];

after(async () => {
  closeClients();
  await stopAll();
  removeTmp();
});

function checkLog(srv) {
  if (srv && srv.proc) assert.doesNotMatch(logOf(srv.proc), SANITIZER_RE, `${srv.nodeId} log`);
}

// Mixed argument types: unicode (BMP and astral), quotes, backslashes, control characters, numbers, nested
// objects, null, arrays, booleans, an empty string.
const MIXED = ['héllo "wörld" ✓ 😀 \\ \n\t', 42, -1.5, 0, 3.25e-7, 9007199254740991, -70000, { a: { b: [1, 'x', null, { c: 'é"' }] }, e: {} }, null,
  [1, [2, [3, []]]], true, false, ''];

function binArgs() {
  return [
    Buffer.from([0, 1, 2, 0xfe, 0xff]),
    'between',
    { nested: Uint8Array.from([9, 8, 7]), list: [Buffer.from('élan', 'utf8'), 3, { deep: Buffer.from([0]) }] },
    randomBytes(70000), // over 64 KiB: a websocket frame with a 64-bit length, a long base64 item over polling
    Uint8Array.from([]),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// conformance profile

async function startConformance(target) {
  if (target === 'node') return startScript('socketio_conformance_node.mjs', ['--name', 'conf-node'], 'conf-node');
  return startNode('conf-ref', null, ['--profile', 'conformance']);
}

for (const target of TARGETS) {
  describe(`[${target}] Socket.IO conformance profile`, () => {
    let srv;
    before(async () => { srv = await startConformance(target); });
    after(async () => {
      closeClients();
      if (srv) await stopProcess(srv.proc);
      checkLog(srv);
    });

    for (const [tname, transports] of TRANSPORTS) {
      describe(`socket.io-client over ${tname}`, () => {
        test('auth is echoed: {} without auth, the object as given with one', async () => {
          const a = client(srv.port, { transports });
          const aAuth = nextEvent(a, 'auth');
          await connected(a);
          assert.match(a.id, SID_RE);
          assert.deepEqual(await aAuth, [{}]);
          const auth = { token: 'abc"é😀', n: 1, nested: { list: [1, null, true] } };
          const b = client(srv.port, { transports, auth });
          const bAuth = nextEvent(b, 'auth');
          await connected(b);
          assert.deepEqual(await bAuth, [auth]);
          if (transports === undefined) {
            await waitFor(() => a.io.engine.transport.name === 'websocket', 5000 * SLOW, 'the upgrade');
          }
        });

        test('message → message-back with several arguments of mixed types, in order', async () => {
          const s = await connected(client(srv.port, { transports }));
          s.emit('message', ...MIXED);
          s.emit('message', 'second', 2);
          s.emit('message');
          await waitFor(() => s.got.filter(([e]) => e === 'message-back').length === 3, 5000 * SLOW, '3 message-back');
          const backs = s.got.filter(([e]) => e === 'message-back');
          assert.deepEqual(backs, [['message-back', ...MIXED], ['message-back', 'second', 2], ['message-back']]);
        });

        test('message → message-back with binary arguments: the bytes come back identical', async () => {
          const s = await connected(client(srv.port, { transports }));
          const args = binArgs();
          s.emit('message', ...args);
          s.emit('message', Buffer.from('only one'));
          await waitFor(() => s.got.filter(([e]) => e === 'message-back').length === 2, 8000 * SLOW, '2 message-back');
          const backs = s.got.filter(([e]) => e === 'message-back');
          assert.deepEqual(norm(backs[0]), norm(['message-back', ...args]));
          assert.deepEqual(norm(backs[1]), norm(['message-back', Buffer.from('only one')]));
        });

        test('message-with-ack: the ack carries the arguments back (text and binary)', async () => {
          const s = await connected(client(srv.port, { transports }));
          assert.deepEqual(await emitAck(s, 'message-with-ack', ...MIXED), MIXED);
          assert.deepEqual(await emitAck(s, 'message-with-ack'), []);
          const args = binArgs();
          assert.deepEqual(norm(await emitAck(s, 'message-with-ack', ...args)), norm(args));
          assert.deepEqual(s.got.filter(([e]) => e !== 'auth'), [], 'acks only, no events');
        });

        test('/custom echoes its auth', async () => {
          const s = client(srv.port, { transports, nsp: '/custom', auth: { token: 'custom-1' } });
          const got = nextEvent(s, 'auth');
          await connected(s);
          assert.match(s.id, SID_RE);
          assert.deepEqual(await got, [{ token: 'custom-1' }]);
          const t = client(srv.port, { transports, nsp: '/custom' });
          const got2 = nextEvent(t, 'auth');
          await connected(t);
          assert.deepEqual(await got2, [{}]);
        });

        test("an unknown namespace gets connect_error 'Invalid namespace'", async () => {
          const s = client(srv.port, { transports, nsp: '/nope' });
          const err = await Promise.race([nextEvent(s, 'connect_error')]);
          assert.ok(err, 'connect_error within the deadline');
          assert.equal(err[0].message, 'Invalid namespace');
          assert.equal(s.connected, false);
        });
      });
    }

    test('the polling handshake: pingInterval 300, pingTimeout 200, maxPayload 1000000', async () => {
      const r = await httpGet(srv.port, '/socket.io/?EIO=4&transport=polling');
      assert.equal(r.status, 200);
      assert.equal(r.body[0], '0', `body ${r.body}`);
      const open = JSON.parse(r.body.slice(1));
      assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
      assert.match(open.sid, SID_RE);
      assert.deepEqual(open.upgrades, ['websocket']);
      assert.equal(open.pingInterval, 300);
      assert.equal(open.pingTimeout, 200);
      assert.equal(open.maxPayload, 1000000);
    });

    test('the websocket handshake: the same values, no upgrades', async () => {
      const raw = await rawSession(srv.port, { connect: false });
      raw.terminate();
      assert.match(raw.open.sid, SID_RE);
      assert.deepEqual(raw.open.upgrades, []);
      assert.equal(raw.open.pingInterval, 300);
      assert.equal(raw.open.pingTimeout, 200);
      assert.equal(raw.open.maxPayload, 1000000);
    });

    test('raw websocket: CONNECT replies, auth events and message-back on the wire', async () => {
      const raw = await rawSession(srv.port, { connectPayload: '{"token":"123"}' });
      try {
        assert.match(raw.connectReply, /^40\{"sid":"[A-Za-z0-9_-]{20}"\}$/);
        assert.equal(await raw.next(), '42["auth",{"token":"123"}]');
        raw.send('42["message",1,"2",{"3":[true]}]');
        assert.equal(await raw.next(), '42["message-back",1,"2",{"3":[true]}]');
        raw.send('421["message-with-ack",1,"2",{"3":[true]}]');
        assert.equal(await raw.next(), '431[1,"2",{"3":[true]}]');
        raw.send('40/custom,{"token":"abc"}');
        assert.match(await raw.next(), /^40\/custom,\{"sid":"[A-Za-z0-9_-]{20}"\}$/);
        assert.equal(await raw.next(), '42/custom,["auth",{"token":"abc"}]');
        raw.send('40/random');
        assert.equal(await raw.next(), '44/random,{"message":"Invalid namespace"}');
        raw.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
        raw.send(Buffer.from([1, 2, 3]));
        raw.send(Buffer.from([4, 5, 6]));
        assert.equal(await raw.next(), '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
        assert.deepEqual(await raw.next(), Buffer.from([1, 2, 3]));
        assert.deepEqual(await raw.next(), Buffer.from([4, 5, 6]));
        raw.send('451-12["message-with-ack",{"_placeholder":true,"num":0}]');
        raw.send(Buffer.from([7]));
        assert.equal(await raw.next(), '461-12[{"_placeholder":true,"num":0}]');
        assert.deepEqual(await raw.next(), Buffer.from([7]));
        assert.ok(raw.isOpen, 'still open');
        raw.send('41/custom,');
        raw.send('42["message","main still there"]');
        assert.equal(await raw.next(), '42["message-back","main still there"]', 'leaving /custom keeps /');
        // After DISCONNECT, '/' is not joined any more: socket.io keeps the Engine.IO connection open, and an event
        // for '/' is then a protocol error that closes it (a server that closes at the DISCONNECT also passes).
        raw.send('41');
        // Two server pings later the DISCONNECT has been read (socket.io handles a packet on the next tick, so an
        // event sent right behind it could still reach the socket); a server that closes at once is done here.
        const p0 = raw.pings;
        await waitFor(() => raw.pings >= p0 + 2 || raw.closeInfo, 3000 * SLOW, 'two pings after the DISCONNECT');
        if (raw.isOpen) raw.send('42["message","after the disconnect"]');
        assert.ok(await raw.waitClosed(5000 * SLOW), 'closed');
        assert.deepEqual(raw.queue, [], 'no message-back after the DISCONNECT');
      } finally {
        raw.terminate();
      }
    });

    // A packet the server must treat as a protocol error closes the whole connection (SOCKETIO.md section 2);
    // each case first proves its connection works (message → message-back).
    const BAD = [
      ['an EVENT for a namespace not joined', '42/custom,["message","x"]'],
      ['an EVENT whose payload is not an array', '42{"not":"an array"}'],
      ['an EVENT with truncated JSON', '42["message",'],
      ['an unknown packet type', '48["message"]'],
      ['a packet that is not a number', '4abc'],
    ];
    for (const [what, packet] of BAD) {
      test(`raw websocket: ${what} (${packet}) closes the connection`, async () => {
        const raw = await rawSession(srv.port);
        try {
          assert.equal(await raw.next(), '42["auth",{}]');
          raw.send('42["message","before"]');
          assert.equal(await raw.next(), '42["message-back","before"]', 'the connection works');
          raw.send(packet);
          raw.send('42["message","after"]');
          const closed = await raw.waitClosed(5000 * SLOW);
          assert.ok(closed, 'closed within 5 s');
          assert.deepEqual(raw.queue, [], 'nothing answered after the bad packet');
        } finally {
          raw.terminate();
        }
      });
    }

    test('an invalid CONNECT payload (4abc before any CONNECT) closes the connection', async () => {
      const raw = await rawSession(srv.port, { connect: false });
      try {
        raw.send('4abc');
        assert.ok(await raw.waitClosed(5000 * SLOW), 'closed within 5 s');
      } finally {
        raw.terminate();
      }
    });

    test('connectTimeout over websocket: a session that never CONNECTs is closed, one that did stays open', async () => {
      const t0 = Date.now();
      const idle = await rawSession(srv.port, { connect: false }); // answers pings, never CONNECTs
      const ok = await rawSession(srv.port);
      try {
        assert.equal(await ok.next(), '42["auth",{}]');
        const closed = await idle.waitClosed(5000 * SLOW);
        assert.ok(closed, 'the session without CONNECT is closed within 5 s');
        // Not a ping timeout: the control (same pings answered the same way) outlives it, past 1.5 s.
        const wait = Math.max(0, t0 + 1500 - Date.now());
        assert.equal(await ok.waitClosed(wait + 300), null, 'the connected control stays open');
        ok.send('42["message","alive"]');
        assert.equal(await ok.next(), '42["message-back","alive"]');
      } finally {
        idle.terminate();
        ok.terminate();
      }
    });

    test('connectTimeout over polling: a session that never CONNECTs is closed', async () => {
      const hs = await httpGet(srv.port, '/socket.io/?EIO=4&transport=polling');
      assert.equal(hs.status, 200);
      const { sid } = JSON.parse(hs.body.slice(1));
      const url = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
      const end = Date.now() + 5000 * SLOW;
      let how = null;
      let pings = 0;
      while (!how && Date.now() < end) {
        const r = await httpRequest(srv.port, 'GET', url);
        if (r.status !== 200) { how = `GET ${r.status} ${r.body}`; break; }
        const packets = r.body.split('\x1e');
        if (packets.includes('1')) { how = 'close packet'; break; }
        if (packets.includes('2')) {
          pings++;
          const p = await httpRequest(srv.port, 'POST', url, '3');
          if (p.status !== 200) { how = `POST ${p.status} ${p.body}`; break; }
        }
      }
      assert.ok(how, `closed within 5 s (pings answered: ${pings})`);
      // Once closed the session is gone.
      const again = await httpRequest(srv.port, 'GET', url);
      assert.equal(again.status, 400, `after the close: ${again.status} ${again.body}`);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// default profile: two nodes on one Redis, namespaces '/' and '/chat'

async function startPair(target, redis) {
  if (target === 'node') {
    const a = await startScript('socketio_mixed_node.mjs', ['--redis', redis.url, '--name', 'def-node-1', '--namespace', '/chat'], 'def-node-1');
    const b = await startScript('socketio_mixed_node.mjs', ['--redis', redis.url, '--name', 'def-node-2', '--namespace', '/chat'], 'def-node-2');
    return [a, b];
  }
  const a = await startNode('def-ref-1', redis.url, ['--sio-namespace', '/chat']);
  const b = await startNode('def-ref-2', redis.url, ['--sio-namespace', '/chat']);
  return [a, b];
}

// [event, tag, seq, ...] entries received by sock from the sender tag, as the seq list.
const seqsFrom = (sock, ev, tag) => sock.got.filter((g) => g[0] === ev && g[1] === tag).map((g) => g[2]);

for (const target of TARGETS) {
  describe(`[${target}] Socket.IO default profile (2 nodes, one Redis)`, () => {
    let redis;
    let n1;
    let n2;
    before(async () => {
      redis = await startRedis();
      [n1, n2] = await startPair(target, redis);
      // Readiness of the link both ways in both namespaces, without knowing how a node subscribes.
      for (const nsp of ['', '/chat']) {
        const a = await connected(client(n1.port, { nsp, transports: ['websocket'] }));
        const b = await connected(client(n2.port, { nsp, transports: ['websocket'] }));
        await probeLink(a, b, `${nsp || '/'} n1 → n2`);
        await probeLink(b, a, `${nsp || '/'} n2 → n1`);
        a.disconnect();
        b.disconnect();
      }
    });
    after(async () => {
      closeClients();
      for (const p of [n1, n2, redis]) if (p) await stopProcess(p.proc);
      checkLog(n1);
      checkLog(n2);
    });

    test('events reach every other client of the namespace on both nodes exactly once, in order, not the sender', async () => {
      const socks = [
        client(n1.port, { transports: ['websocket'] }), client(n1.port, { transports: ['polling'] }),
        client(n1.port), client(n2.port, { transports: ['websocket'] }), client(n2.port, { transports: ['polling'] }),
      ];
      await Promise.all(socks.map((s) => connected(s)));
      const N = 20;
      const senders = [0, 1, 3, 4];
      for (let i = 0; i < N; i++) {
        for (const k of senders) socks[k].emit('chat', `s${k}`, i, ...(i % 5 === 0 ? MIXED : [{ i, k }]));
      }
      const want = (s, k) => (s === socks[k] ? 0 : N);
      await waitFor(() => socks.every((s) => senders.every((k) => seqsFrom(s, 'chat', `s${k}`).length >= want(s, k))),
        10000 * SLOW, 'every chat everywhere');
      await sleep(QUIET_MS);
      const seq = [...Array(N).keys()];
      for (const [j, s] of socks.entries()) {
        for (const k of senders) {
          assert.deepEqual(seqsFrom(s, 'chat', `s${k}`), s === socks[k] ? [] : seq, `client ${j} from s${k}`);
        }
        assert.equal(s.got.length, senders.filter((k) => socks[k] !== s).length * N, `client ${j}: nothing else`);
        const m = s.got.find((g) => g[1] !== `s${j}` && g[2] === 5);
        assert.deepEqual(m.slice(3), MIXED, 'the arguments, unchanged');
      }
    });

    test('binary events are broadcast with their bytes identical, across nodes and transports', async () => {
      const a = await connected(client(n1.port, { transports: ['websocket'] }));
      const b = await connected(client(n2.port, { transports: ['polling'] }));
      const c = await connected(client(n2.port));
      const args = binArgs();
      a.emit('bin', ...args);
      b.emit('bin2', Buffer.from([1, 2, 3]), { x: Buffer.from([4]) });
      await waitFor(() => b.got.length === 1 && c.got.length === 2 && a.got.length === 1, 8000 * SLOW, 'binary events');
      await sleep(QUIET_MS);
      assert.deepEqual(norm(b.got), norm([['bin', ...args]]));
      assert.deepEqual(norm(a.got), norm([['bin2', Buffer.from([1, 2, 3]), { x: Buffer.from([4]) }]]));
      // Two senders on two nodes: no order between them.
      const byName = [...c.got].sort((x, y) => x[0].localeCompare(y[0]));
      assert.deepEqual(norm(byName), norm([['bin', ...args], ['bin2', Buffer.from([1, 2, 3]), { x: Buffer.from([4]) }]]));
    });

    test('an event with an ack gets an empty ack; the others get the event without an ack id', async () => {
      for (const transports of [['websocket'], ['polling']]) {
        const a = await connected(client(n1.port, { transports }));
        const b = await connected(client(n2.port, { transports }));
        assert.deepEqual(await emitAck(a, 'chat', 'x', 1), [], 'an ack without arguments');
        assert.deepEqual(await emitAck(a, 'bin', Buffer.from([5, 6])), [], 'a binary event gets its ack too');
        await waitFor(() => b.got.length === 2, 5000 * SLOW, 'both events on the other node');
        await sleep(QUIET_MS);
        assert.deepEqual(norm(b.got), norm([['chat', 'x', 1], ['bin', Buffer.from([5, 6])]]), 'no ack callback appended');
        assert.deepEqual(a.got, []);
        a.disconnect();
        b.disconnect();
      }
    });

    test('namespaces: /chat and / are kept apart, and one connection carries both (multiplexing)', async () => {
      const root1 = await connected(client(n1.port, { transports: ['websocket'] }));
      const chat2 = await connected(client(n2.port, { nsp: '/chat', transports: ['polling'] }));
      // One Manager, one Engine.IO connection, two namespaces.
      const muxRoot = client(n2.port, { multiplex: true });
      const muxChat = client(n2.port, { nsp: '/chat', multiplex: true });
      await Promise.all([connected(muxRoot), connected(muxChat)]);
      assert.equal(muxRoot.io, muxChat.io, 'one Manager');
      assert.ok(muxRoot.io.engine.id && muxRoot.io.engine.id === muxChat.io.engine.id, 'one Engine.IO session');
      assert.notEqual(muxRoot.id, muxChat.id, 'two Socket.IO sockets');
      const chat1 = await connected(client(n1.port, { nsp: '/chat', transports: ['websocket'] }));

      root1.emit('ev', 'root from n1');
      chat1.emit('ev', 'chat from n1');
      muxChat.emit('ev', 'chat from mux');
      muxRoot.emit('ev', 'root from mux');
      await waitFor(() => root1.got.length === 1 && chat1.got.length === 1 && chat2.got.length === 2
        && muxRoot.got.length === 1 && muxChat.got.length === 1, 5000 * SLOW, 'each namespace its own events');
      await sleep(QUIET_MS);
      assert.deepEqual(root1.got, [['ev', 'root from mux']]);
      assert.deepEqual(muxRoot.got, [['ev', 'root from n1']]);
      assert.deepEqual(chat1.got, [['ev', 'chat from mux']]);
      assert.deepEqual(muxChat.got, [['ev', 'chat from n1']]);
      assert.deepEqual(new Set(chat2.got.map((g) => g[1])), new Set(['chat from n1', 'chat from mux']));
      assert.equal(muxRoot.io.engine.id, muxChat.io.engine.id, 'still one connection');
    });

    test("an unknown namespace gets connect_error 'Invalid namespace'", async () => {
      for (const transports of [['websocket'], ['polling']]) {
        const s = client(n1.port, { transports, nsp: '/nope' });
        const err = await nextEvent(s, 'connect_error');
        assert.ok(err, 'connect_error within the deadline');
        assert.equal(err[0].message, 'Invalid namespace');
      }
      const raw = await rawSession(n1.port, { connect: false });
      try {
        raw.send('40/nope,');
        assert.equal(await raw.next(), '44/nope,{"message":"Invalid namespace"}');
      } finally {
        raw.terminate();
      }
    });

    test('rooms: the handshake query room=R; room events stay in R, roomless events reach every room', async () => {
      const A = `A-${randomUUID().slice(0, 8)}`;
      const B = `B-${randomUUID().slice(0, 8)}`;
      const a1 = client(n1.port, { room: A, transports: ['websocket'] });
      const a2 = client(n2.port, { room: A, transports: ['polling'] });
      const a3 = client(n2.port, { room: A });
      const b1 = client(n1.port, { room: B, transports: ['polling'] });
      const b2 = client(n2.port, { room: B, transports: ['websocket'] });
      const free1 = client(n1.port, { transports: ['websocket'] });
      const free2 = client(n2.port, { transports: ['websocket'] });
      const all = [a1, a2, a3, b1, b2, free1, free2];
      await Promise.all(all.map((s) => connected(s)));
      const N = 10;
      for (let i = 0; i < N; i++) {
        a1.emit('r', 'a1', i);
        a2.emit('r', 'a2', i);
        b2.emit('r', 'b2', i);
        free1.emit('r', 'free1', i);
      }
      const expect = new Map([
        [a1, { a2: N, free1: N }], [a2, { a1: N, free1: N }], [a3, { a1: N, a2: N, free1: N }],
        [b1, { b2: N, free1: N }], [b2, { free1: N }], [free1, {}], [free2, { free1: N }],
      ]);
      const total = (m) => Object.values(m).reduce((x, y) => x + y, 0);
      await waitFor(() => all.every((s) => s.got.length >= total(expect.get(s))), 8000 * SLOW, 'room traffic');
      await sleep(QUIET_MS);
      const seq = [...Array(N).keys()];
      for (const s of all) {
        const m = expect.get(s);
        for (const tag of ['a1', 'a2', 'b2', 'free1']) {
          assert.deepEqual(seqsFrom(s, 'r', tag), m[tag] ? seq : [], `${[...expect.keys()].indexOf(s)} from ${tag}`);
        }
        assert.equal(s.got.length, total(m));
      }
    });
  });
}
