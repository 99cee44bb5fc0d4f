import t from 'tap';
import fc from '../helpers/fc.js';
import { decide, explain } from '../../src/policy/decide.js';
import type { DecisionRequest } from '../../src/policy/types.js';
import { connect, makePolicy, request } from './fixtures.js';

const policy = makePolicy({
  tools: {
    'web-fetch': {
      allow: [
        { host: '*.example.com' },
        { host: 'api.github.com', ports: [443], methods: ['GET'], paths: ['/repos/**'] },
        { host: 'api.github.com', methods: ['POST'], sha256: 'a'.repeat(64) },
      ],
    },
  },
});

t.test('explain lists every rule of the tool with why it did or did not match', async (t) => {
  const pathMiss = explain(policy, 'web-fetch', request('GET', 'api.github.com', '/admin?q=secret'));
  t.same(pathMiss.decision.reason, 'path_not_allowed');
  t.same(pathMiss.considered, [
    { rule: 'web-fetch.allow[0]', matched: false, why: 'host api.github.com does not match "*.example.com"' },
    { rule: 'web-fetch.allow[1]', matched: false, why: 'path "/admin" matches none of /repos/**' },
    { rule: 'web-fetch.allow[2]', matched: false, why: 'method "GET" is not among POST' },
  ]);

  const allowed = explain(policy, 'web-fetch', request('POST', 'api.github.com', '/upload', 80));
  t.equal(allowed.decision.rule, 'web-fetch.allow[2]');
  t.same(allowed.considered.slice(1), [
    { rule: 'web-fetch.allow[1]', matched: false, why: 'port 80 is not among the allowed ports 443' },
    { rule: 'web-fetch.allow[2]', matched: true, why: 'host, port, method and path match; the body must match the pinned sha256' },
  ]);

  const tunnel = explain(policy, 'web-fetch', connect('api.github.com'));
  t.equal(tunnel.decision.verdict, 'allow');
  t.same(
    tunnel.considered.slice(1).map((c) => [c.matched, c.why]),
    [
      [true, 'host and port match; methods, paths and digest are checked on each request after TLS interception'],
      [true, 'host and port match; methods, paths and digest are checked on each request after TLS interception'],
    ],
  );
  t.same(explain(policy, 'web-fetch', connect('a.example.com')).considered[0], {
    rule: 'web-fetch.allow[0]',
    matched: true,
    why: 'host and port match',
  });

  const invalid = explain(policy, 'web-fetch', request('GET', 'api.github.com', '/a%2Fb'));
  t.same(invalid.considered[1], {
    rule: 'web-fetch.allow[1]',
    matched: false,
    why: 'the path cannot be checked: it contains an encoded slash (%2F)',
  });
});

t.test('explain has nothing to consider without a tool, a valid host or a valid port', async (t) => {
  t.same(explain(policy, 'ghost', connect('api.github.com')).considered, []);
  t.equal(explain(policy, 'ghost', connect('api.github.com')).decision.reason, 'unauthenticated');
  t.same(explain(policy, 'web-fetch', connect('not a host')).considered, []);
  t.same(explain(policy, 'web-fetch', connect('api.github.com', 0)).considered, []);
});

t.test('explain agrees with decide: the rule is the first one considered a match', async () => {
  const host = fc.constantFrom('api.github.com', 'a.example.com', 'example.com', 'API.GITHUB.COM.', 'evil.test');
  const port = fc.constantFrom(80, 443, 8443);
  const method = fc.constantFrom('GET', 'POST', 'PUT');
  const path = fc.constantFrom('/repos/x', '/repos', '/admin', '/repos/../admin', '/a%2Fb', '/x?y=1');
  fc.assert(
    fc.property(host, port, method, path, fc.boolean(), (h, p, m, pa, isConnect) => {
      const req: DecisionRequest = isConnect ? connect(h, p) : request(m, h, pa, p);
      const { decision, considered } = explain(policy, 'web-fetch', req);
      const first = considered.find((c) => c.matched)?.rule ?? null;
      const same = JSON.stringify(decision) === JSON.stringify(decide(policy, 'web-fetch', req));
      return same && decision.rule === first && (decision.verdict === 'allow') === (first !== null);
    }),
  );
});
