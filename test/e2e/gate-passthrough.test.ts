// Issue 13, contract item 4: one ClientHello gate on every port. In a passthrough tunnel (a host rule
// without methods or paths, so sluice does not intercept), bytes that start like TLS but are not one
// readable ClientHello are refused on every port, not only on 443: the SNI check can not be skipped by
// re-framing a real hello. Non-TLS on 443 is refused. Plain HTTP in a passthrough tunnel to another
// port goes through the admission pipeline (Host must name the CONNECT target, each request decided
// and audited); other protocols (SSH, binary) are relayed. The upstream records every byte it gets,
// per connection: zero for each refusal.
import type net from 'node:net';
import t from 'tap';
import {
  captureClientHello,
  duplicateSniClientHello,
  fragmentClientHello,
  garbageClientHello,
  padClientHello,
  retypedClientHello,
} from '../helpers/client-hello.js';
import { basicAuth, closedBy, connectTunnel, roundTrip } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { auditWithin, CANONICAL_TYPES, startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startRawUpstream, type RawUpstream } from '../helpers/upstream.js';
import { settles } from '../helpers/wait.js';

// Its own loopback address, so port 443 there is this file's (tunnel.test.ts binds 127.0.0.2:443).
const UPSTREAM_IP = '127.0.0.44';
const CLIENT_BANNER = 'SSH-2.0-OpenSSH_9.6 gate-test\r\n';
const UPSTREAM_BANNER = 'SSH-2.0-upstream-banner\r\n';
const SERVER_FIRST_BANNER = 'SSH-2.0-server-speaks-first\r\n';

/**
 * The far end of every tunnel: answers an SSH banner with its own, echoes binary, answers each plain
 * HTTP request head with 200 naming the target, and says nothing to anything else (a TLS hello).
 */
function peer(socket: net.Socket): void {
  let mode: 'unknown' | 'ssh' | 'echo' | 'http' | 'silent' = 'unknown';
  let pending = '';
  socket.on('data', (chunk: Buffer) => {
    if (mode === 'unknown') {
      const text = chunk.toString('latin1');
      mode = text.startsWith('SSH-') ? 'ssh' : chunk[0] === 0 ? 'echo' : /^[A-Z]+ /.test(text) ? 'http' : 'silent';
      if (mode === 'ssh') socket.write(UPSTREAM_BANNER);
    }
    if (mode === 'echo') socket.write(chunk);
    if (mode !== 'http') return;
    pending += chunk.toString('latin1');
    for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
      const target = pending.slice(0, end).split(' ')[1] ?? '';
      pending = pending.slice(end + 4);
      const body = `served ${target}`;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    }
  });
}

/** A server-first protocol: the upstream speaks before the client does, then echoes. */
function serverFirstPeer(socket: net.Socket): void {
  socket.write(SERVER_FIRST_BANNER);
  socket.on('data', (chunk: Buffer) => socket.write(chunk));
}

interface HelloCase {
  name: string;
  what: string;
  bytes(hello: Buffer, host: string): Buffer;
}

const MALFORMED_HELLOS: HelloCase[] = [
  { name: 'frag', what: 'a real ClientHello split into 40 records', bytes: (hello) => fragmentClientHello(hello, 40) },
  { name: 'pad', what: 'a real ClientHello padded past 16 KiB', bytes: (hello) => padClientHello(hello) },
  { name: 'dupsni', what: 'a ClientHello with a second server_name extension', bytes: (hello, host) => duplicateSniClientHello(hello, host) },
  { name: 'retyped', what: 'a handshake record that is not a ClientHello', bytes: (hello) => retypedClientHello(hello) },
  { name: 'garbage', what: 'a ClientHello record whose body can not be parsed', bytes: () => garbageClientHello() },
];

const NOT_TLS: Array<{ name: string; what: string; bytes: Buffer }> = [
  { name: 'http', what: 'plain HTTP', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n') },
  { name: 'ssh', what: 'an SSH banner', bytes: Buffer.from(CLIENT_BANNER) },
  { name: 'binary', what: 'binary bytes', bytes: Buffer.from([0x00, 0xde, 0xad, 0xbe, 0xef]) },
];

const HIGH_HOSTS = [
  'control-high',
  ...MALFORMED_HELLOS.map((c) => `${c.name}-high`),
  'http-ok',
  'http-foreign-0',
  'http-foreign-1',
  'http-foreign-2',
  'ssh',
  'binary',
  'first',
];
const HOSTS_443 = ['control-443', ...MALFORMED_HELLOS.map((c) => `${c.name}-443`), ...NOT_TLS.map((c) => `${c.name}-443`)];
const name = (label: string): string => `${label}.pass.test`;

let up: RawUpstream;
let up443: RawUpstream | null;
let serverFirst: RawUpstream;
let sluice: TestSluice;
let dns: DnsServer;
const auth = basicAuth(TOOL, TOKEN);

t.before(async () => {
  up = await startRawUpstream(peer, { host: UPSTREAM_IP });
  // Port 443 needs root (the netns run and CI are root); without it the 443 subtests fail loudly.
  up443 = await startRawUpstream(peer, { host: UPSTREAM_IP, port: 443 }).catch(() => null);
  serverFirst = await startRawUpstream(serverFirstPeer, { host: UPSTREAM_IP });
  dns = await startDns(
    Object.fromEntries([...HIGH_HOSTS, ...HOSTS_443].map((label) => [name(label), [{ type: 'A' as const, address: UPSTREAM_IP }]])),
  );
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["${UPSTREAM_IP}/32"]
  dns_servers: ["${dns.address}"]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: "*.pass.test"
        ports: [443, ${up.port}, ${serverFirst.port}]
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await up.close();
  await up443?.close();
  await serverFirst.close();
  await dns.close();
});

/** What the upstream received on the connections it accepted since `from`, once they have closed (bounded wait). */
async function receivedSince(upstream: RawUpstream, from: number): Promise<string> {
  await settles(() =>
    upstream
      .connectionLog()
      .slice(from)
      .every((c) => c.closed),
  );
  return upstream
    .connectionLog()
    .slice(from)
    .map((c) => c.received)
    .join('');
}

const ports = [
  { label: 'high', where: 'a passthrough tunnel to a port other than 443', upstream: (): RawUpstream => up },
  { label: '443', where: 'a passthrough tunnel to port 443', upstream: (): RawUpstream => up443 ?? fail443() },
];

function fail443(): never {
  throw new Error(`the test could not bind ${UPSTREAM_IP}:443 (it needs root, as in the netns run)`);
}

for (const port of ports) {
  const where = port.where;

  t.test(`${where}: an unmodified ClientHello is relayed byte for byte (control)`, async (t) => {
    const upstream = port.upstream();
    const host = name(`control-${port.label}`);
    const hello = await captureClientHello(host);
    const from = upstream.connectionLog().length;
    const tunnel = await connectTunnel(sluice.port, `${host}:${upstream.port}`, auth);
    t.equal(tunnel.status, 200);
    tunnel.socket.write(hello);
    t.ok(
      await settles(() =>
        upstream
          .connectionLog()
          .slice(from)
          .some((c) => c.received.length >= hello.length),
      ),
      'the hello arrived',
    );
    tunnel.socket.destroy();
    t.equal(await receivedSince(upstream, from), hello.toString('latin1'), 'exactly the client hello, nothing else');
  });

  for (const c of MALFORMED_HELLOS) {
    t.test(`${where}: ${c.what} is refused (bad_request); the upstream gets zero bytes`, async (t) => {
      const upstream = port.upstream();
      const host = name(`${c.name}-${port.label}`);
      const bytes = c.bytes(await captureClientHello(host), host);
      const from = upstream.connectionLog().length;
      const tunnel = await connectTunnel(sluice.port, `${host}:${upstream.port}`, auth);
      t.equal(tunnel.status, 200, 'the CONNECT itself is allowed');
      tunnel.socket.write(bytes);
      t.ok((await closedBy(tunnel.socket)).closed, 'sluice closed the tunnel');
      const record = await auditWithin(sluice, (r) => CANONICAL_TYPES.has(r.type) && r.host === host);
      t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'bad_request', tool: TOOL, host }, 'audit');
      t.equal((await receivedSince(upstream, from)).length, 0, 'the upstream received zero bytes');
    });
  }
}

for (const c of NOT_TLS) {
  t.test(`a passthrough tunnel to port 443: ${c.what} is refused (bad_request); the upstream gets zero bytes`, async (t) => {
    const upstream = up443 ?? fail443();
    const host = name(`${c.name}-443`);
    const from = upstream.connectionLog().length;
    const tunnel = await connectTunnel(sluice.port, `${host}:443`, auth);
    t.equal(tunnel.status, 200);
    tunnel.socket.write(c.bytes);
    t.ok((await closedBy(tunnel.socket)).closed, 'sluice closed the tunnel');
    const record = await auditWithin(sluice, (r) => CANONICAL_TYPES.has(r.type) && r.host === host);
    t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'bad_request', tool: TOOL, host }, 'audit');
    t.equal((await receivedSince(upstream, from)).length, 0, 'the upstream received zero bytes');
  });
}

t.test('plain HTTP in a passthrough tunnel to another port: a request naming the CONNECT target is served, decided and audited', async (t) => {
  const host = name('http-ok');
  const authority = `${host}:${up.port}`;
  const from = up.connectionLog().length;
  const tunnel = await connectTunnel(sluice.port, authority, auth);
  t.equal(tunnel.status, 200);
  const socket = tunnel.socket;
  t.teardown(() => socket.destroy());
  const first = await roundTrip(socket, `GET /served HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { timeoutMs: 5000 });
  t.equal(first.status, 200);
  t.equal(first.body, 'served /served');
  const record = await auditWithin(sluice, (r) => r.type === 'net.req' && r.host === host && r.path === '/served');
  t.match(
    record,
    { type: 'net.req', decision: 'allow', scheme: 'http', tool: TOOL, host, port: up.port, status: 200 },
    'audit: one net.req for the request',
  );
  t.match(
    up
      .connectionLog()
      .slice(from)
      .map((c) => c.received)
      .join(''),
    /^via: .*1\.1 sluice/im,
    'the upstream got the request as sluice forwards one (Via added)',
  );

  // Each request is decided on its own: the next one on the same tunnel names another host.
  const second = await roundTrip(socket, `GET /second HTTP/1.1\r\nHost: elsewhere.pass.test:${up.port}\r\n\r\n`, { timeoutMs: 5000 });
  t.equal(second.status, 400, 'the second request, naming another host, is refused');
  t.equal(second.headers['x-sluice-deny'], 'bad_request');
  t.notOk(up.received().includes('/second'), 'the second request never reached the upstream');
});

const FOREIGN = [
  { what: 'a Host naming another host', request: (port: number) => `GET /x HTTP/1.1\r\nHost: elsewhere.pass.test:${port}\r\n\r\n` },
  {
    what: 'a Host naming the CONNECT host on another port',
    request: (port: number) => `GET /x HTTP/1.1\r\nHost: ${name('http-foreign-1')}:${port + 1}\r\n\r\n`,
  },
  {
    what: 'an absolute-form target naming another host',
    request: (port: number) => `GET http://elsewhere.pass.test:${port}/x HTTP/1.1\r\nHost: ${name('http-foreign-2')}:${port}\r\n\r\n`,
  },
];

for (const [i, c] of FOREIGN.entries()) {
  t.test(
    `plain HTTP in a passthrough tunnel to another port: ${c.what} is 400 bad_request inside the tunnel; the upstream gets nothing`,
    async (t) => {
      const host = name(`http-foreign-${i}`);
      const from = up.connectionLog().length;
      const tunnel = await connectTunnel(sluice.port, `${host}:${up.port}`, auth);
      t.equal(tunnel.status, 200);
      const r = await roundTrip(tunnel.socket, c.request(up.port), { timeoutMs: 5000 }).catch((err: Error) => err);
      tunnel.socket.destroy();
      t.notOk(r instanceof Error, 'an answer came back inside the tunnel');
      if (r instanceof Error) return;
      t.equal(r.status, 400);
      t.equal(r.headers['x-sluice-deny'], 'bad_request');
      const id = r.headers['x-request-id'];
      const record = id === undefined ? undefined : await auditWithin(sluice, (a) => a.request_id === id);
      t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'bad_request', tool: TOOL, host }, 'audit');
      t.equal((await receivedSince(up, from)).length, 0, 'the upstream received zero bytes');
    },
  );
}

t.test('an SSH banner (client speaks first) is relayed both ways', async (t) => {
  const host = name('ssh');
  const from = up.connectionLog().length;
  const tunnel = await connectTunnel(sluice.port, `${host}:${up.port}`, auth);
  t.equal(tunnel.status, 200);
  tunnel.socket.write(CLIENT_BANNER);
  const got = await readUntil(tunnel.socket, UPSTREAM_BANNER);
  t.ok(got.includes(UPSTREAM_BANNER), "the upstream's banner came back");
  tunnel.socket.destroy();
  t.equal(await receivedSince(up, from), CLIENT_BANNER, "the upstream got the client's banner");
  await waitForAudit(sluice, (r) => r.type === 'net.tunnel' && r.host === host && r.decision === 'allow');
});

t.test('a server-first protocol: the upstream speaks before the client and is relayed', async (t) => {
  const host = name('first');
  const tunnel = await connectTunnel(sluice.port, `${host}:${serverFirst.port}`, auth);
  t.equal(tunnel.status, 200);
  const banner = await readUntil(tunnel.socket, SERVER_FIRST_BANNER);
  t.ok(banner.includes(SERVER_FIRST_BANNER), 'the banner reached the client before it sent anything');
  tunnel.socket.write(CLIENT_BANNER);
  t.ok((await readUntil(tunnel.socket, CLIENT_BANNER)).includes(CLIENT_BANNER), 'and the client is relayed after it');
  tunnel.socket.destroy();
});

t.test('binary bytes (clearly not HTTP, not TLS) are relayed', async (t) => {
  const host = name('binary');
  const tunnel = await connectTunnel(sluice.port, `${host}:${up.port}`, auth);
  t.equal(tunnel.status, 200);
  const bytes = Buffer.from([0x00, 0xde, 0xad, 0xbe, 0xef]);
  tunnel.socket.write(bytes);
  const echoed = await readUntil(tunnel.socket, bytes.toString('latin1'));
  t.equal(echoed, bytes.toString('latin1'), 'echoed through the tunnel');
  tunnel.socket.destroy();
});

/** Reads from a paused tunnel socket until `marker` arrived (bounded); returns what arrived. */
function readUntil(socket: net.Socket, marker: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const timer = setTimeout(() => resolve(got), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (got.includes(marker)) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    socket.resume();
  });
}
