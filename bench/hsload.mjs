// CONNECT + TLS load client. Each worker loops CONNECT -> TLS handshake -> GET -> close (a fresh
// handshake per request), or with --reuse keeps its tunnel and loops GETs over it.
// Without --proxy it does the same straight to the target (the "direct" reference).
//
//   node hsload.mjs [--proxy PORT] --host localhost --port 18443 --ca CA.pem
//                   [--seconds 10] [--conc 16] [--reuse] [--auth user:pass] [--path /small]
//
// Prints one JSON line: {"mode","ok","fail","per_s","p50_ms","p99_ms","first_error"}.
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    proxy: { type: 'string' },
    host: { type: 'string', default: 'localhost' },
    port: { type: 'string', default: '18443' },
    ca: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    conc: { type: 'string', default: '16' },
    reuse: { type: 'boolean', default: false },
    auth: { type: 'string' },
    path: { type: 'string', default: '/small' },
  },
});
if (!opt.ca) throw new Error('--ca is required (the CA that signs what the client will see)');

const ca = fs.readFileSync(opt.ca);
const target = `${opt.host}:${opt.port}`;
const proxyAuth = opt.auth ? `Proxy-Authorization: Basic ${Buffer.from(opt.auth).toString('base64')}\r\n` : '';
const seconds = Number(opt.seconds);
const deadline = Date.now() + seconds * 1000;

let ok = 0;
let fail = 0;
let firstError = null;
const latenciesMs = [];

/** A TCP socket to the target, through the proxy's CONNECT when there is one. */
function openTunnel() {
  if (!opt.proxy) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(opt.port), opt.host === 'localhost' ? '127.0.0.1' : opt.host);
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
  }
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(opt.proxy), '127.0.0.1');
    socket.once('error', reject);
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${proxyAuth}\r\n`);
    let head = '';
    const onData = (data) => {
      head += data.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.off('error', reject);
      if (!/^HTTP\/1\.[01] 200/.test(head)) {
        socket.destroy();
        return reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`));
      }
      // bytes after the CONNECT answer belong to the tunnel
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

function handshake(socket) {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({ socket, servername: opt.host, ca }, () => resolve(secure));
    secure.once('error', reject);
  });
}

/** One GET over an open TLS session; resolves when the whole body (by content-length) arrived. */
function get(secure) {
  return new Promise((resolve, reject) => {
    secure.write(`GET ${opt.path} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    let received = 0;
    let expected = -1;
    let head = '';
    const finish = (err) => {
      secure.off('data', onData);
      secure.off('error', finish);
      secure.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onClose = () => finish(new Error('connection closed mid-response'));
    const onData = (data) => {
      if (expected < 0) {
        head += data.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = head.slice(0, head.indexOf('\r\n'));
        if (!/^HTTP\/1\.[01] 200/.test(status)) return finish(new Error(`GET answered: ${status}`));
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (!length) return finish(new Error(`no content-length: ${status}`));
        expected = Number(length[1]);
        received = Buffer.byteLength(head, 'latin1') - end - 4;
      } else received += data.length;
      if (received >= expected) finish();
    };
    secure.on('data', onData);
    secure.on('error', finish);
    secure.on('close', onClose);
  });
}

async function worker() {
  let secure = null;
  while (Date.now() < deadline) {
    const started = process.hrtime.bigint();
    try {
      secure ??= await handshake(await openTunnel());
      await get(secure);
      if (!opt.reuse) {
        secure.destroy();
        secure = null;
      }
      ok++;
      latenciesMs.push(Number(process.hrtime.bigint() - started) / 1e6);
    } catch (err) {
      fail++;
      firstError ??= String(err?.message ?? err);
      secure?.destroy();
      secure = null;
    }
  }
  secure?.destroy();
}

await Promise.all(Array.from({ length: Number(opt.conc) }, worker));
latenciesMs.sort((a, b) => a - b);
const quantile = (q) => +(latenciesMs[Math.floor(q * (latenciesMs.length - 1))] ?? 0).toFixed(2);
console.log(
  JSON.stringify({
    mode: opt.reuse ? 'reuse' : 'handshake',
    ok,
    fail,
    per_s: +(ok / seconds).toFixed(1),
    p50_ms: quantile(0.5),
    p99_ms: quantile(0.99),
    first_error: firstError,
  }),
);
