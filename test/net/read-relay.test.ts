// ReadRelay over real loopback sockets: bytes arrive intact and in order through the shared and the
// owned read buffers, with a slow reader (backpressure) and with more bulk relays than owned buffers.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import t from 'tap';
import { dialTcp } from '../../src/net/dial.js';
import { ReadRelay } from '../../src/net/read-relay.js';

const BLOCK = randomBytes(3 * 1024 * 1024 + 17);

/** A server that sends `blocks` copies of BLOCK to each connection, then ends. */
async function source(blocks: number): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((socket) => {
    let left = blocks;
    const pump = (): void => {
      while (left > 0) {
        left--;
        if (!socket.write(BLOCK)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    socket.on('error', () => socket.destroy());
    pump();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** A sink that hashes what it reads, pausing now and then so the relay meets backpressure. */
async function sink(): Promise<{ port: number; results: Promise<{ bytes: number; sha256: string }>[]; close: () => void }> {
  const results: Promise<{ bytes: number; sha256: string }>[] = [];
  const server = net.createServer((socket) => {
    results.push(
      new Promise((resolve) => {
        const hash = createHash('sha256');
        let bytes = 0;
        let reads = 0;
        socket.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
          if (++reads % 16 === 0) {
            socket.pause();
            setTimeout(() => socket.resume(), 2);
          }
        });
        socket.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, results, close: () => server.close() };
}

async function relay(sourcePort: number, sinkPort: number, admit: (bytes: number) => boolean = () => true): Promise<net.Socket> {
  const destination = net.connect(sinkPort, '127.0.0.1');
  await once(destination, 'connect');
  const readRelay = new ReadRelay(destination, admit);
  const upstream = await dialTcp({ ip: '127.0.0.1', port: sourcePort, servername: null }, 2000, readRelay.onread);
  readRelay.attach(upstream);
  upstream.on('close', () => destination.end());
  return upstream;
}

function expected(blocks: number): { bytes: number; sha256: string } {
  const hash = createHash('sha256');
  for (let i = 0; i < blocks; i++) hash.update(BLOCK);
  return { bytes: blocks * BLOCK.length, sha256: hash.digest('hex') };
}

t.test('one bulk relay carries every byte in order and ends the destination', async (t) => {
  const src = await source(8);
  const dst = await sink();
  t.teardown(() => (src.close(), dst.close()));
  let admitted = 0;
  await relay(src.port, dst.port, (bytes) => ((admitted += bytes), true));
  await t.resolveMatch(waitFor(dst.results, 0), expected(8));
  t.equal(admitted, 8 * BLOCK.length, 'admit saw every byte once');
});

t.test('more concurrent bulk relays than owned buffers: each stream stays intact', async (t) => {
  const src = await source(3);
  const dst = await sink();
  t.teardown(() => (src.close(), dst.close()));
  const count = 12;
  await Promise.all(Array.from({ length: count }, () => relay(src.port, dst.port)));
  const want = expected(3);
  for (let i = 0; i < count; i++) t.same(await waitFor(dst.results, i), want, `stream ${i}`);
});

t.test('admit returning false stops the relay before the refused chunk is written', async (t) => {
  const src = await source(8);
  const dst = await sink();
  t.teardown(() => (src.close(), dst.close()));
  const cap = 1024 * 1024;
  let seen = 0;
  let upstream: net.Socket | null = null;
  upstream = await relay(src.port, dst.port, (bytes) => {
    if (seen + bytes > cap) {
      upstream?.destroy();
      return false;
    }
    seen += bytes;
    return true;
  });
  const got = await waitFor(dst.results, 0);
  t.ok(got.bytes <= cap, `the sink got ${got.bytes} bytes, no more than the cap`);
  t.equal(got.bytes, seen, 'exactly the admitted bytes arrived');
  t.not(got.bytes, 8 * BLOCK.length);
});

async function waitFor<T>(list: Promise<T>[], index: number): Promise<T> {
  while (list.length <= index) await new Promise((r) => setTimeout(r, 5));
  return list[index] as Promise<T>;
}
