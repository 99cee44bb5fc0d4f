// Issue 13, contract item 2: an intercepted tunnel has a lifecycle like any other connection. A
// CONNECT followed by silence, a half-close before the ClientHello, a silent or slowloris client after
// the TLS handshake: each is closed (408 client_timeout where a request had begun) and leaves exactly
// one audit event for the tunnel. Every CONNECT, passthrough or intercepted, holds a tool slot while
// open and takes a rate token; so does every request inside an intercepted tunnel (a token, not a
// slot), and a 429 for one comes back inside TLS. Also: a connection refused over --max-connections
// is a counted denial (decision="deny", reason="rate_limited").
import net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { basicAuth, connectTunnel, type Tunnel } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { scrapeMetrics, total as metricTotal } from '../helpers/metrics.js';
import {
  CANONICAL_TYPES,
  Conversation,
  openTlsTunnel,
  originGet,
  recordOf,
  requestRecordsOf,
  settledRecords,
  tunnelRecordsOf,
  waitSocketClosed,
} from '../helpers/gate-tunnel.js';
import type { ParsedResponse } from '../helpers/http-response.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const HEADER_TIMEOUT_MS = 400;
/** How long a test waits for sluice to close a connection: ten times the header timeout. */
const CLOSE_BOUND_MS = 10 * HEADER_TIMEOUT_MS;
const MAX_CONNECTIONS = 2;

/** Hosts with a case each, so every tunnel's records can be counted by host. */
const CASE_HOSTS = [
  'silent',
  'fin',
  'fin-partial',
  'slow-hello',
  'reset',
  'sni',
  'idle',
  'slowloris',
  'ok',
  'slot-a',
  'slot-b',
  'single',
  'metered',
].map((name) => `${name}.wild.test`);

let upstream: Upstream;
let dns: DnsServer;
let testCa: string;
/** header_timeout_ms small: the lifecycle cases */
let lifecycle: TestSluice;
/** default timeouts: the slot and rate cases, whose tunnels must stay open while the test looks */
let limited: TestSluice;
/** --max-connections */
let capped: TestSluice;
let lifecycleCa: string;
let limitedCa: string;

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns(
    Object.fromEntries([...CASE_HOSTS, 'pass.test', 'pass-fin.test'].map((host) => [host, [{ type: 'A' as const, address: '127.0.0.2' }]])),
  );
  const network = `
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}]
tls:
  upstream_ca: ${testCa}`;
  lifecycle = await startTestSluice({
    policy: `
version: 1
${network}
limits:
  header_timeout_ms: ${HEADER_TIMEOUT_MS}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: "*.wild.test"
        paths: ["/anything/**"]
      - host: pass.test
      - host: pass-fin.test
`,
  });
  const intercepted = `
      - host: "*.wild.test"
        paths: ["/anything/**"]`;
  const tool = (name: string, limits: string, rules: string): string => `
  ${name}:
    token_sha256: "\${TOKEN_SHA}"
    limits: {${limits}}
    allow:${rules}`;
  limited = await startTestSluice({
    policy: `
version: 1
${network}
tools:
${tool('capped', 'max_connections_per_tool: 2', `${intercepted}\n      - host: pass.test`)}
${tool('single', 'max_connections_per_tool: 1', intercepted)}
${tool('metered', 'requests_per_minute: 3', intercepted)}
${tool('metered-pass', 'requests_per_minute: 2', '\n      - host: pass.test')}
`,
  });
  capped = await startTestSluice({
    maxConnections: MAX_CONNECTIONS,
    policy: `
version: 1
${network}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: pass.test
`,
  });
  lifecycleCa = readFileSync(path.join(lifecycle.caDir, 'ca.pem'), 'utf8');
  limitedCa = readFileSync(path.join(limited.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await lifecycle.close();
  await limited.close();
  await capped.close();
  await upstream.close();
  await dns.close();
});

const auth = (tool = TOOL): string => basicAuth(tool, TOKEN);
const target = (host: string): string => `${host}:${upstream.port}`;
/** The first bytes of a TLS ClientHello record (a 512-byte record announced, 16 bytes of it sent). */
const PARTIAL_HELLO = Buffer.from('160301020001000200' + '0303' + '00'.repeat(10), 'hex');

/** A CONNECT answered 200 whose socket flows (so 'end' and 'close' are seen) and is destroyed at the end. */
async function openTunnel(t: Test, sluice: TestSluice, host: string, tool = TOOL): Promise<Tunnel> {
  const tunnel = await connectTunnel(sluice.port, target(host), auth(tool));
  t.teardown(() => tunnel.socket.destroy());
  t.equal(tunnel.status, 200, `CONNECT ${host} opened`);
  tunnel.socket.on('error', () => undefined);
  tunnel.socket.resume();
  return tunnel;
}

/** Waits (bounded) until sluice holds no client connection: every close, and its slot release, is done. */
async function quiesce(sluice: TestSluice): Promise<void> {
  const deadline = Date.now() + CLOSE_BOUND_MS;
  while (metricTotal(await scrapeMetrics(sluice.adminPort), 'sluice_open_connections') > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Whether sluice closed the tunnel within the bound. If it did not, the test resets the socket itself
 * (an RST, which sluice cannot mistake for a half-close), so the record that follows is written at
 * once and the assertions on it say what was wrong instead of waiting for a record that never comes.
 */
async function closedBySluice(socket: net.Socket): Promise<boolean> {
  const closed = await waitSocketClosed(socket, CLOSE_BOUND_MS);
  if (!closed) socket.resetAndDestroy();
  return closed;
}

/** Exactly one canonical record for the CONNECT to host; returns it (or undefined after failing). */
async function oneTunnelRecord(t: Test, sluice: TestSluice, host: string): Promise<AuditRecord | undefined> {
  const records = await settledRecords(sluice, tunnelRecordsOf(host));
  t.equal(
    records.length,
    1,
    `exactly one audit event for the tunnel to ${host} (got ${records.map((r) => `${r.type}/${r.reason}`).join(', ') || 'none'})`,
  );
  return records[0];
}

/** The record of a client that went silent: net.tunnel, client_timeout, the detail names the ClientHello. */
function assertHelloTimeout(t: Test, record: AuditRecord | undefined): void {
  t.match(record, { type: 'net.tunnel', reason: 'client_timeout' }, 'net.tunnel with reason client_timeout');
  t.match(record?.detail, /ClientHello/, 'the detail says what did not arrive: the ClientHello');
}

/** The record of a client that half-closed first: net.tunnel whose detail says so. */
function assertClosedBeforeHello(t: Test, record: AuditRecord | undefined): void {
  t.equal(record?.type, 'net.tunnel');
  t.match(record?.detail, /clos\w*.*before.*ClientHello/i, 'the detail says the client closed before its TLS ClientHello');
}

t.test('before the ClientHello', async (t) => {
  t.test('intercepted CONNECT, then silence: closed after header_timeout_ms, one net.tunnel event', async (t) => {
    const host = 'silent.wild.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed the silent tunnel');
    assertHelloTimeout(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('intercepted CONNECT, part of a ClientHello, then silence: the hello timer covers a slow hello too', async (t) => {
    const host = 'slow-hello.wild.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    tunnel.socket.write(PARTIAL_HELLO);
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed the tunnel whose hello never completed');
    assertHelloTimeout(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('intercepted CONNECT, then FIN: sluice closes the socket, one net.tunnel event saying so', async (t) => {
    const host = 'fin.wild.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    tunnel.socket.end();
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed its side too (no half-open socket left)');
    assertClosedBeforeHello(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('intercepted CONNECT, part of a ClientHello, then FIN: the same', async (t) => {
    const host = 'fin-partial.wild.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    tunnel.socket.end(PARTIAL_HELLO);
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed its side too');
    assertClosedBeforeHello(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('intercepted CONNECT, then a reset: one net.tunnel event', async (t) => {
    const host = 'reset.wild.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    tunnel.socket.resetAndDestroy();
    t.match(await oneTunnelRecord(t, lifecycle, host), { type: 'net.tunnel' });
  });

  t.test('passthrough CONNECT, then silence: the same hello timer, the same record', async (t) => {
    const host = 'pass.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed the silent tunnel');
    assertHelloTimeout(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('passthrough CONNECT, then FIN: the same record as intercepted', async (t) => {
    const host = 'pass-fin.test';
    const tunnel = await openTunnel(t, lifecycle, host);
    tunnel.socket.end();
    t.ok(await closedBySluice(tunnel.socket), 'sluice closed its side too');
    assertClosedBeforeHello(t, await oneTunnelRecord(t, lifecycle, host));
  });

  t.test('intercepted CONNECT, a ClientHello naming another host: one policy.violation', async (t) => {
    const host = 'sni.wild.test';
    await t.rejects(openTlsTunnel(lifecycle.port, target(host), auth(), { ca: lifecycleCa, servername: 'other.test' }));
    t.match(await oneTunnelRecord(t, lifecycle, host), { type: 'policy.violation', reason: 'sni_mismatch' });
  });
});

t.test('after the TLS handshake', async (t) => {
  t.test('no request at all: closed after header_timeout_ms (a 408 client_timeout if anything is said)', async (t) => {
    const host = 'idle.wild.test';
    const { conversation } = await openTlsTunnel(lifecycle.port, target(host), auth(), { ca: lifecycleCa });
    t.teardown(() => conversation.destroy());
    const next = await conversation.next(CLOSE_BOUND_MS);
    if (next.kind === 'response') {
      t.equal(next.response.status, 408);
      t.equal(next.response.headers['x-sluice-error'], 'client_timeout');
    }
    const closed = next.kind !== 'timeout' && (await conversation.waitClosed(CLOSE_BOUND_MS));
    t.ok(closed, 'sluice closed the connection that never sent a request');
    if (!closed) conversation.reset();
    await oneTunnelRecord(t, lifecycle, host);
  });

  t.test('slowloris inside TLS: 408 X-Sluice-Error client_timeout inside TLS, then closed', async (t) => {
    const host = 'slowloris.wild.test';
    const { conversation } = await openTlsTunnel(lifecycle.port, target(host), auth(), { ca: lifecycleCa });
    t.teardown(() => conversation.destroy());
    const text = `${originGet('/anything/slow', target(host)).slice(0, -2)}X-Pad: ${'p'.repeat(400)}\r\n\r\n`;
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < text.length && conversation.send(text[sent]!)) sent++;
    }, 50);
    const next = await conversation.next(CLOSE_BOUND_MS);
    clearInterval(drip);
    t.ok(sent < text.length, `the request never completed (${sent} of ${text.length} bytes)`);
    t.equal(next.kind, 'response', 'sluice answered the slow client');
    if (next.kind !== 'response') return void conversation.reset();
    t.equal(next.response.status, 408);
    t.equal(next.response.headers['x-sluice-error'], 'client_timeout');
    t.match(JSON.parse(next.response.body), { error: 'client', reason: 'client_timeout' });
    t.ok(await conversation.waitClosed(CLOSE_BOUND_MS), 'and closed the connection');
    const records = await recordOf(lifecycle, next.response.headers['x-request-id']);
    t.equal(records.length, 1, 'one audit event for the timed-out request');
    t.match(records[0], { type: 'net.req', reason: 'client_timeout', status: 408, tool: TOOL, host });
    await oneTunnelRecord(t, lifecycle, host);
  });

  t.test('two requests, then the client closes: one event per request, one for the tunnel', async (t) => {
    const host = 'ok.wild.test';
    const { conversation } = await openTlsTunnel(lifecycle.port, target(host), auth(), { ca: lifecycleCa });
    for (const p of ['/anything/one', '/anything/two']) {
      const next = await conversation.request(originGet(p, target(host)));
      t.equal(next.kind === 'response' && next.response.status, 200, `${p} answered`);
    }
    conversation.socket.end();
    await conversation.waitClosed(CLOSE_BOUND_MS);
    conversation.destroy();
    const requests = await settledRecords(lifecycle, requestRecordsOf(host), 2);
    t.same(requests.map((r) => r.path).sort(), ['/anything/one', '/anything/two'], 'one net.req per request');
    t.equal(new Set(requests.map((r) => r.request_id)).size, 2, 'with their own request ids');
    t.match(await oneTunnelRecord(t, lifecycle, host), { type: 'net.tunnel' });
  });
});

t.test('slots and rate tokens', async (t) => {
  // Each case starts with every earlier connection closed in sluice, so no slot is still held.
  t.beforeEach(() => quiesce(limited));
  t.test('an intercepted CONNECT holds a tool slot while open: over the cap is 429 rate_limited', async (t) => {
    const held = [await openTunnel(t, limited, 'slot-a.wild.test', 'capped'), await openTunnel(t, limited, 'slot-a.wild.test', 'capped')];
    const over = await connectTunnel(limited.port, target('slot-b.wild.test'), auth('capped'));
    t.teardown(() => over.socket.destroy());
    t.equal(over.status, 429, 'the third intercepted CONNECT of a tool capped at 2 is refused');
    t.equal(over.headers['x-sluice-deny'], 'rate_limited');
    t.ok(Number(over.headers['retry-after']) >= 1, 'with Retry-After');
    // Only a refused CONNECT has a record to look for yet (an open one reports when it closes).
    const refusals =
      over.status !== 429 ? [] : await settledRecords(limited, (r) => tunnelRecordsOf('slot-b.wild.test')(r) && r.reason === 'rate_limited');
    t.equal(refusals.length, 1, 'one audit event for the refused CONNECT');
    const [record] = refusals;
    t.match(record, { type: 'limit.exceeded', tool: 'capped', status: 429 });
    t.match(record?.detail, /max_connections_per_tool/);
    held[0]!.socket.destroy();
    const again = await connectTunnel(limited.port, target('slot-b.wild.test'), auth('capped'));
    t.teardown(() => again.socket.destroy());
    t.equal(again.status, 200, 'a closed tunnel gives its slot back');
  });

  t.test('passthrough and intercepted tunnels count against the same cap', async (t) => {
    await openTunnel(t, limited, 'pass.test', 'capped');
    await openTunnel(t, limited, 'slot-a.wild.test', 'capped');
    const over = await connectTunnel(limited.port, target('pass.test'), auth('capped'));
    t.teardown(() => over.socket.destroy());
    t.equal(over.status, 429, 'a passthrough CONNECT over the cap held by one passthrough and one intercepted tunnel');
    t.equal(over.headers['x-sluice-deny'], 'rate_limited');
  });

  t.test('a request inside an intercepted tunnel takes no second slot; the tunnel holds one', async (t) => {
    const host = 'single.wild.test';
    const { conversation } = await openTlsTunnel(limited.port, target(host), auth('single'), { ca: limitedCa });
    t.teardown(() => conversation.destroy());
    const inside = await conversation.request(originGet('/anything/inside', target(host)));
    t.equal(inside.kind === 'response' && inside.response.status, 200, 'the request inside the tunnel of a tool capped at 1 is served');
    const over = await connectTunnel(limited.port, target(host), auth('single'));
    t.teardown(() => over.socket.destroy());
    t.equal(over.status, 429, 'a second CONNECT while the tunnel is open is over the cap');
    t.equal(over.headers['x-sluice-deny'], 'rate_limited');
  });

  t.test('the CONNECT and each request inside take a rate token; the 429 comes back inside TLS', async (t) => {
    const host = 'metered.wild.test';
    const { conversation } = await openTlsTunnel(limited.port, target(host), auth('metered'), { ca: limitedCa });
    t.teardown(() => conversation.destroy());
    const statuses: Array<number | string> = [];
    let refused: ParsedResponse | null = null;
    for (const p of ['/anything/r1', '/anything/r2', '/anything/r3']) {
      const next = await conversation.request(originGet(p, target(host)));
      statuses.push(next.kind === 'response' ? next.response.status : next.kind);
      if (next.kind === 'response' && next.response.status === 429) refused = next.response;
      if (next.kind !== 'response') break;
    }
    t.same(statuses, [200, 200, 429], 'requests_per_minute 3: the CONNECT took one token, the requests the other two');
    if (refused) {
      t.equal(refused.headers['x-sluice-deny'], 'rate_limited');
      t.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After inside TLS');
      t.match(JSON.parse(refused.body), { error: 'denied', reason: 'rate_limited' });
      const records = await recordOf(limited, refused.headers['x-request-id']);
      t.match(records, [{ type: 'limit.exceeded', reason: 'rate_limited', status: 429, tool: 'metered', method: 'GET' }]);
    }
    const next = await connectTunnel(limited.port, target(host), auth('metered'));
    t.teardown(() => next.socket.destroy());
    t.equal(next.status, 429, 'the empty bucket refuses the next intercepted CONNECT too');
  });

  t.test('a passthrough CONNECT takes a rate token', async (t) => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const tunnel = await connectTunnel(limited.port, target('pass.test'), auth('metered-pass'));
      statuses.push(tunnel.status);
      tunnel.socket.destroy();
    }
    t.same(statuses, [200, 200, 429]);
  });
});

t.test('--max-connections: the refused connection is one counted denial, never decision=""', async (t) => {
  const before = await scrapeMetrics(capped.adminPort);
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((s) => s.destroy()));
  for (let i = 0; i < MAX_CONNECTIONS; i++) {
    const socket = net.connect(capped.port, '127.0.0.1');
    socket.on('error', () => undefined);
    held.push(socket);
  }
  await waitFor(() => held.every((s) => !s.connecting), 'the held connections to connect');
  // The gauge moves when sluice has accepted them; only then is the next one over the cap.
  const deadline = Date.now() + 5000;
  while (metricTotal(await scrapeMetrics(capped.adminPort), 'sluice_open_connections') < MAX_CONNECTIONS && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const over = new Conversation(net.connect(capped.port, '127.0.0.1'));
  t.ok(await over.waitClosed(CLOSE_BOUND_MS), 'the connection over the cap is closed');
  over.destroy();
  const records = await settledRecords(capped, (r) => CANONICAL_TYPES.has(r.type) && r.reason === 'rate_limited');
  t.equal(records.length, 1, 'one audit event');
  t.match(records[0], { type: 'limit.exceeded', decision: 'deny', reason: 'rate_limited' });
  t.match(records[0]?.detail, new RegExp(`${MAX_CONNECTIONS} connections`));
  const after = await scrapeMetrics(capped.adminPort);
  const delta = (where: Record<string, string>): number =>
    metricTotal(after, 'sluice_requests_total', where) - metricTotal(before, 'sluice_requests_total', where);
  t.equal(delta({ decision: 'deny', reason: 'rate_limited' }), 1, 'sluice_requests_total{decision="deny",reason="rate_limited"} +1');
  t.equal(delta({}), 1, 'and no other series moved');
  t.same(
    after.filter((s) => s.name === 'sluice_requests_total' && s.labels.decision === '').map((s) => s.labels),
    [],
    'no series with decision=""',
  );
});
