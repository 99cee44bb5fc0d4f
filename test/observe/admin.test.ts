import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { adminHostNames, startAdminServer, type AdminStatus } from '../../src/observe/admin.js';
import { AuditSink, verifyAuditFiles } from '../../src/observe/audit.js';
import { generateAuditKeys, loadAuditSigner } from '../../src/observe/audit-key.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { AuditingObserver } from '../../src/observe/observer.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);
const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

type Sample = { name: string; labels: Record<string, string>; value: number };

/** Parses Prometheus text format samples (enough for prom-client's output). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
      Object.keys(s.labels).length === Object.keys(labels).length,
  )?.value;
}

function get(
  port: number,
  urlPath: string,
  method = 'GET',
): Promise<{ status: number; type: string | undefined; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, type: res.headers['content-type'], headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('admin endpoints and metrics driven through the observer', async (t) => {
  const dir = t.testdir();
  const auditFile = path.join(dir, 'audit.log');
  const metrics = createMetrics();
  const sink = await AuditSink.open({ file: auditFile });
  const failures: Error[] = [];
  const observer = new AuditingObserver({ sink, metrics, onAuditFailure: (err) => failures.push(err) });
  let status: AdminStatus = { ready: false, why: 'loading policy', policy: null };
  let caPem: string | null = CA_PEM;
  const admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    status: () => status,
    caPem: () => caPem,
  });
  t.teardown(() => admin.close());
  const port = admin.address.port;
  t.equal(admin.address.address, '127.0.0.1');

  t.test('health, readiness and policy before a policy is loaded', async (t) => {
    const health = await get(port, '/healthz');
    t.equal(health.status, 200);
    t.equal(health.body, 'ok\n');
    const ready = await get(port, '/readyz');
    t.equal(ready.status, 503);
    t.equal(ready.body, 'not ready: loading policy\n');
    const policy = await get(port, '/policy');
    t.equal(policy.status, 503);
    t.same(JSON.parse(policy.body), { error: 'no policy loaded' });
  });

  t.test('policy summary and readiness once loaded', async (t) => {
    const loadedAt = new Date('2025-01-02T03:04:05.000Z');
    status = {
      ready: true,
      why: null,
      policy: {
        sha256: SHA_A,
        loadedAt,
        tools: [
          { name: 'web-fetch', rules: 2, secrets: ['github'] },
          { name: 'ci', rules: 1, secrets: [] },
        ],
      },
    };
    const ready = await get(port, '/readyz');
    t.equal(ready.status, 200);
    t.equal(ready.body, 'ready\n');
    const policy = await get(port, '/policy');
    t.equal(policy.status, 200);
    t.equal(policy.type, 'application/json; charset=utf-8');
    t.same(JSON.parse(policy.body), {
      sha256: SHA_A,
      loaded_at: '2025-01-02T03:04:05.000Z',
      tools: [
        { name: 'web-fetch', rules: 2, secrets: ['github'] },
        { name: 'ci', rules: 1, secrets: [] },
      ],
    });
    t.equal(policy.headers['cache-control'], 'no-store');
  });

  t.test('/ca.pem present and absent; unknown paths and methods', async (t) => {
    const ca = await get(port, '/ca.pem');
    t.equal(ca.status, 200);
    t.equal(ca.type, 'application/x-pem-file');
    t.equal(ca.body, CA_PEM);
    t.notMatch(ca.body, /PRIVATE KEY/);
    caPem = null;
    const off = await get(port, '/ca.pem');
    t.equal(off.status, 404);
    t.equal((await get(port, '/ca.key')).status, 404);
    t.equal((await get(port, '/')).status, 404);
    t.equal((await get(port, '/metrics/../policy.yaml')).status, 404);
    const post = await get(port, '/metrics', 'POST');
    t.equal(post.status, 405);
    t.equal(post.headers.allow, 'GET, HEAD');
    const head = await get(port, '/healthz', 'HEAD');
    t.equal(head.status, 200);
    t.equal(head.body, '');
  });

  t.test('counters move per event type with bounded labels', async (t) => {
    observer.setPolicy({ sha256: SHA_A, tools: ['web-fetch', 'ci'], secrets: ['github'] });
    observer.event({ type: 'policy.load' });
    observer.event({ type: 'net.req', tool: 'web-fetch', decision: 'allow', bytes_up: 100, bytes_down: 2000, status: 200 });
    observer.event({ type: 'net.tunnel', tool: 'web-fetch', decision: 'allow', bytes_up: 50, bytes_down: 0 });
    observer.event({ type: 'policy.violation', tool: 'web-fetch', decision: 'deny', reason: 'no_rule', status: 403 });
    observer.event({ type: 'policy.violation', tool: 'ci', decision: 'review', reason: 'path_not_allowed' });
    observer.event({ type: 'limit.exceeded', tool: 'ci', decision: 'deny', reason: 'response_too_large', bytes_down: 10 });
    observer.event({ type: 'net.req', tool: 'web-fetch', decision: 'allow', reason: 'upstream_timeout', status: 504 });
    observer.event({ type: 'secret.use', tool: 'web-fetch', secret: 'github', where: 'header:Authorization' });
    // Names from a request, not the policy, must not become label values.
    observer.event({ type: 'policy.violation', tool: 'attacker-chosen-1', decision: 'deny', reason: 'unauthenticated' });
    observer.event({ type: 'policy.violation', tool: null, decision: 'deny', reason: 'unauthenticated' });
    observer.event({ type: 'secret.use', tool: 'web-fetch', secret: 'not-a-policy-secret' });
    observer.event({ type: 'net.req', tool: 'ci', decision: 'maybe' as never, reason: 'made_up' as never });
    observer.event({ type: 'policy.reload_failed', detail: 'bad yaml' });
    observer.connectionOpened();
    observer.connectionOpened();
    observer.connectionClosed();
    observer.upstreamDuration('web-fetch', 0.2);
    observer.upstreamDuration('web-fetch', 3);
    observer.certIssued();

    const res = await get(port, '/metrics');
    t.equal(res.status, 200);
    t.equal(res.type, metrics.registry.contentType);
    const samples = parseMetrics(res.body);
    const req = 'sluice_requests_total';
    t.equal(value(samples, req, { tool: 'web-fetch', decision: 'allow', reason: '' }), 2);
    t.equal(value(samples, req, { tool: 'web-fetch', decision: 'deny', reason: 'no_rule' }), 1);
    t.equal(value(samples, req, { tool: 'ci', decision: 'review', reason: 'path_not_allowed' }), 1);
    t.equal(value(samples, req, { tool: 'ci', decision: 'deny', reason: 'response_too_large' }), 1);
    t.equal(value(samples, req, { tool: 'web-fetch', decision: 'allow', reason: 'upstream_timeout' }), 1);
    t.equal(value(samples, req, { tool: 'unknown', decision: 'deny', reason: 'unauthenticated' }), 2);
    t.equal(value(samples, req, { tool: 'ci', decision: 'unknown', reason: 'unknown' }), 1);
    const requestTotal = samples.filter((s) => s.name === req).reduce((n, s) => n + s.value, 0);
    t.equal(requestTotal, 9, 'one per canonical event; secret.use and lifecycle events not counted');

    const vio = 'sluice_policy_violations_total';
    t.equal(value(samples, vio, { tool: 'web-fetch', reason: 'no_rule' }), 1);
    t.equal(value(samples, vio, { tool: 'ci', reason: 'path_not_allowed' }), 1);
    t.equal(value(samples, vio, { tool: 'ci', reason: 'response_too_large' }), 1, 'a limit hit counts as a violation');
    t.equal(value(samples, vio, { tool: 'unknown', reason: 'unauthenticated' }), 2);
    t.equal(
      samples.filter((s) => s.name === vio).reduce((n, s) => n + s.value, 0),
      5,
    );

    t.equal(value(samples, 'sluice_secret_uses_total', { tool: 'web-fetch', secret: 'github' }), 1);
    t.equal(value(samples, 'sluice_secret_uses_total', { tool: 'web-fetch', secret: 'unknown' }), 1);
    t.equal(value(samples, 'sluice_bytes_total', { tool: 'web-fetch', direction: 'up' }), 150);
    t.equal(value(samples, 'sluice_bytes_total', { tool: 'web-fetch', direction: 'down' }), 2000);
    t.equal(value(samples, 'sluice_bytes_total', { tool: 'ci', direction: 'down' }), 10);
    t.equal(value(samples, 'sluice_open_connections'), 1);
    t.equal(value(samples, 'sluice_tls_certs_issued_total'), 1);
    t.equal(value(samples, 'sluice_upstream_duration_seconds_count'), 2);
    t.equal(value(samples, 'sluice_upstream_duration_seconds_sum'), 3.2);
    t.equal(value(samples, 'sluice_upstream_duration_seconds_bucket', { le: '0.25' }), 1);
    t.equal(value(samples, 'sluice_upstream_duration_seconds_bucket', { le: '+Inf' }), 2);
    t.equal(value(samples, 'sluice_policy_info', { sha256: SHA_A }), 1);
    t.equal(value(samples, 'sluice_policy_reload_failures_total'), 1);
    t.ok(
      samples.some((s) => s.name === 'process_cpu_user_seconds_total'),
      'default process metrics',
    );

    const toolValues = new Set(samples.filter((s) => 'tool' in s.labels).map((s) => s.labels.tool));
    t.same([...toolValues].sort(), ['ci', 'unknown', 'web-fetch'], 'tool label bounded by the policy');
    t.notOk(res.body.includes('attacker-chosen-1'));
    t.notOk(res.body.includes('not-a-policy-secret'));
  });

  t.test('a new policy replaces policy_info and the allowed label sets', async (t) => {
    observer.setPolicy({ sha256: SHA_B, tools: ['ci'], secrets: [] });
    observer.event({ type: 'net.req', tool: 'web-fetch', decision: 'allow' });
    const samples = parseMetrics((await get(port, '/metrics')).body);
    t.equal(value(samples, 'sluice_policy_info', { sha256: SHA_B }), 1);
    t.equal(value(samples, 'sluice_policy_info', { sha256: SHA_A }), undefined, 'old hash gone');
    t.equal(
      value(samples, 'sluice_requests_total', { tool: 'unknown', decision: 'allow', reason: '' }),
      1,
      'a tool dropped from the policy is unknown',
    );
  });

  t.test('audit records carry the policy hash in force and the reported names', async (t) => {
    await sink.flush();
    const records = fs
      .readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    t.equal(records.length, 14);
    t.equal(records[0].type, 'policy.load');
    t.equal(records[0].policy_sha256, SHA_A);
    t.equal(records[8].tool, 'attacker-chosen-1', 'audit keeps what was reported');
    t.equal(records[13].policy_sha256, SHA_B);
    const verified = verifyAuditFiles([auditFile]);
    t.equal(verified.status, 'ok');
    t.match(verified.trails, [{ records: 14, firstSeq: 1, lastSeq: 14 }]);
  });

  t.test('an audit failure reaches onAuditFailure and metrics still move', async (t) => {
    await sink.close();
    observer.event({ type: 'net.req', tool: 'ci', decision: 'deny', reason: 'no_rule' });
    t.equal(failures.length, 1);
    t.match(failures[0], { code: 'AUDIT_CLOSED' });
    const samples = parseMetrics((await get(port, '/metrics')).body);
    t.equal(value(samples, 'sluice_requests_total', { tool: 'ci', decision: 'deny', reason: 'no_rule' }), 1);
  });
});

t.test('listening on a taken port rejects', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const status = (): AdminStatus => ({ ready: true, why: null, policy: null });
  const first = await startAdminServer({ listen: { host: '127.0.0.1', port: 0 }, registry: metrics.registry, status, caPem: () => null });
  t.teardown(() => first.close());
  await t.rejects(
    startAdminServer({ listen: { host: '127.0.0.1', port: first.address.port }, registry: metrics.registry, status, caPem: () => null }),
    { code: 'EADDRINUSE' },
  );
});

t.test('a failing status callback answers 500 without details', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    status: () => {
      throw new Error('internal detail with a secret');
    },
    caPem: () => null,
  });
  t.teardown(() => admin.close());
  const res = await get(admin.address.port, '/readyz');
  t.equal(res.status, 500);
  t.equal(res.body, 'internal error\n');
});

t.test('a signed audit: /audit/head is the last checkpoint, sluice_audit_last_seq the last record, checkpoints are not requests', async (t) => {
  const dir = t.testdir();
  const { privateFile } = generateAuditKeys(path.join(dir, 'keys'));
  const metrics = createMetrics({ defaultMetrics: false });
  const sink = await AuditSink.open({
    file: path.join(dir, 'audit.log'),
    signer: loadAuditSigner(privateFile),
    checkpointRecords: 2,
    instance: 'admin-test',
  });
  const observer = new AuditingObserver({ sink, metrics });
  observer.setPolicy({ sha256: SHA_A, tools: ['ci'], secrets: [] });
  metrics.auditSeq(() => sink.head.seq);
  const status = (): AdminStatus => ({ ready: true, why: null, policy: null });
  const admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    status,
    caPem: () => null,
    auditHead: () => sink.lastCheckpoint,
  });
  t.teardown(async () => {
    await admin.close();
    await sink.close();
  });
  for (let i = 0; i < 3; i++) observer.event({ type: 'net.req', tool: 'ci', decision: 'allow' });
  // seq 1 start, 2-3 requests, 4 periodic, 5 request.
  const head = await get(admin.address.port, '/audit/head');
  t.equal(head.status, 200);
  t.match(head.type, /^application\/json/);
  t.match(JSON.parse(head.body), {
    seq: 4,
    checkpoint: 'periodic',
    instance: 'admin-test',
    hash: /^[0-9a-f]{64}$/,
    signature: /^[A-Za-z0-9+/]{86}==$/,
  });
  const samples = parseMetrics((await get(admin.address.port, '/metrics')).body);
  t.equal(value(samples, 'sluice_audit_last_seq'), 5);
  t.equal(value(samples, 'sluice_requests_total', { tool: 'ci', decision: 'allow', reason: '' }), 3, 'one per request; none for checkpoints');

  const workerMetrics = createMetrics({ defaultMetrics: false });
  workerMetrics.auditSeq(() => 7, 2);
  t.equal(
    value(parseMetrics(await workerMetrics.registry.metrics()), 'sluice_audit_last_seq', { worker: '2' }),
    7,
    'labelled by worker under --workers',
  );
});

t.test('/audit/head of an unsigned audit is 404', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    status: () => ({ ready: true, why: null, policy: null }),
    caPem: () => null,
    auditHead: () => null,
  });
  t.teardown(() => admin.close());
  const res = await get(admin.address.port, '/audit/head');
  t.equal(res.status, 404);
  t.same(JSON.parse(res.body), { error: 'the audit is not signed (no --audit-key)' });
  t.notOk(
    parseMetrics(await metrics.registry.metrics()).some((s) => s.name === 'sluice_audit_last_seq'),
    'no gauge value without an audit',
  );
});

/** One request with a raw Host line (or none), over a plain socket: what a browser, curl or a probe would send. */
function rawGet(port: number, host: string | null, version = '1.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end(`GET /metrics HTTP/${version}\r\n${host === null ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`);
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

t.test('the admin port answers only IP literals, localhost and --admin-host names (DNS rebinding)', async (t) => {
  const metrics = createMetrics();
  const admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    status: () => ({ ready: true, why: null, policy: null }),
    caPem: () => null,
    allowedHosts: adminHostNames(['Sluice.', 'metrics.monitoring.svc']),
  });
  t.teardown(() => admin.close());
  const port = admin.address.port;
  const cases: Array<[string | null, number]> = [
    [`127.0.0.1:${port}`, 200],
    ['127.0.0.1', 200],
    [`[::1]:${port}`, 200],
    ['[::1]', 200],
    [`10.1.0.11:${port}`, 200],
    [`localhost:${port}`, 200],
    ['LOCALHOST.', 200],
    [`sluice:${port}`, 200],
    ['SLUICE', 200],
    ['metrics.monitoring.svc:9090', 200],
    // what a rebinding page sends: its own name, now pointing at 127.0.0.1
    [`rebind.attacker.example:${port}`, 421],
    ['attacker.example', 421],
    ['sluice.attacker.example', 421],
    ['localhost.attacker.example', 421],
    ['127.0.0.1.nip.io', 421],
    ['0x7f000001', 421],
    ['2130706433', 421],
    ['127.1', 421],
    ['[::1', 421],
    ['[not-ip]:9090', 421],
    ['127.0.0.1:port', 421],
    [':9090', 421],
  ];
  for (const [host, want] of cases) {
    const got = await rawGet(port, host);
    t.equal(got.status, want, `Host: ${String(host)}`);
    if (want === 421) {
      t.match(got.body, /--admin-host/);
      t.notMatch(got.body, /sluice_/, 'no metrics in the refusal');
    } else {
      t.match(got.body, /sluice_|# HELP/);
    }
  }
  // HTTP/1.0 with no Host is not a browser: answered
  t.equal((await rawGet(port, null, '1.0')).status, 200);
  t.throws(() => adminHostNames(['bad name']), /--admin-host "bad name" is not a host name/);
  t.throws(() => adminHostNames(['*.example']), /not a host name/);
});
