// Issue 13, contract item 3: identity and policy are read for every request, never frozen at
// CONNECT time. On one kept-alive TLS connection through an intercepted tunnel, the first request is
// served, the policy is rewritten and reloaded, and the second request on the same connection gets
// the new policy's answer: the rule gone (no_rule) or narrowed (path_not_allowed), the tool gone or
// its token changed (407 unauthenticated), the secret grant gone (a placeholder is refused
// secret_not_granted; nothing is injected). Open passthrough tunnels whose CONNECT the new policy no
// longer allows are closed by the reload, and their audit event says so; the others stay open.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { basicAuth } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { openTlsTunnel, originGet, recordOf, settledRecords, tunnelRecordsOf, type Conversation } from '../helpers/gate-tunnel.js';
import type { ParsedResponse } from '../helpers/http-response.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { sha256, startTestSluice, TOKEN, TOOL, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Obviously fake values, never real credentials.
const SECRET_VALUE = 'reload-real-value-0123456789abcdef';
const INJECT_VALUE = 'reload-inject-value-fedcba9876543210';
const PLACEHOLDER = '__sluice_secret_tok__';
const CLOSE_BOUND_MS = 5000;

let upstream: Upstream;
let dns: DnsServer;
let testCa: string;
let testCaPem: string;
/** one interception CA for every sluice of this file, so each start does not make a new one */
let caDir: string;

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  testCaPem = readFileSync(testCa, 'utf8');
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns(
    Object.fromEntries(
      ['api.test', 'inj.wild.test', 'upstream.test', 'other.test'].map((h) => [h, [{ type: 'A' as const, address: '127.0.0.2' }]]),
    ),
  );
});
t.teardown(async () => {
  await upstream.close();
  await dns.close();
});

interface ToolShape {
  /** the api.test rule: as at start, narrowed to other paths, or gone */
  api?: 'full' | 'narrowed' | 'gone';
  /** the passthrough rule for upstream.test */
  upstreamRule?: boolean;
  grants?: boolean;
  tokenSha?: string;
}

/** The policy with TOOL in the given shape, or without TOOL at all (null). A second tool keeps the policy non-empty. */
function policyWith(shape: ToolShape | null): string {
  const tool = (s: ToolShape): string => {
    const rules: string[] = [];
    if ((s.api ?? 'full') !== 'gone')
      rules.push(`      - host: api.test\n        paths: ["${s.api === 'narrowed' ? '/other/**' : '/anything/**'}"]`);
    rules.push('      - host: inj.wild.test\n        paths: ["/anything/**"]');
    if (s.upstreamRule ?? true) rules.push('      - host: upstream.test');
    rules.push('      - host: other.test');
    return `
  ${TOOL}:
    token_sha256: "${s.tokenSha ?? sha256(TOKEN)}"
    secrets: [${(s.grants ?? true) ? 'tok, inj' : ''}]
    allow:
${rules.join('\n')}`;
  };
  return `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  tok:
    from: { env: GATE_RELOAD_SECRET }
    hosts: ["api.test"]
  inj:
    from: { env: GATE_RELOAD_INJECT }
    hosts: ["inj.wild.test"]
    inject: { header: X-Injected, format: "Key {value}" }
tools:
  keeper:
    token_sha256: "${sha256('keeper-token')}"
    allow:
      - host: other.test${shape ? tool(shape) : ''}
`;
}

async function startSluice(t: Test): Promise<TestSluice> {
  const sluice = await startTestSluice({
    policy: policyWith({}),
    env: { GATE_RELOAD_SECRET: SECRET_VALUE, GATE_RELOAD_INJECT: INJECT_VALUE },
    ...(caDir ? { caDir } : {}),
  });
  caDir ??= sluice.caDir;
  t.teardown(() => sluice.close());
  return sluice;
}

/** Rewrites the policy file and reloads it in-process; fails the test if the new policy is rejected. */
async function reloadWith(t: Test, sluice: TestSluice, shape: ToolShape | null): Promise<void> {
  writeFileSync(sluice.policyFile, policyWith(shape));
  t.equal(await sluice.running.reload(), true, 'the new policy was accepted');
}

const auth = basicAuth(TOOL, TOKEN);

/** An intercepted, kept-alive TLS connection to host through sluice. */
async function intercepted(t: Test, sluice: TestSluice, host: string): Promise<Conversation> {
  const ca = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
  const { conversation } = await openTlsTunnel(sluice.port, `${host}:${upstream.port}`, auth, { ca });
  t.teardown(() => conversation.destroy());
  return conversation;
}

/** One request on the conversation; the response, or null (failing the test) when none came. */
async function exchange(t: Test, conversation: Conversation, bytes: string, what: string): Promise<ParsedResponse | null> {
  const next = await conversation.request(bytes);
  if (next.kind === 'response') return next.response;
  t.fail(`${what}: no response (${next.kind})`);
  return null;
}

const reached = (p: string): boolean => upstream.requests.some((r) => r.url === p);

t.test('intercepted: the second request on the same TLS connection gets the reloaded policy', async (t) => {
  const cases: Array<{ name: string; shape: ToolShape | null; status: number; header: string; reason: string }> = [
    { name: 'the rule removed: 403 no_rule', shape: { api: 'gone' }, status: 403, header: 'x-sluice-deny', reason: 'no_rule' },
    {
      name: 'the rule narrowed: 403 path_not_allowed',
      shape: { api: 'narrowed' },
      status: 403,
      header: 'x-sluice-deny',
      reason: 'path_not_allowed',
    },
    { name: 'the tool removed: 407 unauthenticated', shape: null, status: 407, header: 'x-sluice-deny', reason: 'unauthenticated' },
    {
      name: "the tool's token changed: 407 unauthenticated",
      shape: { tokenSha: sha256('rotated-token') },
      status: 407,
      header: 'x-sluice-deny',
      reason: 'unauthenticated',
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const sluice = await startSluice(t);
      const authority = `api.test:${upstream.port}`;
      const conversation = await intercepted(t, sluice, 'api.test');
      const slug = c.reason + (c.shape === null ? '-tool' : '');
      const first = await exchange(t, conversation, originGet(`/anything/before-${slug}`, authority), 'the first request');
      t.equal(first?.status, 200, 'the first request is allowed');

      await reloadWith(t, sluice, c.shape);
      const second = await exchange(t, conversation, originGet(`/anything/after-${slug}`, authority), 'the second request');
      t.equal(second?.status, c.status);
      t.equal(second?.headers[c.header], c.reason);
      t.notOk(reached(`/anything/after-${slug}`), 'the second request never reached the upstream');
      const records = await recordOf(sluice, second?.headers['x-request-id']);
      // A 407 is decided before the target is read, so only a 403's record is asked for the path.
      t.match(
        records,
        [{ type: 'policy.violation', reason: c.reason, ...(c.status === 403 ? { path: `/anything/after-${slug}` } : {}) }],
        'its audit event',
      );
      t.equal(records[0]?.policy_sha256, sluice.running.current().loaded.digest, 'decided under the reloaded policy');
    });
  }
});

t.test('intercepted: the secret grant removed by a reload', async (t) => {
  t.test('a placeholder on the same TLS connection is refused secret_not_granted; nothing sent', async (t) => {
    const sluice = await startSluice(t);
    const authority = `api.test:${upstream.port}`;
    const conversation = await intercepted(t, sluice, 'api.test');
    const withPlaceholder = (p: string): string => originGet(p, authority, { Authorization: `Bearer ${PLACEHOLDER}` });
    const first = await exchange(t, conversation, withPlaceholder('/anything/grant-before'), 'the first request');
    t.equal(first?.status, 200);
    t.equal(
      upstream.requests.find((r) => r.url === '/anything/grant-before')?.headers.authorization,
      `Bearer ${SECRET_VALUE}`,
      'swapped before the reload',
    );

    await reloadWith(t, sluice, { grants: false });
    const second = await exchange(t, conversation, withPlaceholder('/anything/grant-after'), 'the second request');
    t.equal(second?.status, 403);
    t.equal(second?.headers['x-sluice-deny'], 'secret_not_granted');
    t.notOk(reached('/anything/grant-after'), 'nothing reached the upstream');
    t.match(await recordOf(sluice, second?.headers['x-request-id']), [{ type: 'policy.violation', reason: 'secret_not_granted' }]);
  });

  t.test('an injected secret is no longer injected on the same TLS connection', async (t) => {
    const sluice = await startSluice(t);
    const authority = `inj.wild.test:${upstream.port}`;
    const conversation = await intercepted(t, sluice, 'inj.wild.test');
    const first = await exchange(t, conversation, originGet('/anything/inject-before', authority), 'the first request');
    t.equal(first?.status, 200);
    t.equal(
      upstream.requests.find((r) => r.url === '/anything/inject-before')?.headers['x-injected'],
      `Key ${INJECT_VALUE}`,
      'injected before the reload',
    );

    await reloadWith(t, sluice, { grants: false });
    const second = await exchange(t, conversation, originGet('/anything/inject-after', authority), 'the second request');
    t.equal(second?.status, 200, 'the request itself is still allowed');
    const seen = upstream.requests.find((r) => r.url === '/anything/inject-after');
    t.ok(seen, 'it reached the upstream');
    t.equal(seen?.headers['x-injected'], undefined, 'without the secret');
  });
});

t.test('passthrough: a reload closes the open tunnels it no longer allows, and only those', async (t) => {
  const cases: Array<{ name: string; shape: ToolShape | null; keeps: boolean }> = [
    { name: 'the rule removed', shape: { upstreamRule: false }, keeps: true },
    { name: 'the tool removed', shape: null, keeps: false },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const sluice = await startSluice(t);
      const open = async (host: string, p: string): Promise<Conversation> => {
        const { conversation } = await openTlsTunnel(sluice.port, `${host}:${upstream.port}`, auth, { ca: testCaPem });
        t.teardown(() => conversation.destroy());
        const r = await exchange(t, conversation, originGet(p, `${host}:${upstream.port}`), `the request through ${host}`);
        t.equal(r?.status, 200, `the tunnel to ${host} relays`);
        return conversation;
      };
      const slug = c.shape === null ? 'tool' : 'rule';
      const doomed = await open('upstream.test', `/anything/pass-${slug}-1`);
      const kept = await open('other.test', `/anything/keep-${slug}-1`);

      await reloadWith(t, sluice, c.shape);
      const closed = await doomed.waitClosed(CLOSE_BOUND_MS);
      t.ok(closed, 'the tunnel to upstream.test was closed by the reload');
      if (!closed) doomed.reset();
      if (c.keeps) {
        const r = await exchange(
          t,
          kept,
          originGet(`/anything/keep-${slug}-2`, `other.test:${upstream.port}`),
          'the request through other.test',
        );
        t.equal(r?.status, 200, 'the tunnel to other.test, still allowed, stays open');
      } else {
        t.ok(await kept.waitClosed(CLOSE_BOUND_MS), 'every tunnel of the removed tool is closed');
      }
      const records = await settledRecords(sluice, tunnelRecordsOf('upstream.test'));
      t.equal(records.length, 1, 'one audit event for the closed tunnel');
      t.match(records[0], { type: 'net.tunnel', tool: TOOL });
      t.match(records[0]?.detail, /reload/i, 'its detail says the reload closed it');
    });
  }
});
