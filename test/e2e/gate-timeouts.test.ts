// Issue 13, contract item 6: timeouts that hold. A request body that stalls (a declared length not
// delivered, or a chunked body that stops) is answered 408 client_timeout after idle_timeout_ms and
// the upstream request is aborted, in absolute form and inside intercepted TLS. Upstream response
// headers are waited for header_timeout_ms, not idle_timeout_ms: 504 upstream_timeout naming
// header_timeout_ms. TLS client-initiated renegotiation on an intercepted tunnel is refused.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import { basicAuth } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { Conversation, openTlsTunnel, originGet, recordOf, type Next } from '../helpers/gate-tunnel.js';
import { startStallUpstream, type StallConnection, type StallUpstream } from '../helpers/gate-upstream.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const SHORT_MS = 400;
const LONG_MS = 60_000;
/** How long a test waits for an answer that should come after SHORT_MS: far less than LONG_MS. */
const ANSWER_BOUND_MS = 5000;
/** A body large enough that sluice streams most of it upstream before the stall (the swap step holds back only a needle's length). */
const BIG_DECLARED = 128 * 1024;
const BIG_SENT = 64 * 1024;

let stall: StallUpstream;
let stallTls: StallUpstream;
let upstream: Upstream;
let dns: DnsServer;
/** idle_timeout_ms short, header_timeout_ms long: the stalled request bodies */
let idleShort: TestSluice;
/** header_timeout_ms short, idle_timeout_ms long: the upstream that never answers, renegotiation */
let headerShort: TestSluice;

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  stall = await startStallUpstream({ host: '127.0.0.2' });
  stallTls = await startStallUpstream({ host: '127.0.0.2', tls: pki.server });
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns(
    Object.fromEntries(['stall.wild.test', 'reneg.wild.test'].map((h) => [h, [{ type: 'A' as const, address: '127.0.0.2' }]])),
  );
  const policy = (limits: string): string => `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${stall.port}, ${stallTls.port}, ${upstream.port}]
tls:
  upstream_ca: ${testCa}
limits: {${limits}}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
      - host: "*.wild.test"
        paths: ["/anything/**"]
`;
  idleShort = await startTestSluice({ policy: policy(`idle_timeout_ms: ${SHORT_MS}, header_timeout_ms: ${LONG_MS}`) });
  headerShort = await startTestSluice({ policy: policy(`header_timeout_ms: ${SHORT_MS}, idle_timeout_ms: ${LONG_MS}`) });
});
t.teardown(async () => {
  await stall.close();
  await stallTls.close();
  await idleShort.close();
  await headerShort.close();
  await upstream.close();
  await dns.close();
});

/** The 504's detail names the limit that fired, and its value ("header_timeout_ms (400 ms)" or so). */
const HEADER_DETAIL = new RegExp(`header_timeout_ms.*\\b${SHORT_MS} ?ms\\b|\\b${SHORT_MS} ?ms\\b.*header_timeout_ms`);

const authLine = `Proxy-Authorization: ${basicAuth(TOOL, TOKEN)}\r\n`;

/** A raw connection to the proxy port, reset at the end of the test. */
async function proxyConversation(t: Test, sluice: TestSluice): Promise<Conversation> {
  const socket = net.connect(sluice.port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const conversation = new Conversation(socket);
  t.teardown(() => conversation.reset());
  return conversation;
}

async function interceptedConversation(t: Test, sluice: TestSluice, authority: string, tlsOptions = {}): Promise<Conversation> {
  const ca = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
  const { conversation } = await openTlsTunnel(sluice.port, authority, basicAuth(TOOL, TOKEN), { ca, tls: tlsOptions });
  t.teardown(() => conversation.reset());
  return conversation;
}

/** The upstream connections that carried a request for `marker` (a path unique to the test). */
const carrying = (server: StallUpstream, marker: string): StallConnection[] => server.connections.filter((c) => c.received.includes(marker));

/** The answer is a sluice failure with this status and code, and its one audit event says so. */
async function assertFailure(t: Test, sluice: TestSluice, next: Next, status: number, code: string, detail?: RegExp): Promise<void> {
  t.equal(next.kind, 'response', `sluice answered (${next.kind})`);
  if (next.kind !== 'response') return;
  const { response } = next;
  t.equal(response.status, status);
  t.equal(response.headers['x-sluice-error'], code);
  const body = JSON.parse(response.body) as { error: string; reason: string; detail: string };
  t.match(body, { error: status === 408 ? 'client' : 'upstream', reason: code });
  if (detail) t.match(body.detail, detail, 'the detail names the limit and its value');
  const records = await recordOf(sluice, response.headers['x-request-id']);
  t.equal(records.length, 1, 'one audit event');
  t.match(records[0], { type: 'net.req', reason: code, status, tool: TOOL });
}

/**
 * Every upstream connection that carried the request is closed (bounded poll): the upstream request
 * was aborted. With `started`, some upstream connection must have carried it first.
 */
async function assertUpstreamAborted(t: Test, server: StallUpstream, marker: string, started: boolean): Promise<void> {
  if (started) t.ok(carrying(server, marker).length > 0, 'the request had started upstream (the body streams)');
  const aborted = await waitFor(() => carrying(server, marker).every((c) => c.closed), 'the upstream request to be aborted', 3000).then(
    () => true,
    () => false,
  );
  t.ok(aborted, 'every upstream connection that carried it was closed: the upstream request was aborted');
}

interface StalledBody {
  name: string;
  framing: string;
  first: string;
  /** enough bytes went out that the upstream must have seen the request begin */
  started: boolean;
}

const STALLED_BODIES: StalledBody[] = [
  { name: 'Content-Length 100, 3 bytes sent', framing: 'Content-Length: 100', first: 'abc', started: false },
  { name: 'chunked, one chunk, then nothing', framing: 'Transfer-Encoding: chunked', first: '5\r\nabcde\r\n', started: false },
  {
    name: `Content-Length ${BIG_DECLARED}, ${BIG_SENT} bytes sent`,
    framing: `Content-Length: ${BIG_DECLARED}`,
    first: 'x'.repeat(BIG_SENT),
    started: true,
  },
];

t.test('a stalled request body: 408 client_timeout after idle_timeout_ms, the upstream request aborted', async (t) => {
  const authority = `127.0.0.2:${stall.port}`;
  for (const [i, body] of STALLED_BODIES.entries()) {
    t.test(`absolute form: ${body.name}`, async (t) => {
      const marker = `/anything/stall-${i}`;
      const conversation = await proxyConversation(t, idleShort);
      conversation.send(`POST http://${authority}${marker} HTTP/1.1\r\nHost: ${authority}\r\n${authLine}${body.framing}\r\n\r\n${body.first}`);
      await assertFailure(t, idleShort, await conversation.next(ANSWER_BOUND_MS), 408, 'client_timeout');
      await assertUpstreamAborted(t, stall, marker, body.started);
    });
  }

  const tlsAuthority = `stall.wild.test:${stallTls.port}`;
  for (const [i, body] of STALLED_BODIES.entries()) {
    if (body.framing.startsWith('Transfer-Encoding')) continue;
    t.test(`inside intercepted TLS: ${body.name}`, async (t) => {
      const marker = `/anything/stall-tls-${i}`;
      const conversation = await interceptedConversation(t, idleShort, tlsAuthority);
      conversation.send(`POST ${marker} HTTP/1.1\r\nHost: ${tlsAuthority}\r\n${body.framing}\r\n\r\n${body.first}`);
      await assertFailure(t, idleShort, await conversation.next(ANSWER_BOUND_MS), 408, 'client_timeout');
      await assertUpstreamAborted(t, stallTls, marker, body.started);
    });
  }
});

t.test('an upstream that accepts and never sends headers: 504 after header_timeout_ms, not idle_timeout_ms', async (t) => {
  t.test('absolute form', async (t) => {
    const authority = `127.0.0.2:${stall.port}`;
    const conversation = await proxyConversation(t, headerShort);
    const next = await conversation.request(
      `GET http://${authority}/anything/no-headers HTTP/1.1\r\nHost: ${authority}\r\n${authLine}\r\n`,
      ANSWER_BOUND_MS,
    );
    await assertFailure(t, headerShort, next, 504, 'upstream_timeout', HEADER_DETAIL);
  });

  t.test('inside intercepted TLS', async (t) => {
    const authority = `stall.wild.test:${stallTls.port}`;
    const conversation = await interceptedConversation(t, headerShort, authority);
    const next = await conversation.request(originGet('/anything/no-headers-tls', authority), ANSWER_BOUND_MS);
    await assertFailure(t, headerShort, next, 504, 'upstream_timeout', HEADER_DETAIL);
  });
});

t.test('TLS 1.2 client-initiated renegotiation on an intercepted tunnel is refused', async (t) => {
  const authority = `reneg.wild.test:${upstream.port}`;
  const conversation = await interceptedConversation(t, headerShort, authority, { maxVersion: 'TLSv1.2' });
  const socket = conversation.socket as TLSSocket;
  t.equal(socket.getProtocol(), 'TLSv1.2');
  const before = await conversation.request(originGet('/anything/before-reneg', authority));
  t.equal(before.kind === 'response' && before.response.status, 200, 'a request before the renegotiation is served');

  // Either the renegotiation fails, or sluice closes the connection; both bounded.
  const outcome = await new Promise<'failed' | 'closed' | 'renegotiated' | 'no answer'>((resolve) => {
    const timer = setTimeout(() => resolve('no answer'), ANSWER_BOUND_MS);
    const started = socket.renegotiate({ rejectUnauthorized: true }, (err) => {
      clearTimeout(timer);
      resolve(err ? 'failed' : 'renegotiated');
    });
    if (!started) {
      clearTimeout(timer);
      resolve('failed');
    }
    void conversation.waitClosed(ANSWER_BOUND_MS).then((closed) => {
      if (!closed) return;
      clearTimeout(timer);
      resolve('closed');
    });
  });
  t.not(outcome, 'renegotiated', `the renegotiation did not succeed (${outcome})`);

  conversation.send(originGet('/anything/after-reneg', authority));
  t.ok(await conversation.waitClosed(ANSWER_BOUND_MS), 'the connection is closed');
  t.notOk(
    upstream.requests.some((r) => r.url === '/anything/after-reneg'),
    'no request after the renegotiation attempt was served',
  );
});
