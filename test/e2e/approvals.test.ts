// Issue 17: ask a supervisor. Tools with on_violation: ask and no rules, so every request is held;
// real clients (curl in absolute form, curl through a CONNECT tunnel, Python requests) wait while
// the test answers through the admin API (and once through the `sluice approvals` CLI), and each
// case checks the client's status and reason, the approval.* audit events and the metrics. Each
// case uses hosts of its own (*.wild.test names, all 93.184.216.34), so grants and remembered
// denies of one case never touch another.
import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, curl } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { PUBLIC_UPSTREAM_IP } from '../helpers/netns.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type EchoReply, type Upstream } from '../helpers/upstream.js';

const ADMIN_TOKEN = 'admin-token-for-the-approvals-test';
const SYSTEM_PYTHON = '/usr/bin/python3';
const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const NAMES = [
  'once',
  'deny',
  'tunnel',
  'ttl',
  'uses',
  'timeout',
  'flood',
  'self',
  'cli',
  'token',
  'restart',
  'expired',
  'outside',
  'pinned',
  'inside',
  'gone',
  'goneconnect',
  'early',
];

let dns: DnsServer;
let plain: Upstream;
let secure: Upstream;
let testCa: string;
let sluice: TestSluice;

const host = (name: string): string => `${name}.wild.test`;

function policy(): string {
  return `
version: 1
network:
  dns_servers: ["${dns.address}"]
  allow_ports: [${plain.port}, ${secure.port}]
tls:
  upstream_ca: ${testCa}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: ask
    allow: []
  quick:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: ask
    allow: []
    limits:
      ask_timeout_ms: 300
  inside:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: ask
    allow:
      - host: inside.wild.test
        paths: ["/anything/ok/**"]
  flood:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: ask
    allow: []
    limits:
      max_pending_per_tool: 2
`;
}

t.before(async () => {
  const zone = Object.fromEntries(NAMES.map((name) => [host(name), [{ type: 'A' as const, address: PUBLIC_UPSTREAM_IP }]]));
  dns = await startDns(zone);
  plain = await startUpstream({ host: PUBLIC_UPSTREAM_IP });
  secure = await startUpstream({ host: PUBLIC_UPSTREAM_IP, tls: (await makeTestPki()).server });
  testCa = await testCaFile();
  sluice = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN });
});

t.teardown(async () => {
  await sluice.close();
  await plain.close();
  await secure.close();
  await dns.close();
});

interface Pending {
  id: string;
  tool: string;
  method: string;
  scheme: string;
  host: string;
  port: number;
  path: string | null;
  requested_at: string;
  expires_at: string;
}

async function pending(s: TestSluice = sluice): Promise<Pending[]> {
  const res = await fetch(`http://127.0.0.1:${s.adminPort}/approvals`);
  return (await res.json()) as Pending[];
}

/** Waits (bounded) until a request to `name` is held, and returns it. */
async function held(name: string, s: TestSluice = sluice): Promise<Pending> {
  const until = Date.now() + 10_000;
  for (;;) {
    const found = (await pending(s)).find((p) => p.host === host(name));
    if (found) return found;
    if (Date.now() > until) throw new Error(`no request to ${host(name)} was held`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function answer(
  id: string,
  body: object,
  token: string | null = ADMIN_TOKEN,
  s: TestSluice = sluice,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${s.adminPort}/approvals/${id}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const plainUrl = (name: string, p = `/anything/${name}`): string => `http://${host(name)}:${plain.port}${p}`;
const secureUrl = (name: string, p = `/anything/${name}`): string => `https://${host(name)}:${secure.port}${p}`;
const curlPlain = (name: string, tool = TOOL, s: TestSluice = sluice) => curl(['-x', s.proxyUrl(tool), plainUrl(name)]);

t.test('curl, plain HTTP: a held request waits for allow-once → 200; the next identical one is held again', async (t) => {
  const client = curlPlain('once');
  const first = await held('once');
  t.equal(first.tool, TOOL);
  t.equal(first.method, 'GET');
  t.equal(first.scheme, 'http');
  t.equal(first.port, plain.port);
  t.equal(first.path, '/anything/once');
  t.ok(Date.parse(first.expires_at) > Date.parse(first.requested_at), 'the listing says until when it waits');
  const gauge = await scrapeMetrics(sluice.adminPort);
  t.equal(total(gauge, 'sluice_approvals_pending', { tool: TOOL }), 1, 'sluice_approvals_pending counts it');

  t.equal((await answer(first.id, { decision: 'allow-once' })).status, 200);
  const r = await client;
  t.equal(r.status, 200, 'the client that waited got the upstream');
  t.equal((JSON.parse(r.body) as EchoReply).url, '/anything/once');
  const granted = await waitForAudit(sluice, (e) => e.type === 'approval.granted' && e.approval === first.id);
  t.equal(granted.approval_decision, 'allow-once');
  t.ok(await waitForAudit(sluice, (e) => e.type === 'approval.requested' && e.approval === first.id && e.host === host('once')));
  const record = await waitForAudit(sluice, (e) => e.type === 'net.req' && e.host === host('once') && e.status === 200);
  t.equal(record.rule, `${TOOL}.approval[${first.id}]`, 'the exchange names the approval that let it through');

  const again = curlPlain('once');
  const second = await held('once');
  t.not(second.id, first.id, 'allow-once granted nothing: the same request is held again');
  t.equal((await answer(second.id, { decision: 'deny' })).status, 200);
  t.equal((await again).status, 403);
  const metrics = await scrapeMetrics(sluice.adminPort);
  t.ok(total(metrics, 'sluice_approval_decisions_total', { tool: TOOL, decision: 'allow-once' }) >= 1, 'decisions are counted');
});

t.test('deny → 403 approval_denied; a retry within ask_deny_remember_ms is refused at once', async (t) => {
  const client = curlPlain('deny');
  const { id } = await held('deny');
  t.equal((await answer(id, { decision: 'deny' })).status, 200);
  const r = await client;
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'approval_denied');
  t.match(JSON.parse(r.body), { reason: 'approval_denied', detail: /a supervisor denied tool web-fetch access to deny\.wild\.test:\d+/ });
  const denied = await waitForAudit(sluice, (e) => e.type === 'approval.denied' && e.approval === id);
  t.equal(denied.approval_decision, 'deny');
  t.ok(await waitForAudit(sluice, (e) => e.type === 'policy.violation' && e.reason === 'approval_denied' && e.host === host('deny')));

  const retry = await curlPlain('deny');
  t.equal(retry.headers['x-sluice-deny'], 'approval_denied', 'the retry is refused without asking');
  t.match(JSON.parse(retry.body).detail, /asking again is refused until/);
  t.same(
    (await pending()).filter((p) => p.host === host('deny')),
    [],
    'nothing was queued',
  );
});

t.test('curl through a CONNECT tunnel: allow writes a grant; the tunnel opens and the next one is not asked', async (t) => {
  const args = ['-x', sluice.proxyUrl(), '--cacert', testCa, secureUrl('tunnel')];
  const client = curl(args);
  const request = await held('tunnel');
  t.equal(request.method, 'CONNECT');
  t.equal(request.path, null, 'a CONNECT has no path');
  t.equal((await answer(request.id, { decision: 'allow', scope: 'path' })).status, 400, 'scope path makes no sense for a CONNECT');
  const allowed = await answer(request.id, { decision: 'allow', ttl_s: 600 });
  t.equal(allowed.status, 200);
  t.equal(allowed.body.rule, `${TOOL}.grant[${request.id}]`);
  const r = await client;
  t.equal(r.status, 200);
  t.equal((JSON.parse(r.body) as EchoReply).url, '/anything/tunnel');
  const granted = await waitForAudit(sluice, (e) => e.type === 'approval.granted' && e.approval === request.id);
  t.equal(granted.approval_decision, 'allow');
  t.equal(granted.scope, 'host');
  t.match(granted.grants_sha256, /^[0-9a-f]{64}$/, 'the grants file has its own digest in the audit');
  t.not(granted.grants_sha256, granted.policy_sha256);

  const next = await curl(args);
  t.equal(next.status, 200, 'the grant allows the next tunnel without asking');
  const tunnel = await waitForAudit(
    sluice,
    (e) => e.type === 'net.tunnel' && e.host === host('tunnel') && e.rule === `${TOOL}.grant[${request.id}]`,
  );
  t.equal(tunnel.decision, 'allow');
});

const PYTHON_REQUESTS = `
import os, sys, requests
proxy = os.environ['PROXY']
response = requests.get(os.environ['TARGET_URL'], proxies={'http': proxy, 'https': proxy}, timeout=20)
sys.stdout.write(str(response.status_code) + ' ' + response.headers.get('X-Sluice-Deny', '-'))
`;

function pythonGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      SYSTEM_PYTHON,
      ['-c', PYTHON_REQUESTS],
      { env: cleanEnv({ PROXY: sluice.proxyUrl(), TARGET_URL: url }), timeout: 25_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`python requests failed: ${stderr}`)) : resolve(stdout)),
    );
  });
}

t.test('Python requests: allow with ttl_s 2 → allowed without asking, then held again once it expired', async (t) => {
  const client = pythonGet(plainUrl('ttl'));
  const { id } = await held('ttl');
  const allowed = await answer(id, { decision: 'allow', ttl_s: 2 });
  t.equal(allowed.status, 200);
  t.equal(await client, '200 -');
  t.equal(await pythonGet(plainUrl('ttl', '/anything/other')), '200 -', 'the grant (scope host) allows another path, not asked');
  const expires = Date.parse((allowed.body.grant as { expires_at: string }).expires_at);
  await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 50));
  const late = pythonGet(plainUrl('ttl'));
  const again = await held('ttl');
  t.not(again.id, id, 'held again after the grant expired');
  await answer(again.id, { decision: 'deny' });
  t.equal(await late, '403 approval_denied');
});

t.test('allow with max_uses 3: the held one and two more are allowed, the fourth is held', async (t) => {
  const client = curlPlain('uses');
  const { id } = await held('uses');
  t.equal((await answer(id, { decision: 'allow', max_uses: 3 })).status, 200);
  t.equal((await client).status, 200, 'use 1: the held request');
  t.equal((await curlPlain('uses')).status, 200, 'use 2');
  t.equal((await curlPlain('uses')).status, 200, 'use 3');
  const fourth = curlPlain('uses');
  const again = await held('uses');
  t.not(again.id, id, 'the fourth is held: the grant is used up');
  await answer(again.id, { decision: 'allow-once' });
  t.equal((await fourth).status, 200);
  const grants = JSON.parse(readFileSync(path.join(sluice.dir, 'policy.grants.json'), 'utf8')) as { uses: Record<string, number> };
  t.equal(grants.uses[`grant:${id}`], 3, 'the count is kept in the grants file');
});

t.test('nobody answers within ask_timeout_ms → 403 approval_timeout, approval.expired', async (t) => {
  const r = await curlPlain('timeout', 'quick');
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'approval_timeout');
  t.match(JSON.parse(r.body).detail, /no supervisor decided within ask_timeout_ms.*POST \/approvals/);
  const expired = await waitForAudit(sluice, (e) => e.type === 'approval.expired' && e.host === host('timeout'));
  t.equal(expired.approval_decision, 'timeout');
  t.equal(expired.tool, 'quick');
});

t.test('more than max_pending_per_tool waiting: the extra one is refused at once', async (t) => {
  const first = curlPlain('flood', 'flood');
  await held('flood');
  const second = curl(['-x', sluice.proxyUrl('flood'), plainUrl('flood', '/anything/second')]);
  const until = Date.now() + 10_000;
  while ((await pending()).filter((p) => p.tool === 'flood').length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const extra = await curl(['-x', sluice.proxyUrl('flood'), plainUrl('flood', '/anything/third')]);
  t.equal(extra.status, 429);
  t.equal(extra.headers['x-sluice-deny'], 'approval_queue_full');
  t.ok(extra.headers['retry-after'], 'it says when to retry');
  t.match(JSON.parse(extra.body).detail, /already has 2 requests waiting for a supervisor \(max_pending_per_tool\)/);
  // One deny answers every held request of the tool to that target.
  const { id } = await held('flood');
  await answer(id, { decision: 'deny' });
  t.equal((await first).headers['x-sluice-deny'], 'approval_denied');
  t.equal((await second).headers['x-sluice-deny'], 'approval_denied');
});

t.test('without the admin token POST is 403 and changes nothing; without a configured token it says how to set one', async (t) => {
  const client = curlPlain('token');
  const { id } = await held('token');
  const missing = await answer(id, { decision: 'allow' }, null);
  t.equal(missing.status, 403);
  const wrong = await answer(id, { decision: 'allow' }, 'not-the-admin-token-at-all');
  t.equal(wrong.status, 403);
  t.ok(
    (await pending()).some((p) => p.id === id),
    'still held',
  );

  const bare = await startTestSluice({ policy: policy() });
  t.teardown(() => bare.close());
  const noToken = await answer(id, { decision: 'allow' }, ADMIN_TOKEN, bare);
  t.equal(noToken.status, 403);
  t.match(noToken.body, { error: 'no_admin_token', detail: /--admin-token-file FILE or --admin-token-env NAME/ });
  t.same(await pending(bare), [], 'read-only endpoints work without a token');

  await answer(id, { decision: 'deny' });
  t.equal((await client).status, 403);
});

t.test('a tool cannot reach the admin port through the proxy, even with a supervisor allowing it', async (t) => {
  const client = curl(['-x', sluice.proxyUrl(), `http://127.0.0.1:${sluice.adminPort}/approvals`]);
  const until = Date.now() + 10_000;
  let request: Pending | undefined;
  while (!(request = (await pending()).find((p) => p.port === sluice.adminPort)) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 20));
  t.ok(request, 'held like any request');
  await answer(request!.id, { decision: 'allow-once' });
  const r = await client;
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'private_ip', 'the self-connect rule still refuses it');
});

t.test('sluice approvals list / allow --ttl (the CLI, token from SLUICE_ADMIN_TOKEN)', async (t) => {
  const client = curlPlain('cli');
  const { id } = await held('cli');
  const cli = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'node',
        [path.join(REPO_ROOT, 'dist/cli.js'), 'approvals', ...args, '--admin', `http://127.0.0.1:${sluice.adminPort}`],
        { env: cleanEnv(env) },
        (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const list = await cli(['list']);
  t.equal(list.code, 0);
  t.match(list.stdout, new RegExp(`${id}  ${TOOL}  GET http://cli\\.wild\\.test:${plain.port}/anything/cli`));
  const refused = await cli(['allow', id, '--ttl', '10m']);
  t.equal(refused.code, 1, 'no token in the environment: refused');
  t.match(refused.stderr, /403/);
  const allowed = await cli(['allow', id, '--ttl', '10m', '--max-uses', '5'], { SLUICE_ADMIN_TOKEN: ADMIN_TOKEN });
  t.equal(allowed.code, 0, allowed.stderr);
  t.match(JSON.parse(allowed.stdout), { decision: 'allow', grant: { max_uses: 5 } });
  t.equal((await client).status, 200);
});

t.test('a restart keeps grants and use counts; a grant that expired while sluice was down is not used', async (t) => {
  const dir = path.join(sluice.dir, 'restart');
  const grantsFile = path.join(sluice.dir, 'restart.grants.json');
  void dir;
  const first = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN, grantsFile });
  const c1 = curlPlain('restart', TOOL, first);
  const r1 = await held('restart', first);
  await answer(r1.id, { decision: 'allow', max_uses: 2 }, ADMIN_TOKEN, first);
  t.equal((await c1).status, 200, 'use 1 before the restart');
  const c2 = curlPlain('expired', TOOL, first);
  const r2 = await held('expired', first);
  const short = await answer(r2.id, { decision: 'allow', ttl_s: 1 }, ADMIN_TOKEN, first);
  t.equal((await c2).status, 200);
  await first.close();
  const expires = Date.parse((short.body.grant as { expires_at: string }).expires_at);
  await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 50));

  const second = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN, grantsFile });
  t.teardown(() => second.close());
  t.equal((await curlPlain('restart', TOOL, second)).status, 200, 'use 2 after the restart, not asked');
  const c3 = curlPlain('restart', TOOL, second);
  const r3 = await held('restart', second);
  t.ok(r3, 'the third is held: the count survived the restart');
  const c4 = curlPlain('expired', TOOL, second);
  const r4 = await held('expired', second);
  t.ok(r4, 'the grant that expired while sluice was down is not used');
  await answer(r3.id, { decision: 'deny' }, ADMIN_TOKEN, second);
  await answer(r4.id, { decision: 'deny' }, ADMIN_TOKEN, second);
  t.equal((await c3).status, 403);
  t.equal((await c4).status, 403);
});

t.test('a change of the grants file sluice did not make is refused; under a pinned policy it halts', async (t) => {
  const grantsFile = path.join(sluice.dir, 'outside.grants.json');
  const s = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN, grantsFile });
  t.teardown(() => s.close());
  const c1 = curlPlain('outside', TOOL, s);
  const r1 = await held('outside', s);
  await answer(r1.id, { decision: 'allow', ttl_s: 600 }, ADMIN_TOKEN, s);
  t.equal((await c1).status, 200);
  const written = readFileSync(grantsFile, 'utf8');
  writeFileSync(grantsFile, JSON.stringify({ version: 1, grants: [], uses: {} }));
  await s.running.reload();
  const refused = await waitForAudit(s, (e) => e.type === 'grants.refused');
  t.match(refused.detail, /changed by something other than sluice/);
  t.equal((await curlPlain('outside', TOOL, s)).status, 200, 'the grants in force stay');
  t.equal(s.running.halted(), null, 'not pinned: not halted');
  void written;

  const pinnedFile = path.join(sluice.dir, 'pinned.grants.json');
  const probe = await startTestSluice({ policy: policy() });
  const digest = probe.running.policy.digest();
  await probe.close();
  const pinned = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN, grantsFile: pinnedFile, policySha256: digest });
  t.teardown(() => pinned.close());
  const c2 = curlPlain('pinned', TOOL, pinned);
  const r2 = await held('pinned', pinned);
  await answer(r2.id, { decision: 'allow', ttl_s: 600 }, ADMIN_TOKEN, pinned);
  t.equal((await c2).status, 200, 'an approval does not trip the pin: the grants are not in the policy digest');
  t.equal(pinned.running.halted(), null);
  writeFileSync(pinnedFile, JSON.stringify({ version: 1, grants: [], uses: {} }));
  await pinned.running.reload();
  t.match(pinned.running.halted(), /grants file .* was changed by something other than sluice; sluice halted/);
  const drift = await waitForAudit(pinned, (e) => e.type === 'policy.drift');
  t.match(drift.grants_sha256, /^[0-9a-f]{64}$/);
  t.equal((await curlPlain('pinned', TOOL, pinned)).headers['x-sluice-deny'], 'policy_halted');
});

void TOKEN;

t.test("the README's 15-line supervisor (SSE in, POST out) allows one host and denies another", async (t) => {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('```js\n// supervisor.mjs');
  t.ok(start >= 0, 'the README has the supervisor');
  const code = readme.slice(start + 6, readme.indexOf('```', start + 6));
  t.equal(code.trimEnd().split('\n').length, 15, 'it is 15 lines');
  const s = await startTestSluice({ policy: policy(), adminToken: ADMIN_TOKEN });
  t.teardown(() => s.close());
  const script = code.replace("'http://127.0.0.1:9090'", `'http://127.0.0.1:${s.adminPort}'`).replaceAll('.python.org', '.wild.test');
  const file = path.join(s.dir, 'supervisor.mjs');
  writeFileSync(file, script);
  const supervisor = execFile('node', [file], { env: cleanEnv({ SLUICE_ADMIN_TOKEN: ADMIN_TOKEN }) });
  t.teardown(() => void supervisor.kill());
  t.equal((await curlPlain('self', TOOL, s)).status, 200, 'a GET to a *.wild.test host: allowed by the supervisor');
  const post = await curl(['-x', s.proxyUrl(), '-X', 'POST', '-d', 'x', plainUrl('once')]);
  t.equal(post.headers['x-sluice-deny'], 'approval_denied', 'a POST: denied by the supervisor');
  t.ok(await waitForAudit(s, (e) => e.type === 'approval.granted' && e.approval_decision === 'allow' && e.host === host('self')));
});

t.test('a request inside an intercepted tunnel is held like any other (path_not_allowed → ask)', async (t) => {
  const sluiceCa = path.join(sluice.caDir, 'ca.pem');
  const args = (p: string) => ['-x', sluice.proxyUrl('inside'), '--cacert', sluiceCa, secureUrl('inside', p)];
  t.equal((await curl(args('/anything/ok/1'))).status, 200, 'the rule allows /anything/ok/** inside the intercepted tunnel');
  const client = curl(args('/anything/elsewhere'));
  const request = await held('inside');
  t.equal(request.method, 'GET', 'the request inside the tunnel is what waits, not the CONNECT');
  t.equal(request.scheme, 'https');
  t.equal(request.path, '/anything/elsewhere');
  t.equal((await answer(request.id, { decision: 'allow', scope: 'path', ttl_s: 600 })).status, 200);
  const r = await client;
  t.equal(r.status, 200);
  t.equal((JSON.parse(r.body) as EchoReply).url, '/anything/elsewhere');
  t.equal((await curl(args('/anything/elsewhere'))).status, 200, 'the path grant allows it again without asking');
  const other = curl(args('/anything/third'));
  const third = await held('inside');
  t.equal(third.path, '/anything/third', 'scope path: another path is held again');
  await answer(third.id, { decision: 'allow-once' });
  t.equal((await other).status, 200);
});

/** A raw client socket that sends one head through sluice; the test destroys it while the request is held. */
function rawClient(head: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(sluice.port, '127.0.0.1', () => {
      socket.write(head);
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

const BASIC = (tool: string): string => `Basic ${Buffer.from(`${tool}:${TOKEN}`).toString('base64')}`;

t.test('a client that gives up while held leaves the queue on every transport (withdrawn)', async (t) => {
  const sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'));
  const cases: Array<{ name: string; transport: string; open: () => Promise<net.Socket | tls.TLSSocket>; path: string | null }> = [
    {
      name: 'gone',
      transport: 'absolute-form',
      path: '/anything/gone',
      open: () =>
        rawClient(`GET ${plainUrl('gone')} HTTP/1.1\r\nHost: ${host('gone')}:${plain.port}\r\nProxy-Authorization: ${BASIC(TOOL)}\r\n\r\n`),
    },
    {
      name: 'goneupgrade',
      transport: 'Upgrade',
      path: '/anything/gone-upgrade',
      open: () =>
        rawClient(
          `GET ${plainUrl('goneupgrade', '/anything/gone-upgrade')} HTTP/1.1\r\nHost: ${host('goneupgrade')}:${plain.port}\r\nProxy-Authorization: ${BASIC(TOOL)}\r\n` +
            'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        ),
    },
    {
      name: 'goneconnect',
      transport: 'CONNECT',
      path: null,
      open: () =>
        rawClient(
          `CONNECT ${host('goneconnect')}:${secure.port} HTTP/1.1\r\nHost: ${host('goneconnect')}:${secure.port}\r\nProxy-Authorization: ${BASIC(TOOL)}\r\n\r\n`,
        ),
    },
    {
      name: 'inside',
      transport: 'inside an intercepted tunnel',
      path: '/anything/gone-inside',
      open: async () => {
        const raw = await rawClient(
          `CONNECT ${host('inside')}:${secure.port} HTTP/1.1\r\nHost: ${host('inside')}:${secure.port}\r\nProxy-Authorization: ${BASIC('inside')}\r\n\r\n`,
        );
        await new Promise<void>((resolve) => raw.once('data', () => resolve()));
        const secured = tls.connect({ socket: raw, servername: host('inside'), ca: sluiceCa });
        await new Promise<void>((resolve, reject) => secured.once('secureConnect', resolve).once('error', reject));
        secured.write(`GET /anything/gone-inside HTTP/1.1\r\nHost: ${host('inside')}:${secure.port}\r\n\r\n`);
        return secured;
      },
    },
  ];
  for (const c of cases) {
    const socket = await c.open();
    const request = await held(c.name);
    t.equal(request.path, c.path, `${c.transport}: held`);
    socket.destroy();
    const withdrawn = await waitForAudit(sluice, (e) => e.type === 'approval.expired' && e.approval === request.id);
    t.equal(withdrawn.approval_decision, 'withdrawn', `${c.transport}: audited as withdrawn`);
    t.match(withdrawn.detail, /the client closed its connection/);
    // The request itself is audited too (a client gone during admission once left no record).
    const own = await waitForAudit(sluice, (e) => e.request_id === withdrawn.request_id && !String(e.type).startsWith('approval.'));
    t.ok(own, `${c.transport}: the request has its own record (${String(own.type)})`);
    t.notOk(
      (await pending()).some((p) => p.id === request.id),
      `${c.transport}: no longer pending`,
    );
    t.equal((await answer(request.id, { decision: 'allow' })).status, 404, `${c.transport}: nothing left to allow`);
  }
  const samples = await scrapeMetrics(sluice.adminPort);
  t.equal(total(samples, 'sluice_approval_decisions_total', { decision: 'withdrawn' }), cases.length);
});

t.test('what a held CONNECT client sends before the answer is kept and served after allow-once, in order', async (t) => {
  const authority = `${host('early')}:${plain.port}`;
  const socket = await rawClient(
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${BASIC(TOOL)}\r\n\r\n` +
      `GET /anything/early HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
  );
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const request = await held('early');
  t.equal(request.method, 'CONNECT');
  t.equal((await answer(request.id, { decision: 'allow-once' })).status, 200);
  // plain HTTP inside the tunnel is admitted request by request: the pipelined GET is held in its turn
  const inner = await held('early');
  t.equal(inner.method, 'GET');
  t.equal(inner.path, '/anything/early', 'the bytes sent while the CONNECT was held arrived whole');
  t.equal((await answer(inner.id, { decision: 'allow-once' })).status, 200);
  await closed;
  const text = Buffer.concat(chunks).toString('latin1');
  t.match(text, /^HTTP\/1\.1 200 Connection Established\r\n/);
  const reply = text.slice(text.indexOf('\r\n\r\n') + 4);
  t.match(reply, /^HTTP\/1\.1 200 /, 'the pipelined request went through the tunnel');
  t.match(reply, /"url":"\/anything\/early"/);
});
