import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { createBodySwapper, type BodySwapOptions } from '../../src/secrets/body.js';
import { SecretViolation } from '../../src/secrets/violation.js';
import { chunkings, FAKE, run, SECRETS, values } from './fixtures.js';

function swapper(overrides: Partial<BodySwapOptions> = {}, uses: string[] = []) {
  return createBodySwapper({
    tool: 'web',
    granted: ['github', 'gh', 'stripe', 'custom'],
    inScope: ['github', 'gh', 'custom'],
    secrets: SECRETS,
    values,
    tls: true,
    onUse: (alias, where) => uses.push(`${alias}@${where}`),
    ...overrides,
  });
}

t.test('swaps placeholders at every split and byte by byte, leaving near misses alone', async (t) => {
  const input =
    '{"a":"__sluice_secret_github__","near":"__sluice_secret_gh_ other __sluice_secret_githu",' +
    '"b":"__sluice_secret_gh____sluice_secret_github__","c":"CUSTOM-PLACEHOLDER-CUSTOM-PLACEHOLDER-1",' +
    '"d":"__sluice_secret__sluice_secret_gh__"}';
  // replacer functions: the custom value holds `$&`, which a replacement string would expand
  const expected = input
    .replaceAll('__sluice_secret_github__', () => FAKE.github)
    .replaceAll('__sluice_secret_gh__', () => FAKE.gh)
    .replaceAll('CUSTOM-PLACEHOLDER-1', () => FAKE.custom);
  let failures = 0;
  for (const chunks of chunkings(Buffer.from(input))) {
    const uses: string[] = [];
    const { out, error } = await run(swapper({}, uses), chunks);
    if (error || out.toString() !== expected || uses.join() !== 'github@body,gh@body,custom@body') failures++;
  }
  t.equal(failures, 0, 'every chunking gives the same output and reports each alias once');
});

t.test('fully percent-encoded placeholders (form bodies) get the percent-encoded value', async (t) => {
  const hex = Buffer.from('__sluice_secret_github__').toString('hex').replace(/../g, '%$&');
  for (const written of [hex.toUpperCase(), hex.toLowerCase()]) {
    const { out, error } = await run(swapper(), [Buffer.from(`a=${written}&b=1`)]);
    t.equal(error, null);
    t.ok(out.toString() === `a=${encodeURIComponent(FAKE.github)}&b=1`, 'swapped for the encoded value');
  }
});

const VIOLATIONS: Array<{ name: string; needle: string; reason: string; alias: string | null; options?: Partial<BodySwapOptions> }> = [
  { name: 'not granted', needle: '__sluice_secret_other__', reason: 'secret_not_granted', alias: 'other' },
  {
    name: 'not granted, encoded',
    needle: '%5F%5F%73%6C%75%69%63%65%5F%73%65%63%72%65%74%5F%6F%74%68%65%72%5F%5F',
    reason: 'secret_not_granted',
    alias: 'other',
  },
  { name: 'out of scope', needle: '__sluice_secret_stripe__', reason: 'secret_out_of_scope', alias: 'stripe' },
  { name: 'raw value', needle: FAKE.other, reason: 'secret_leak', alias: 'other' },
  { name: 'base64 value', needle: Buffer.from(FAKE.stripe).toString('base64'), reason: 'secret_leak', alias: 'stripe' },
  { name: 'percent-encoded value', needle: encodeURIComponent(FAKE.custom), reason: 'secret_leak', alias: 'custom' },
  { name: 'aws key shape', needle: 'AKIA' + 'Q'.repeat(16), reason: 'secret_leak', alias: null },
  { name: 'github token shape', needle: 'ghp_' + 'R'.repeat(36), reason: 'secret_leak', alias: null },
  {
    name: 'longest jwt shape',
    needle: `${Buffer.from('{"alg":"HS256","x":"' + 'a'.repeat(430) + '"}').toString('base64url')}.eyJzdWIiOjF9`,
    reason: 'secret_leak',
    alias: null,
  },
  {
    name: 'unavailable in-scope secret',
    needle: '__sluice_secret_gh__',
    reason: 'secret_unavailable',
    alias: 'gh',
    options: { values: (alias) => (alias === 'gh' ? null : values(alias)) },
  },
];

for (const violation of VIOLATIONS) {
  t.test(`fails before any byte of the needle: ${violation.name}`, async (t) => {
    const before = 'head __sluice_secret_github__ {"x": "';
    const input = Buffer.from(`${before}${violation.needle}" } tail`);
    const at = Buffer.byteLength(before.replace('__sluice_secret_github__', FAKE.github));
    let failures = 0;
    for (const chunks of chunkings(input)) {
      const { out, error } = await run(swapper(violation.options), chunks);
      const typed = error instanceof SecretViolation && error.reason === violation.reason && error.alias === violation.alias;
      if (!typed || out.length > at || error.message.includes(FAKE.github)) failures++;
    }
    t.equal(failures, 0, 'every chunking fails with the typed error, nothing of the needle pushed');
  });
}

t.test('near-miss credential shapes pass through at every split', async (t) => {
  // near-format tokens (a ghp_ two characters short, AKIA with 14 to 20) are leaks now (issue 22): these are further off
  const input = `x AKIA${'A'.repeat(10)} y AKIA${'A'.repeat(22)} ghp_${'a'.repeat(25)} -----BEGIN PUBLIC KEY----- eyJhbGciOiJIUzI1NiJ9 end`;
  let failures = 0;
  for (const chunks of chunkings(Buffer.from(input))) {
    const { out, error } = await run(swapper(), chunks);
    if (error || out.toString() !== input) failures++;
  }
  t.equal(failures, 0);
});

t.test('an empty body passes, and a body without needles is unchanged', async (t) => {
  const empty = await run(swapper(), []);
  t.equal(empty.error, null);
  t.equal(empty.out.length, 0);
  const big = Buffer.alloc(256 * 1024, 'x');
  const plain = await run(swapper(), [big.subarray(0, 100_000), big.subarray(100_000)]);
  t.ok(plain.out.equals(big));
});

t.test('the violation carries a stable code and names no value', async (t) => {
  const { error } = await run(swapper(), [Buffer.from(`leak ${FAKE.other} here`)]);
  t.ok(error instanceof SecretViolation);
  t.equal((error as SecretViolation).code, 'SLUICE_SECRET_VIOLATION');
  t.notOk(error!.message.includes(FAKE.other));
  t.match(error!.message, /"other"/);
});

t.test('a body placeholder of a secret whose swap_in has no body is misplaced; over plain HTTP it is insecure', async (t) => {
  const misplaced = await run(swapper({ inScope: ['other'], granted: ['other'] }), [Buffer.from('x __sluice_secret_other__ y')]);
  t.ok(misplaced.error instanceof SecretViolation && misplaced.error.reason === 'secret_misplaced', 'misplaced');
  t.match(misplaced.error?.message ?? '', 'only in header:Authorization; its placeholder was found in body');
  t.equal(misplaced.out.length, 0, 'nothing passed on');
  const insecure = await run(swapper({ tls: false }), [Buffer.from('x __sluice_secret_gh__ y')]);
  t.ok(insecure.error instanceof SecretViolation && insecure.error.reason === 'secret_insecure', 'insecure');
  const plaintext = { ...SECRETS, gh: { ...SECRETS.gh!, allow_plaintext: true } };
  const allowed = await run(swapper({ tls: false, secrets: plaintext }), [Buffer.from('x __sluice_secret_gh__ y')]);
  t.equal(allowed.error, null, 'allow_plaintext swaps over plain HTTP');
  t.ok(allowed.out.toString() === `x ${FAKE.gh} y`);
});

const coded = (headers: Array<[string, string]>, overrides: Partial<BodySwapOptions> = {}) => swapper({ headers, ...overrides });

t.test('a coded body is decoded for the scan, and passed on unchanged', async (t) => {
  const plain = Buffer.from('{"note":"nothing to see"}'.repeat(50));
  const encodings: Array<[string, Buffer]> = [
    ['gzip', gzipSync(plain)],
    ['x-gzip', gzipSync(plain)],
    ['deflate', deflateSync(plain)],
    ['deflate', deflateRawSync(plain)],
    ['br', brotliCompressSync(plain)],
    ['gzip, br', brotliCompressSync(gzipSync(plain))],
  ];
  for (const [coding, body] of encodings) {
    const { out, error } = await run(coded([['Content-Encoding', coding]]), [body.subarray(0, 7), body.subarray(7)]);
    t.equal(error, null, coding);
    t.ok(out.equals(body), `${coding}: the bytes as sent`);
  }
});

t.test('a coded body carrying a value, a credential shape or a placeholder is refused, and nothing passes', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['a real value', `x ${FAKE.other} y`, 'secret_leak'],
    ['a credential shape', `x ghp_${'R'.repeat(36)} y`, 'secret_leak'],
    ['a placeholder it cannot swap in there', 'x __sluice_secret_gh__ y', 'secret_misplaced'],
    ['a placeholder not granted', 'x __sluice_secret_other__ y', 'secret_not_granted'],
  ];
  for (const [name, text, reason] of cases) {
    for (const [coding, body] of [
      ['gzip', gzipSync(text)],
      ['br', brotliCompressSync(text)],
      ['deflate', deflateSync(text)],
      ['gzip, gzip', gzipSync(gzipSync(text))],
    ] as const) {
      const headers: Array<[string, string]> = coding.includes(',')
        ? [
            ['Content-Encoding', 'gzip'],
            ['Content-Encoding', 'gzip'],
          ]
        : [['Content-Encoding', coding]];
      const { out, error } = await run(coded(headers), [body]);
      t.ok(error instanceof SecretViolation && error.reason === reason, `${name} in ${coding}`);
      t.equal(out.length, 0, `${name} in ${coding}: nothing passed on`);
      t.notOk(error?.message.includes(FAKE.other), 'no value in the message');
    }
  }
});

t.test('a coded body that does not decode, or decodes past the limit, is refused', async (t) => {
  const corrupt = await run(coded([['Content-Encoding', 'gzip']]), [Buffer.from('not gzip at all')]);
  t.ok(corrupt.error instanceof SecretViolation && corrupt.error.reason === 'bad_request', 'corrupt');
  const truncated = gzipSync('x'.repeat(1000)).subarray(0, 20);
  const cut = await run(coded([['Content-Encoding', 'gzip']]), [truncated]);
  t.ok(cut.error instanceof SecretViolation && cut.error.reason === 'bad_request', 'truncated');
  const bomb = gzipSync(Buffer.alloc(200_000, 'a'));
  const large = await run(coded([['Content-Encoding', 'gzip']], { maxDecodedBytes: 100_000 }), [bomb]);
  t.ok(large.error instanceof SecretViolation && large.error.reason === 'request_too_large', 'decoded past the limit');
  t.equal(large.out.length, 0);
  const inner = gzipSync(gzipSync(Buffer.alloc(200_000, 'a')));
  const layered = await run(coded([['Content-Encoding', 'gzip, gzip']], { maxDecodedBytes: 100_000 }), [inner]);
  t.ok(layered.error instanceof SecretViolation && layered.error.reason === 'request_too_large', 'every layer counts');
  const unknown = await run(coded([['Content-Encoding', 'zstd']]), [Buffer.from('x')]);
  t.ok(unknown.error instanceof SecretViolation && unknown.error.reason === 'bad_request', 'an unknown coding');
});
