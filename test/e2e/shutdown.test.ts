// Shutdown (issue 15, item 2): sluice stops accepting, lets open transfers finish for up to the
// drain timeout, then cuts what is left; a transfer cut at shutdown is audited as cut (reason
// shutdown, with its bytes so far), never as a complete 200; the log says "draining N connections"
// and "stopped". Real clients on real sockets, one sluice per test (close is the thing under test).
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../src/observe/log.js';
import { basicAuth, closedBy, connectTunnel, exchangeRaw, openSocket } from '../helpers/clients.js';
import { startHoldUpstream } from '../helpers/gate-upstream.js';
import { startTestSluice, TOKEN, TOOL, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startRawUpstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const auth = basicAuth(TOOL, TOKEN);
const HOST = '127.0.0.2';
/** a host whose rule has no paths: its tunnels are relayed untouched */
const TUNNEL_HOST = '127.0.0.3';

/** An info-level logger whose lines the test reads back. */
function capturedLogger(): { logger: ReturnType<typeof createLogger>; messages: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level: 'info', destination: stream });
  return { logger, messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

function policyFor(ports: number[]): string {
  return `
version: 1
network:
  allow_private_cidrs: ["${HOST}/32", "${TUNNEL_HOST}/32"]
  allow_ports: [${ports.join(', ')}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: ${HOST}
        paths: ["/**"]
      - host: ${TUNNEL_HOST}
`;
}

/** The audit file after close (the sink is closed: read the file itself). */
function auditAfterClose(s: TestSluice): AuditRecord[] {
  return readFileSync(s.auditFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

/** Resolves once `socket` has received at least `bytes` bytes. */
function received(socket: net.Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      const all = Buffer.concat(chunks);
      if (all.length >= bytes) {
        socket.off('data', onData);
        resolve(all);
      }
    };
    socket.on('data', onData);
    socket.resume();
  });
}

t.test('a transfer still open when the drain timeout runs out is cut and audited as cut, with its bytes', async (t) => {
  // A download that sends its head and 1000 of 100000 bytes, then stalls; and an echo behind a tunnel.
  const download = await startRawUpstream(
    (socket) => socket.once('data', () => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(1000)}`)),
    { host: HOST },
  );
  const echo = await startRawUpstream((socket) => socket.on('data', (chunk: Buffer) => socket.write(chunk)), { host: TUNNEL_HOST });
  const log = capturedLogger();
  const sluice = await startTestSluice({ policy: policyFor([download.port, echo.port]), drainMs: 300, logger: log.logger });
  t.teardown(async () => {
    await download.close();
    await echo.close();
  });

  const client = await openSocket(sluice.port);
  client.write(`GET http://${HOST}:${download.port}/big HTTP/1.1\r\nHost: ${HOST}:${download.port}\r\nProxy-Authorization: ${auth}\r\n\r\n`);
  const head = await received(client, 1000);
  t.match(head.toString('latin1'), /^HTTP\/1\.1 200 /, 'the download started');

  const tunnel = await connectTunnel(sluice.port, `${TUNNEL_HOST}:${echo.port}`, auth);
  t.equal(tunnel.status, 200);
  tunnel.socket.write('\x00ping');
  t.equal((await received(tunnel.socket, 5)).toString(), '\x00ping', 'the tunnel carries bytes (an opaque protocol)');

  const downloadClosed = closedBy(client);
  const tunnelClosed = closedBy(tunnel.socket);
  await sluice.close();
  t.ok((await downloadClosed).closed, 'the download was cut');
  t.ok((await tunnelClosed).closed, 'the tunnel was cut');

  const records = auditAfterClose(sluice);
  const req = records.find((r) => r.type === 'net.req' && r.path === '/big');
  t.ok(req, 'the download has its record');
  t.equal(req?.reason, 'shutdown', 'recorded as cut at shutdown, not as a complete 200');
  t.equal(req?.status, 200, 'the status the client had been sent');
  t.ok((req?.bytes_down ?? 0) >= 1000, 'with the bytes it had carried');
  t.match(req?.detail ?? '', /drain timeout \(300 ms\) ran out .* cut after \d+ bytes down/);

  const tun = records.find((r) => r.type === 'net.tunnel' && r.port === echo.port);
  t.equal(tun?.reason, 'shutdown');
  t.equal(tun?.bytes_up, 5);
  t.equal(tun?.bytes_down, 5);

  const messages = log.messages();
  t.ok(messages.includes('draining 2 connections'), messages.join(' | '));
  t.ok(messages.includes('drain timeout: cut 2 open transfers'), messages.join(' | '));
  t.equal(messages.at(-1), 'stopped');
});

t.test('a transfer that finishes within the drain timeout completes; idle kept-alive connections do not hold it', async (t) => {
  const upstream = await startHoldUpstream(HOST);
  const log = capturedLogger();
  // Long enough that a drain that waited for it (the bug) fails the "no cut" assertions below.
  const sluice = await startTestSluice({ policy: policyFor([upstream.port]), drainMs: 20_000, logger: log.logger });
  t.teardown(() => upstream.close());
  const request = (path: string): string =>
    `GET http://${HOST}:${upstream.port}${path} HTTP/1.1\r\nHost: ${HOST}:${upstream.port}\r\nProxy-Authorization: ${auth}\r\n\r\n`;

  // A kept-alive connection that has finished its request and sits idle.
  const idle = await openSocket(sluice.port);
  let idleBytes = '';
  idle.on('data', (chunk: Buffer) => (idleBytes += chunk.toString('latin1')));
  idle.write(request('/first'));
  await waitFor(() => upstream.held() === 1, 'the first request reached the upstream');
  upstream.releaseAll();
  await waitFor(() => idleBytes.endsWith('released\n'), 'the first response arrived');
  t.match(idleBytes, /^HTTP\/1\.1 200 /);
  t.notMatch(idleBytes, /connection: close/i, 'the connection stays open, idle');

  const busy = await openSocket(sluice.port);
  const answer = exchangeRaw(busy, request('/slow'));
  await waitFor(() => upstream.held() === 1, 'the slow request reached the upstream');
  const closing = sluice.close();
  await waitFor(() => log.messages().some((m) => m.startsWith('draining ')), 'the drain began');
  t.ok(log.messages().includes('draining 1 connections'), 'the idle connection is not counted');
  upstream.releaseAll();
  const res = await answer;
  t.equal(res.status, 200);
  t.equal(res.body, 'released\n', 'the whole body arrived');
  await closing;

  const slow = auditAfterClose(sluice).find((r) => r.path === '/slow');
  t.equal(slow?.type, 'net.req');
  t.equal(slow?.reason, null, 'a completed transfer is not marked cut');
  t.notOk(
    log.messages().some((m) => m.startsWith('drain timeout')),
    'nothing was cut',
  );
  t.equal(log.messages().at(-1), 'stopped');
  idle.destroy();
  busy.destroy();
});
