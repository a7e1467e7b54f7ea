// A small broadcast server built on npm `ws`, a peer we did not write, for loadgen's interop tests.
//
//   node ws_broadcast_server.mjs PORT [--echo] [--drop-every N] [--dup-every N]
//
// Listens on 127.0.0.1:PORT; any path upgrades to WebSocket. The room is the `room` query parameter (missing: "all").
// Each text or binary message is relayed, as it came (same opcode, same bytes), to every OTHER open client in the
// sender's room; never back to the sender unless --echo. Faults, counted so a test can compare what loadgen saw:
//   --drop-every N   skip every Nth delivery (over the whole server, in relay order)
//   --dup-every N    send every Nth delivery twice
// Plain HTTP: GET /stats answers JSON {connections, open, rooms: {ROOM: open clients}, messages (from clients),
// binary (of those), delivered, dropped, duplicated, echoed}; any other GET answers 200 "ok".
// Prints "listening" on stdout when ready.
// SIGTERM or SIGINT: close every client with 1001, then exit 0.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

function usage(msg) {
  process.stderr.write(`ws_broadcast_server: ${msg}\nusage: node ws_broadcast_server.mjs PORT [--echo] [--drop-every N] [--dup-every N]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const port = Number(args.shift());
if (!Number.isInteger(port) || port <= 0 || port > 65535) usage('PORT must be a port number');
const opts = { echo: false, dropEvery: 0, dupEvery: 0 };
while (args.length) {
  const a = args.shift();
  if (a === '--echo') opts.echo = true;
  else if (a === '--drop-every' || a === '--dup-every') {
    const n = Number(args.shift());
    if (!Number.isInteger(n) || n < 1) usage(`${a} needs a whole number >= 1`);
    opts[a === '--drop-every' ? 'dropEvery' : 'dupEvery'] = n;
  } else usage(`unknown argument ${a}`);
}

const stats = { connections: 0, open: 0, rooms: {}, messages: 0, binary: 0, delivered: 0, dropped: 0, duplicated: 0, echoed: 0 };
const rooms = new Map(); // room -> Set of sockets
let deliveries = 0; // every delivery considered, dropped or not: the fault counters' clock

const server = http.createServer((req, res) => {
  const body = req.url === '/stats' ? JSON.stringify(stats) : 'ok';
  res.writeHead(200, { 'Content-Type': req.url === '/stats' ? 'application/json' : 'text/plain', Connection: 'close' });
  res.end(body);
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 << 20 });

wss.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://x').searchParams.get('room') ?? 'all';
  if (!rooms.has(room)) rooms.set(room, new Set());
  const members = rooms.get(room);
  members.add(ws);
  stats.connections += 1;
  stats.open += 1;
  stats.rooms[room] = members.size;
  ws.on('message', (data, isBinary) => {
    stats.messages += 1;
    if (isBinary) stats.binary += 1;
    for (const peer of members) {
      if (peer.readyState !== WebSocket.OPEN) continue;
      if (peer === ws && !opts.echo) continue;
      deliveries += 1;
      if (opts.dropEvery && deliveries % opts.dropEvery === 0) {
        stats.dropped += 1;
        continue;
      }
      peer.send(data, { binary: isBinary });
      stats.delivered += 1;
      if (peer === ws) stats.echoed += 1;
      if (opts.dupEvery && deliveries % opts.dupEvery === 0) {
        peer.send(data, { binary: isBinary });
        stats.duplicated += 1;
      }
    }
  });
  ws.on('close', () => {
    members.delete(ws);
    stats.open -= 1;
    stats.rooms[room] = members.size;
  });
  ws.on('error', () => {}); // a reset client: its close event follows
});

function shutdown() {
  for (const ws of wss.clients) ws.close(1001, 'going away');
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref(); // clients that do not finish their close
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.on('error', (e) => {
  process.stderr.write(`ws_broadcast_server: ${e.message}\n`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write('listening\n');
});
