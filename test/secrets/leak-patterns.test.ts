import t from 'tap';
import { findLeak, findLeakIn, LEAK_PATTERNS, LEAK_PATTERN_MAX_LENGTH } from '../../src/secrets/leak-patterns.js';

const b64url = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
const rep = (s: string, n: number): string => s.repeat(n);
const jwtHeader = b64url('{"alg":"HS256","typ":"JWT"}');
const jwtPayload = b64url('{"sub":"1234567890","name":"fake"}');

// For each pattern: matching examples, near misses (at least two), and the longest text it can match.
const TABLE: Array<{ name: string; positive: string[]; negative: string[]; longest: string }> = [
  {
    name: 'aws_access_key_id',
    positive: ['AKIAIOSFODNN7EXAMPLE', 'ASIA' + rep('Z9', 8), 'key=AKIA' + rep('A', 16) + '&x=1'],
    negative: ['AKIA' + rep('A', 15), 'AKIA' + rep('a', 16), 'XAKIA' + rep('A', 16), 'AKIA' + rep('A', 17), 'AKIB' + rep('A', 16)],
    longest: 'AKIA' + rep('A', 16),
  },
  {
    name: 'github_token',
    positive: ['ghp_' + rep('A', 36), 'gho_' + rep('a1', 18), 'ghs_' + rep('Z', 40), 'token ghr_' + rep('x', 36) + '\n'],
    negative: ['ghp_' + rep('A', 35), 'ghx_' + rep('A', 36), 'xghp_' + rep('A', 36), 'ghp_' + rep('A', 20) + '-' + rep('A', 16)],
    longest: 'ghu_' + rep('a', 251),
  },
  {
    name: 'github_fine_grained_pat',
    positive: ['github_pat_' + rep('A', 22) + '_' + rep('b', 59)],
    negative: [
      'github_pat_' + rep('A', 10) + '_' + rep('b', 59),
      'github_pat_' + rep('A', 22),
      'github_pat_' + rep('A', 22) + '_' + rep('b', 20),
    ],
    longest: 'github_pat_' + rep('a', 40) + '_' + rep('b', 100),
  },
  {
    name: 'anthropic_api_key',
    positive: ['sk-ant-api03-' + rep('aB3_-', 18) + 'xyzAA', 'x-api-key: sk-ant-admin01-' + rep('Q', 80)],
    negative: ['sk-ant-api03-short', 'sk-ant-xyz03-' + rep('a', 95), 'sk-ant-api3-' + rep('a', 95)],
    longest: 'sk-ant-admin01-' + rep('x', 200),
  },
  {
    name: 'openai_api_key',
    positive: ['sk-' + rep('a', 20) + 'T3BlbkFJ' + rep('b', 20), 'Bearer sk-proj-' + rep('X_', 37) + 'T3BlbkFJ' + rep('y-', 37)],
    negative: [
      'sk-' + rep('a', 48),
      'sk-learn-compatible-wrapper-module-for-testing-things',
      'task-' + rep('a', 20) + 'T3BlbkFJ' + rep('b', 20),
      'sk-' + rep('a', 5) + 'T3BlbkFJ' + rep('b', 20),
    ],
    longest: 'sk-svcacct-' + rep('a', 120) + 'T3BlbkFJ' + rep('b', 120),
  },
  {
    name: 'stripe_live_key',
    positive: ['sk_live_' + rep('a1B2', 6), 'rk_live_' + rep('Z', 99)],
    negative: ['sk_test_' + rep('a', 24), 'pk_live_' + rep('a', 24), 'sk_live_short', 'ask_live_' + rep('a', 24)],
    longest: 'sk_live_' + rep('a', 247),
  },
  {
    name: 'slack_token',
    positive: ['xoxb-1234567890-1234567890123-' + rep('aB', 12), 'xoxp-1234567890-1234567890-1234567890123-' + rep('f', 32)],
    negative: ['xoxb-abc-def', 'xoxz-123456789-abcdefghij', 'xoxb-12345-abcdefghijkl', 'axoxb-1234567890-abcdefghijkl'],
    longest: 'xoxb-' + rep('1', 15) + '-' + rep('a', 250),
  },
  {
    name: 'slack_app_token',
    positive: ['xapp-1-A0123456789-1234567890123-' + rep('ab12', 16)],
    negative: ['xapp-1-short', 'xapp-x-A0123456789-1234567890123-' + rep('a', 64), 'xapp-1-A0123456789-1234567890123-' + rep('a', 10)],
    longest: 'xapp-1-' + rep('A', 15) + '-' + rep('1', 15) + '-' + rep('a', 128),
  },
  {
    name: 'slack_webhook',
    positive: ['https://hooks.slack.com/services/T00000000/B00000000/' + rep('X', 24)],
    negative: [
      'https://hooks.slack.com/services/',
      'hooks.slack.com/services/T000/B000/xyz',
      'hooks.slack.com/services/T00000000/C00000000/' + rep('X', 24),
    ],
    longest: 'hooks.slack.com/services/T' + rep('A', 12) + '/B' + rep('B', 12) + '/' + rep('c', 48),
  },
  {
    name: 'google_api_key',
    positive: ['AIza' + rep('a', 35), '?key=AIzaSy' + rep('B_-', 11)],
    negative: ['AIza' + rep('a', 34), 'AIzb' + rep('a', 35), 'xAIza' + rep('a', 35), 'AIza' + rep('a', 36)],
    longest: 'AIza' + rep('a', 35),
  },
  {
    name: 'private_key_pem',
    positive: [
      '-----BEGIN PRIVATE KEY-----',
      '-----BEGIN RSA PRIVATE KEY-----\nMII',
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      '-----BEGIN PGP PRIVATE KEY BLOCK-----',
    ],
    negative: ['-----BEGIN PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----', 'BEGIN PRIVATE KEY', '-----BEGIN private key-----'],
    longest: '-----BEGIN ' + rep('ABCDEFGHIJKLMNOPQRST ', 3) + 'PRIVATE KEY BLOCK-----',
  },
  {
    name: 'jwt',
    positive: [`${jwtHeader}.${jwtPayload}.c2lnbmF0dXJl`, `Bearer ${jwtHeader}.${jwtPayload}.`],
    negative: [
      `${b64url('{"typ":"JWT"}')}.${jwtPayload}.sig`,
      `eyJ${rep('%', 1)}notjson.${jwtPayload}`,
      'eyJ' + rep('x', 20) + '.' + rep('y', 20),
      jwtHeader,
      `${jwtHeader}.abc`,
    ],
    // header of 603 characters: 452 bytes of JSON
    longest: `${b64url('{"alg":"HS256","x":"' + rep('a', 430) + '"}')}.eyJzdWIi`,
  },
];

t.test('the table and the tests cover the same patterns', async (t) => {
  t.same(
    TABLE.map((row) => row.name),
    LEAK_PATTERNS.map((p) => p.name),
  );
  t.equal(new Set(LEAK_PATTERNS.map((p) => p.name)).size, LEAK_PATTERNS.length, 'names are unique');
});

for (const row of TABLE) {
  t.test(row.name, async (t) => {
    row.positive.forEach((text, i) => t.equal(findLeak(text)?.name, row.name, `positive #${i}`));
    t.ok(row.negative.length >= 2, 'at least two near misses');
    row.negative.forEach((text, i) => t.equal(findLeak(text), null, `near miss #${i}`));

    const pattern = LEAK_PATTERNS.find((p) => p.name === row.name)!;
    const match = pattern.regex.exec(row.longest);
    t.ok(match, 'the longest example matches');
    t.equal(match?.[0].length, pattern.maxLength, 'maxLength is the longest match');
    t.ok(pattern.maxLength <= LEAK_PATTERN_MAX_LENGTH);
  });
}

t.test('ordinary text is not a credential', async (t) => {
  const ordinary = [
    'The quick brown fox jumps over the lazy dog.',
    'task-management-and-planning-for-the-whole-team-2024',
    '550e8400-e29b-41d4-a716-446655440000',
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
    '/repos/octocat/hello-world/issues?state=open&per_page=100',
    'Accept: application/vnd.github+json',
    'sk-1, sk_live, ghp_, AKIA, AIza, xoxb-',
  ];
  for (const [i, text] of ordinary.entries()) t.equal(findLeak(text), null, `ordinary #${i}`);
});

t.test('findLeakIn leaves a match touching the end undecided until the text is complete', async (t) => {
  const key = 'AKIA' + rep('A', 16);
  t.equal(findLeakIn(key, 0, false), null, 'may continue with more letters');
  t.equal(findLeakIn(key + ' ', 0, false)?.name, 'aws_access_key_id');
  t.equal(findLeakIn(key, 0, true)?.name, 'aws_access_key_id');
  t.equal(findLeakIn(' ' + key + ' ', 2, true), null, 'matches before `from` are ignored');
});

t.test('exported regexes carry no state', async (t) => {
  for (const pattern of LEAK_PATTERNS) t.notOk(pattern.regex.global || pattern.regex.sticky, pattern.name);
});
