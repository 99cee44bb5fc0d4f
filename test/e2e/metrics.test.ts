// Invariant 4 end to end: one request of each outcome leaves exactly one canonical audit event and
// exactly one increment of sluice_requests_total{tool,decision,reason}, with bytes, violations, open
// connections, certificates and the policy hash moving as the audit says. /metrics is scraped on the
// admin port before and after each request and the deltas are asserted exactly.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { parse as parseYaml } from 'yaml';
import { OUTCOME, type Outcome } from '../../src/policy/reasons.js';
import { basicAuth, connectTunnel, curl, rawRequest } from '../helpers/clients.js';
import { startDns } from '../helpers/dns.js';
import { scrapeMetrics, total, type Sample } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const SECRET_VALUE = 'gov-metrics-secret-value-7f3a';
const CANONICAL = new Set(['net.req', 'net.tunnel', 'policy.violation', 'limit.exceeded']);

let upstream: Upstream;
let tlsUpstream: Upstream;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
let testCa: string;

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2' });
  tlsUpstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns({
    'reader.test': [{ type: 'A', address: '127.0.0.2' }],
    'upstream.test': [{ type: 'A', address: '127.0.0.2' }],
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'internal.test': [{ type: 'A', address: '127.0.0.3' }],
  });
  sluice = await startTestSluice({
    env: { GOV_METRICS_SECRET: SECRET_VALUE },
    // The secret is swapped over plain http://: allow_plaintext, which strict mode refuses.
    policy: `
version: 1
strict: false
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}, ${tlsUpstream.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  gh:
    from: { env: GOV_METRICS_SECRET }
    hosts: ["127.0.0.2"]
    allow_plaintext: true
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [gh]
    allow:
      - host: 127.0.0.2
        limits: { max_request_bytes: 100, max_response_bytes: 2000 }
      - host: upstream.test
      - host: internal.test
      - host: nx.test
      - host: reader.test
        methods: [GET]
        paths: ["/anything/ok/**"]
      - host: api.test
        paths: ["/anything/**"]
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await tlsUpstream.close();
  await dns.close();
});

const scrape = (): Promise<Sample[]> => scrapeMetrics(sluice.adminPort);

const via = (url: string, extra: string[] = [], tool = TOOL, token = TOKEN) => curl(['-x', sluice.proxyUrl(tool, token), ...extra, url]);

interface Expected {
  tool: string;
  decision: 'allow' | 'deny';
  reason: string;
  /** canonical audit event type */
  type: string;
  secretUses?: number;
  certs?: number;
}

/**
 * Runs one outcome between two scrapes and asserts: one new canonical audit event with the expected
 * labels, +1 on exactly that sluice_requests_total series and +1 overall, violations +1 for a deny,
 * bytes equal to the event's bytes_up/bytes_down, no connection left open, the policy hash unchanged.
 */
async function outcome(t: Test, expected: Expected, act: () => Promise<unknown>, match: (r: AuditRecord) => boolean): Promise<void> {
  const auditBefore = (await sluice.audit()).filter((r) => CANONICAL.has(r.type)).length;
  const before = await scrape();
  await act();
  const record = await waitForAudit(sluice, (r) => r.seq > 0 && CANONICAL.has(r.type) && match(r));
  // Let the client connection's close reach the gauge, then the counters are final.
  await new Promise((r) => setTimeout(r, 100));
  const after = await scrape();
  const canonical = (await sluice.audit()).filter((r) => CANONICAL.has(r.type));
  t.equal(canonical.length - auditBefore, 1, 'exactly one canonical audit event');
  t.match(record, { type: expected.type, decision: expected.decision, reason: expected.reason === '' ? null : expected.reason });
  const delta = (name: string, where: Record<string, string> = {}) => total(after, name, where) - total(before, name, where);
  const series = { tool: expected.tool, decision: expected.decision, reason: expected.reason };
  t.equal(delta('sluice_requests_total', series), 1, `sluice_requests_total${JSON.stringify(series)} +1`);
  t.equal(delta('sluice_requests_total'), 1, 'no other request series moved');
  t.equal(delta('sluice_policy_violations_total'), expected.decision === 'deny' ? 1 : 0, 'violations');
  if (expected.decision === 'deny') t.equal(delta('sluice_policy_violations_total', { tool: expected.tool, reason: expected.reason }), 1);
  t.equal(delta('sluice_bytes_total', { tool: expected.tool, direction: 'up' }), record.bytes_up ?? 0, 'bytes up as audited');
  t.equal(delta('sluice_bytes_total', { tool: expected.tool, direction: 'down' }), record.bytes_down ?? 0, 'bytes down as audited');
  t.equal(delta('sluice_secret_uses_total'), expected.secretUses ?? 0, 'secret uses');
  t.equal(delta('sluice_tls_certs_issued_total'), expected.certs ?? 0, 'certificates issued');
  t.equal(total(after, 'sluice_open_connections'), 0, 'no client connection left open');
  t.same(
    after.filter((s) => s.name === 'sluice_policy_info').map((s) => [s.labels.sha256, s.value]),
    [[sluice.running.current().loaded.digest, 1]],
    'sluice_policy_info names the policy in force only',
  );
  // Every tool label is one of the policy's tools or "unknown", never a name from the request.
  for (const s of after.filter((s) => s.name.startsWith('sluice_') && 'tool' in s.labels))
    t.ok([TOOL, 'unknown'].includes(s.labels.tool!), `bounded label ${s.labels.tool}`);
}

const auth = basicAuth(TOOL, TOKEN);

t.test('allow', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'allow', reason: '', type: 'net.req' },
    async () => {
      const r = await via(`http://127.0.0.2:${upstream.port}/anything/metrics-allow`);
      t.equal(r.status, 200);
    },
    (r) => r.path === '/anything/metrics-allow',
  ),
);

t.test('secret use: one request event and one secret.use', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'allow', reason: '', type: 'net.req', secretUses: 1 },
    async () => {
      const r = await via(`http://127.0.0.2:${upstream.port}/anything/metrics-secret`, ['-H', 'Authorization: Bearer __sluice_secret_gh__']);
      t.equal(r.status, 200);
      t.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${SECRET_VALUE}`);
    },
    (r) => r.path === '/anything/metrics-secret',
  ),
);

t.test('unauthenticated, naming a tool the policy does not have: label "unknown"', (t) =>
  outcome(
    t,
    { tool: 'unknown', decision: 'deny', reason: 'unauthenticated', type: 'policy.violation' },
    async () => {
      const r = await via(`http://127.0.0.2:${upstream.port}/anything/ghost`, [], 'ghost-tool', 'nope');
      t.equal(r.status, 407);
    },
    (r) => r.reason === 'unauthenticated',
  ),
);

const denials: Array<[string, string, string[]?]> = [
  ['no_rule', 'http://nowhere.test/'],
  ['port_not_allowed', 'http://127.0.0.2:9/'],
  ['method_not_allowed', 'http://reader.test:PORT/anything/ok/1', ['-X', 'DELETE']],
  ['path_not_allowed', 'http://reader.test:PORT/anything/elsewhere'],
  ['private_ip', 'http://internal.test:PORT/'],
  ['dns_failure', 'http://nx.test:PORT/'],
  ['request_too_large', 'http://127.0.0.2:PORT/anything/upload', ['--data-binary', 'x'.repeat(500)]],
  ['response_too_large', 'http://127.0.0.2:PORT/bulk?bytes=5000'],
];
for (const [reason, url, extra] of denials) {
  const type = reason.endsWith('_too_large') ? 'limit.exceeded' : 'policy.violation';
  t.test(reason, (t) =>
    outcome(
      t,
      { tool: TOOL, decision: 'deny', reason, type },
      async () => {
        const r = await via(url.replace('PORT', String(upstream.port)), extra ?? []);
        t.equal(r.status, OUTCOME[reason as Outcome].status, `refused with the table's status for ${reason}`);
        t.equal(r.headers['x-sluice-deny'], reason);
      },
      (r) => r.reason === reason,
    ),
  );
}

t.test('bad_request (CONNECT target without a port)', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'deny', reason: 'bad_request', type: 'policy.violation' },
    async () => {
      const tunnel = await connectTunnel(sluice.port, 'upstream.test', auth);
      tunnel.socket.destroy();
      t.equal(tunnel.status, 400);
    },
    (r) => r.reason === 'bad_request',
  ),
);

t.test('bad_request (origin-form request line to the proxy)', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'deny', reason: 'bad_request', type: 'policy.violation' },
    async () => {
      const r = await rawRequest(sluice.port, `GET /relative HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${auth}\r\n\r\n`);
      t.equal(r.status, 400);
    },
    (r) => r.reason === 'bad_request',
  ),
);

t.test('sni_mismatch', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'deny', reason: 'sni_mismatch', type: 'policy.violation' },
    async () => {
      const tunnel = await connectTunnel(sluice.port, `upstream.test:${tlsUpstream.port}`, auth);
      t.equal(tunnel.status, 200);
      await new Promise<void>((resolve) => {
        const s = tls.connect({ socket: tunnel.socket, servername: 'other.test', ca: readFileSync(testCa, 'utf8') });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('secureConnect', () => s.destroy());
      });
    },
    (r) => r.reason === 'sni_mismatch',
  ),
);

t.test('passthrough tunnel allowed', (t) =>
  outcome(
    t,
    { tool: TOOL, decision: 'allow', reason: '', type: 'net.tunnel' },
    async () => {
      const r = await via(`https://upstream.test:${tlsUpstream.port}/anything/tunnelled`, ['--cacert', testCa]);
      t.equal(r.status, 200);
    },
    (r) => r.type === 'net.tunnel' && r.host === 'upstream.test' && r.decision === 'allow',
  ),
);

t.test('intercepted request: first one mints a leaf certificate, the second reuses it', async (t) => {
  const ca = path.join(sluice.caDir, 'ca.pem');
  // The tunnel and the request inside it each get their canonical event: count the request's here.
  for (const [i, certs] of [
    [1, 1],
    [2, 0],
  ] as const) {
    const before = await scrape();
    const r = await via(`https://api.test:${tlsUpstream.port}/anything/in-${i}`, ['--cacert', ca]);
    t.equal(r.status, 200, r.stderr);
    const rec = await waitForAudit(sluice, (a) => a.type === 'net.req' && a.path === `/anything/in-${i}`);
    await waitForAudit(sluice, (a) => a.type === 'net.tunnel' && a.host === 'api.test' && a.seq > rec.seq);
    await new Promise((r) => setTimeout(r, 100));
    const after = await scrape();
    t.equal(total(after, 'sluice_tls_certs_issued_total') - total(before, 'sluice_tls_certs_issued_total'), certs, `request ${i}: certs`);
    t.equal(
      total(after, 'sluice_requests_total', { decision: 'allow' }) - total(before, 'sluice_requests_total', { decision: 'allow' }),
      2,
      'the request and its tunnel',
    );
    t.equal(total(after, 'sluice_open_connections'), 0);
  }
});

t.test('an open connection is counted while it is open', async (t) => {
  const before = total(await scrape(), 'sluice_open_connections');
  const tunnel = await connectTunnel(sluice.port, `upstream.test:${tlsUpstream.port}`, auth);
  t.equal(tunnel.status, 200);
  t.equal(total(await scrape(), 'sluice_open_connections'), before + 1);
  tunnel.socket.destroy();
  const until = Date.now() + 2000;
  let now = before + 1;
  while (now !== before && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    now = total(await scrape(), 'sluice_open_connections');
  }
  t.equal(now, before, 'back down once it closed');
});

t.test('deploy: the alert rules and the dashboard only name metrics sluice exports', async (t) => {
  const exported = new Set((await scrape()).map((s) => s.name.replace(/_(bucket|sum|count)$/, '')));
  const named = (text: string) => [...new Set(text.match(/sluice_[a-z_]+/g) ?? [])].map((n) => n.replace(/_(bucket|sum|count)$/, ''));
  const rules = parseYaml(readFileSync('deploy/prometheus/alerts.yml', 'utf8')) as {
    groups: Array<{ name: string; rules: Array<Record<string, unknown>> }>;
  };
  const alerts = rules.groups.flatMap((g) => g.rules);
  t.same(
    alerts.map((r) => r.alert),
    ['SluiceViolationBurst', 'SluicePolicyReloadFailed', 'SluiceHalted', 'SluiceDown', 'SluiceAbsent', 'SluiceUpstreamErrors'],
  );
  for (const rule of alerts) {
    t.type(rule.expr, 'string');
    t.ok((rule.annotations as { summary?: string }).summary, `${String(rule.alert)} has a summary`);
    for (const n of named(String(rule.expr))) t.ok(exported.has(n), `${String(rule.alert)}: ${n} is exported`);
  }
  const dashboard = JSON.parse(readFileSync('deploy/grafana/sluice.json', 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  };
  t.ok(dashboard.panels.length >= 10);
  for (const panel of dashboard.panels)
    for (const target of panel.targets) for (const n of named(target.expr)) t.ok(exported.has(n), `${panel.title}: ${n} is exported`);
});
