// CONNECT through sluice: passthrough tunnels (SNI checked against the CONNECT host), denials
// before the tunnel opens, and interception where a rule needs to see inside HTTPS.
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { basicAuth, connectTunnel, curl, exchangeRaw } from '../helpers/clients.js';
import { startDns } from '../helpers/dns.js';
import { parseHttpResponses, type ParsedResponse } from '../helpers/http-response.js';
import { makeSelfSigned, makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let untrusted: Upstream;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
let testCa: string;
let sluiceCa: string;
let rawTls: Awaited<ReturnType<typeof startRawUpstream>> | null = null;
const auth = basicAuth(TOOL, TOKEN);

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  untrusted = await startUpstream({ host: '127.0.0.2', tls: await makeSelfSigned(['untrusted.test']) });
  // Port 443 needs root (CI and the netns run are root); elsewhere the test below fails loudly.
  rawTls = await startRawUpstream((socket) => socket.end('SSH-2.0-not-tls\r\n'), { host: '127.0.0.2', port: 443 }).catch(() => null);
  dns = await startDns({
    'upstream.test': [{ type: 'A', address: '127.0.0.2' }],
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'other.test': [{ type: 'A', address: '127.0.0.2' }],
    'untrusted.test': [{ type: 'A', address: '127.0.0.2' }],
    'plain443.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [443, ${upstream.port}, ${untrusted.port}]
tls:
  upstream_ca: ${testCa}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: upstream.test
      - host: other.test
      - host: 127.0.0.2
      - host: plain443.test
      - host: api.test
        methods: [GET, POST]
        paths: ["/anything/allowed/**", "/ws"]
      - host: untrusted.test
        paths: ["/**"]
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await untrusted.close();
  await rawTls?.close();
  await dns.close();
});

const viaProxy = (url: string, extra: string[] = []) => curl(['-x', sluice.proxyUrl(), ...extra, url]);

t.test('passthrough CONNECT: TLS end to end with the upstream certificate', async (t) => {
  const r = await viaProxy(`https://upstream.test:${upstream.port}/anything/tunnel`, ['--cacert', testCa]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).url, '/anything/tunnel');
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === 'upstream.test' && (e.bytes_down ?? 0) > 0);
  t.equal(rec.decision, 'allow');
  t.equal(rec.method, 'CONNECT');
  t.equal(rec.ip, '127.0.0.2');
  t.ok((rec.bytes_up ?? 0) > 0);
});

t.test('CONNECT to a host not in the allowlist is 403 before any byte flows', async (t) => {
  const before = upstream.connections();
  const r = await viaProxy(`https://evil.test:${upstream.port}/`, ['--cacert', testCa]);
  t.not(r.code, 0);
  t.equal(r.blocks[0]?.status, 403);
  t.equal(r.blocks[0]?.headers['x-sluice-deny'], 'no_rule');
  t.equal(upstream.connections(), before);
});

t.test('CONNECT without credentials is 407', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `upstream.test:${upstream.port}`);
  t.teardown(() => tunnel.socket.destroy());
  t.equal(tunnel.status, 407);
  t.equal(tunnel.headers['x-sluice-deny'], 'unauthenticated');
});

t.test('CONNECT target that is not host:port is bad_request', async (t) => {
  const tunnel = await connectTunnel(sluice.port, 'upstream.test', auth);
  t.teardown(() => tunnel.socket.destroy());
  t.equal(tunnel.status, 400);
  t.equal(tunnel.headers['x-sluice-deny'], 'bad_request');
});

function handshake(socket: import('node:stream').Duplex, servername: string | undefined, ca: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket, ca, ...(servername === undefined ? {} : { servername }) }, () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the handshake finished')));
  });
}

t.test('SNI naming another host than the CONNECT target is refused (sni_mismatch)', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `upstream.test:${upstream.port}`, auth);
  t.equal(tunnel.status, 200);
  const before = upstream.requests.length;
  await t.rejects(handshake(tunnel.socket, 'other.test', readFileSync(testCa, 'utf8')));
  const rec = await waitForAudit(sluice, (e) => e.reason === 'sni_mismatch' && e.host === 'upstream.test');
  t.equal(rec.type, 'policy.violation');
  t.match(rec.detail, /other\.test/);
  t.equal(upstream.requests.length, before);
});

t.test('no SNI for a name target is refused (sni_mismatch)', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `other.test:${upstream.port}`, auth);
  t.equal(tunnel.status, 200);
  await t.rejects(handshake(tunnel.socket, '', readFileSync(testCa, 'utf8')));
  await waitForAudit(sluice, (e) => e.reason === 'sni_mismatch' && e.host === 'other.test');
});

t.test('an IP target needs no SNI', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `127.0.0.2:${upstream.port}`, auth);
  t.equal(tunnel.status, 200);
  const s = await handshake(tunnel.socket, undefined, readFileSync(testCa, 'utf8'));
  const r = await exchangeRaw(s, `GET /small HTTP/1.1\r\nHost: 127.0.0.2\r\nConnection: close\r\n\r\n`);
  t.equal(r.status, 200);
  s.destroy();
});

t.test('non-TLS bytes on a CONNECT to port 443 are refused', async (t) => {
  if (!rawTls) throw new Error('the test could not bind 127.0.0.2:443');
  const tunnel = await connectTunnel(sluice.port, 'plain443.test:443', auth);
  t.equal(tunnel.status, 200);
  tunnel.socket.resume();
  tunnel.socket.write('GET / HTTP/1.1\r\nHost: plain443.test\r\n\r\n');
  await new Promise((r) => tunnel.socket.once('close', r));
  const rec = await waitForAudit(sluice, (e) => e.host === 'plain443.test' && e.type === 'policy.violation');
  t.equal(rec.reason, 'bad_request');
});

t.test('intercepted HTTPS: path rules enforced inside TLS, denials readable by the client', async (t) => {
  const ca = path.join(sluice.caDir, 'ca.pem');
  const ok = await viaProxy(`https://api.test:${upstream.port}/anything/allowed/1`, ['--cacert', ca]);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.status, 200);
  const echo = JSON.parse(ok.body);
  t.equal(echo.url, '/anything/allowed/1');
  const denied = await viaProxy(`https://api.test:${upstream.port}/anything/denied`, ['--cacert', ca]);
  t.equal(denied.status, 403);
  t.equal(denied.headers['x-sluice-deny'], 'path_not_allowed');
  t.equal(JSON.parse(denied.body).reason, 'path_not_allowed');
  const method = await viaProxy(`https://api.test:${upstream.port}/anything/allowed/2`, ['--cacert', ca, '-X', 'DELETE']);
  t.equal(method.headers['x-sluice-deny'], 'method_not_allowed');
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.req' && e.scheme === 'https' && e.path === '/anything/allowed/1');
  t.equal(rec.decision, 'allow');
  t.equal(rec.host, 'api.test');
});

t.test('intercepted tunnel keeps alive: several requests, each decided on its own', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `api.test:${upstream.port}`, auth);
  t.equal(tunnel.status, 200);
  const s = await handshake(tunnel.socket, 'api.test', sluiceCa);
  t.equal(s.alpnProtocol, false, 'nothing but http/1.1 is negotiated');
  const first = await roundTrip(s, `GET /anything/allowed/a HTTP/1.1\r\nHost: api.test:${upstream.port}\r\n\r\n`);
  t.equal(first.status, 200);
  const second = await roundTrip(s, `GET /anything/nope HTTP/1.1\r\nHost: api.test:${upstream.port}\r\n\r\n`);
  t.equal(second.status, 403);
  t.equal(second.headers['x-sluice-deny'], 'path_not_allowed');
  const third = await roundTrip(s, `GET /anything/allowed/b HTTP/1.1\r\nHost: other.test:${upstream.port}\r\n\r\n`);
  t.equal(third.status, 400, 'the Host header must name the CONNECT host');
  s.destroy();
});

t.test('intercepted: a ClientHello naming another host is refused (sni_mismatch), even split across writes', async (t) => {
  const tunnel = await connectTunnel(sluice.port, `api.test:${upstream.port}`, auth);
  t.equal(tunnel.status, 200);
  const before = upstream.requests.length;
  await t.rejects(handshake(new SplitFirstWrite(tunnel.socket), 'other.test', sluiceCa));
  const rec = await waitForAudit(sluice, (e) => e.reason === 'sni_mismatch' && e.host === 'api.test');
  t.equal(rec.type, 'policy.violation');
  t.match(rec.detail, /other\.test/);
  t.equal(upstream.requests.length, before, 'nothing reached the upstream');

  const ok = await connectTunnel(sluice.port, `api.test:${upstream.port}`, auth);
  const s = await handshake(new SplitFirstWrite(ok.socket), 'api.test', sluiceCa);
  const r = await roundTrip(s, `GET /anything/allowed/split HTTP/1.1\r\nHost: api.test:${upstream.port}\r\n\r\n`);
  t.equal(r.status, 200, 'a hello that arrives in two pieces is read whole');
  s.destroy();
});

t.test('intercepted: an upstream certificate that does not verify is 502 upstream_tls', async (t) => {
  const r = await viaProxy(`https://untrusted.test:${untrusted.port}/anything/x`, ['--cacert', path.join(sluice.caDir, 'ca.pem')]);
  t.equal(r.status, 502);
  t.equal(r.headers['x-sluice-error'], 'upstream_tls');
  t.equal(untrusted.requests.length, 0);
});

/** One request/response on a socket that stays open for the next one. */
function roundTrip(socket: tls.TLSSocket, bytes: string): Promise<ParsedResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseHttpResponses(buf, { requestMethod: 'GET' });
      const done = parsed.responses.find((r) => r.status >= 200);
      if (done) {
        socket.off('data', onData);
        resolve(done);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(bytes);
  });
}

function wsEcho(socket: tls.TLSSocket, url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { createConnection: () => socket });
    ws.once('open', () => ws.send('ping through sluice'));
    ws.once('message', (data) => {
      // A text message arrives as one Buffer (ws's default binaryType, no fragments option).
      resolve((data as Buffer).toString('utf8'));
      ws.close();
    });
    ws.once('error', reject);
  });
}

t.test('WebSocket through a passthrough tunnel and an intercepted one', async (t) => {
  const pass = await connectTunnel(sluice.port, `upstream.test:${upstream.port}`, auth);
  const ps = await handshake(pass.socket, 'upstream.test', readFileSync(testCa, 'utf8'));
  t.equal(await wsEcho(ps, `wss://upstream.test:${upstream.port}/ws`), 'ping through sluice');
  const mitm = await connectTunnel(sluice.port, `api.test:${upstream.port}`, auth);
  const ms = await handshake(mitm.socket, 'api.test', sluiceCa);
  t.equal(await wsEcho(ms, `wss://api.test:${upstream.port}/ws`), 'ping through sluice');
  await waitForAudit(sluice, (e) => e.type === 'net.req' && e.path === '/ws' && e.status === 101);
});

/** A socket wrapper whose first write (the ClientHello) reaches the wire in two pieces, 20 ms apart. */
class SplitFirstWrite extends Duplex {
  #first = true;
  constructor(private readonly socket: import('node:net').Socket) {
    super();
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('close', () => this.destroy());
  }
  override _read(): void {
    this.socket.resume();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (!this.#first || chunk.length < 10) return void this.socket.write(chunk, done);
    this.#first = false;
    this.socket.write(chunk.subarray(0, 10));
    setTimeout(() => this.socket.write(chunk.subarray(10), done), 20);
  }
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
