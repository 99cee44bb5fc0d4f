// Opens N idle tunnels through a forward proxy and holds them: each is CONNECT -> TLS handshake ->
// one GET (so the tunnel carried real traffic) and then sits kept-alive until this process is told
// to stop (SIGTERM, or its stdin closes). bench/run.mjs samples the proxy's RSS meanwhile.
//
//   node idle.mjs --proxy PORT --count 10000 --ca CA.pem [--host localhost --port 18443]
//                 [--auth user:pass] [--parallel 100]
//
// Prints one JSON line once every tunnel is open (or failed): {"opened","failed","first_error"}.
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    proxy: { type: 'string' },
    count: { type: 'string', default: '10000' },
    ca: { type: 'string' },
    host: { type: 'string', default: 'localhost' },
    port: { type: 'string', default: '18443' },
    auth: { type: 'string' },
    parallel: { type: 'string', default: '100' },
  },
});
if (!opt.proxy || !opt.ca) throw new Error('--proxy and --ca are required');

const ca = fs.readFileSync(opt.ca);
const target = `${opt.host}:${opt.port}`;
const proxyAuth = opt.auth ? `Proxy-Authorization: Basic ${Buffer.from(opt.auth).toString('base64')}\r\n` : '';
const request = `GET /small HTTP/1.1\r\nHost: ${target}\r\n\r\n`;
const held = [];

/** Resolves when `socket` has delivered bytes containing `marker`, with everything read so far. */
function readUntil(socket, done) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (data) => {
      seen += data.toString('latin1');
      if (!done(seen)) return;
      socket.off('data', onData);
      socket.off('error', reject);
      socket.off('close', onClose);
      resolve(seen);
    };
    const onClose = () => reject(new Error('closed early'));
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', onClose);
  });
}

async function openOne() {
  const socket = net.connect(Number(opt.proxy), '127.0.0.1');
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${proxyAuth}\r\n`);
  const head = await readUntil(socket, (s) => s.includes('\r\n\r\n'));
  if (!/^HTTP\/1\.[01] 200/.test(head)) {
    socket.destroy();
    throw new Error(`CONNECT refused: ${head.split('\r\n')[0]}`);
  }
  const secure = tls.connect({ socket, servername: opt.host, ca });
  await new Promise((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  secure.write(request);
  const response = await readUntil(secure, (s) => {
    const end = s.indexOf('\r\n\r\n');
    return end >= 0 && s.length - end - 4 >= 1024; // /small has a 1 KiB body
  });
  if (!/^HTTP\/1\.[01] 200/.test(response)) throw new Error(`GET answered: ${response.split('\r\n')[0]}`);
  secure.on('error', () => {});
  held.push(secure);
}

let next = 0;
let failed = 0;
let firstError = null;
const total = Number(opt.count);
async function opener() {
  while (next < total) {
    next++;
    try {
      await openOne();
    } catch (err) {
      failed++;
      firstError ??= String(err?.message ?? err);
    }
  }
}
await Promise.all(Array.from({ length: Number(opt.parallel) }, opener));
const stillOpen = held.filter((s) => !s.destroyed).length;
console.log(JSON.stringify({ opened: stillOpen, failed, first_error: firstError }));

const stop = () => {
  for (const s of held) s.destroy();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
