// A Node Socket.IO node that behaves like refserver's default Socket.IO profile, for socketio_mixed.test.mjs (a
// Node node and refserver nodes on one Redis) and as the Node reference of refserver_socketio_features.test.mjs:
// npm `socket.io` with the official @socket.io/redis-adapter (two node-redis v4 clients).
//
//   node socketio_mixed_node.mjs --port P --redis redis://127.0.0.1:R|none --name NAME [--namespace /chat]...
//
// Listens on 127.0.0.1:P. Namespaces: '/' plus each --namespace; any other is refused ("Invalid namespace").
// On connection the socket joins socket.handshake.query.room when given. Every event from a client (any name,
// socket.onAny) is re-broadcast under its own name and arguments, binary included: to the sender's room
// (socket.to(room).emit) when it has one, else to the whole namespace (socket.broadcast.emit); the sender is left
// out either way. An event sent with an ack is answered with an empty ack. --redis none: the in-memory adapter.
// GET / (any path outside /socket.io/) → 200 "ok NAME". Prints "listening" once the adapter of every namespace is
// subscribed on Redis and the port accepts. SIGTERM/SIGINT: exit 0.
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

function usage(msg) {
  process.stderr.write(`socketio_mixed_node: ${msg}\n` +
    'usage: node socketio_mixed_node.mjs --port P --redis redis://HOST:PORT|none --name NAME [--namespace /NSP]...\n');
  process.exit(2);
}

const opts = { port: 0, redis: '', name: '', namespaces: ['/'] };
const args = process.argv.slice(2);
while (args.length) {
  const a = args.shift();
  if (a === '--port') opts.port = Number(args.shift());
  else if (a === '--redis') opts.redis = args.shift() || '';
  else if (a === '--name') opts.name = args.shift() || '';
  else if (a === '--namespace') {
    const n = args.shift() || '';
    if (!n.startsWith('/') || n === '/') usage('--namespace needs /NAME');
    opts.namespaces.push(n);
  } else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) usage('--port needs a port number');
if (opts.redis !== 'none' && !opts.redis.startsWith('redis://')) usage('--redis needs a redis:// URL or none');
if (!opts.name) usage('--name is required');

const log = (msg) => process.stderr.write(`[${opts.name}] ${msg}\n`);

const server = http.createServer();
server.on('request', (req, res) => {
  if (req.url.startsWith('/socket.io/')) return; // socket.io's own listener answers these
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
  serverOpts.adapter = createAdapter(pub, sub);
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

// Each namespace's adapter subscribes (its pattern first, its own specific response channel last) on one
// connection, in order: once every namespace's last channel has a subscriber, broadcasts reach this node.
if (pub) {
  for (const name of opts.namespaces) {
    const { specificResponseChannel } = io.of(name).adapter;
    for (let i = 0; ; i++) {
      const [, n] = await pub.sendCommand(['PUBSUB', 'NUMSUB', specificResponseChannel]);
      if (Number(n) >= 1) break;
      if (i > 200) { log(`the redis adapter of ${name} did not subscribe in 10 s`); process.exit(1); }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(opts.port, '127.0.0.1', resolve);
});
process.stdout.write('listening\n');

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3000).unref();
  io.close();
  if (pub) await Promise.allSettled([pub.quit(), sub.quit()]);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
