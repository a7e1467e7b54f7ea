// A Node Socket.IO node that behaves like refserver's default Socket.IO profile, for socketio_mixed.test.mjs (a
// Node node and refserver nodes on one Redis) and as the Node reference of refserver_socketio_features.test.mjs:
// npm `socket.io` with the official @socket.io/redis-adapter (two node-redis v4 clients).
//
//   node socketio_mixed_node.mjs --port P --redis redis://127.0.0.1:R|none --name NAME [--namespace /chat]...
//                                [--requests-timeout MS] [--control]
//
// Listens on 127.0.0.1:P. Namespaces: '/' plus each --namespace; any other is refused ("Invalid namespace").
// On connection the socket joins socket.handshake.query.room when given. Every event from a client (any name,
// socket.onAny) is re-broadcast under its own name and arguments, binary included: to the sender's room
// (socket.to(room).emit) when it has one, else to the whole namespace (socket.broadcast.emit); the sender is left
// out either way. An event sent with an ack is answered with an empty ack. --redis none: the in-memory adapter.
// No server-side (serverSideEmit) listener is registered. --requests-timeout: the adapter's requestsTimeout (default
// 5000), how long a request to the other nodes waits for them.
// --control (for socketio_requests.test.mjs): POST /control, body JSON {op, nsp = '/', rooms = [], except = [], event,
// args = [], timeout, close} → 200 {result} (400/500 {error}), the adapter's cluster-wide operations, which go over its
// request channel (socket.io-request#<nsp>#) to the other nodes; run on io.of(nsp).in(rooms).except(except) where
// that applies:
//   serverCount           adapter.serverCount(): PUBSUB NUMSUB of the request channel
//   fetchSockets          [{id, rooms, data, handshake}]
//   allSockets            [id...]
//   allRooms              [room...] (adapter.allRooms(); rooms and except do not apply)
//   emitWithAck           .timeout(timeout).emitWithAck(event, ...args) → {err: message|null, responses}
//   disconnectSockets     .disconnectSockets(close) → null (the adapter does not wait for remote nodes)
//   serverSideEmit        nsp.serverSideEmit(event, ...args) → null
//   serverSideEmitWithAck nsp.serverSideEmitWithAck(event, ...args) → {err: message|null, responses}
// Any other path outside /socket.io/ → 200 "ok NAME". Prints "listening" once the adapter of every namespace is
// subscribed on Redis and the port accepts. SIGTERM/SIGINT: exit 0.
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { serve } from './node_serve.mjs';

function usage(msg) {
  process.stderr.write(`socketio_mixed_node: ${msg}\n` +
    'usage: node socketio_mixed_node.mjs --port P --redis redis://HOST:PORT|none --name NAME [--namespace /NSP]... ' +
    '[--requests-timeout MS] [--control]\n');
  process.exit(2);
}

const opts = { port: 0, redis: '', name: '', namespaces: ['/'], requestsTimeout: 5000, control: false };
const args = process.argv.slice(2);
while (args.length) {
  const a = args.shift();
  if (a === '--port') opts.port = Number(args.shift());
  else if (a === '--redis') opts.redis = args.shift() || '';
  else if (a === '--name') opts.name = args.shift() || '';
  else if (a === '--requests-timeout') opts.requestsTimeout = Number(args.shift());
  else if (a === '--control') opts.control = true;
  else if (a === '--namespace') {
    const n = args.shift() || '';
    if (!n.startsWith('/') || n === '/') usage('--namespace needs /NAME');
    opts.namespaces.push(n);
  } else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) usage('--port needs a port number');
if (opts.redis !== 'none' && !opts.redis.startsWith('redis://')) usage('--redis needs a redis:// URL or none');
if (!opts.name) usage('--name is required');
if (!(Number.isInteger(opts.requestsTimeout) && opts.requestsTimeout > 0)) usage('--requests-timeout needs ms');

const log = (msg) => process.stderr.write(`[${opts.name}] ${msg}\n`);

const server = http.createServer();
server.on('request', (req, res) => {
  if (req.url.startsWith('/socket.io/')) return; // socket.io's own listener answers these
  if (opts.control && req.method === 'POST' && req.url === '/control') {
    onControl(req, res);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ok ${opts.name}\n`);
});

let pub = null;
let sub = null;
const serverOpts = {};
if (opts.redis !== 'none') {
  pub = createClient({ url: opts.redis });
  sub = pub.duplicate();
  for (const [c, n] of [[pub, 'pub'], [sub, 'sub']]) c.on('error', (e) => log(`redis ${n}: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  serverOpts.adapter = createAdapter(pub, sub, { requestsTimeout: opts.requestsTimeout });
}
const io = new Server(server, serverOpts);

for (const name of opts.namespaces) {
  io.of(name).on('connection', (socket) => {
    const { room } = socket.handshake.query;
    if (typeof room === 'string' && room !== '') socket.join(room);
    socket.onAny((event, ...a) => {
      const ack = typeof a[a.length - 1] === 'function' ? a.pop() : null;
      if (typeof room === 'string' && room !== '') socket.to(room).emit(event, ...a);
      else socket.broadcast.emit(event, ...a);
      if (ack) ack();
    });
  });
}

// An operation's outcome as data: a timeout is a result the test asserts on, not a failed control request.
const settled = (p) => p.then((responses) => ({ err: null, responses }),
  (e) => ({ err: e.message, responses: e.responses ?? null }));

const ops = {
  serverCount: (nsp) => nsp.adapter.serverCount(),
  fetchSockets: async (nsp, b, sel) => (await sel.fetchSockets())
    .map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, handshake: s.handshake })),
  allSockets: async (nsp, b, sel) => [...await sel.allSockets()],
  allRooms: async (nsp) => [...await nsp.adapter.allRooms()],
  emitWithAck: (nsp, b, sel) => settled(sel.timeout(b.timeout).emitWithAck(b.event, ...(b.args || []))),
  disconnectSockets: (nsp, b, sel) => { sel.disconnectSockets(!!b.close); return null; },
  serverSideEmit: (nsp, b) => { nsp.serverSideEmit(b.event, ...(b.args || [])); return null; },
  serverSideEmitWithAck: (nsp, b) => settled(nsp.serverSideEmitWithAck(b.event, ...(b.args || []))),
};

async function control(body) {
  const op = ops[body.op];
  if (!op) return [400, { error: `unknown op ${body.op}` }];
  const nspName = body.nsp || '/';
  // io.of() would create a namespace that is not served.
  if (!opts.namespaces.includes(nspName)) return [400, { error: `namespace ${nspName} not served` }];
  const nsp = io.of(nspName);
  return [200, { result: await op(nsp, body, nsp.in(body.rooms || []).except(body.except || [])) }];
}

function onControl(req, res) {
  let data = '';
  req.setEncoding('utf8');
  req.on('data', (d) => { data += d; });
  req.on('end', async () => {
    let out;
    try {
      out = await control(JSON.parse(data));
    } catch (e) {
      out = [500, { error: e.stack || String(e) }];
    }
    res.writeHead(out[0], { 'content-type': 'application/json' });
    res.end(JSON.stringify(out[1]));
  });
}

await serve({ server, io, port: opts.port, pub, sub, namespaces: opts.namespaces, log });
