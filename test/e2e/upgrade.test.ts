// Upgraded connections (WebSocket over plain HTTP) get what every request gets: the credentials
// step on the handshake, a per-tool slot while open, and the size limits on the bytes that follow.
import net from 'node:net';
import t from 'tap';
import { basicAuth } from '../helpers/clients.js';
import { startDns } from '../helpers/dns.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// An obviously fake value; the secrets e2e greps everything sluice writes for such values.
const SECRET_VALUE = 'ws-real-value-0123456789abcdef';
const CAPPED_BYTES = 4000;

let upstream: Upstream;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
  dns = await startDns({
    'ws.test': [{ type: 'A', address: '127.0.0.2' }],
    'other.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  const tool = (name: string, limits: string): string => `
  ${name}:
    token_sha256: "\${TOKEN_SHA}"
    limits: {${limits}}
    allow:
      - host: ws.test`;
  sluice = await startTestSluice({
    env: { WS_SECRET_FOR_TEST: SECRET_VALUE },
    // The handshakes are ws:// (plain HTTP): allow_plaintext (refused in strict mode) lets them swap.
    policy: `
version: 1
strict: false
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}]
secrets:
  ws:
    from: { env: WS_SECRET_FOR_TEST }
    hosts: ["ws.test"]
    swap_in: [header:X-Ws-Token]
    allow_plaintext: true
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [ws]
    allow:
      - host: ws.test
      - host: other.test
${tool('single', 'max_connections_per_tool: 1')}
${tool('capped', `max_response_bytes: ${CAPPED_BYTES}, max_request_bytes: ${CAPPED_BYTES * 10}`)}
${tool('capped-up', `max_request_bytes: ${CAPPED_BYTES}, max_response_bytes: ${CAPPED_BYTES * 10}`)}
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await dns.close();
});

interface Upgraded {
  status: number;
  head: string;
  socket: net.Socket;
}

/** Sends a WebSocket handshake through sluice and reads the answer's head; the socket stays open. */
function upgrade(host: string, tool: string, extraHeaders: string[] = []): Promise<Upgraded> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(sluice.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const head = buf.subarray(0, end).toString('latin1');
      if (buf.length > end + 4) socket.unshift(buf.subarray(end + 4));
      resolve({ status: Number(head.slice(9, 12)), head, socket });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    const authority = `${host}:${upstream.port}`;
    socket.write(
      [
        `GET http://${authority}/ws HTTP/1.1`,
        `Host: ${authority}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        `Proxy-Authorization: ${basicAuth(tool, TOKEN)}`,
        ...extraHeaders,
        '',
        '',
      ].join('\r\n'),
    );
  });
}

/** A masked binary frame (clients must mask) carrying `size` bytes. */
function frame(size: number): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const payload = Buffer.alloc(size, 0x61).map((b, i) => b ^ mask[i % 4]!);
  const length = size < 126 ? Buffer.from([0x82, 0x80 | size]) : Buffer.from([0x82, 0x80 | 126, size >> 8, size & 0xff]);
  return Buffer.concat([length, mask, payload]);
}

t.test('a placeholder in the handshake reaches its own host as the value, and the use is recorded', async (t) => {
  const before = upstream.requests.length;
  const ws = await upgrade('ws.test', TOOL, ['X-Ws-Token: __sluice_secret_ws__']);
  t.teardown(() => ws.socket.destroy());
  t.equal(ws.status, 101, ws.head);
  const received = upstream.requests.slice(before).find((r) => r.url === '/ws');
  t.equal(received?.headers['x-ws-token'], SECRET_VALUE, 'the upstream got the real value');
  const use = await waitForAudit(sluice, (e) => e.type === 'secret.use' && e.secret === 'ws' && e.where === 'header:X-Ws-Token');
  t.equal(use.host, 'ws.test');
});

t.test('a handshake carrying the real value, or a placeholder toward another host, is refused before any byte goes up', async (t) => {
  const before = upstream.requests.length;
  const leak = await upgrade('ws.test', TOOL, [`X-Ws-Token: ${SECRET_VALUE}`]);
  leak.socket.destroy();
  t.equal(leak.status, 403);
  t.match(leak.head, /X-Sluice-Deny: secret_leak/i);
  const outOfScope = await upgrade('other.test', TOOL, ['X-Ws-Token: __sluice_secret_ws__']);
  outOfScope.socket.destroy();
  t.equal(outOfScope.status, 403);
  t.match(outOfScope.head, /X-Sluice-Deny: secret_out_of_scope/i);
  t.equal(upstream.requests.length, before, 'the upstream saw neither handshake');
  const rec = await waitForAudit(sluice, (e) => e.reason === 'secret_out_of_scope' && e.host === 'other.test');
  t.equal(rec.type, 'policy.violation');
});

t.test('an open upgraded connection holds one of the tool slots', async (t) => {
  const first = await upgrade('ws.test', 'single');
  t.teardown(() => first.socket.destroy());
  t.equal(first.status, 101);
  const second = await upgrade('ws.test', 'single');
  second.socket.destroy();
  t.equal(second.status, 429, 'the second waits for the slot, then is refused');
  t.match(second.head, /X-Sluice-Deny: rate_limited/i);
  first.socket.destroy();
  await waitForAudit(sluice, (e) => e.tool === 'single' && e.type === 'net.req' && e.status === 101);
  const third = await upgrade('ws.test', 'single');
  third.socket.destroy();
  t.equal(third.status, 101, 'the slot came back when the first closed');
});

for (const [tool, reason, field] of [
  ['capped', 'response_too_large', 'bytes_down'],
  ['capped-up', 'request_too_large', 'bytes_up'],
] as const) {
  t.test(`the size limits hold for the bytes after the upgrade: ${reason}`, async (t) => {
    const ws = await upgrade('ws.test', tool);
    t.equal(ws.status, 101);
    const closed = new Promise<void>((resolve) => ws.socket.once('close', () => resolve()));
    ws.socket.resume();
    // Two frames of half the cap each: their bytes (or their echo) cross the one cap this tool has.
    ws.socket.write(frame(CAPPED_BYTES / 2));
    ws.socket.write(frame(CAPPED_BYTES / 2));
    await closed;
    const rec = await waitForAudit(sluice, (e) => e.tool === tool && e.type === 'limit.exceeded');
    t.equal(rec.reason, reason);
    t.ok((rec[field] ?? 0) > CAPPED_BYTES, `${field} crossed the cap`);
    t.ok((rec[field] ?? 0) <= CAPPED_BYTES + 64 * 1024, 'the connection was cut near the cap');
  });
}
