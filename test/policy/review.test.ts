// Per-tool review (issue 16): a tool with on_violation: review and review_until lets through and
// records what no rule allows until that time, then blocks, fail-closed, saying why. The time is
// the request's `now`, so the decision stays pure; without one a review window counts as ended.
import t from 'tap';
import { decide } from '../../src/policy/decide.js';
import { connect, makePolicy, request } from './fixtures.js';

const UNTIL = '2026-12-10T00:00:00Z';
const UNTIL_MS = Date.parse(UNTIL);
const at = <T extends object>(req: T, now?: number): T & { now?: number } => (now === undefined ? req : { ...req, now });

const policy = makePolicy({
  tools: {
    learner: { on_violation: 'review', review_until: UNTIL, allow: [{ host: 'api.example', methods: ['GET'], paths: ['/ok/**'] }] },
    forever: { on_violation: 'review', allow: [] },
    strictly: { allow: [{ host: 'api.example' }] },
  },
});

t.test('before review_until every rule violation is reviewed, with its reason', async (t) => {
  const before = UNTIL_MS - 1;
  for (const [req, reason] of [
    [connect('other.example'), 'no_rule'],
    [connect('api.example', 8443), 'port_not_allowed'],
    [request('POST', 'api.example', '/ok/1'), 'method_not_allowed'],
    [request('GET', 'api.example', '/admin'), 'path_not_allowed'],
  ] as const) {
    const d = decide(policy, 'learner', at(req, before));
    t.equal(d.verdict, 'review', `${req.method} ${req.host}: review`);
    t.equal(d.reason, reason);
    t.match(d.detail, /^Would be denied, allowed because tool learner is in review until 2026-12-10T00:00:00.000Z: /);
    t.equal(d.rule, null);
  }
});

t.test('at and past review_until the tool blocks, and the refusal says the review ended', async (t) => {
  for (const now of [UNTIL_MS, UNTIL_MS + 1, UNTIL_MS + 86_400_000]) {
    const d = decide(policy, 'learner', at(connect('other.example'), now));
    t.equal(d.verdict, 'deny');
    t.equal(d.reason, 'no_rule');
    t.match(
      d.detail,
      /^Tool learner's review ended at 2026-12-10T00:00:00.000Z \(review_until\), so requests no rule allows are denied again: /,
    );
  }
  const noTime = decide(policy, 'learner', connect('other.example'));
  t.equal(noTime.verdict, 'deny', 'no evaluation time: the window counts as ended (fail closed)');
  t.equal(decide(policy, 'learner', at(request('GET', 'api.example', '/ok/x'), UNTIL_MS + 1)).verdict, 'allow', 'rules still allow');
});

t.test('review without review_until (non-strict only) never ends; other tools are untouched', async (t) => {
  t.equal(decide(policy, 'forever', connect('x.example')).verdict, 'review');
  t.equal(decide(policy, 'strictly', at(connect('x.example'), UNTIL_MS - 1)).verdict, 'deny');
});

t.test("a tool's own on_violation wins over the policy's", async (t) => {
  const p = makePolicy({
    on_violation: 'review',
    tools: { blocker: { on_violation: 'block', allow: [] }, inherits: { allow: [] } },
  });
  t.equal(decide(p, 'blocker', connect('x.example')).verdict, 'deny');
  const inherited = decide(p, 'inherits', connect('x.example'));
  t.equal(inherited.verdict, 'review');
  t.match(inherited.detail, /^Would be denied, allowed because on_violation is review: /);
});

t.test('review never lets through what a rule cannot fix', async (t) => {
  t.equal(decide(policy, 'ghost', at(connect('x.example'), 0)).reason, 'unauthenticated');
  t.equal(decide(policy, 'learner', at(connect('bad host'), UNTIL_MS - 1)).verdict, 'deny');
});
