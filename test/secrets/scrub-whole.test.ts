// The whole-body path of the response scrub (a body of known length up to WHOLE_BODY_MAX, no
// coding): a combined prefilter may clear a body before the two stages run. For random values,
// every covered form, wraps and noise around them, the whole-body output must be the streamed
// output (pieces pushed one by one skip the prefilter), and no value may come out; a body with no
// form at all must come back as the very same bytes.
import fc from '../helpers/fc.js';
import t from 'tap';
import { createResponseScrub, scrubPlan, type ScrubSink } from '../../src/secrets/scrub.js';
import { Scrubber, surelyClean } from '../../src/secrets/scanner.js';
import { cutAt, embedded, EOLS, FORMS, WIDTHS, type Embedding } from '../helpers/embed.js';
import { leakIn } from '../helpers/leaks.js';

const PLACEHOLDER = '__sluice_secret_whole__';

const value = fc
  .oneof(fc.string({ unit: 'grapheme-ascii', minLength: 12, maxLength: 48 }), fc.string({ unit: 'binary', minLength: 12, maxLength: 32 }))
  .filter((v) => new Set(v).size >= 6);

const embedding: fc.Arbitrary<Embedding> = fc.record({
  form: fc.constantFrom(...FORMS),
  lead: fc.nat({ max: 80 }),
  width: fc.constantFrom(...WIDTHS),
  eol: fc.constantFrom(...EOLS),
});

const noise = fc.array(fc.constantFrom('\n', '\r\n', '\\n', '\\', '\r', 'A'.repeat(59), 'B'.repeat(60), 'xyz', ' ', '<p>'), { maxLength: 12 });

/** The body through a ResponseScrub that knows its length (the whole-body path), as the client gets it. */
function throughWhole(body: Buffer, v: string, cuts: number[]): { out: Buffer; length: number | null; failed: boolean } {
  const chunks: Buffer[] = [];
  let length: number | null = null;
  let failed = false;
  const sink: ScrubSink = {
    head: (n) => (length = n),
    data: (chunk) => (chunks.push(chunk), true),
    end: () => undefined,
    fail: () => (failed = true),
  };
  const scrub = createResponseScrub(null, [{ value: v, placeholder: PLACEHOLDER }], sink, {
    maxDecodedBytes: 1 << 20,
    contentLength: body.length,
  })!;
  for (const piece of cutAt(body, cuts)) scrub.write(piece);
  scrub.end();
  return { out: Buffer.concat(chunks), length, failed };
}

function streamed(body: Buffer, v: string): Buffer {
  const scrubber = new Scrubber(scrubPlan([{ value: v, placeholder: PLACEHOLDER }]));
  const out = [...Array.from(body, (b) => scrubber.push(Buffer.from([b]))), scrubber.end()];
  return Buffer.concat(out);
}

t.test('a whole body comes out as the stream would, with no value in it', (t) => {
  fc.assert(
    fc.property(
      value,
      fc.array(fc.record({ before: noise, e: embedding, present: fc.boolean() }), { minLength: 1, maxLength: 3 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      (v, parts, cuts) => {
        const body = Buffer.from(parts.map((p) => p.before.join('') + (p.present ? embedded(v, p.e) : '')).join(''), 'utf8');
        if (body[0] === 0x1f && body[1] === 0x8b) return true;
        const whole = throughWhole(body, v, cuts);
        return !whole.failed && whole.length === whole.out.length && whole.out.equals(streamed(body, v)) && leakIn(whole.out, [v]) === null;
      },
    ),
    { numRuns: 400 },
  );
  t.pass('same output, no value');
  t.end();
});

t.test('the prefilter clears only what carries no form, and then the bytes are kept as they are', (t) => {
  const v = 'pre-filter/v4lue+"x"&<y>\u00e9';
  const plan = scrubPlan([{ value: v, placeholder: PLACEHOLDER }]);
  const clean = Buffer.from('<html>\nnothing secret here\r\n</html>\n', 'utf8');
  t.ok(surelyClean(clean, plan), 'a body with no form is cleared');
  t.equal(new Scrubber(plan).whole(clean), clean, 'and comes back as the same buffer');
  for (const form of FORMS) {
    const carrying = Buffer.from(`<p>${embedded(v, { form, lead: 3, width: 76, eol: '\n' })}</p>`, 'utf8');
    t.notOk(surelyClean(carrying, plan), `a body with the ${form} form is not cleared`);
    t.equal(leakIn(new Scrubber(plan).whole(carrying), [v]), null, `and the ${form} form is scrubbed`);
  }
  t.end();
});
