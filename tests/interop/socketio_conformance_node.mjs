// The Node reference for `refserver --profile conformance` (refserver_socketio_features.test.mjs): npm `socket.io`
// configured as the reference server of the official socket.io-protocol test suite (socketio/socket.io-protocol,
// test-suite/), so the same test file can be proven against it before it is run against build/refserver.
//
//   node socketio_conformance_node.mjs --port P
//
// Listens on 127.0.0.1:P. pingInterval 300, pingTimeout 200, maxHttpBufferSize 1e6, connectTimeout 1000.
// '/': emit 'auth' (the handshake auth), 'message' (...args) → 'message-back' (...args) to the sender,
// 'message-with-ack' (...args, ack) → ack(...args). '/custom': emit 'auth'. Any other namespace is refused
// ("Invalid namespace"). No broadcasting. GET / (any path outside /socket.io/) → 200 "ok NAME": the readiness probe.
// Prints "listening" on stdout once it accepts. SIGTERM/SIGINT: exit 0.
import http from 'node:http';
import { Server } from 'socket.io';
import { serve } from './node_serve.mjs';

function usage(msg) {
  process.stderr.write(`socketio_conformance_node: ${msg}\nusage: node socketio_conformance_node.mjs --port P [--name NAME]\n`);
  process.exit(2);
}

const opts = { port: 0, name: 'conformance' };
const args = process.argv.slice(2);
while (args.length) {
  const a = args.shift();
  if (a === '--port') opts.port = Number(args.shift());
  else if (a === '--name') opts.name = args.shift() || '';
  else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) usage('--port needs a port number');

const server = http.createServer();
server.on('request', (req, res) => {
  if (req.url.startsWith('/socket.io/')) return; // socket.io's own listener answers these
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ok ${opts.name}\n`);
});

const io = new Server(server, { pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6, connectTimeout: 1000 });

io.on('connection', (socket) => {
  socket.emit('auth', socket.handshake.auth);
  socket.on('message', (...a) => socket.emit('message-back', ...a));
  socket.on('message-with-ack', (...a) => {
    const ack = a.pop();
    ack(...a);
  });
});
io.of('/custom').on('connection', (socket) => socket.emit('auth', socket.handshake.auth));

await serve({ server, io, port: opts.port });
