// The admission pipeline without I/O: heads in, admissions out, against a stub resolver, a stub
// self check and an observer that keeps what it is told. Every step's refusal, in pipeline order,
// and the steps that re-read the policy in force (a request inside a tunnel after a reload).
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import type { LoadedPolicy } from '../../src/config/types.js';
import type { Resolution } from '../../src/net/resolve.js';
import type { AuditInput, Observer } from '../../src/observe/events.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { admit, type Admission, type Head, type RequestScope } from '../../src/proxy/admit.js';
import { ToolTokens } from '../../src/proxy/auth.js';
import type { PolicyRuntime, ProxyDeps } from '../../src/proxy/context.js';
import { OpenConnections } from '../../src/proxy/lifecycle.js';
import { ToolLimiter } from '../../src/proxy/limits.js';
import { parseConnectTarget } from '../../src/proxy/target.js';
import { makeDoc, type PolicySpec } from '../policy/fixtures.js';

const TOKEN = 'tok';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const basic = (tool: string, token = TOKEN): string => `Basic ${Buffer.from(`${tool}:${token}`).toString('base64')}`;

/** A resolver that answers from a table and records the timeout each caller asked for. */
function stubResolver(table: Record<string, string>, asked: number[]): PolicyRuntime['resolver'] {
  const vet = (ip: string): Resolution =>
    ip.startsWith('10.')
      ? { ok: false, reason: 'private_ip', verdicts: [{ ip, allowed: false, range: 'private' } as never] }
      : { ok: true, addresses: [ip], verdicts: [] };
  return {
    vetLiteral: vet,
    resolve: async (name: string, timeoutMs?: number) => {
      asked.push(timeoutMs ?? -1);
      const ip = table[name];
      return ip === undefined ? { ok: false, reason: 'dns_failure', error: `${name} does not resolve` } : vet(ip);
    },
  } as unknown as PolicyRuntime['resolver'];
}

function runtimeFor(spec: PolicySpec, asked: number[] = []): PolicyRuntime {
  const doc = makeDoc({
    ...spec,
    tools: Object.fromEntries(Object.entries(spec.tools).map(([n, tool]) => [n, { token_sha256: sha(TOKEN), ...tool }])),
  });
  const loaded: LoadedPolicy = { doc, file: '/policy.yaml', files: ['/policy.yaml'], loadedAt: new Date(), digest: 'd'.repeat(64) };
  return {
    loaded,
    compiled: compilePolicy(doc, 'd'.repeat(64)),
    tokens: new ToolTokens(doc, {}),
    resolver: stubResolver({ 'api.example.com': '93.184.216.34', 'inner.example.com': '10.1.2.3', 'self.example.com': '93.184.216.99' }, asked),
    pools: null as never,
    upstreamCa: [],
    secrets: { knownValues: () => [] } as never,
  };
}

function harness(spec: PolicySpec) {
  const events: AuditInput[] = [];
  const observer: Observer = {
    event: (e) => events.push(e),
    connectionOpened: () => undefined,
    connectionClosed: () => undefined,
    upstreamDuration: () => undefined,
    certIssued: () => undefined,
  };
  const asked: number[] = [];
  const state = { runtime: runtimeFor(spec, asked), halted: null as string | null };
  const deps: ProxyDeps = {
    current: () => state.runtime,
    halted: () => state.halted,
    observer,
    self: { isSelf: (ip, port) => ip === '93.184.216.99' && port === 443 },
    limiter: new ToolLimiter({ waitMs: 5 }),
    open: new OpenConnections(),
  };
  return { deps, events, state, asked };
}

function head(kind: Head['kind'], method: string, url: string, headers: Record<string, string> = {}): Head {
  const rawHeaders = Object.entries(headers).flat();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { kind, method, url, httpVersion: '1.1', rawHeaders, headers: lower };
}

const DIRECT: RequestScope = { scheme: 'http', tunnel: null };
const policy: PolicySpec = {
  allow_ports: [80, 443],
  tools: {
    web: {
      allow: [
        { host: 'api.example.com', methods: ['GET'], paths: ['/v1/**'], limits: { dns_timeout_ms: 123 } },
        { host: 'inner.example.com' },
        { host: 'self.example.com' },
      ],
      limits: { requests_per_minute: 1000, max_request_bytes: 100 },
    },
    capped: { allow: [{ host: 'api.example.com', limits: { max_connections_per_tool: 1 } }] },
    metered: { allow: [{ host: 'api.example.com' }], limits: { requests_per_minute: 1 } },
  },
};

function refusal(t: Test, a: Admission, reason: string, status: number, close?: boolean): void {
  t.equal(a.ok, false, `refused: ${reason}`);
  if (a.ok) return;
  t.equal(a.answer.status, status);
  t.equal(a.answer.headers['X-Sluice-Deny'] ?? a.answer.headers['X-Sluice-Error'], reason);
  if (close !== undefined) t.equal(a.close, close, `close ${close}`);
}

t.test('each step refuses in pipeline order, with the reason of the first that fails', async (t) => {
  const { deps, state, events } = harness(policy);
  const auth = { 'Proxy-Authorization': basic('web'), Host: 'api.example.com' };
  const get = (url: string, headers: Record<string, string> = auth): Promise<Admission> =>
    admit(deps, DIRECT, head('request', 'GET', url, headers));

  state.halted = 'the pinned policy drifted';
  refusal(t, await get('http://api.example.com/v1/x'), 'policy_halted', 503, true);
  state.halted = null;
  refusal(t, await get('http://api.example.com/v1/x', { Host: 'api.example.com' }), 'unauthenticated', 407, false);
  refusal(t, await get('/v1/x'), 'bad_request', 400, true);
  const lookalike = await get('http://api.example.com/v1/x', { ...auth, Transfer_Encoding: 'chunked' });
  refusal(t, lookalike, 'bad_request', 400, true);
  t.equal(lookalike.ex.tool, 'web', 'a framing refusal names the authenticated tool');
  refusal(t, await get('http://api.example.com/v1/x', { ...auth, Host: 'other.example.com' }), 'bad_request', 400, true);
  refusal(t, await get('http://nothing.example.com/', { ...auth, Host: 'nothing.example.com' }), 'no_rule', 403);
  refusal(t, await get('http://api.example.com/v2/x'), 'path_not_allowed', 403);
  refusal(t, await get('http://api.example.com/v1/x', { ...auth, 'Content-Length': '101' }), 'request_too_large', 413, true);
  refusal(t, await get('http://inner.example.com/', { ...auth, Host: 'inner.example.com' }), 'private_ip', 403);
  const ok = await get('http://api.example.com/v1/./x');
  t.ok(ok.ok, 'allowed');
  if (ok.ok) {
    t.equal(ok.ip, '93.184.216.34', 'the address is the vetted one');
    t.equal(ok.upstreamPath, '/v1/x', 'the path sent upstream is the one decided on');
    ok.release();
  }
  for (const a of [lookalike]) a.ex.report('net.req');
  t.match(events.at(-1), { type: 'policy.violation', decision: 'deny', reason: 'bad_request', tool: 'web', host: 'api.example.com' });
});

t.test('Upgrade: h2c is refused; a CONNECT is decided on host and port, then vetted', async (t) => {
  const { deps } = harness(policy);
  const auth = { 'Proxy-Authorization': basic('web'), Host: 'api.example.com', Connection: 'Upgrade' };
  refusal(
    t,
    await admit(deps, DIRECT, head('upgrade', 'GET', 'http://api.example.com/v1/ws', { ...auth, Upgrade: 'h2c' })),
    'bad_request',
    400,
    true,
  );
  t.ok((await admit(deps, DIRECT, head('upgrade', 'GET', 'http://api.example.com/v1/ws', { ...auth, Upgrade: 'websocket' }))).ok);
  const connect = (target: string): Promise<Admission> =>
    admit(deps, { scheme: 'https', tunnel: null }, head('connect', 'CONNECT', target, { 'Proxy-Authorization': basic('web') }));
  const tunnel = await connect('api.example.com:443');
  t.ok(tunnel.ok && tunnel.decision.intercept, 'a rule with paths makes the tunnel intercepted');
  refusal(t, await connect('inner.example.com:443'), 'private_ip', 403);
  const self = await connect('self.example.com:443');
  refusal(t, self, 'private_ip', 403);
  t.match(self.ok ? '' : self.answer.body, /sluice itself/);
  refusal(t, await connect('api.example.com'), 'bad_request', 400);
});

t.test('a request inside a tunnel is re-authenticated and re-decided against the policy in force now', async (t) => {
  const { deps, state } = harness(policy);
  const target = parseConnectTarget('api.example.com:443');
  if (!target.ok) throw new Error('target');
  const scope: RequestScope = { scheme: 'https', tunnel: { credentials: basic('web'), target: target.target } };
  const inner = (path: string): Promise<Admission> => admit(deps, scope, head('request', 'GET', path, { Host: 'api.example.com' }));
  const first = await inner('/v1/a');
  t.ok(first.ok, 'allowed under the policy the tunnel was opened with');
  t.equal(deps.limiter.active('web'), 0, 'a request inside a tunnel takes no slot: the tunnel holds it');
  state.runtime = runtimeFor({ tools: { web: { allow: [{ host: 'other.example.com' }] } } });
  refusal(t, await inner('/v1/a'), 'no_rule', 403);
  state.runtime = runtimeFor({ tools: { someone: { allow: [{ host: 'api.example.com' }] } } });
  refusal(t, await inner('/v1/a'), 'unauthenticated', 407, true);
  refusal(t, await inner('http://api.example.com/v1/a'), 'unauthenticated', 407);
});

t.test('slots and rate: the tool caps, a rule caps on top, the rule dns timeout is the one asked for', async (t) => {
  const { deps, asked } = harness(policy);
  const get = (tool: string): Promise<Admission> =>
    admit(deps, DIRECT, head('request', 'GET', 'http://api.example.com/v1/x', { 'Proxy-Authorization': basic(tool), Host: 'api.example.com' }));
  const one = await get('capped');
  t.ok(one.ok);
  const two = await get('capped');
  refusal(t, two, 'rate_limited', 429);
  t.match(two.ok ? '' : two.answer.body, /rule capped\.allow\[0\]/, 'the refusal names the rule whose cap it hit');
  t.equal(deps.limiter.active('capped'), 1, 'the refused admission gave its tool slot back');
  if (one.ok) one.release();
  t.ok((await get('capped')).ok, 'released, the rule has room again');

  t.ok((await get('metered')).ok);
  const metered = await get('metered');
  refusal(t, metered, 'rate_limited', 429);
  t.ok(Number(metered.ok ? 0 : metered.answer.headers['Retry-After']) >= 1, 'Retry-After from the bucket');

  asked.length = 0;
  await get('web');
  t.same(asked, [123], "the rule's dns_timeout_ms is the one the resolver is given");
});
