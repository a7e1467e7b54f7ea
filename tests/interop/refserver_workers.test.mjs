// Interop: socket.io-client 4.8.4 against a refserver node of 4 workers (refserver --workers 4). The kernel spreads
// the connections of each client over the workers (SO_REUSEPORT), so a polling client's requests and its upgrade
// land on any worker: they must reach the one holding the session, and broadcasts must cross workers through Redis.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  QUIET_MS, SANITIZER_RE, SLOW, client, closeClients, connected, httpGet, logOf, removeTmp, sleep, startNode,
  startRedis, stopAll, waitFor,
} from './lib.mjs';

const WORKERS = 4;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ownerOf = (sock) => B64URL.indexOf(sock.io.engine.id[0]); // the worker named in the Engine.IO sid

function metric(body, name) {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(body);
  return m ? Number(m[1]) : null;
}

// Client i emits chat i; every client must get every other client's chat exactly once and never its own.
async function everyoneHearsEveryoneElse(socks) {
  socks.forEach((s, i) => s.emit('chat', i));
  const want = socks.length - 1;
  await waitFor(() => socks.every((s) => s.got.length >= want), 10000 * SLOW, `${want} chats at every client`);
  await sleep(QUIET_MS);
  socks.forEach((s, i) => {
    const got = s.got.map(([ev, n]) => `${ev}:${n}`).sort();
    const expected = socks.map((_, k) => `chat:${k}`).filter((_, k) => k !== i).sort();
    assert.deepEqual(got, expected, `client ${i} (worker ${ownerOf(s)})`);
  });
}

describe('refserver --workers 4 with socket.io-client (polling, the upgrade, broadcasts across workers)', () => {
  let redis;
  let node;

  before(async () => {
    redis = await startRedis();
    node = await startNode('wk1', redis.url, ['--workers', String(WORKERS), '--sio-ping-interval', '1000',
      '--sio-ping-timeout', '2000']);
    // every worker on Redis (redis_up is 1 only when all are), so broadcasts cross workers from the first emit
    await waitFor(async () => metric((await httpGet(node.port, '/metrics')).body, 'refserver_redis_up') === 1,
      10000 * SLOW, 'every worker on Redis');
  });

  after(async () => {
    closeClients();
    await stopAll();
    if (node) assert.doesNotMatch(logOf(node.proc), SANITIZER_RE, 'refserver log');
    removeTmp();
  });

  test('default transports: many clients connect over polling, upgrade to websocket and hear each other once', async () => {
    const room = `up-${randomUUID().slice(0, 8)}`;
    const before0 = metric((await httpGet(node.port, '/metrics')).body, 'refserver_connections_handed_over_total');
    const socks = Array.from({ length: 16 }, () => client(node.port, { room }));
    await Promise.all(socks.map((s) => connected(s)));
    await waitFor(() => socks.every((s) => s.io.engine.transport.name === 'websocket'), 10000 * SLOW,
      'every client upgraded');
    const owners = new Set(socks.map(ownerOf));
    assert.ok(owners.size >= 2, `sessions on several workers: ${[...owners]}`);
    for (const o of owners) assert.ok(o >= 0 && o < WORKERS, `a sid names worker ${o}`);
    await everyoneHearsEveryoneElse(socks);
    const handed = metric((await httpGet(node.port, '/metrics')).body, 'refserver_connections_handed_over_total');
    assert.ok(handed > before0, 'some requests were accepted by another worker than the session\'s');
    for (const s of socks) assert.ok(s.connected && s.io.engine.transport.name === 'websocket');
  });

  test("transports: ['polling'] only: clients on every worker hear each other once and stay up across pings", async () => {
    const room = `poll-${randomUUID().slice(0, 8)}`;
    const socks = Array.from({ length: 12 }, () => client(node.port, { room, transports: ['polling'] }));
    await Promise.all(socks.map((s) => connected(s)));
    assert.ok(new Set(socks.map(ownerOf)).size >= 2, 'sessions on several workers');
    await everyoneHearsEveryoneElse(socks);
    let dropped = 0;
    for (const s of socks) s.on('disconnect', () => { dropped++; });
    await sleep(3500); // a few pings (1 s apart), each answered by a GET and a POST that may land anywhere
    assert.equal(dropped, 0, 'still connected after pings over polling');
    for (const s of socks) assert.equal(s.io.engine.transport.name, 'polling');
    for (const s of socks) s.got.length = 0;
    await everyoneHearsEveryoneElse(socks);
  });
});
