// The loader reads files other people (and other programs) write: whatever the bytes, it either
// returns a policy or throws PolicyError whose sentences start with "file:line:". Nothing else.
import { createHash } from 'node:crypto';
import fc from '../helpers/fc.js';
import t from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { parsePolicy } from '../../src/config/load.js';

const HASH = createHash('sha256').update('web-fetch-token').digest('hex');
const PROBLEM = /^fuzz\.yaml:\d+: \S/;

function outcome(text: string): 'ok' | 'invalid' {
  try {
    parsePolicy(text, 'fuzz.yaml');
    return 'ok';
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    if (error.problems.length === 0) throw new Error('PolicyError without problems');
    for (const problem of error.problems) if (!PROBLEM.test(problem)) throw new Error(`malformed problem: ${problem}`);
    return 'invalid';
  }
}

t.test('arbitrary text', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
      outcome(text);
    }),
    { numRuns: 500 },
  );
  t.pass('only PolicyError');
});

t.test('arbitrary JSON values', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
      outcome(JSON.stringify(value));
    }),
    { numRuns: 500 },
  );
  t.pass('only PolicyError');
});

const hostish = fc.oneof(
  fc.constantFrom('*', '*.com', '*.co.uk', '*.example.com', 'a.com:0', '[::1]', '::1', '1.2.3', '*:80', '-', '..', 'ex ample.com', '[1.2.3.4]'),
  fc.string({ maxLength: 30 }),
  fc.domain(),
);

t.test('policies with hostile fields', async (t) => {
  const rule = fc.record(
    {
      host: hostish,
      ports: fc.array(fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.string()), { maxLength: 3 }),
      methods: fc.array(fc.oneof(fc.constantFrom('GET', 'get', 'POST'), fc.string({ maxLength: 8 })), { maxLength: 3 }),
      paths: fc.array(fc.oneof(fc.constantFrom('/**', '/a/*', '/a**', '/%2F', '/..', '/a?b'), fc.string({ maxLength: 12 })), { maxLength: 3 }),
      sha256: fc.string({ maxLength: 70 }),
    },
    { requiredKeys: ['host'] },
  );
  const policy = fc.record(
    {
      strict: fc.boolean(),
      on_violation: fc.constantFrom('block', 'review', 'warn'),
      network: fc.record(
        {
          private_ip: fc.constantFrom('deny', 'allow'),
          allow_private_cidrs: fc.array(
            fc.oneof(fc.constantFrom('10.0.0.0/8', '0.0.0.0/0', '::/0', 'fe80::%1/64', '1.2.3.4/33'), fc.string({ maxLength: 20 })),
            { maxLength: 3 },
          ),
          dns_servers: fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 20 })), { maxLength: 3 }),
        },
        { requiredKeys: [] },
      ),
      secrets: fc.dictionary(
        fc.oneof(fc.constantFrom('github', 'a', 'a__b'), fc.string({ maxLength: 8 })),
        fc.record({ from: fc.record({ env: fc.constantFrom('GITHUB_TOKEN', '1X') }), hosts: fc.array(hostish, { maxLength: 3 }) }),
        { maxKeys: 3 },
      ),
      tools: fc.dictionary(
        fc.oneof(fc.constantFrom('web-fetch', 'ci'), fc.string({ maxLength: 8 })),
        fc.record({
          token_sha256: fc.constant(HASH),
          secrets: fc.array(fc.constantFrom('github', 'a', 'nope'), { maxLength: 2 }),
          allow: fc.array(rule, { maxLength: 3 }),
        }),
        { maxKeys: 3 },
      ),
    },
    { requiredKeys: [] },
  );
  const seen = new Set<string>();
  fc.assert(
    fc.property(policy, (doc) => {
      seen.add(outcome(JSON.stringify({ version: 1, ...doc }, null, 2)));
    }),
    { numRuns: 1000 },
  );
  t.same([...seen].sort(), ['invalid', 'ok'], 'both outcomes were exercised');
});
