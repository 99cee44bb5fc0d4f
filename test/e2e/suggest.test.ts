// Issue 16, end to end: learn, suggest, lock. A tool in review mode (on_violation: review with
// review_until) makes real requests of every kind: plain HTTP (paths with ids, a fan-out, a POST),
// a passthrough HTTPS tunnel, intercepted HTTPS (allowed, path and method violations), and three
// subdomains of one domain. `sluice policy suggest` (the built CLI) turns that audit into a policy,
// the same bytes twice; `sluice check` accepts it in strict mode; a fresh sluice serving it in
// block mode allows every recorded request and denies an unrecorded host, method and path.
// Also: a review whose review_until has passed blocks and says why; check's warning tier.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, nodeFetchViaProxy, type ClientResult } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { issueLeaf, makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, startTestSluice, TOKEN, TOOL, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const CLI = path.resolve('dist/cli.js');
const HOUR = 3_600_000;

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv(env), timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let httpUp: Upstream;
let tlsUp: Upstream;
let dns: DnsServer;
let testCa: string;
let testCaPem: string;

const NAMES = ['web.plain.test', 'other.plain.test', 'a.cdn.test', 'b.cdn.test', 'c.cdn.test', 'api.intercept.test', 'files.passthrough.test'];

t.before(async () => {
  await makeTestPki();
  testCa = await testCaFile();
  testCaPem = readFileSync(testCa, 'utf8');
  httpUp = await startUpstream({ host: '127.0.0.2' });
  tlsUp = await startUpstream({ host: '127.0.0.2', tls: await issueLeaf(['api.intercept.test', 'files.passthrough.test']) });
  dns = await startDns(Object.fromEntries(NAMES.map((n) => [n, [{ type: 'A' as const, address: '127.0.0.2' }]])));
});
t.teardown(async () => {
  await httpUp.close();
  await tlsUp.close();
  await dns.close();
});

/** The environment's settings (not learned): sluice's resolver, the loopback upstreams, their CA. */
const environment = (allowPorts: number[] = []): string => `network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
${allowPorts.length > 0 ? `  allow_ports: [${allowPorts.join(', ')}]\n` : ''}tls:
  upstream_ca: ${testCa}
`;

interface Req {
  method: string;
  scheme: 'http' | 'https';
  host: string;
  path: string;
  body?: string;
}

const http = (host: string, path: string) => ({ scheme: 'http' as const, host, path });
const https = (host: string, path: string) => ({ scheme: 'https' as const, host, path });
const urlOf = (r: Req): string => `${r.scheme}://${r.host}:${r.scheme === 'http' ? httpUp.port : tlsUp.port}${r.path}`;

/** What the tool does while it is learned. */
const RECORDED: Req[] = [
  ...['a', 'b', 'c', 'd', 'e'].map((c) => ({ method: 'GET', ...http('web.plain.test', `/docs/${c}`) })),
  { method: 'GET', ...http('web.plain.test', '/users/101/repos') },
  { method: 'GET', ...http('web.plain.test', '/users/202/repos?page=2') },
  { method: 'POST', ...http('web.plain.test', '/items/3f2a9c1e-1b2c-4d5e-8f90-123456789abc/comments'), body: '{"text":"hi"}' },
  ...['a', 'b', 'c'].map((s) => ({ method: 'GET', ...http(`${s}.cdn.test`, '/lib.js') })),
  { method: 'GET', ...https('files.passthrough.test', '/small') },
  { method: 'GET', ...https('api.intercept.test', '/known/x') },
  { method: 'GET', ...https('api.intercept.test', '/v1/orders/9fceb02d0ae598e95dc970b74767f19372d61af8') },
  { method: 'PUT', ...https('api.intercept.test', '/v1/orders/123'), body: 'x' },
];
/**
 * Canonical audit events they make: one per request; an intercepted request also closes its own
 * tunnel (each client opens one), while a passthrough tunnel is the one event of its request.
 */
const RECORDED_EVENTS = RECORDED.length + RECORDED.filter((r) => r.host === 'api.intercept.test').length;

async function send(s: TestSluice, req: Req, caPem: string): Promise<ClientResult> {
  return nodeFetchViaProxy({
    proxy: s.proxyUrl(TOOL, TOKEN),
    url: urlOf(req),
    method: req.method,
    caPem,
    ...(req.body === undefined ? {} : { body: req.body }),
  });
}

t.test('learn in review mode, suggest, check strict, lock in block mode', async (t) => {
  const learning = await startTestSluice({
    policy: `version: 1
${environment([httpUp.port, tlsUp.port])}tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: review
    review_until: ${new Date(Date.now() + 24 * HOUR).toISOString()}
    allow:
      - host: api.intercept.test
        methods: [GET]
        paths: ["/known/**"]
`,
  });
  t.teardown(() => learning.close());
  const learningCa = readFileSync(path.join(learning.caDir, 'ca.pem'), 'utf8');
  const mark = await auditMark(learning);
  for (const req of RECORDED) {
    const r = await send(learning, req, `${testCaPem}\n${learningCa}`);
    t.equal(r.error, null, `${req.method} ${urlOf(req)}: answered`);
    t.notOk(r.headers['x-sluice-deny'], `${req.method} ${urlOf(req)}: let through while the tool reviews`);
  }
  const learned = await canonicalSince(learning, mark, RECORDED_EVENTS);
  t.equal(learned.length, RECORDED_EVENTS, JSON.stringify(learned.map((r) => [r.type, r.method, r.host, r.path, r.via])));

  // The records say what a rule needs: how each was seen, and that review let it through.
  const find = (match: (r: AuditRecord) => boolean): AuditRecord | undefined => learned.find(match);
  const passthrough = find((r) => r.host === 'files.passthrough.test' && r.method === 'CONNECT');
  t.match(passthrough, { type: 'policy.violation', decision: 'review', reason: 'no_rule', via: 'passthrough', port: tlsUp.port });
  t.match(
    find((r) => r.host === 'api.intercept.test' && r.method === 'PUT'),
    {
      type: 'policy.violation',
      decision: 'review',
      reason: 'method_not_allowed',
      scheme: 'https',
      via: 'intercept',
      path: '/v1/orders/123',
    },
  );
  t.match(
    find((r) => r.host === 'api.intercept.test' && r.path === '/known/x'),
    { type: 'net.req', decision: 'allow', via: 'intercept' },
  );
  t.match(
    find((r) => r.host === 'web.plain.test' && r.method === 'POST'),
    { type: 'policy.violation', decision: 'review', reason: 'no_rule' },
  );
  t.equal(find((r) => r.host === 'web.plain.test' && r.method === 'POST')!.via, undefined, 'on the proxy port: no via');

  // Suggest, twice: the same bytes.
  const first = cli(['policy', 'suggest', '--audit', learning.auditFile, '--tool', TOOL]);
  t.equal(first.code, 0, first.stderr);
  const again = cli(['policy', 'suggest', '--audit', learning.auditFile, '--tool', TOOL]);
  t.equal(again.stdout, first.stdout, 'byte-identical for the same audit');
  const suggested = first.stdout;
  t.notMatch(suggested, TOKEN, 'no token');
  t.notMatch(suggested, /9fceb02d|3f2a9c1e/, 'ids are generalised away');
  t.match(suggested, 'token_env: SLUICE_TOKEN_WEB_FETCH');
  t.equal(
    suggested.match(/^ {6}- host: /gm)?.length,
    6,
    'two rules (by method set) per learned host with paths, one per tunnelled host, one wildcard',
  );
  t.match(suggested, /host: "\*\.cdn\.test"/, 'three subdomains of one domain share a wildcard');
  t.match(suggested, '- /docs/**', 'five children: a prefix glob');
  t.match(suggested, '- /users/*/repos', 'numeric ids');
  t.match(suggested, '- /items/*/comments', 'a uuid');
  t.match(suggested, '- /v1/orders/*', 'a hex id inside TLS');
  t.match(
    suggested,
    /# 1 request, first seen \S+, last seen \S+\n\s+# tunnelled untouched[^\n]*\n\s+- host: files\.passthrough\.test\n\s+ports: \[\d+\]\n/,
  );
  t.match(suggested, /methods restricted, so sluice intercepts TLS[^\n]*\n\s+- host: api\.intercept\.test/);

  // sluice check accepts it, in strict mode.
  const dir = learning.dir;
  const file = path.join(dir, 'suggested.yaml');
  writeFileSync(file, suggested);
  const check = cli(['check', file]);
  t.equal(check.code, 0, check.stderr);
  t.match(check.stdout, 'strict true, on_violation block');
  t.equal(check.stderr, '', 'no warnings for these hosts');

  // With --policy: only what the policy in force does not already allow.
  const additions = cli(['policy', 'suggest', '--audit', learning.auditFile, '--tool', TOOL, '--policy', learning.policyFile]);
  t.equal(additions.code, 0, additions.stderr);
  t.match(additions.stdout, `Rules to add under tools.${TOOL}.allow in ${learning.policyFile}`);
  t.notMatch(additions.stdout, '/known', 'the request the policy allowed is left out');
  t.match(additions.stdout, /^- host: /m, 'a list to paste under allow');

  // Lock: a fresh sluice serving the suggestion (plus this environment's network settings) in block mode.
  const locked = await startTestSluice({ policy: `${suggested}${environment()}`, env: { SLUICE_TOKEN_WEB_FETCH: TOKEN } });
  t.teardown(() => locked.close());
  const lockedCa = readFileSync(path.join(locked.caDir, 'ca.pem'), 'utf8');
  const lockMark = await auditMark(locked);
  const seenBefore = httpUp.requests.length + tlsUp.requests.length;
  for (const req of RECORDED) {
    const r = await send(locked, req, `${testCaPem}\n${lockedCa}`);
    t.equal(r.error, null, `${req.method} ${urlOf(req)}: answered`);
    t.notOk(r.headers['x-sluice-deny'], `${req.method} ${urlOf(req)}: allowed by the suggested policy`);
    t.notOk(r.headers['x-sluice-error'], `${req.method} ${urlOf(req)}: reached the upstream`);
  }
  t.equal(httpUp.requests.length + tlsUp.requests.length - seenBefore, RECORDED.length, 'every recorded request reached its upstream');
  const replayed = await canonicalSince(locked, lockMark, RECORDED_EVENTS);
  t.same(
    replayed.filter((r) => r.decision !== 'allow'),
    [],
    'all allowed, none reviewed',
  );

  const denials: { req: Req; reason: string }[] = [
    { req: { method: 'GET', ...http('other.plain.test', '/docs/a') }, reason: 'no_rule' },
    { req: { method: 'DELETE', ...http('web.plain.test', '/docs/a') }, reason: 'method_not_allowed' },
    { req: { method: 'GET', ...http('web.plain.test', '/admin') }, reason: 'path_not_allowed' },
    { req: { method: 'GET', ...https('api.intercept.test', '/admin') }, reason: 'path_not_allowed' },
    { req: { method: 'DELETE', ...https('api.intercept.test', '/v1/orders/123') }, reason: 'method_not_allowed' },
  ];
  for (const { req, reason } of denials) {
    const before = await auditMark(locked);
    const r = await send(locked, req, `${testCaPem}\n${lockedCa}`);
    t.equal(r.status, 403, `${req.method} ${urlOf(req)}: refused`);
    t.equal(r.headers['x-sluice-deny'], reason);
    const [record] = (await canonicalSince(locked, before, 1)).filter((e) => e.type === 'policy.violation');
    t.match(record, { type: 'policy.violation', decision: 'deny', reason, tool: TOOL });
  }
});

t.test('past review_until the tool blocks, fail-closed, and the violation says why', async (t) => {
  const until = new Date(Date.now() - HOUR).toISOString();
  const s = await startTestSluice({
    policy: `version: 1
${environment([httpUp.port])}tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: review
    review_until: ${until}
    allow: []
`,
  });
  t.teardown(() => s.close());
  const mark = await auditMark(s);
  const seen = httpUp.requests.length;
  const r = await send(s, { method: 'GET', ...http('web.plain.test', '/docs/a') }, testCaPem);
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'no_rule');
  t.match(JSON.parse(r.body), { reason: 'no_rule', detail: /review ended at .* \(review_until\), so requests no rule allows are denied again/ });
  t.equal(httpUp.requests.length, seen, 'nothing reached the upstream');
  const [record] = await canonicalSince(s, mark, 1);
  t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'no_rule', detail: /review ended/ });

  const check = cli(['check', s.policyFile]);
  t.equal(check.code, 0, 'a review that ended is a warning, not an error');
  t.match(check.stderr, /^warning: .*policy\.yaml:\d+: tools\.web-fetch\.review_until: the review ended at .* \[review_ended\]$/m);
});

t.test('check: the warning tier prints but does not fail', async (t) => {
  const dir = t.testdir({
    'policy.yaml': `version: 1
tools:
  ${TOOL}:
    token_env: WEB_FETCH_TOKEN
    allow:
      - host: api.github.com
      - host: api.github.com
        methods: [GET]
      - host: hooks.slack.com
        methods: [POST]
        exfil_ok: "the tool posts build results to our channel"
      - host: pastebin.com
        methods: [GET]
`,
  });
  const file = path.join(dir, 'policy.yaml');
  const r = cli(['check', file]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `${file}: ok`);
  const warnings = r.stderr.trim().split('\n');
  t.equal(warnings.length, 2, r.stderr);
  t.match(
    warnings[0],
    new RegExp(
      `^warning: ${file}:6: tools\\.web-fetch\\.allow\\[0\\]: allows writing to api\\.github\\.com \\(code_host: .*\\) with no method restriction; narrow it: .*\\[exfil_surface\\]$`,
    ),
  );
  t.match(
    warnings[1],
    new RegExp(`^warning: ${file}:7: tools\\.web-fetch\\.allow\\[1\\]: never decides a request: rule \\[0\\] .*\\[moot_rule\\]$`),
  );

  const explain = cli(['explain', '--policy', file, '--tool', TOOL, 'POST', 'https://api.github.com/gists']);
  t.equal(explain.code, 0);
  t.match(explain.stdout, /^warning: rule web-fetch\.allow\[0\] allows writing to api\.github\.com .*\[exfil_surface\]$/m);
});
