// A Socket.IO v4 node for the load balancer interop tests (socketio_lb.test.mjs): npm `socket.io` with the Redis
// adapter (@socket.io/redis-adapter over two node-redis v4 clients), peers we did not write.
//
//   node socketio_node_server.mjs --port P --redis redis://127.0.0.1:R --name NAME
//
// Listens on 127.0.0.1:P. `cookie: true`: the engine.io handshake sets Socket.IO's own `io` cookie.
// GET / (and any path outside /socket.io/) answers 200 "ok NAME": the health check path.
// On connection: emit 'hello' {node: NAME, id: socket.id}; 'chat' (msg) is broadcast to every other socket on
// every node (through Redis). Counters for the test: GET /stats answers JSON {node, connections, open, chats,
// sessionUnknown (engine.io connection errors with code 1, "Session ID unknown")}.
// Prints "listening" on stdout once the adapter's Redis subscriptions are in place. SIGTERM/SIGINT: exit 0.
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { serve } from './node_serve.mjs';

function usage(msg) {
  process.stderr.write(`socketio_node_server: ${msg}\n` +
    'usage: node socketio_node_server.mjs --port P --redis redis://HOST:PORT --name NAME\n');
  process.exit(2);
}

const opts = { port: 0, redis: '', name: '' };
const args = process.argv.slice(2);
while (args.length) {
  const a = args.shift();
  if (a === '--port') opts.port = Number(args.shift());
  else if (a === '--redis') opts.redis = args.shift() || '';
  else if (a === '--name') opts.name = args.shift() || '';
  else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) usage('--port needs a port number');
if (!opts.redis.startsWith('redis://')) usage('--redis needs a redis:// URL');
if (!opts.name) usage('--name is required');

const log = (msg) => process.stderr.write(`[${opts.name}] ${msg}\n`);
const stats = { node: opts.name, connections: 0, open: 0, chats: 0, sessionUnknown: 0 };

const server = http.createServer();
// socket.io adds its own 'request' listener for /socket.io/; this one answers everything else first.
server.on('request', (req, res) => {
  if (req.url.startsWith('/socket.io/')) return;
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ok ${opts.name}\n`);
});

const pub = createClient({ url: opts.redis });
const sub = pub.duplicate();
for (const [c, n] of [[pub, 'pub'], [sub, 'sub']]) c.on('error', (e) => log(`redis ${n}: ${e.message}`));
await Promise.all([pub.connect(), sub.connect()]);

const io = new Server(server, { cookie: true, adapter: createAdapter(pub, sub) });

io.engine.on('connection_error', (err) => {
  if (err.code === 1) stats.sessionUnknown += 1;
  log(`engine connection_error code=${err.code} ${err.message} ${err.req?.method} ${err.req?.url}`);
});

io.on('connection', (socket) => {
  stats.connections += 1;
  stats.open += 1;
  socket.emit('hello', { node: opts.name, id: socket.id });
  socket.on('chat', (msg) => {
    stats.chats += 1;
    socket.broadcast.emit('chat', msg);
  });
  socket.on('disconnect', (reason) => {
    stats.open -= 1;
    log(`socket ${socket.id} disconnect: ${reason}`);
  });
});

await serve({ server, io, port: opts.port, pub, sub, log });
