// A chat app of another shape than loadgen's relay, for loadgen's --send/--find/--on-open tests: it wraps what it
// relays and relays nothing until a client joins a room with a message.
//
//   node wrapping_app.mjs --port P [--socketio]
//
// ws (npm `ws`, any path): a client sends {"type":"join","room":R} first; then {"type":"chat","text":T} goes to every
// OTHER joined client of R as {"type":"chat","from":ID,"at":MS,"text":T}. Anything else, and chat before a join, is
// dropped. --socketio (npm socket.io, path /socket.io/): 'join' (R) joins the room; 'chat' ({text: T}) is emitted to
// the rest of the sender's rooms as 'chat' ({user: ID, at: MS, text: T}); before a join, nothing.
// GET /stats answers JSON {joined, relayed, dropped}. Prints "listening" when ready; SIGTERM/SIGINT end it.
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { Server } from 'socket.io';

const args = process.argv.slice(2);
const port = Number(args[args.indexOf('--port') + 1]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node wrapping_app.mjs --port P [--socketio]\n');
  process.exit(2);
}
const stats = { joined: 0, relayed: 0, dropped: 0 };
const server = http.createServer((req, res) => {
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
  } else if (!req.url.startsWith('/socket.io/')) {
    res.end('ok');
  }
});
let next = 1;

if (args.includes('--socketio')) {
  const io = new Server(server);
  io.on('connection', (socket) => {
    let room = null;
    socket.on('join', (r) => { if (typeof r === 'string') { room = r; socket.join(r); stats.joined++; } });
    socket.on('chat', (msg) => {
      if (!room || !msg || typeof msg.text !== 'string') { stats.dropped++; return; }
      socket.to(room).emit('chat', { user: socket.id, at: Date.now(), text: msg.text });
      stats.relayed++;
    });
  });
} else {
  const wss = new WebSocketServer({ server });
  const rooms = new Map();
  wss.on('connection', (ws) => {
    const id = next++;
    let room = null;
    ws.on('message', (data, isBinary) => {
      let m;
      try { m = isBinary ? null : JSON.parse(data.toString()); } catch { m = null; }
      if (m && m.type === 'join' && typeof m.room === 'string' && !room) {
        room = m.room;
        if (!rooms.has(room)) rooms.set(room, new Set());
        rooms.get(room).add(ws);
        stats.joined++;
      } else if (m && m.type === 'chat' && typeof m.text === 'string' && room) {
        const out = JSON.stringify({ type: 'chat', from: id, at: Date.now(), text: m.text });
        for (const peer of rooms.get(room)) if (peer !== ws && peer.readyState === 1) peer.send(out);
        stats.relayed++;
      } else {
        stats.dropped++;
      }
    });
    ws.on('close', () => { if (room) rooms.get(room).delete(ws); });
  });
}

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
server.listen(port, '127.0.0.1', () => process.stdout.write('listening\n'));
