import fc from '../helpers/fc.js';
import { setImmediate as tick } from 'node:timers/promises';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { encodedForms, textForms, valueForms } from '../../src/secrets/forms.js';
import { createDecodingScrubber, createScrubber, scrubHeaders, scrubText, type ScrubEntry } from '../../src/secrets/scrub.js';
import { chunkings, FAKE, run } from './fixtures.js';

const VALUES: ScrubEntry[] = [
  { value: FAKE.github, placeholder: '__sluice_secret_github__' },
  { value: FAKE.custom, placeholder: 'CUSTOM-PLACEHOLDER-1' },
];
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const noValue = (text: string): boolean => !text.includes(FAKE.github) && !text.includes(FAKE.custom);

t.test('scrubText replaces every form of a value', async (t) => {
  const forms: Array<[string, string]> = [
    ['raw', `error: token ${FAKE.github} rejected`],
    ['percent-encoded', `GET /?k=${encodeURIComponent(FAKE.custom)}`],
    ['percent-encoded, lower-case hex', `k=${encodeURIComponent(FAKE.custom).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())}`],
    ['json-escaped', JSON.stringify({ echo: 'x"' + FAKE.custom })],
    ['base64', `Basic ${b64(FAKE.github)}`],
    ['base64url', Buffer.from(FAKE.custom).toString('base64url')],
    ['base64 inside a blob', b64(`user:${FAKE.github}`)],
  ];
  for (const [name, text] of forms) {
    const scrubbed = scrubText(text, VALUES);
    t.ok(scrubbed !== text, `${name}: changed`);
    t.ok(noValue(scrubbed), `${name}: no value left`);
    t.notOk(
      valueForms(FAKE.github)
        .concat(valueForms(FAKE.custom))
        .some((form) => scrubbed.includes(form)),
      `${name}: no form left`,
    );
  }
  t.ok(scrubText(`a ${FAKE.github} b`, VALUES) === 'a __sluice_secret_github__ b', 'the placeholder takes its place');
  t.equal(scrubText('nothing to see', VALUES), 'nothing to see');
  t.equal(scrubText('x', []), 'x');
});

t.test('scrubHeaders replaces values in header values and names', async (t) => {
  const headers: Array<[string, string]> = [
    ['X-Echo', `Bearer ${FAKE.github}`],
    ['Set-Cookie', `t=${encodeURIComponent(FAKE.custom)}; Path=/`],
    ['X-B64', b64(FAKE.custom)],
    [`X-${FAKE.github}`, 'v'],
    ['Content-Type', 'application/json'],
  ];
  const scrubbed = scrubHeaders(headers, VALUES);
  t.equal(scrubbed.length, headers.length);
  t.ok(
    scrubbed.every(([name, value]) => noValue(name) && noValue(value)),
    'no value anywhere',
  );
  t.ok(scrubbed[0]![1] === 'Bearer __sluice_secret_github__');
  t.ok(scrubbed[1]![1] === 't=CUSTOM-PLACEHOLDER-1; Path=/');
  t.ok(scrubbed[3]![0] === 'X-__sluice_secret_github__');
  t.same(scrubbed[4], ['Content-Type', 'application/json']);
});

t.test('createScrubber at every split and byte by byte, with near misses', async (t) => {
  const near = FAKE.github.slice(0, -1);
  const input = `{"t":"${FAKE.github}","near":"${near}","c":"${near}${FAKE.github}","e":"${encodeURIComponent(FAKE.custom)}","b":"${b64(FAKE.github)}"}`;
  const expected = `{"t":"__sluice_secret_github__","near":"${near}","c":"${near}__sluice_secret_github__","e":"CUSTOM-PLACEHOLDER-1","b":"__sluice_secret_github__"}`;
  let failures = 0;
  for (const chunks of chunkings(Buffer.from(input))) {
    const { out, error } = await run(createScrubber(VALUES), chunks);
    if (error || out.toString() !== expected) failures++;
  }
  t.equal(failures, 0, 'every chunking gives the same output');
});

t.test('createScrubber holds back less than the longest text form plus the longest encoded form', async (t) => {
  const longestOf = (forms: (value: string) => readonly string[]): number =>
    Math.max(...VALUES.flatMap((v) => forms(v.value).map((f) => Buffer.byteLength(f))));
  const longest = longestOf(textForms) + longestOf(encodedForms) - 1;
  const scrubber = createScrubber(VALUES);
  const out: Buffer[] = [];
  scrubber.on('data', (chunk: Buffer) => out.push(chunk));
  scrubber.write(Buffer.alloc(10_000, 'z'));
  await tick();
  t.equal(Buffer.concat(out).length, 10_000 - (longest - 1));
  scrubber.end();
});

t.test('fuzz: the scrubber equals replaceAll for any input and any chunking', async (t) => {
  const value = 'SECRET-VALUE-xyz';
  const placeholder = '__sluice_secret_fuzz__';
  const fragment = fc.oneof(fc.constantFrom(value, 'SECRET', 'SECRET-VALUE-', 'VALUE-xyz', 'S', '-', 'xyz'), fc.string({ maxLength: 8 }));
  await fc.assert(
    fc.asyncProperty(fc.array(fragment, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 8 }), async (fragments, cuts) => {
      const input = Buffer.from(fragments.join(''), 'utf8');
      const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
      const chunks = [0, ...points].map((start, i) => input.subarray(start, [...points, input.length][i]));
      const { out, error } = await run(createScrubber([{ value, placeholder }]), chunks);
      return error === null && out.toString('utf8') === input.toString('utf8').replaceAll(value, placeholder);
    }),
    { numRuns: 300 },
  );
  t.pass('property holds');
});

t.test('createDecodingScrubber decodes gzip, deflate (zlib and raw), br and lists, then scrubs', async (t) => {
  const body = Buffer.from(`{"echo":"${FAKE.github}","pad":"${'p'.repeat(5000)}","again":"${FAKE.github}"}`);
  const expected = body.toString().replaceAll(FAKE.github, '__sluice_secret_github__');
  const encoded: Array<[string, Buffer]> = [
    ['gzip', gzipSync(body)],
    ['x-gzip', gzipSync(body)],
    ['deflate', deflateSync(body)],
    ['deflate', deflateRawSync(body)],
    ['br', brotliCompressSync(body)],
    ['gzip, br', brotliCompressSync(gzipSync(body))],
    ['identity', body],
    ['', body],
  ];
  for (const [coding, bytes] of encoded) {
    const small = Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) => bytes.subarray(i * 7, i * 7 + 7));
    for (const chunks of [[bytes], small]) {
      const scrubber = createDecodingScrubber(coding, VALUES);
      t.ok(scrubber, `${coding || 'none'} is decodable`);
      const { out, error } = await run(scrubber!, chunks);
      t.equal(error, null, `${coding || 'none'}: no error`);
      t.ok(out.toString() === expected, `${coding || 'none'} in ${chunks.length} chunks: plain and scrubbed`);
    }
  }
});

t.test('createDecodingScrubber refuses codings it cannot decode', async (t) => {
  for (const coding of ['zstd', 'compress', 'gzip, snappy', 'br;q=1']) t.equal(createDecodingScrubber(coding, VALUES), null, coding);
});

t.test('a corrupt compressed body fails the stream', async (t) => {
  const { error } = await run(createDecodingScrubber('gzip', VALUES)!, [Buffer.from('this is not gzip at all')]);
  t.ok(error, 'an error');
});

t.test('a large compressed body comes through whole', async (t) => {
  const line = `row ${FAKE.github} ${'q'.repeat(100)}\n`;
  const body = Buffer.from(line.repeat(20_000));
  const { out, error } = await run(createDecodingScrubber('gzip', VALUES)!, [gzipSync(body)]);
  t.equal(error, null);
  t.equal(out.length, body.length - 20_000 * (FAKE.github.length - '__sluice_secret_github__'.length));
  t.ok(noValue(out.toString()));
});
