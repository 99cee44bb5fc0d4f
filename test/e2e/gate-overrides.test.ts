// Issue 13, contract item 7: limit overrides are honoured at every level the schema allows. A
// rule's max_connections_per_tool and requests_per_minute cap that (tool, rule) in addition to the
// tool's own caps, and leave the tool's other rules alone. connect_timeout_ms, dns_timeout_ms and
// header_timeout_ms set on a tool or a rule are the ones that apply (the policy level is set far
// larger, so only the override can answer within the test's bound). Each refusal or failure is
// checked for status, reason header, a detail naming the limit, and its audit event.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { basicAuth, connectTunnel } from '../helpers/clients.js';
import { SILENT, startDns, type DnsServer } from '../helpers/dns.js';
import { Conversation, openTlsTunnel, originGet, recordOf, type Next } from '../helpers/gate-tunnel.js';
import {
  startFullAcceptQueue,
  startHoldUpstream,
  startStallUpstream,
  type FullAcceptQueue,
  type HoldUpstream,
  type StallUpstream,
} from '../helpers/gate-upstream.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const SHORT_MS = 300;
const TOOL_LONG_MS = 30_000;
const POLICY_LONG_MS = 60_000;
/** How long a test waits for an answer due after SHORT_MS; far below either long value. */
const ANSWER_BOUND_MS = 5000;
/** The accept-queue trick's address: a second loopback address, so its port is its own. */
const BLACKHOLE_IP = '127.0.0.3';

let upstream: Upstream;
let hold: HoldUpstream;
let stall: StallUpstream;
let stallTls: StallUpstream;
let blackhole: FullAcceptQueue;
let dns: DnsServer;
let sluice: TestSluice;

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2' });
  hold = await startHoldUpstream('127.0.0.2');
  stall = await startStallUpstream({ host: '127.0.0.2' });
  stallTls = await startStallUpstream({ host: '127.0.0.2', tls: pki.server });
  blackhole = await startFullAcceptQueue(BLACKHOLE_IP);
  const answered = ['capped.test', 'free.test', 'metered.test', 'hstall.wild.test'];
  dns = await startDns({
    ...Object.fromEntries(answered.map((h) => [h, [{ type: 'A' as const, address: '127.0.0.2' }]])),
    'tool.silent.test': SILENT,
    'rule.silent.test': SILENT,
    'connect.silent.test': SILENT,
  });
  const tool = (name: string, limits: string, rules: string): string => `
  ${name}:
    token_sha256: "\${TOKEN_SHA}"
    limits: {${limits}}
    allow:${rules}`;
  const rule = (host: string, limits = '', extra = ''): string => `
      - host: "${host}"${limits ? `\n        limits: {${limits}}` : ''}${extra}`;
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32", "${BLACKHOLE_IP}/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}, ${hold.port}, ${stall.port}, ${stallTls.port}, ${blackhole.port}]
tls:
  upstream_ca: ${testCa}
limits:
  connect_timeout_ms: ${POLICY_LONG_MS}
  dns_timeout_ms: ${POLICY_LONG_MS}
  header_timeout_ms: ${POLICY_LONG_MS}
tools:
${tool('rulecap', 'max_connections_per_tool: 2', rule('capped.test', 'max_connections_per_tool: 1') + rule('free.test'))}
${tool('rulerate', '', rule('metered.test', 'requests_per_minute: 2') + rule('free.test'))}
${tool('ctool', `connect_timeout_ms: ${SHORT_MS}`, rule(BLACKHOLE_IP))}
${tool('crule', `connect_timeout_ms: ${TOOL_LONG_MS}`, rule(BLACKHOLE_IP, `connect_timeout_ms: ${SHORT_MS}`))}
${tool('dtool', `dns_timeout_ms: ${SHORT_MS}`, rule('*.silent.test'))}
${tool('drule', `dns_timeout_ms: ${TOOL_LONG_MS}`, rule('*.silent.test', `dns_timeout_ms: ${SHORT_MS}`))}
${tool('htool', `header_timeout_ms: ${SHORT_MS}`, rule('127.0.0.2') + rule('hstall.wild.test', '', '\n        paths: ["/anything/**"]'))}
${tool('hrule', `header_timeout_ms: ${TOOL_LONG_MS}`, rule('127.0.0.2', `header_timeout_ms: ${SHORT_MS}`))}
`,
  });
});
t.teardown(async () => {
  // First the peers that leave sluice's dials and DNS queries pending, so they fail at once.
  await blackhole.close();
  await dns.close();
  hold.releaseAll();
  await sluice.close();
  await hold.close();
  await stall.close();
  await stallTls.close();
  await upstream.close();
});

/** One absolute-form GET by `tool` on its own connection; the connection is reset at the end of the test. */
async function absoluteGet(t: Test, tool: string, authority: string, p: string, timeoutMs = ANSWER_BOUND_MS): Promise<Next> {
  const socket = net.connect(sluice.port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const conversation = new Conversation(socket);
  t.teardown(() => conversation.reset());
  return conversation.request(
    `GET http://${authority}${p} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basicAuth(tool, TOKEN)}\r\n\r\n`,
    timeoutMs,
  );
}

interface Expected {
  status: number;
  header: 'x-sluice-deny' | 'x-sluice-error';
  reason: string;
  /** the limit's name, as the detail must say it */
  limit: string | RegExp;
  /** for a timeout: its effective value, which the detail must give as "N ms" */
  ms?: number;
  type: string;
  tool: string;
  rule?: string;
}

/** Status, reason header, detail naming the limit, and the one audit event of the answer. */
async function assertAnswer(t: Test, next: Next, e: Expected): Promise<void> {
  t.equal(next.kind, 'response', `sluice answered within the bound (${next.kind})`);
  if (next.kind !== 'response') return;
  const { response } = next;
  t.equal(response.status, e.status);
  t.equal(response.headers[e.header], e.reason);
  const body = JSON.parse(response.body) as { reason: string; detail: string };
  t.equal(body.reason, e.reason);
  t.match(body.detail, e.limit, `the detail names ${String(e.limit)}`);
  if (e.ms !== undefined) t.match(body.detail, msPattern(e.ms), `and its effective value, ${e.ms} ms`);
  const records = await recordOf(sluice, response.headers['x-request-id']);
  t.equal(records.length, 1, 'one audit event');
  t.match(records[0], { type: e.type, reason: e.reason, status: e.status, tool: e.tool, ...(e.rule ? { rule: e.rule } : {}) });
  t.match(records[0]?.detail, e.limit);
}

/** "300 ms" (or "300ms") as a word of its own. */
const msPattern = (ms: number): RegExp => new RegExp(`\\b${ms} ?ms\\b`);

/** A request that may be held upstream: its answer, or 'held' if none came within the bound. */
function bounded(p: Promise<Next>): Promise<Next | 'held'> {
  return Promise.race([p, new Promise<'held'>((r) => setTimeout(() => r('held'), ANSWER_BOUND_MS))]);
}

t.test('rule-level max_connections_per_tool: a cap per (tool, rule), in addition to the tool cap', async (t) => {
  t.teardown(() => hold.releaseAll());
  const capped = `capped.test:${hold.port}`;
  const first = absoluteGet(t, 'rulecap', capped, '/held-1', 20_000);
  await waitFor(() => hold.urls.includes('/held-1'), 'the first request to be held upstream');

  const second = await bounded(absoluteGet(t, 'rulecap', capped, '/held-2'));
  t.not(second, 'held', 'the second request on the rule capped at 1 was not let through');
  if (second !== 'held') {
    await assertAnswer(t, second, {
      status: 429,
      header: 'x-sluice-deny',
      reason: 'rate_limited',
      limit: 'max_connections_per_tool',
      type: 'limit.exceeded',
      tool: 'rulecap',
      rule: 'rulecap.allow[0]',
    });
    if (second.kind === 'response') t.ok(Number(second.response.headers['retry-after']) >= 1, 'Retry-After');
  }

  const other = await absoluteGet(t, 'rulecap', `free.test:${upstream.port}`, '/anything/free-1');
  t.equal(other.kind === 'response' && other.response.status, 200, "the tool's other rule is unaffected");

  // The tool's own cap of 2 still holds: one held on each rule fills it.
  const freeHeld = absoluteGet(t, 'rulecap', `free.test:${hold.port}`, '/held-free', 20_000);
  const heldFree = await waitFor(() => hold.urls.includes('/held-free'), 'a request on the other rule to be held').then(
    () => true,
    () => false,
  );
  t.ok(heldFree, 'a second exchange of the tool, on its other rule, is admitted');
  const over = await bounded(absoluteGet(t, 'rulecap', `free.test:${upstream.port}`, '/anything/free-2'));
  t.not(over, 'held');
  if (over !== 'held') {
    await assertAnswer(t, over, {
      status: 429,
      header: 'x-sluice-deny',
      reason: 'rate_limited',
      limit: 'max_connections_per_tool',
      type: 'limit.exceeded',
      tool: 'rulecap',
    });
  }
  hold.releaseAll();
  const released = await Promise.all([first, freeHeld]);
  t.same(
    released.map((n) => (n.kind === 'response' ? n.response.status : n.kind)),
    [200, 200],
    'the held requests finish once released',
  );
});

t.test('rule-level requests_per_minute: a bucket per (tool, rule); the other rule unaffected', async (t) => {
  const statuses: Array<number | string> = [];
  let refused: Next | null = null;
  for (let i = 0; i < 3; i++) {
    const next = await absoluteGet(t, 'rulerate', `metered.test:${upstream.port}`, `/anything/metered-${i}`);
    statuses.push(next.kind === 'response' ? next.response.status : next.kind);
    if (next.kind === 'response' && next.response.status === 429) refused = next;
  }
  t.same(statuses, [200, 200, 429], 'requests_per_minute 2 on the rule');
  if (refused) {
    await assertAnswer(t, refused, {
      status: 429,
      header: 'x-sluice-deny',
      reason: 'rate_limited',
      limit: /requests_per_minute|requests per minute/,
      type: 'limit.exceeded',
      tool: 'rulerate',
      rule: 'rulerate.allow[0]',
    });
    if (refused.kind === 'response') t.ok(Number(refused.response.headers['retry-after']) >= 1, 'Retry-After');
  }
  const others: Array<number | string> = [];
  for (let i = 0; i < 3; i++) {
    const next = await absoluteGet(t, 'rulerate', `free.test:${upstream.port}`, `/anything/rate-free-${i}`);
    others.push(next.kind === 'response' ? next.response.status : next.kind);
  }
  t.same(others, [200, 200, 200], "the tool's other rule has no such cap");
});

t.test('connect_timeout_ms from the tool and from the rule (a full accept queue: connect() hangs)', async (t) => {
  const authority = `${BLACKHOLE_IP}:${blackhole.port}`;
  for (const tool of ['ctool', 'crule']) {
    t.test(`${tool}: absolute form`, async (t) => {
      const next = await absoluteGet(t, tool, authority, `/connect-${tool}`);
      await assertAnswer(t, next, {
        status: 504,
        header: 'x-sluice-error',
        reason: 'upstream_timeout',
        limit: 'connect_timeout_ms',
        ms: SHORT_MS,
        type: 'net.req',
        tool,
      });
    });
  }
  t.test('ctool: passthrough CONNECT', async (t) => {
    const tunnel = await connectTunnel(sluice.port, authority, basicAuth('ctool', TOKEN), { timeoutMs: ANSWER_BOUND_MS }).catch(
      (err: Error) => err,
    );
    if (tunnel instanceof Error) return void t.fail(`no CONNECT answer: ${tunnel.message}`);
    t.teardown(() => tunnel.socket.destroy());
    t.equal(tunnel.status, 504);
    t.equal(tunnel.headers['x-sluice-error'], 'upstream_timeout');
    t.match(tunnel.body, /connect_timeout_ms/, 'the detail names connect_timeout_ms');
    t.match(tunnel.body, msPattern(SHORT_MS), 'and its effective value');
  });
});

t.test('dns_timeout_ms from the tool and from the rule (a DNS server that never answers)', async (t) => {
  for (const [tool, name] of [
    ['dtool', 'tool.silent.test'],
    ['drule', 'rule.silent.test'],
  ] as const) {
    t.test(`${tool}: absolute form`, async (t) => {
      const next = await absoluteGet(t, tool, `${name}:${upstream.port}`, `/dns-${tool}`);
      await assertAnswer(t, next, {
        status: 502,
        header: 'x-sluice-deny',
        reason: 'dns_failure',
        limit: 'dns_timeout_ms',
        ms: SHORT_MS,
        type: 'policy.violation',
        tool,
      });
      t.ok(dns.queries(name) > 0, 'the name was asked for');
    });
  }
  t.test('dtool: passthrough CONNECT', async (t) => {
    const tunnel = await connectTunnel(sluice.port, `connect.silent.test:${upstream.port}`, basicAuth('dtool', TOKEN), {
      timeoutMs: ANSWER_BOUND_MS,
    }).catch((err: Error) => err);
    if (tunnel instanceof Error) return void t.fail(`no CONNECT answer: ${tunnel.message}`);
    t.teardown(() => tunnel.socket.destroy());
    t.equal(tunnel.status, 502);
    t.equal(tunnel.headers['x-sluice-deny'], 'dns_failure');
    t.match(tunnel.body, /dns_timeout_ms/, 'the detail names dns_timeout_ms');
    t.match(tunnel.body, msPattern(SHORT_MS), 'and its effective value');
  });
});

t.test('header_timeout_ms from the tool and from the rule (an upstream that never sends headers)', async (t) => {
  for (const tool of ['htool', 'hrule']) {
    t.test(`${tool}: absolute form`, async (t) => {
      const next = await absoluteGet(t, tool, `127.0.0.2:${stall.port}`, `/headers-${tool}`);
      await assertAnswer(t, next, {
        status: 504,
        header: 'x-sluice-error',
        reason: 'upstream_timeout',
        limit: 'header_timeout_ms',
        ms: SHORT_MS,
        type: 'net.req',
        tool,
      });
    });
  }
  t.test('htool: inside intercepted TLS', async (t) => {
    const authority = `hstall.wild.test:${stallTls.port}`;
    const ca = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
    const { conversation } = await openTlsTunnel(sluice.port, authority, basicAuth('htool', TOKEN), { ca });
    t.teardown(() => conversation.reset());
    const next = await conversation.request(originGet('/anything/headers-tls', authority), ANSWER_BOUND_MS);
    await assertAnswer(t, next, {
      status: 504,
      header: 'x-sluice-error',
      reason: 'upstream_timeout',
      limit: 'header_timeout_ms',
      ms: SHORT_MS,
      type: 'net.req',
      tool: 'htool',
    });
  });
});
