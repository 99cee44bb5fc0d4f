// Strict mode and per-tool review (issue 16): strict refuses a global review, a tool review
// without review_until, and one more than MAX_REVIEW_DAYS ahead; review_until must be a real time
// and needs on_violation: review beside it. Non-strict accepts a review without an end.
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { loadPolicy } from '../../src/config/load.js';
import { MAX_REVIEW_DAYS } from '../../src/config/review.js';

const HASH = createHash('sha256').update('token').digest('hex');
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();

const policy = (tool: string, head = ''): string =>
  `version: 1\n${head}tools:\n  learner:\n    token_sha256: "${HASH}"\n${tool}    allow:\n      - host: api.example.com\n`;

function problems(t: Test, text: string): string[] {
  t.chdir(t.testdir({ 'policy.yaml': text }));
  try {
    loadPolicy('policy.yaml');
  } catch (error) {
    if (error instanceof PolicyError) return error.report().split('\n');
    throw error;
  }
  return [];
}

t.test('strict mode', async (t) => {
  t.same(problems(t, policy('', 'on_violation: review\n')), [
    'policy.yaml:2: on_violation: "review" lets denied requests through; strict mode forbids it (set strict: false while rolling out) [strict_review]',
  ]);
  t.same(problems(t, policy('    on_violation: review\n')), [
    `policy.yaml:5: tools.learner.on_violation: strict mode lets a tool review only until a set time; add review_until (RFC 3339), at most ${MAX_REVIEW_DAYS} days ahead [review_until_needed]`,
  ]);
  t.same(problems(t, policy(`    on_violation: review\n    review_until: ${iso(Date.now() + (MAX_REVIEW_DAYS + 1) * DAY)}\n`)), [
    `policy.yaml:6: tools.learner.review_until: review_until is more than ${MAX_REVIEW_DAYS} days ahead; strict mode allows a review of at most ${MAX_REVIEW_DAYS} days [review_too_long]`,
  ]);
  t.same(
    problems(t, policy(`    on_violation: review\n    review_until: ${iso(Date.now() + (MAX_REVIEW_DAYS - 1) * DAY)}\n`)),
    [],
    'within the maximum',
  );
  t.same(problems(t, policy(`    on_violation: review\n    review_until: ${iso(Date.now() - DAY)}\n`)), [], 'in the past: loads (and blocks)');
  t.same(
    problems(t, policy('    on_violation: review\n    review_until: "2026-12-10T00:00:00+01:00"\n')).length,
    0,
    'an offset is RFC 3339 too',
  );
});

t.test('not strict: a review without an end or beyond the maximum loads', async (t) => {
  t.same(problems(t, policy('    on_violation: review\n', 'strict: false\n')), []);
  t.same(problems(t, policy(`    on_violation: review\n    review_until: ${iso(Date.now() + 90 * DAY)}\n`, 'strict: false\n')), []);
});

t.test('review_until must be a real time, beside on_violation: review', async (t) => {
  t.same(problems(t, policy('    on_violation: review\n    review_until: tomorrow\n')), [
    'policy.yaml:6: tools.learner.review_until: expected an RFC 3339 time such as "2026-12-16T00:00:00Z" [bad_format]',
  ]);
  t.same(problems(t, policy('    on_violation: review\n    review_until: 2026-02-30T00:00:00Z\n')), [
    'policy.yaml:6: tools.learner.review_until: "2026-02-30T00:00:00Z" is not a real date and time (RFC 3339, e.g. "2026-12-16T00:00:00Z") [bad_time]',
  ]);
  t.same(problems(t, policy('    review_until: 2026-12-10T00:00:00Z\n')), [
    'policy.yaml:5: tools.learner.review_until: review_until applies only with on_violation: review on the same tool; remove it [review_until_unused]',
  ]);
  t.same(problems(t, policy('    on_violation: learn\n')), [
    'policy.yaml:5: tools.learner.on_violation: must be one of "block", "review", "ask" [invalid_choice]',
  ]);
});
