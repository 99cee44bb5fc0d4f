// Issue 14, "must show": for random values (printable, control characters, any code point), every
// form the README says is covered, every content coding sluice decodes and random chunk boundaries,
// no real value reaches the client, in a body, a header or status line, or WebSocket frames
// (fragmented, compressed, split anywhere on the wire). The scrubber is driven directly; the e2e
// in test/e2e/secrets-scrub.test.ts drives the same generators through sluice.
import fc from '../helpers/fc.js';
import { constants, deflateRawSync } from 'node:zlib';
import t from 'tap';
import { createDecodingScrubber, scrubPlan, scrubText } from '../../src/secrets/scrub.js';
import { WsFrameScrubber } from '../../src/secrets/ws-scrub.js';
import { CODINGS, contentEncodings, cutAt, embedded, encoded, EOLS, FORMS, WIDTHS, type Embedding } from '../helpers/embed.js';
import { leakIn, wsMessages } from '../helpers/leaks.js';
import { run } from './fixtures.js';

const PLACEHOLDER = '__sluice_secret_prop__';

/** Secret-like values: long enough, and not a run of one character (real values are high-entropy). */
const value = fc
  .oneof(
    fc.string({ unit: 'grapheme-ascii', minLength: 12, maxLength: 48 }),
    fc.string({ unit: 'binary-ascii', minLength: 12, maxLength: 40 }),
    fc.string({ unit: 'binary', minLength: 12, maxLength: 32 }),
  )
  .filter((v) => new Set(v).size >= 6);

const embedding: fc.Arbitrary<Embedding> = fc.record({
  form: fc.constantFrom(...FORMS),
  lead: fc.nat({ max: 80 }),
  width: fc.constantFrom(...WIDTHS),
  eol: fc.constantFrom(...EOLS),
});

/** Printable text around the value (the value itself may be anything). */
const context = fc.string({ unit: 'grapheme-ascii', maxLength: 40 });

const cuts = fc.array(fc.nat(), { maxLength: 16 });

function body(v: string, parts: ReadonlyArray<{ before: string; e: Embedding }>, after: string): Buffer {
  return Buffer.from(parts.map(({ before, e }) => `${before}${embedded(v, e)}`).join('') + after, 'utf8');
}

t.test('bodies: every form, every coding, any chunking: no value comes out', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      value,
      fc.array(fc.record({ before: context, e: embedding }), { minLength: 1, maxLength: 3 }),
      context,
      fc.constantFrom(...CODINGS),
      cuts,
      async (v, parts, after, coding, points) => {
        const plain = body(v, parts, after);
        const coded = encoded(plain, coding);
        const scrubber = createDecodingScrubber(contentEncodings(coded.headers), [{ value: v, placeholder: PLACEHOLDER }]);
        if (!scrubber) return false;
        const { out, error } = await run(scrubber, cutAt(coded.body, points));
        // A body that happens to start like gzip data is held and checked: refusing it is no leak;
        // so is raw deflate whose first bytes read as a zlib header (sluice cannot tell them apart).
        const gzipLike = plain[0] === 0x1f && plain[1] === 0x8b;
        const zlibLike = coding === 'deflate-raw' && (coded.body[0]! & 0x0f) === 8 && (coded.body[0]! * 256 + coded.body[1]!) % 31 === 0;
        if (error !== null && !gzipLike && !zlibLike) return false;
        return leakIn(out, [v]) === null;
      },
    ),
    { numRuns: 400 },
  );
  t.pass('no value in any output');
});

t.test('the scrubbed output is the same whatever the chunking (wrapped lines joined across chunks)', async (t) => {
  const noise = fc.array(fc.constantFrom('\n', '\r\n', '\\n', '\\r\\n', '\\', '\r', 'A'.repeat(59), 'B'.repeat(60), 'xyz', ' '), {
    maxLength: 12,
  });
  await fc.assert(
    fc.asyncProperty(
      value,
      fc.array(fc.record({ before: noise, e: embedding }), { minLength: 1, maxLength: 3 }),
      cuts,
      async (v, parts, points) => {
        const plain = body(
          v,
          parts.map((p) => ({ before: p.before.join(''), e: p.e })),
          '',
        );
        if (plain[0] === 0x1f && plain[1] === 0x8b) return true;
        const whole = await run(createDecodingScrubber(null, [{ value: v, placeholder: PLACEHOLDER }])!, [plain]);
        const pieces = await run(createDecodingScrubber(null, [{ value: v, placeholder: PLACEHOLDER }])!, cutAt(plain, points));
        const bytes = await run(createDecodingScrubber(null, [{ value: v, placeholder: PLACEHOLDER }])!, [
          ...Array.from(plain.subarray(0, 400), (b): Buffer => Buffer.from([b])),
          plain.subarray(400),
        ]);
        return whole.out.equals(pieces.out) && whole.out.equals(bytes.out) && leakIn(whole.out, [v]) === null;
      },
    ),
    { numRuns: 300 },
  );
  t.pass('one output for every chunking');
});

t.test('every form and coding at least once, with a fixed value, byte by byte', async (t) => {
  const v = 'fixed-v4lue/with+"quotes"&<tags>\u00e9\u{1F600}';
  let checked = 0;
  for (const form of FORMS) {
    for (const coding of CODINGS) {
      for (const eol of EOLS) {
        const plain = body(v, [{ before: 'pre: ', e: { form, lead: 7, width: 60, eol } }], ' :post');
        const coded = encoded(plain, coding);
        const chunks = coding === 'identity' ? Array.from(coded.body, (b) => Buffer.from([b])) : cutAt(coded.body, [3, 17, 40, 41]);
        const { out, error } = await run(
          createDecodingScrubber(contentEncodings(coded.headers), [{ value: v, placeholder: PLACEHOLDER }])!,
          chunks,
        );
        t.equal(error, null, `${form} / ${coding}: no error`);
        t.equal(leakIn(out, [v]), null, `${form} / ${coding} / ${JSON.stringify(eol)}: no value`);
        if (!out.includes(PLACEHOLDER)) t.fail(`${form} / ${coding}: the placeholder stands in for the value`);
        checked++;
      }
    }
  }
  t.equal(checked, FORMS.length * CODINGS.length * EOLS.length);
});

t.test('heads: a header value or status line in any single-line form: no value comes out', async (t) => {
  const printable = fc.string({ unit: 'grapheme-ascii', minLength: 12, maxLength: 48 }).filter((v) => new Set(v).size >= 6);
  const singleLine = embedding.filter((e) => !e.form.endsWith('wrapped'));
  fc.assert(
    fc.property(printable, singleLine, context, context, (v, e, before, after) => {
      const text = `${before}${embedded(v, e)}${after}`;
      return leakIn(scrubText(text, [{ value: v, placeholder: PLACEHOLDER }]), [v]) === null;
    }),
    { numRuns: 400 },
  );
  t.pass('no value in any head');
});

/** An unmasked server frame. */
function frame(fin: boolean, opcode: number, payload: Buffer, rsv1 = false): Buffer {
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const n = payload.length;
  const head =
    n < 126
      ? Buffer.from([b0, n])
      : n < 65536
        ? Buffer.from([b0, 126, n >> 8, n & 0xff])
        : Buffer.from([b0, 127, 0, 0, 0, 0, 0, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([head, payload]);
}

t.test('WebSocket: messages in any form, fragmented anywhere, compressed or not, split anywhere on the wire', async (t) => {
  fc.assert(
    fc.property(
      value,
      fc.array(fc.record({ before: context, e: embedding, binary: fc.boolean(), compress: fc.boolean(), fragments: cuts, ping: fc.boolean() }), {
        minLength: 1,
        maxLength: 4,
      }),
      cuts,
      (v, messages, wire) => {
        const plan = scrubPlan([{ value: v, placeholder: PLACEHOLDER }]);
        const deflate = messages.some((m) => m.compress);
        const frames: Buffer[] = [];
        let window = Buffer.alloc(0);
        for (const m of messages) {
          let payload = body(v, [{ before: m.before, e: m.e }], '!');
          if (m.compress) {
            const plain = payload;
            const out = deflateRawSync(plain, { finishFlush: constants.Z_SYNC_FLUSH, ...(window.length > 0 ? { dictionary: window } : {}) });
            payload = out.subarray(0, out.length - 4);
            window = Buffer.concat([window, plain]).subarray(-32768);
          }
          const pieces = cutAt(payload, m.fragments);
          for (const [i, piece] of pieces.entries()) {
            frames.push(frame(i === pieces.length - 1, i === 0 ? (m.binary ? 0x2 : 0x1) : 0x0, piece, m.compress && i === 0));
            if (m.ping && i === 0) frames.push(frame(true, 0x9, Buffer.from(`ping ${v}`).subarray(0, 125)));
          }
        }
        frames.push(frame(true, 0x8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from(`bye ${v}`).subarray(0, 100)])));
        const scrubber = new WsFrameScrubber(plan, { deflate: deflate ? { noContextTakeover: false } : null, maxMessageBytes: 1 << 20 });
        const out = Buffer.concat(cutAt(Buffer.concat(frames), wire).map((piece) => scrubber.push(piece)));
        const read = wsMessages(out);
        // every data message and every control frame came through
        if (read.length !== messages.length + messages.filter((m) => m.ping).length + 1) return false;
        // Judged per message and control frame, as a client reads them: the wire as one string is no
        // client's view, and a frame's first byte can complete a character cut at the end of the frame
        // before it (see the fixed case below).
        return read.every((m) => leakIn(m, [v]) === null);
      },
    ),
    { numRuns: 300 },
  );
  t.pass('no value in any frame');
});

t.test('WebSocket: a ping cut inside a character carries less than the value, and the next frame stays scrubbed', async (t) => {
  // Counterexample of the property above (seed -287429646): a 121-byte value of 4-byte characters in
  // a ping cut at 125 bytes leaves its last character one byte short; on the raw wire the next
  // frame's first byte (0x81, a final text frame) completes it. Each frame as a client reads it holds
  // no value, and the data messages around the ping are scrubbed.
  const v = '\u{10000}'.repeat(8) + '\u0800\u0800' + '\u{10000}'.repeat(17) + '\u{10001}\u{10002}\u{10003}\u82c1';
  const plan = scrubPlan([{ value: v, placeholder: PLACEHOLDER }]);
  const text = Buffer.from(`${embedded(v, { form: 'raw', lead: 0, width: 60, eol: '\\n' })}!`, 'utf8');
  const ping = Buffer.from(`ping ${v}`).subarray(0, 125);
  const wire = Buffer.concat([frame(true, 0x1, text), frame(true, 0x9, ping), frame(true, 0x1, text)]);
  const out = new WsFrameScrubber(plan, { deflate: null, maxMessageBytes: 1 << 20 }).push(wire);
  const read = wsMessages(out);
  t.equal(read.length, 3, 'two messages and the ping');
  t.same(
    read.map((m) => leakIn(m, [v])),
    [null, null, null],
    'no frame holds the value',
  );
  t.equal(read[0]!.toString('utf8'), `${PLACEHOLDER}!`);
  t.equal(read[2]!.toString('utf8'), `${PLACEHOLDER}!`);
});
