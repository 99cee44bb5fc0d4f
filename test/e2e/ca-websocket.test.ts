// The interception CA across restarts (reused, never regenerated; a corrupt one refuses to
// start) and WebSocket upgrades through plain HTTP (absolute-form), decided like any request.
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { StartupError } from '../../src/app/serve.js';
import { basicAuth } from '../helpers/clients.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit } from '../helpers/sluice.js';
import { startUpstream } from '../helpers/upstream.js';

const POLICY = `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [80, 443]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
        ports: [1-65535]
`;

t.test('the CA is created once and reused across restarts', async (t) => {
  const caDir = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-ca-')), 'certs');
  const first = await startTestSluice({ policy: POLICY.replace('ports: [1-65535]', ''), caDir });
  const pem = readFileSync(path.join(caDir, 'ca.pem'), 'utf8');
  const res = await fetch(`http://127.0.0.1:${first.adminPort}/ca.pem`);
  t.equal(await res.text(), pem, '/ca.pem serves the CA certificate');
  await first.close();
  const second = await startTestSluice({ policy: POLICY.replace('ports: [1-65535]', ''), caDir });
  t.equal(readFileSync(path.join(caDir, 'ca.pem'), 'utf8'), pem, 'same CA after a restart');
  await second.close();
});

t.test('a corrupt CA file refuses to start, naming the file', async (t) => {
  const caDir = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-ca-')), 'certs');
  const first = await startTestSluice({ policy: POLICY.replace('ports: [1-65535]', ''), caDir });
  await first.close();
  writeFileSync(path.join(caDir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
  const refused = await startTestSluice({ policy: POLICY.replace('ports: [1-65535]', ''), caDir }).then(
    (s) => s.close().then(() => null),
    (err: unknown) => err,
  );
  t.ok(refused instanceof StartupError, 'serve refuses to start');
  t.match((refused as Error).message, /ca\.pem/);
});

function upgradeThroughProxy(proxyPort: number, target: string, auth: string): Promise<{ head: string; echo: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(proxyPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let head: string | null = null;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (head === null) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          return resolve({ head, echo: '' });
        }
        // A masked text frame "hi" (clients must mask).
        const mask = Buffer.from([1, 2, 3, 4]);
        const payload = Buffer.from('hi');
        const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
      }
      if (head !== null && buf.length >= 2) {
        const len = buf[1]! & 0x7f;
        if (buf.length >= 2 + len) {
          socket.destroy();
          resolve({ head, echo: buf.subarray(2, 2 + len).toString() });
        }
      }
    });
    socket.on('error', reject);
    socket.write(
      `GET ${target} HTTP/1.1\r\nHost: ${new URL(target).host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nProxy-Authorization: ${auth}\r\n\r\n`,
    );
  });
}

t.test('WebSocket over plain HTTP: allowed upgrades echo, denied ones never reach the upstream', async (t) => {
  const upstream = await startUpstream({ host: '127.0.0.2' });
  const sluice = await startTestSluice({ policy: POLICY.replace('ports: [1-65535]', `ports: [${upstream.port}]`) });
  t.teardown(async () => {
    await sluice.close();
    await upstream.close();
  });
  const ok = await upgradeThroughProxy(sluice.port, `http://127.0.0.2:${upstream.port}/ws`, basicAuth(TOOL, TOKEN));
  t.match(ok.head, /^HTTP\/1\.1 101/);
  t.equal(ok.echo, 'hi');
  await waitForAudit(sluice, (e) => e.type === 'net.req' && e.path === '/ws' && e.status === 101);
  const before = upstream.connections();
  const denied = await upgradeThroughProxy(sluice.port, `http://127.0.0.2:${upstream.port + 1}/ws`, basicAuth(TOOL, TOKEN));
  t.match(denied.head, /^HTTP\/1\.1 403/);
  t.match(denied.head, /X-Sluice-Deny: port_not_allowed/i);
  const unauth = await upgradeThroughProxy(sluice.port, `http://127.0.0.2:${upstream.port}/ws`, basicAuth(TOOL, 'wrong'));
  t.match(unauth.head, /^HTTP\/1\.1 407/);
  t.equal(upstream.connections(), before);
});
