// The start-up and shutdown every npm socket.io server of these tests shares, once its handlers are set: wait until
// the Redis adapter of each namespace has subscribed (it subscribes on one connection, in order, its own specific
// response channel last: once that has a subscriber, broadcasts and requests reach this node), listen on
// 127.0.0.1:port, print "listening" (what lib.mjs startScript waits for), and on SIGTERM/SIGINT close every socket and
// the Redis clients, then exit 0.
export async function serve({ server, io, port, pub = null, sub = null, namespaces = ['/'], log = () => {} }) {
  if (pub) {
    for (const name of namespaces) {
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
    server.listen(port, '127.0.0.1', resolve);
  });
  process.stdout.write('listening\n');

  let stopping = false;
  async function stop(sig) {
    if (stopping) return;
    stopping = true;
    log(`${sig}: closing`);
    setTimeout(() => process.exit(0), 3000).unref(); // whatever is still open
    io.close(); // disconnects every socket and closes the http server
    if (pub) await Promise.allSettled([pub.quit(), sub.quit()]);
    process.exit(0);
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
