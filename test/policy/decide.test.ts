import t from 'tap';
import fc from '../helpers/fc.js';
import { DEFAULT_LIMITS } from '../../src/config/types.js';
import { compilePolicy, PolicyCompileError } from '../../src/policy/compile.js';
import { decide } from '../../src/policy/decide.js';
import type { DecisionRequest } from '../../src/policy/types.js';
import { connect, makeDoc, makePolicy, request } from './fixtures.js';

const policy = makePolicy({
  tools: {
    'web-fetch': {
      allow: [
        { host: 'api.github.com', methods: ['GET', 'post'], paths: ['/repos/**', '/user'] }, // [0]
        { host: '*.wikipedia.org' }, // [1]
        { host: 'example.com:8443' }, // [2]
        { host: 'ports.example', ports: [8080, 9090] }, // [3]
        { host: '127.0.0.1' }, // [4]
        { host: '[2001:db8::1]:8443' }, // [5]
        { host: 'api.github.com', methods: ['DELETE'] }, // [6]
        { host: 'pinned.example', sha256: 'b'.repeat(64) }, // [7]
      ],
    },
    other: { allow: [{ host: 'other.example' }] },
  },
});

// [case, tool, request, verdict, reason, rule]
type Row = [string, string, DecisionRequest, 'allow' | 'deny', string | null, string | null];
const rows: Row[] = [
  // hosts
  ['exact host', 'web-fetch', connect('api.github.com'), 'allow', null, 'web-fetch.allow[0]'],
  ['case and trailing dot', 'web-fetch', connect('API.GITHUB.COM.'), 'allow', null, 'web-fetch.allow[0]'],
  ['wildcard one level', 'web-fetch', connect('en.wikipedia.org'), 'allow', null, 'web-fetch.allow[1]'],
  ['wildcard two levels', 'web-fetch', connect('upload.en.wikipedia.org'), 'allow', null, 'web-fetch.allow[1]'],
  ['wildcard never the apex', 'web-fetch', connect('wikipedia.org'), 'deny', 'no_rule', null],
  ['wildcard label boundary', 'web-fetch', connect('evil-wikipedia.org'), 'deny', 'no_rule', null],
  ['suffix attack', 'web-fetch', connect('api.github.com.evil.com'), 'deny', 'no_rule', null],
  ['unlisted host', 'web-fetch', connect('api.evil.com'), 'deny', 'no_rule', null],
  ['rule of another tool', 'web-fetch', connect('other.example'), 'deny', 'no_rule', null],
  ['IPv4 literal', 'web-fetch', connect('127.0.0.1', 80), 'allow', null, 'web-fetch.allow[4]'],
  ['IPv4 as one number', 'web-fetch', connect('2130706433', 443), 'allow', null, 'web-fetch.allow[4]'],
  ['IPv4 rule does not match a name', 'web-fetch', connect('localhost', 443), 'deny', 'no_rule', null],
  ['IPv6 bracketed', 'web-fetch', connect('[2001:DB8:0::1]', 8443), 'allow', null, 'web-fetch.allow[5]'],
  ['IPv6 bare', 'web-fetch', connect('2001:db8::1', 8443), 'allow', null, 'web-fetch.allow[5]'],
  // ports
  ['default ports: 443', 'web-fetch', connect('en.wikipedia.org', 443), 'allow', null, 'web-fetch.allow[1]'],
  ['default ports: 80', 'web-fetch', connect('en.wikipedia.org', 80), 'allow', null, 'web-fetch.allow[1]'],
  ['default ports: 22 refused', 'web-fetch', connect('en.wikipedia.org', 22), 'deny', 'port_not_allowed', null],
  ['host:port rule, its port', 'web-fetch', connect('example.com', 8443), 'allow', null, 'web-fetch.allow[2]'],
  ['host:port rule, default port refused', 'web-fetch', connect('example.com', 443), 'deny', 'port_not_allowed', null],
  ['rule ports: listed', 'web-fetch', connect('ports.example', 9090), 'allow', null, 'web-fetch.allow[3]'],
  ['rule ports replace the defaults', 'web-fetch', connect('ports.example', 443), 'deny', 'port_not_allowed', null],
  ['IPv6 rule port', 'web-fetch', connect('2001:db8::1', 443), 'deny', 'port_not_allowed', null],
  // methods and paths
  ['method and path allowed', 'web-fetch', request('GET', 'api.github.com', '/repos/a/b'), 'allow', null, 'web-fetch.allow[0]'],
  ['method upper-cased in the rule', 'web-fetch', request('POST', 'api.github.com', '/user'), 'allow', null, 'web-fetch.allow[0]'],
  ['methods are case-sensitive on the wire', 'web-fetch', request('get', 'api.github.com', '/user'), 'deny', 'method_not_allowed', null],
  ['later rule allows another method', 'web-fetch', request('DELETE', 'api.github.com', '/anything'), 'allow', null, 'web-fetch.allow[6]'],
  ['no rule allows the method', 'web-fetch', request('PUT', 'api.github.com', '/repos/a'), 'deny', 'method_not_allowed', null],
  ['path outside the globs', 'web-fetch', request('GET', 'api.github.com', '/admin'), 'deny', 'path_not_allowed', null],
  ['dot segments resolved before matching', 'web-fetch', request('GET', 'api.github.com', '/repos/../admin'), 'deny', 'path_not_allowed', null],
  [
    'encoded dots resolved before matching',
    'web-fetch',
    request('GET', 'api.github.com', '/repos/%2e%2e/admin'),
    'deny',
    'path_not_allowed',
    null,
  ],
  ['dot segments inside the glob', 'web-fetch', request('GET', 'api.github.com', '/a/../repos/x'), 'allow', null, 'web-fetch.allow[0]'],
  ['query ignored', 'web-fetch', request('GET', 'api.github.com', '/user?next=/admin'), 'allow', null, 'web-fetch.allow[0]'],
  [
    'encoded slash refused where paths are restricted',
    'web-fetch',
    request('GET', 'api.github.com', '/repos%2F..%2Fadmin'),
    'deny',
    'path_not_allowed',
    null,
  ],
  [
    'encoded slash fine where paths are not',
    'web-fetch',
    request('GET', 'en.wikipedia.org', '/wiki/AC%2FDC'),
    'allow',
    null,
    'web-fetch.allow[1]',
  ],
  ['unrestricted rule allows an invalid path', 'web-fetch', request('DELETE', 'api.github.com', '/a%2Fb'), 'allow', null, 'web-fetch.allow[6]'],
  ['any method where none is listed', 'web-fetch', request('PATCH', 'en.wikipedia.org', '/x', 80), 'allow', null, 'web-fetch.allow[1]'],
  ['request phase checks the port too', 'web-fetch', request('GET', 'api.github.com', '/user', 8443), 'deny', 'port_not_allowed', null],
  ['request phase checks the host too', 'web-fetch', request('GET', 'evil.example', '/'), 'deny', 'no_rule', null],
  // refused before any rule
  ['unknown tool', 'nobody', connect('api.github.com'), 'deny', 'unauthenticated', null],
  ['host with a port', 'web-fetch', connect('api.github.com:443'), 'deny', 'bad_request', null],
  ['empty host', 'web-fetch', connect(''), 'deny', 'bad_request', null],
  ['host with a slash', 'web-fetch', connect('api.github.com/x'), 'deny', 'bad_request', null],
  ['host with userinfo', 'web-fetch', connect('user@api.github.com'), 'deny', 'bad_request', null],
  ['port 0', 'web-fetch', connect('api.github.com', 0), 'deny', 'bad_request', null],
  ['port 65536', 'web-fetch', connect('api.github.com', 65536), 'deny', 'bad_request', null],
  ['fractional port', 'web-fetch', connect('api.github.com', 443.5), 'deny', 'bad_request', null],
];

t.test('decision table', async (t) => {
  for (const [name, tool, req, verdict, reason, rule] of rows) {
    const d = decide(policy, tool, req);
    t.same({ verdict: d.verdict, reason: d.reason, rule: d.rule }, { verdict, reason, rule }, name);
  }
});

t.test('decisions carry canonical host, port, tool and normalized path, and are frozen', async (t) => {
  const d = decide(policy, 'web-fetch', request('GET', 'API.GitHub.com.', '/repos/./a/%7ex?token=s3cr3t'));
  t.equal(d.host, 'api.github.com');
  t.equal(d.port, 443);
  t.equal(d.tool, 'web-fetch');
  t.equal(d.path, '/repos/a/~x');
  t.equal(d.sha256, null);
  t.ok(Object.isFrozen(d));
  t.ok(Object.isFrozen(d.limits));
  t.ok(Object.isFrozen(d.secrets));
  t.notMatch(d.detail, 's3cr3t');
  t.equal(decide(policy, 'web-fetch', connect('[2001:db8::1]', 8443)).host, '2001:db8::1');
  t.equal(decide(policy, 'web-fetch', connect('pinned.example')).sha256, 'b'.repeat(64));
});

t.test('detail sentences name what to act on and never the query', async (t) => {
  const detail = (tool: string, req: DecisionRequest) => decide(policy, tool, req).detail;
  t.equal(
    detail('web-fetch', connect('api.evil.com')),
    'api.evil.com is not in the allowlist of tool web-fetch; add a rule for it under tools.web-fetch.allow to allow it.',
  );
  t.equal(
    detail('web-fetch', connect('ports.example', 443)),
    'Tool web-fetch may reach ports.example only on ports 8080, 9090; port 443 is not allowed.',
  );
  t.equal(detail('web-fetch', connect('example.com', 443)), 'Tool web-fetch may reach example.com only on port 8443; port 443 is not allowed.');
  t.equal(
    detail('web-fetch', request('PUT', 'api.github.com', '/repos/a?x=secret')),
    'Tool web-fetch may use only GET, POST, DELETE on api.github.com:443; method PUT is not allowed.',
  );
  t.equal(
    detail('web-fetch', request('GET', 'api.github.com', '/admin?x=secret')),
    'Tool web-fetch may GET on api.github.com:443 only paths /repos/**, /user; path "/admin" is not allowed.',
  );
  t.equal(
    detail('web-fetch', request('GET', 'api.github.com', '/a%2Fb?x=secret')),
    'The path of this request to api.github.com:443 cannot be checked against the path rules of tool web-fetch: it contains an encoded slash (%2F).',
  );
  t.equal(detail('nobody', connect('api.github.com')), 'No tool named "nobody" is defined in the policy, so it may not reach anything.');
  t.equal(detail('web-fetch', connect('a b')), 'The request host "a b" is not a valid host name or IP address.');
  t.equal(detail('web-fetch', connect('a.com', 0)), 'Port "0" is not a valid TCP port (1-65535).');
  t.equal(detail('web-fetch', connect('2001:db8::1', 8443)), 'Tool web-fetch may connect to [2001:db8::1]:8443 (rule web-fetch.allow[5]).');
  t.equal(
    detail('web-fetch', connect('api.github.com')),
    'Tool web-fetch may connect to api.github.com:443 (rule web-fetch.allow[0]); sluice intercepts TLS to check each request.',
  );
  t.equal(
    detail('web-fetch', request('GET', 'api.github.com', '/repos/x?page=secret')),
    'Tool web-fetch may GET "/repos/x" on api.github.com:443 (rule web-fetch.allow[0]).',
  );
  t.equal(
    detail('web-fetch', request('DELETE', 'api.github.com', '/a%2Fb')),
    'Tool web-fetch may DELETE any path on api.github.com:443 (rule web-fetch.allow[6]).',
  );
  t.equal(decide(policy, 'web-fetch', request('DELETE', 'api.github.com', '/a%2Fb')).path, null);
  t.equal(
    detail('web-fetch', connect(`${'x'.repeat(300)} y`)),
    `The request host "${'x'.repeat(100)}…" is not a valid host name or IP address.`,
  );
  t.equal(
    detail('web-fetch', request('GET\r\nX: y', 'api.github.com', '/')),
    'Tool web-fetch may use only GET, POST, DELETE on api.github.com:443; method "GET\\r\\nX: y" is not allowed.',
  );
});

t.test('first rule in file order that satisfies everything wins', async (t) => {
  const p = makePolicy({
    tools: {
      tool: {
        allow: [
          { host: 'a.example.com', methods: ['POST'] },
          { host: '*.example.com', paths: ['/x'] },
          { host: '*', ports: [443] },
          { host: 'a.example.com' },
        ],
      },
    },
  });
  t.equal(decide(p, 'tool', request('POST', 'a.example.com', '/y')).rule, 'tool.allow[0]');
  t.equal(decide(p, 'tool', request('GET', 'a.example.com', '/x')).rule, 'tool.allow[1]');
  t.equal(decide(p, 'tool', request('GET', 'a.example.com', '/y')).rule, 'tool.allow[2]');
  t.equal(decide(p, 'tool', request('GET', 'a.example.com', '/y', 80)).rule, 'tool.allow[3]');
  t.equal(decide(p, 'tool', connect('a.example.com')).rule, 'tool.allow[0]');
  t.equal(decide(p, 'tool', connect('zzz.test')).rule, 'tool.allow[2]');
});

t.test('on_violation review allows policy violations but keeps the reason', async (t) => {
  const p = makePolicy({
    on_violation: 'review',
    tools: { tool: { allow: [{ host: 'api.example', methods: ['GET'], paths: ['/ok'] }] } },
  });
  const cases: Array<[DecisionRequest, string]> = [
    [connect('evil.example'), 'no_rule'],
    [connect('api.example', 22), 'port_not_allowed'],
    [request('POST', 'api.example', '/ok'), 'method_not_allowed'],
    [request('GET', 'api.example', '/nope'), 'path_not_allowed'],
    [request('GET', 'api.example', '/a%2Fb'), 'path_not_allowed'],
  ];
  for (const [req, reason] of cases) {
    const d = decide(p, 'tool', req);
    t.same({ verdict: d.verdict, reason: d.reason, rule: d.rule }, { verdict: 'review', reason, rule: null }, reason);
    t.match(d.detail, /^Would be denied, allowed because on_violation is review: /);
  }
  t.equal(decide(p, 'tool', request('GET', 'api.example', '/nope')).path, '/nope');
  // never reviewed: who is asking, and whether the request is even well formed
  t.same(pick(decide(p, 'ghost', connect('api.example'))), { verdict: 'deny', reason: 'unauthenticated' });
  t.same(pick(decide(p, 'tool', connect('bad host'))), { verdict: 'deny', reason: 'bad_request' });
  t.same(pick(decide(p, 'tool', connect('api.example', 70000))), { verdict: 'deny', reason: 'bad_request' });
  t.same(pick(decide(p, 'tool', request('GET', 'api.example', '/ok'))), { verdict: 'allow', reason: null });
});

t.test('limits: policy, overridden by tool, overridden by the matching rule', async (t) => {
  const p = makePolicy({
    limits: { max_response_bytes: 100, connect_timeout_ms: 111, idle_timeout_ms: 222 },
    tools: {
      tool: {
        limits: { connect_timeout_ms: 333, max_request_bytes: 444 },
        allow: [{ host: 'limited.example', limits: { max_request_bytes: 555, idle_timeout_ms: 666 } }, { host: 'plain.example' }],
      },
    },
  });
  t.same(decide(p, 'tool', connect('limited.example')).limits, {
    ...DEFAULT_LIMITS,
    max_response_bytes: 100,
    connect_timeout_ms: 333,
    max_request_bytes: 555,
    idle_timeout_ms: 666,
  });
  const toolLimits = { ...DEFAULT_LIMITS, max_response_bytes: 100, connect_timeout_ms: 333, idle_timeout_ms: 222, max_request_bytes: 444 };
  t.same(decide(p, 'tool', connect('plain.example')).limits, toolLimits);
  t.same(decide(p, 'tool', connect('denied.example')).limits, toolLimits, 'denied: policy + tool');
  t.same(decide(p, 'ghost', connect('plain.example')).limits, {
    ...DEFAULT_LIMITS,
    max_response_bytes: 100,
    connect_timeout_ms: 111,
    idle_timeout_ms: 222,
  });
  t.same(p.tools.get('tool')?.limits, toolLimits);
});

t.test('intercept: only a CONNECT whose rules look inside or whose host has a secret', async (t) => {
  const p = makePolicy({
    secrets: { gh: { hosts: ['secret.example'] } },
    tools: {
      tool: {
        secrets: ['gh'],
        allow: [
          { host: 'plain.example' },
          { host: 'methods.example', methods: ['GET'] },
          { host: 'paths.example', paths: ['/a'] },
          { host: 'digest.example', sha256: 'c'.repeat(64) },
          { host: 'secret.example' },
          { host: 'mixed.example' },
          { host: 'mixed.example', paths: ['/a'] },
          { host: 'ported.example:8443', paths: ['/a'] },
          { host: 'ported.example' },
        ],
      },
    },
  });
  const intercept = (host: string, port = 443) => decide(p, 'tool', connect(host, port)).intercept;
  t.equal(intercept('plain.example'), false);
  t.equal(intercept('methods.example'), true);
  t.equal(intercept('paths.example'), true);
  t.equal(intercept('digest.example'), true);
  t.equal(intercept('secret.example'), true);
  t.equal(intercept('mixed.example'), true, 'any remaining rule that inspects');
  t.equal(intercept('ported.example', 443), false, 'the inspecting rule is for another port');
  t.equal(intercept('ported.example', 8443), true);
  t.equal(decide(p, 'tool', connect('paths.example', 80)).intercept, true, 'a tunnel is opaque whatever the claimed scheme');
  t.equal(decide(p, 'tool', request('GET', 'paths.example', '/a')).intercept, false, 'requests are already inside');
  t.equal(decide(p, 'tool', connect('nothing.example')).intercept, false, 'denied');
  const review = makePolicy({
    on_violation: 'review',
    secrets: { gh: { hosts: ['*.gh.example'] } },
    tools: { tool: { secrets: ['gh'], allow: [] } },
  });
  t.same(pick(decide(review, 'tool', connect('api.gh.example'))), { verdict: 'review', reason: 'no_rule' });
  t.equal(decide(review, 'tool', connect('api.gh.example')).intercept, true, 'a reviewed tunnel with a secret is opened up');
  t.equal(decide(review, 'tool', connect('other.example')).intercept, false);
});

t.test('secrets: granted aliases whose hosts cover the request host and port', async (t) => {
  const p = makePolicy({
    secrets: {
      github: { hosts: ['api.github.com', 'uploads.github.com'] },
      wild: { hosts: ['*.example.com'] },
      ported: { hosts: ['example.com:8443'] },
      ungranted: { hosts: ['api.github.com'] },
    },
    tools: {
      tool: {
        secrets: ['github', 'wild', 'ported'],
        allow: [{ host: '*', ports: [443, 8443] }],
      },
    },
  });
  const secrets = (host: string, port = 443) => decide(p, 'tool', connect(host, port)).secrets;
  t.same(secrets('api.github.com'), ['github']);
  t.same(secrets('API.GITHUB.COM.'), ['github']);
  t.same(secrets('uploads.github.com'), ['github']);
  t.same(secrets('gist.github.com'), []);
  t.same(secrets('a.example.com'), ['wild']);
  t.same(secrets('example.com'), [], 'a wildcard secret host never covers the apex');
  t.same(secrets('example.com', 8443), ['ported']);
  t.same(secrets('a.example.com', 8443), ['wild']);
  t.same(p.secretsFor('tool', 'api.github.com', 443), ['github']);
  t.same(p.secretsFor('tool', 'example.com', 443), []);
  t.same(p.secretsFor('ghost', 'api.github.com', 443), []);
  t.same(p.secretsFor('tool', 'bad host', 443), []);
  t.same(p.secretsFor('tool', 'api.github.com', 0), []);
  t.same([...p.secrets.keys()], ['github', 'wild', 'ported', 'ungranted']);
  t.same(p.secrets.get('github')?.hosts, ['api.github.com', 'uploads.github.com']);
  t.same(decide(p, 'tool', connect('nowhere.test', 22)).secrets, [], 'a denied request still reports none for a foreign host');
});

t.test('compiled tools expose what the proxy needs', async (t) => {
  const p = compilePolicy(
    makeDoc({
      secrets: { s: { hosts: ['a.example'] } },
      tools: {
        withHash: { token_sha256: 'd'.repeat(64), secrets: ['s'], allow: [{ host: 'a.example' }] },
        withEnv: { token_sha256: undefined, token_env: 'TOOL_TOKEN', allow: [] },
      },
    }),
    'e'.repeat(64),
  );
  t.equal(p.sha256, 'e'.repeat(64));
  t.equal(p.doc.version, 1);
  const withHash = p.tools.get('withHash')!;
  t.same(
    { name: withHash.name, token_sha256: withHash.token_sha256, token_env: withHash.token_env, secrets: withHash.secrets },
    { name: 'withHash', token_sha256: 'd'.repeat(64), token_env: null, secrets: ['s'] },
  );
  const withEnv = p.tools.get('withEnv')!;
  t.same({ token_sha256: withEnv.token_sha256, token_env: withEnv.token_env }, { token_sha256: null, token_env: 'TOOL_TOKEN' });
  t.same(
    withHash.rules.map((r) => [r.id, r.ports, r.inspects]),
    [['withHash.allow[0]', [80, 443], false]],
  );
});

t.test('a policy that cannot be compiled says where', async (t) => {
  const cases: Array<[Parameters<typeof makeDoc>[0], string]> = [
    [{ tools: { x: { allow: [{ host: 'bad host' }] } } }, 'tools.x.allow[0].host'],
    [{ tools: { x: { allow: [{ host: 'a.example', paths: ['/a/../b'] }] } } }, 'tools.x.allow[0].paths[0]'],
    [{ tools: { x: { allow: [{ host: 'ok.example' }, { host: 'a.example', ports: [0] }] } } }, 'tools.x.allow[1].ports'],
    [{ tools: { x: { secrets: ['missing'], allow: [] } } }, 'tools.x.secrets'],
    [{ secrets: { s: { hosts: ['*.'] } }, tools: {} }, 'secrets.s.hosts[0]'],
  ];
  for (const [spec, where] of cases) {
    const error = catchError(() => makePolicy(spec));
    t.ok(error instanceof PolicyCompileError, `${where}: a PolicyCompileError`);
    t.equal((error as PolicyCompileError).where, where);
  }
});

t.test('the route memo gives the same answer as a fresh policy, whatever the spelling', async (t) => {
  const spec = { tools: { tool: { allow: [{ host: '127.0.0.1' }, { host: '*.example.com', ports: [443] }] } } };
  const warm = makePolicy(spec);
  const spellings = ['127.0.0.1', '2130706433', '0x7f000001', 'A.EXAMPLE.COM', 'a.example.com.', 'example.com', 'bad host'];
  for (const host of spellings) {
    for (const port of [80, 443]) {
      const first = decide(warm, 'tool', connect(host, port));
      const second = decide(warm, 'tool', connect(host, port));
      const fresh = decide(makePolicy(spec), 'tool', connect(host, port));
      t.same(second, first, `${host}:${port} twice`);
      t.same(fresh, first, `${host}:${port} fresh`);
    }
  }
  // fill well past the memo bound and check an early answer is still right
  for (let i = 0; i < 5000; i++) decide(warm, 'tool', connect(`h${i}.example.com`));
  t.same(pick(decide(warm, 'tool', connect('h0.example.com'))), { verdict: 'allow', reason: null });
  t.same(pick(decide(warm, 'tool', connect('h0.example.com', 80))), { verdict: 'deny', reason: 'port_not_allowed' });
});

t.test('decide never throws on hostile hosts, ports, methods and paths', async () => {
  const p = makePolicy({
    on_violation: 'block',
    tools: {
      tool: {
        allow: [{ host: '*.example.com', methods: ['GET'], paths: ['/a/**', '/b/*.json'] }, { host: '[::1]' }, { host: '*', ports: [8080] }],
      },
    },
  });
  const hostChars = fc.constantFrom('a', 'b', '.', '-', ':', '[', ']', '%', '0', '1', 'x', 'é', '*', '/', '@', ' ', '_');
  const host = fc.oneof(fc.string(), fc.string({ unit: hostChars }), fc.domain(), fc.ipV4(), fc.ipV6(), fc.ipV4Extended());
  const port = fc.oneof(fc.integer({ min: -10, max: 70000 }), fc.constantFrom(80, 443, 8080, Number.NaN, 1.5));
  const path = fc.oneof(fc.string(), fc.webPath(), fc.string({ unit: fc.constantFrom('/', '.', '%', '2', 'f', 'e', 'a', '?', '\\', '*') }));
  const seen = { allow: 0, deny: 0 };
  fc.assert(
    fc.property(
      fc.constantFrom('tool', 'ghost'),
      host,
      port,
      fc.constantFrom('GET', 'POST', 'get', ''),
      path,
      fc.boolean(),
      (tool, h, pt, method, pa, isConnect) => {
        const req: DecisionRequest = isConnect
          ? { phase: 'connect', host: h, port: pt, method: 'CONNECT' }
          : { phase: 'request', host: h, port: pt, method, path: pa };
        const d = decide(p, tool, req);
        if (d.verdict === 'allow' || d.verdict === 'deny') seen[d.verdict]++;
        const consistent = d.verdict === 'allow' ? d.reason === null && d.rule !== null : d.reason !== null && d.rule === null;
        return consistent && Object.isFrozen(d) && d.detail.length > 0 && !(d.path ?? '').includes('?');
      },
    ),
    { numRuns: 3000 },
  );
  t.pass('3000 random requests: every decision consistent, frozen, explained, and its path without a query');
  t.ok(seen.allow > 0 && seen.deny > 0, `the generated requests reach both verdicts (allow ${seen.allow}, deny ${seen.deny})`);
});

function pick(d: { verdict: string; reason: string | null }) {
  return { verdict: d.verdict, reason: d.reason };
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

// issue 17: a rule with expires_at or max_uses matches only while live; the clock and counts come in.
t.test('expires_at and max_uses: decided from the clock and counts passed in', async (t) => {
  const bounded = makePolicy({
    tools: {
      asker: {
        on_violation: 'ask',
        allow: [
          { host: 'soon.example', expires_at: '2026-12-02T10:00:00Z' },
          { host: 'few.example', max_uses: 2 },
        ],
      },
    },
    on_violation: 'review',
  });
  const at = Date.parse('2026-12-02T10:00:00Z');
  t.equal(decide(bounded, 'asker', { ...connect('soon.example'), now: at - 1 }).verdict, 'allow', 'before expires_at');
  const expired = decide(bounded, 'asker', { ...connect('soon.example'), now: at });
  t.equal(expired.verdict, 'deny', 'at expires_at it stops matching; review never waves an ask tool through');
  t.equal(expired.reason, 'no_rule');
  const few = decide(bounded, 'asker', { ...connect('few.example'), uses: () => 1 });
  t.equal(few.verdict, 'allow');
  t.match(few.uses, { max: 2, key: /^rule:asker:[0-9a-f]{16}$/ }, 'the caller is told to take a use');
  t.equal(decide(bounded, 'asker', { ...connect('few.example'), uses: () => 2 }).reason, 'no_rule', 'used up');
});
