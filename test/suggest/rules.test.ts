// From observations to rules: exact hosts, a wildcard only for several subdomains of one domain
// (never one strict mode refuses), passthrough tunnels without methods, one rule per method set,
// ports merged, comments' counts; the same rules whatever the order of the audit.
import t from 'tap';
import { observe, type Observation } from '../../src/suggest/observations.js';
import { suggestRules } from '../../src/suggest/rules.js';

let n = 0;
const o = (method: string, host: string, path: string | null, extra: Partial<Observation> = {}): Observation => ({
  ts: `2026-12-02T00:00:${String(n++ % 60).padStart(2, '0')}.000Z`,
  tool: 't',
  method,
  scheme: 'http',
  host,
  port: 80,
  path,
  via: null,
  ...extra,
});
const shape = (obs: Observation[]) => suggestRules(obs).map((r) => [r.host, r.ports, r.methods, r.paths, r.seen, r.count]);

t.test('hosts', async (t) => {
  t.same(
    shape([o('GET', 'a.example.com', '/x'), o('GET', 'b.example.com', '/x')]).map((r) => r[0]),
    ['a.example.com', 'b.example.com'],
    'two subdomains stay exact',
  );
  t.same(
    shape([o('GET', 'a.example.com', '/x'), o('GET', 'b.example.com', '/x'), o('GET', 'c.example.com', '/y'), o('GET', 'example.com', '/')]).map(
      (r) => r[0],
    ),
    ['example.com', '*.example.com'],
    'three share a wildcard; the apex keeps its own rule',
  );
  t.same(
    shape([o('GET', 'a.api.example.com', '/x'), o('GET', 'b.api.example.com', '/x'), o('GET', 'c.api.example.com', '/x')]).map((r) => r[0]),
    ['*.api.example.com'],
    'the longest common parent',
  );
  t.same(
    shape([o('GET', 'ec2.amazonaws.com', '/'), o('GET', 'sts.amazonaws.com', '/'), o('GET', 'iam.amazonaws.com', '/')]).map((r) => r[0]),
    ['ec2.amazonaws.com', 'iam.amazonaws.com', 'sts.amazonaws.com'],
    'never a wildcard strict mode refuses (a public suffix under it)',
  );
  t.same(
    shape([o('GET', '2001:db8::1', '/')]).map((r) => r[0]),
    ['[2001:db8::1]'],
    'IPv6 in brackets',
  );
});

t.test('tunnels, methods and ports', async (t) => {
  t.same(shape([o('CONNECT', 'p.example', null, { port: 443, scheme: 'https', via: 'passthrough' })]), [
    ['p.example', [443], null, null, 'passthrough', 1],
  ]);
  t.same(
    shape([
      o('CONNECT', 'i.example', null, { port: 443, scheme: 'https', via: 'intercept' }),
      o('GET', 'i.example', '/a/1', { port: 443, scheme: 'https', via: 'intercept' }),
      o('POST', 'i.example', '/b', { port: 443, scheme: 'https', via: 'intercept' }),
      o('GET', 'i.example', '/a/2', { port: 443, scheme: 'https', via: 'intercept' }),
    ]),
    [
      ['i.example', [443], ['GET'], ['/a/*'], 'intercept', 3],
      ['i.example', [443], ['POST'], ['/b'], 'intercept', 1],
    ],
    'an intercepted host: one rule per method set, the CONNECT counted once',
  );
  t.same(
    shape([o('GET', 'h.example', '/x'), o('GET', 'h.example', '/x', { port: 8080 })]),
    [['h.example', [80, 8080], ['GET'], ['/x'], 'http', 2]],
    'rules equal but for the port are merged',
  );
  t.same(
    shape([o('CONNECT', 'old.example', null, { port: 443, scheme: 'https' }), o('GET', 'old.example', '/x', { port: 443, scheme: 'https' })]),
    [['old.example', [443], ['GET'], ['/x'], 'intercept', 2]],
    'an audit without via: https requests show the tunnel was intercepted',
  );
});

t.test('the order of the audit does not matter', async (t) => {
  const obs = [o('GET', 'a.x.test', '/1'), o('POST', 'b.x.test', '/items/2'), o('GET', 'c.x.test', '/3'), o('GET', 'h.test', '/z')];
  t.same(suggestRules([...obs].reverse()), suggestRules(obs));
});

t.test('which records count', async (t) => {
  const line = (fields: Record<string, unknown>) =>
    JSON.stringify({
      ts: '2026-12-02T00:00:00.000Z',
      tool: 't',
      method: 'GET',
      scheme: 'http',
      host: 'h.test',
      port: 80,
      path: '/p?q=REDACTED',
      ...fields,
    });
  const seen = observe(
    [
      line({ type: 'net.req', decision: 'allow' }),
      line({ type: 'policy.violation', decision: 'review', reason: 'no_rule' }),
      line({ type: 'policy.violation', decision: 'deny', reason: 'path_not_allowed' }),
      line({ type: 'policy.violation', decision: 'deny', reason: 'private_ip' }),
      line({ type: 'policy.violation', decision: 'deny', reason: 'secret_leak' }),
      line({ type: 'limit.exceeded', decision: 'deny', reason: 'rate_limited', rule: null }),
      line({ type: 'net.req', tool: 'other' }),
      line({ type: 'net.req', path: '/a%2Fb' }),
      line({ type: 'secret.use', secret: 'gh', host: 'h.test' }),
      'not json',
      '',
    ],
    't',
  );
  t.equal(seen.observations.length, 3, 'allowed, reviewed and rule-fixable denials');
  t.same(seen.observations[0]!.path, '/p', 'the query is dropped');
  t.same(seen.secretUses, [{ tool: 't', alias: 'gh', host: 'h.test' }]);
  t.same([...seen.skipped.values()].sort(), [1, 1], 'an unreadable path and a line that is not JSON');
});
