import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { relaySocket } from '../../src/net/socket-relay.js';

/** A connected loopback pair: `near` is ours to relay from or to, `far` is the peer's end. */
async function socketPair(): Promise<{ near: net.Socket; far: net.Socket; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const far = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const [near] = await accepted;
  await once(far, 'connect');
  return {
    near,
    far,
    close: () => {
      near.destroy();
      far.destroy();
      server.close();
    },
  };
}

/** Everything `socket` reads until its peer ends the stream. */
async function readToEnd(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'end');
  return Buffer.concat(chunks);
}

t.test('bytes reach the destination, each chunk is admitted first, and the end is passed on', async (t) => {
  const from = await socketPair();
  const to = await socketPair();
  t.teardown(() => {
    from.close();
    to.close();
  });
  let admitted = 0;
  relaySocket(from.near, to.near, (bytes) => {
    admitted += bytes;
    return true;
  });
  const received = readToEnd(to.far);
  const payload = Buffer.from('x'.repeat(5000) + 'end');
  from.far.end(payload);
  t.same(await received, payload);
  t.equal(admitted, payload.length);
});

t.test('a chunk that is not admitted is dropped', async (t) => {
  const from = await socketPair();
  const to = await socketPair();
  t.teardown(() => {
    from.close();
    to.close();
  });
  let calls = 0;
  relaySocket(from.near, to.near, () => {
    calls++;
    return false;
  });
  const received = readToEnd(to.far);
  from.far.write('refused');
  await once(from.near, 'data');
  from.far.end();
  t.equal((await received).length, 0);
  t.equal(calls, 1);
});

t.test('half-close: the destination ends while the other direction keeps flowing', async (t) => {
  const from = await socketPair();
  const to = await socketPair();
  t.teardown(() => {
    from.close();
    to.close();
  });
  relaySocket(from.near, to.near, () => true);
  relaySocket(to.near, from.near, () => true);
  const downstream = readToEnd(to.far);
  from.far.end('request');
  t.equal((await downstream).toString(), 'request');
  // the far side of `to` can still answer after it saw the end
  const upstream = readToEnd(from.far);
  to.far.end('response after the half-close');
  t.equal((await upstream).toString(), 'response after the half-close');
});

t.test('a destination that does not read pauses the source until it drains', async (t) => {
  const from = await socketPair();
  const to = await socketPair();
  t.teardown(() => {
    from.close();
    to.close();
  });
  relaySocket(from.near, to.near, () => true);
  to.far.pause();
  const chunk = Buffer.alloc(64 * 1024, 'b');
  let sent = 0;
  // Keep writing until the relay's destination refuses more and the relay pauses its source
  // (kernel buffers on loopback hold a few MiB; 256 MiB without a pause means no backpressure).
  while (!from.near.isPaused() && sent < 256 * 2 ** 20) {
    if (!from.far.write(chunk)) await once(from.far, 'drain');
    sent += chunk.length;
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.ok(from.near.isPaused(), 'the source is paused');
  t.ok(to.near.writableLength > 0, 'the destination holds unwritten bytes');
  from.far.end();
  const received = readToEnd(to.far);
  to.far.resume();
  t.equal((await received).length, sent, 'every byte arrives once the destination drains');
});
