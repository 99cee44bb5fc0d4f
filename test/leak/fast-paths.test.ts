// The detector's fast paths (issue 22, performance) against the slow paths they stand in for: the
// run survey against the run regexes, the JS run decoders against Buffer.from, the seam check
// against joining every pair, and the stream's pieces against one scan of the whole body. Each
// fast path must find at least what the slow one does; these properties and edge rows say so.
import { isUtf8 } from 'node:buffer';
import { isDeepStrictEqual } from 'node:util';
import fc from '../helpers/fc.js';
import t from 'tap';
import {
  CONTROL,
  DecodeBudget,
  decodeBase64Range,
  decodeHexRange,
  decodedText,
  detectLeak,
  hasControlByte,
  validUtf8,
  joinedNeighbours,
  keptText,
  surveyRuns,
  unwrap,
} from '../../src/leak/detect.js';
import { C_B64, C_HEX, C_SEP, C_VALUE, CLASS, freshSurvey, hexOnlyRun } from '../../src/leak/runs.js';
import { defaultShapes, NEEDS, ShapeSet } from '../../src/leak/shapes.js';
import { LeakScan, PIECE } from '../../src/leak/stream.js';
import { SecretViolation } from '../../src/secrets/violation.js';
import { CREDENTIALS } from './fixtures.js';
import { bareSurvey, type BareSurvey } from './survey.js';

const detect = (text: string) => detectLeak(text, { budget: new DecodeBudget(16 * 1024 * 1024) });
const GH = 'ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A';
const AWS = 'AKIAQ3EXAMPLE7XYZ2WV';

// the regexes the survey replaces (src/leak/detect.ts keeps them for the cases it hands back)
const BASE64_RUN = /[A-Za-z0-9+/_-]{16,}/g;
const HEX_RUN = /(?<![0-9a-fA-F])(?:[0-9a-fA-F]{16,}|[0-9a-fA-F]{2}(?:([-:])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){6,})(?![0-9a-fA-F])/g;
const HEX_ONLY = /^[0-9a-fA-F]+$/;

const ranges = (text: string, regex: RegExp): number[] => [...text.matchAll(regex)].flatMap((m) => [m.index, m.index + m[0].length]);

/** texts made of what runs are made of: base64 and hex characters, separators, breaks, quotes */
const runText = fc
  .array(
    fc.oneof(
      fc.constantFrom('a', 'F', '0', '9', 'z', 'Q', '+', '/', '_', '-', ':', ' ', '"', '=', '%', 'é'),
      fc.constantFrom('0123456789abcdef', 'DEADBEEFCAFE0123', 'aa:bb:cc:dd:ee:ff:00:11', '0A-1B-2C-3D-4E-5F-6A-7B', 'QUJDREVGR0hJSktMTU5PUFFS'),
    ),
    { maxLength: 120 },
  )
  .map((parts) => parts.join(''));

t.test('property: the survey finds the runs the regexes find', async (t) => {
  fc.assert(
    fc.property(runText, (text) => {
      const survey = bareSurvey(surveyRuns(text));
      const hexOnly = [...text.matchAll(BASE64_RUN)].map((m) =>
        HEX_ONLY.test(m[0]) && (m[0] === m[0].toLowerCase() || m[0] === m[0].toUpperCase()) ? 1 : 0,
      );
      const hex = [...text.matchAll(HEX_RUN)];
      const base64 = survey.base64.filter((_, n) => n % 3 !== 0);
      const flags = survey.base64.filter((_, n) => n % 3 === 0);
      return (
        isDeepStrictEqual(base64, ranges(text, BASE64_RUN)) &&
        isDeepStrictEqual(
          flags.map((f) => (hexOnlyRun(f) ? 1 : 0)),
          hexOnly,
        ) &&
        // a separated match makes the survey hand the text back to the regex; otherwise the runs agree
        (survey.separatedHex || !hex.some((m) => m[1] !== undefined)) &&
        (survey.separatedHex || isDeepStrictEqual(survey.hex, ranges(text, HEX_RUN)))
      );
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 texts');
});

/** The run survey as the branching run machine computed it (before the arithmetic one): the oracle it must equal. */
function surveyByBranches(text: string): BareSurvey {
  const survey: BareSurvey = { base64: [], hex: [], separatedHex: false, quoted: [] };
  const close = (start: number, end: number, flags: number): void => {
    survey.base64.push(flags, start, end);
  };
  let open = -1;
  let b64Start = -1;
  let b64Flags = 0;
  let hexStart = -1;
  let group = 0;
  let chain = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const cls = code < 128 ? CLASS[code]! : 0;
    if ((cls & C_VALUE) === 0) {
      if (code === 0x22) {
        if (open >= 0 && i - open >= 4 && i - open <= 256) {
          // a value, not a key (a colon after it, past white space): with no state (withoutStates)
          if (!/^\s*:/.test(text.slice(i + 1))) survey.quoted.push(open, i, -1);
          open = -1;
        } else open = i + 1;
      } else open = -1;
    }
    if ((cls & C_B64) !== 0) {
      if (b64Start < 0) {
        b64Start = i;
        b64Flags = 0;
      }
      b64Flags |= cls;
    } else if (b64Start >= 0) {
      if (i - b64Start >= 16) close(b64Start, i, b64Flags);
      b64Start = -1;
    }
    if ((cls & C_HEX) !== 0) {
      if (hexStart < 0) hexStart = i;
      group++;
    } else {
      if (hexStart >= 0 && i - hexStart >= 16) survey.hex.push(hexStart, i);
      hexStart = -1;
      if ((cls & C_SEP) !== 0 && group === 2) {
        if (++chain >= 7) survey.separatedHex = true;
      } else chain = 0;
      group = 0;
    }
  }
  if (b64Start >= 0 && text.length - b64Start >= 16) close(b64Start, text.length, b64Flags);
  if (hexStart >= 0 && text.length - hexStart >= 16) survey.hex.push(hexStart, text.length);
  return survey;
}

/** A survey as the oracle computes it: bare, and its values' states left out (checked against the scan's states apart). */
function withoutStates(survey: BareSurvey): BareSurvey {
  return { ...survey, quoted: survey.quoted.map((n, i) => (i % 3 === 2 ? -1 : n)) };
}

/** Whether each value's state in a survey is the automaton's state after its last character. */
function statesAgree(survey: BareSurvey, states: Uint32Array): boolean {
  for (let v = 0; v < survey.quoted.length; v += 3) if (survey.quoted[v + 2] !== states[survey.quoted[v + 1]! - 1]) return false;
  return true;
}

/** texts of every run's edges: runs of 15, 16 and 17, hex pairs 6, 7 and 8 in a row, quotes around values of 3 to 257 */
const edgeText = fc
  .array(
    fc.oneof(
      runText,
      fc.constantFrom(
        'a'.repeat(15),
        'b'.repeat(16),
        'C'.repeat(17),
        'g'.repeat(16),
        'aB'.repeat(8),
        '0/'.repeat(8),
        'ab:'.repeat(7),
        'ab:'.repeat(8),
        'ab-'.repeat(6) + 'ab',
        'ab-'.repeat(7) + 'ab',
        'abc:'.repeat(8),
        `"${'v'.repeat(3)}"`,
        `"${'v'.repeat(4)}"`,
        `"${'v'.repeat(256)}"`,
        `"${'v'.repeat(257)}"`,
        '"a.b=c~d"',
        '""',
        '"',
        '\\u0041',
        'ｇｈｐ',
        '\u{1f600}',
      ),
      fc.string({ unit: 'binary', maxLength: 8 }),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

t.test('property: the arithmetic run machine surveys as the branching one', async (t) => {
  const shapes = defaultShapes();
  fc.assert(
    fc.property(edgeText, (text) => {
      const oracle = surveyByBranches(text);
      // the same survey alone and fused with the keyword scan, whose hits and states it must leave as they were
      const fused = freshSurvey();
      const hits: number[] = [];
      const plainHits: number[] = [];
      const states = new Uint32Array(text.length);
      const plainStates = new Uint32Array(text.length);
      shapes.keywords.scan(text, (k, start) => hits.push(k, start), states, false, fused);
      shapes.keywords.scan(text, (k, start) => plainHits.push(k, start), plainStates, false);
      return (
        isDeepStrictEqual(withoutStates(bareSurvey(surveyRuns(text))), oracle) &&
        isDeepStrictEqual(withoutStates(bareSurvey(fused)), oracle) &&
        statesAgree(bareSurvey(fused), plainStates) &&
        isDeepStrictEqual(hits, plainHits) &&
        isDeepStrictEqual(states, plainStates)
      );
    }),
    { numRuns: 5000 },
  );
  t.pass('5000 texts');
});

t.test('the arithmetic run machine on run edges, one row each', async (t) => {
  for (const text of [
    '',
    'a'.repeat(15),
    'a'.repeat(16),
    `${'a'.repeat(16)} `,
    `x${'A'.repeat(16)}"`,
    'ab:'.repeat(6) + 'ab',
    'ab:'.repeat(7) + 'ab',
    'ab:'.repeat(7),
    'ab:cd-'.repeat(4),
    `"${'v'.repeat(4)}"`,
    `"${'v'.repeat(256)}"`,
    `"${'v'.repeat(257)}"`,
    `"ab"cdef"`,
    `${'0'.repeat(20)}${'g'.repeat(20)}`,
    `${'f'.repeat(40)}é${'F'.repeat(17)}`,
  ])
    t.same(
      withoutStates(bareSurvey(surveyRuns(text))),
      surveyByBranches(text),
      JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text),
    );
});

t.test('property: the run decoders decode as Buffer.from does', async (t) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-';
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...alphabet), { minLength: 0, maxLength: 200 }), fc.uint8Array({ maxLength: 100 }), (chars, bytes) => {
      const run = chars.join('');
      const even = run.length % 4 === 1 ? run.slice(0, -1) : run;
      const hex = Buffer.from(bytes).toString('hex');
      return (
        decodeBase64Range(`x${even}y`, 1, 1 + even.length).equals(Buffer.from(even, 'base64')) &&
        [hex, hex.toUpperCase()].every((form) => decodeHexRange(form, 0, form.length).equals(Buffer.from(bytes)))
      );
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 runs');
});

t.test('property: whenever two joined values match, the seam check keeps the join', async (t) => {
  const shapes = defaultShapes();
  const joins = shapes.forJoins();
  for (const [name, credential] of Object.entries(CREDENTIALS)) {
    fc.assert(
      fc.property(credential, fc.nat(), fc.constantFrom('json', 'form'), fc.boolean(), (value, cut, surface, noise) => {
        const at = 1 + (cut % (value.length - 1));
        const [left, right] = [value.slice(0, at), value.slice(at)];
        const extra = noise ? ['AAAAbbbbCCCC', 'zzzz9999'] : [];
        const text =
          surface === 'json'
            ? JSON.stringify({ x: extra[0] ?? 'q', a: left, b: right, y: extra[1] ?? 'r' })
            : `x=${extra[0] ?? 'q'}&a=${left}&b=${right}&y=${extra[1] ?? 'r'}`;
        const survey = freshSurvey();
        const seen = { joinKeyword: false, survey };
        shapes.find(text, seen);
        const full = joinedNeighbours(text);
        const fullHit = full !== null && joins.find(full) !== null;
        const seams = seen.joinKeyword ? undefined : { automaton: shapes.keywords, relevant: shapes.joinKeywords };
        // the states read off the values, and those the scan's survey gives
        const fast = [joinedNeighbours(text, seams), joinedNeighbours(text, seams, survey)];
        // the fast path may only drop a join that cannot match, and otherwise joins the same
        return fast.every((joined) => (!fullHit || joined !== null) && (joined === null || joined === full));
      }),
      { numRuns: 100 },
    );
    t.pass(name);
  }
});

/** joinedNeighbours as it was, with the regexes' exec loops (the slow path the offsets stand in for) */
function joinedByRegex(text: string): string | null {
  const JSON_PIECE = /"([A-Za-z0-9_\-.+/=~]{4,256})"(\s*:)?/g;
  const FORM_PIECE = /(?:^|[&?;\n])[^=&\s]{0,128}=([A-Za-z0-9_\-.+/~]{4,256})(?=[&\s]|$)/g;
  const lines: string[] = [];
  for (const [regex, marker] of [
    [JSON_PIECE, '"'],
    [FORM_PIECE, '='],
  ] as const) {
    if (!text.includes(marker)) continue;
    let previous: string | null = null;
    let count = 0;
    for (let m = regex.exec(text); m && count < 4096; m = regex.exec(text)) {
      if (m[2] !== undefined) continue;
      if (previous !== null) lines.push(previous + m[1]!);
      previous = m[1]!;
      count++;
    }
  }
  return lines.length === 0 ? null : lines.join('\n');
}

/** texts of what JSON and form values are made of, and what ends them: quotes, colons, white space */
const pieceText = fc
  .array(
    fc.oneof(
      fc.constantFrom('"', '"', ':', ' ', '\t', '\u00a0', '\u2028', '\ufeff', '\n', '=', '&', ',', '{', '}', 'é', '\\'),
      fc.constantFrom('ab', 'Q9', '-_', '.+', '/~', 'abcd', 'ghp_xyz0', 'AKIA', 'x'.repeat(255), 'y'.repeat(256), 'z'.repeat(257)),
      fc.constantFrom(`"${'y'.repeat(256)}"`, `"${'z'.repeat(257)}"`, '"abc"', '"abcd"', '"abcd" :', '"k": "v123"', '"a=b~c"'),
    ),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(''));

t.test('property: the values found as offsets are the values the regexes find', async (t) => {
  fc.assert(
    fc.property(pieceText, (text) => {
      const regex = /"([A-Za-z0-9_\-.+/=~]{4,256})"(\s*:)?/g;
      // the values: the matches without a key's colon
      const matches = [...text.matchAll(regex)].filter((m) => m[2] === undefined).flatMap((m) => [m.index + 1, m.index + 1 + m[1]!.length]);
      const alone = surveyRuns(text);
      const oracle = joinedByRegex(text);
      // the reading of its own, the survey's values (of another automaton, and of the seams' own),
      // and each with the seam check of the scan
      const shapes = defaultShapes();
      const survey = freshSurvey();
      const seen = { joinKeyword: false, survey };
      shapes.find(text, seen);
      const seams = seen.joinKeyword ? undefined : { automaton: shapes.keywords, relevant: shapes.joinKeywords };
      const fast = joinedNeighbours(text, seams, survey);
      const values = bareSurvey(alone).quoted.filter((_, n) => n % 3 !== 2);
      return (
        isDeepStrictEqual(values, matches) &&
        isDeepStrictEqual(
          bareSurvey(survey).quoted.filter((_, n) => n % 3 !== 2),
          matches,
        ) &&
        joinedNeighbours(text) === oracle &&
        joinedNeighbours(text, undefined, alone) === oracle &&
        joinedNeighbours(text, undefined, survey) === oracle &&
        // a seam check may drop the join (none of its keywords spans a seam), never change it
        [fast, joinedNeighbours(text, seams), joinedNeighbours(text, seams, alone)].every((joined) => joined === null || joined === oracle)
      );
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 texts');
});

t.test('property: the word-at-a-time control check agrees with CONTROL', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ min: 0x09, max: 0x7e, maxLength: 64 })),
      fc.nat(7),
      fc.constantFrom(0x00, 0x08, 0x09, 0x0d, 0x0e, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff),
      fc.nat(),
      (noise, offset, byte, at) => {
        // printable filler with one chosen byte somewhere, at any alignment
        const bytes = Buffer.alloc(offset + noise.length + 8, 0x41);
        Buffer.from(noise).copy(bytes, offset);
        bytes[offset + (at % (noise.length + 8))] = byte;
        const view = bytes.subarray(offset);
        return (
          hasControlByte(view) === CONTROL.test(view.toString('latin1')) && hasControlByte(bytes) === CONTROL.test(bytes.toString('latin1'))
        );
      },
    ),
    { numRuns: 3000 },
  );
  t.pass('3000 buffers');
});

t.test('property: the short UTF-8 check agrees with isUtf8', async (t) => {
  // lead bytes, continuation bytes and the edges of each range, as a run of random bytes decodes to
  const byte = fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff),
  );
  // sequences at the edges of each range, well-formed or one past it, and cut short
  const edges = fc
    .array(
      fc.constantFrom(
        [0x41],
        [0xc2, 0x80],
        [0xdf, 0xbf],
        [0xc0, 0x80],
        [0xc1, 0xbf],
        [0xe0, 0xa0, 0x80],
        [0xe0, 0x9f, 0xbf],
        [0xed, 0x9f, 0xbf],
        [0xed, 0xa0, 0x80],
        [0xef, 0xbf, 0xbf],
        [0xe1, 0x80],
        [0xe1, 0x7f, 0x80],
        [0xf0, 0x90, 0x80, 0x80],
        [0xf0, 0x8f, 0xbf, 0xbf],
        [0xf4, 0x8f, 0xbf, 0xbf],
        [0xf4, 0x90, 0x80, 0x80],
        [0xf3, 0xbf, 0xbf, 0xc0],
        [0xf5, 0x80, 0x80, 0x80],
        [0x80],
      ),
      { maxLength: 12 },
    )
    .map((units) => units.flat());
  // valid UTF-8 (every length of sequence), one byte of it changed or not
  const text = fc.tuple(fc.string({ unit: 'binary', maxLength: 80 }), fc.nat(), fc.option(byte)).map(([string, at, changed]) => {
    const bytes = [...Buffer.from(string, 'utf8')];
    if (changed !== null && bytes.length > 0) bytes[at % bytes.length] = changed;
    return bytes;
  });
  fc.assert(
    fc.property(fc.oneof(fc.array(byte, { maxLength: 300 }), text, edges), fc.nat(), (bytes, cut) => {
      const buffer = Buffer.from(bytes);
      const length = bytes.length === 0 ? 0 : cut % (bytes.length + 1);
      return validUtf8(buffer, length) === isUtf8(buffer.subarray(0, length));
    }),
    { numRuns: 20000 },
  );
  t.pass('20000 buffers');
});

/** keptText as it was: one loop to the end, then isUtf8 (the early ending and the short UTF-8 check stand in for it) */
function keptByLoop(bytes: Buffer): string | null {
  if (bytes.length < 8) return null;
  let control = false;
  let run = 0;
  let printable = false;
  for (const b of bytes) {
    if (b >= 0x20 && b <= 0x7e) {
      if (run > 0 || b !== 0x20) run++;
      if (run >= 10) {
        printable = true;
        break;
      }
    } else {
      run = 0;
      if (b < 0x20 ? b <= 0x08 || b >= 0x0e : b === 0x7f) control = true;
    }
  }
  if (!printable && (control || !isUtf8(bytes))) return null;
  const text = decodedText(bytes);
  return text.length >= 8 ? text : null;
}

t.test('property: keptText keeps what the full loop keeps', async (t) => {
  const piece = fc.oneof(
    fc.uint8Array({ maxLength: 12 }),
    fc.constantFrom('lorem ipsum', 'abcdefghij', ' abcdefghi', 'é', '\n', '\t').map((s) => Buffer.from(s)),
    fc.constantFrom([0x00], [0x01], [0x7f], [0x0e], [0x1f], [0xc3], [0xff]).map((b) => Buffer.from(b)),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
      const bytes = Buffer.concat(pieces);
      return keptText(bytes) === keptByLoop(bytes);
    }),
    { numRuns: 5000 },
  );
  t.pass('5000 buffers');
});

// The edges of each fast path, one row each; every one is a leak the detector must find.
const EDGES: Array<{ name: string; text: string; shape: RegExp; split?: boolean }> = [
  // (a value is 4 characters or more: the dashes make the short halves values)
  { name: 'a keyword in another case across a seam (AK|IA...)', text: `{"a":"--AK","b":"${AWS.slice(2)}"}`, shape: /aws/, split: true },
  { name: 'a keyword split after its first character', text: `{"a":"---g","b":"${GH.slice(1)}"}`, shape: /github/, split: true },
  { name: 'a keyword split before its last character', text: `a=--${GH.slice(0, 3)}&b=${GH.slice(3)}`, shape: /github/, split: true },
  {
    name: 'full-width keyword (NFKC) across a seam',
    text: '{"a":"--ｇｈ","b":"ｐ_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"}',
    shape: /github/,
    split: true,
  },
  {
    name: 'zero-width character at the seam',
    text: `{"a":"ghp_aB3dE5fG7hJ9\u200b","b":"kL1mN3pQ5rS7tU9vW1xY3z5A"}`,
    shape: /github/,
    split: true,
  },
  {
    name: 'zero-width characters inside a base64 run',
    text: `d=${Buffer.from(GH)
      .toString('base64')
      .replace(/(.{8})/g, '$1\u200b')}`,
    shape: /github/,
  },
  {
    name: 'hex with colons next to a plain hex run',
    text: `${'ab'.repeat(10)} ${Buffer.from(GH)
      .toString('hex')
      .replace(/..(?!$)/g, '$&:')}`,
    shape: /github/,
  },
  {
    name: 'base64 on wrapped lines among plain lines',
    text: `line one\n${(
      Buffer.from(`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ${GH}`)
        .toString('base64')
        .match(/.{1,64}/g) ?? []
    ).join('\n')}\nline two`,
    shape: /github/,
  },
];

for (const row of EDGES) {
  t.test(`finds: ${row.name}`, async (t) => {
    const finding = detect(row.text);
    t.ok(finding, 'found');
    t.match(finding?.shape, row.shape, 'names the shape');
    if (row.split !== undefined) t.equal(finding?.split, row.split);
  });
}

function scanStream(body: Buffer, chunk: number): string | null {
  const scan = new LeakScan({ budget: new DecodeBudget(16 * 1024 * 1024), where: 'body' });
  try {
    for (let at = 0; at < body.length; at += chunk) scan.push(body.subarray(at, at + chunk));
    scan.end();
    return null;
  } catch (error) {
    if (error instanceof SecretViolation) return error.message;
    throw error;
  }
}

t.test('a token across a piece boundary is found, whatever the chunking', async (t) => {
  for (const [what, token] of [
    ['as sent', GH],
    ['base64', Buffer.from(`key: ${GH}`).toString('base64')],
    ['hex', Buffer.from(GH).toString('hex')],
  ] as const) {
    for (const offset of [-token.length + 1, -Math.floor(token.length / 2), -1, 0, 1, 2, 3]) {
      // words and spaces up to where the token starts: the token ends up across the first piece's end
      const filler = 'lorem ipsum dolor '.repeat(Math.ceil(PIECE / 18) + 1).slice(0, PIECE + offset - 1) + ' ';
      const body = Buffer.from(`${filler}${token} tail ${'y'.repeat(100)}`);
      for (const chunk of [1000, 4096, PIECE, 65536]) t.ok(scanStream(body, chunk), `${what}, offset ${offset}, chunks of ${chunk}`);
    }
  }
});

t.test('a random binary body with a token in a printable run across a piece boundary', async (t) => {
  const noise = Buffer.alloc(PIECE * 2);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251 < 120 ? 0x80 + (i % 100) : i % 32;
  const at = PIECE - 10;
  const body = Buffer.concat([noise.subarray(0, at), Buffer.from(` ${GH} `), noise.subarray(at)]);
  t.ok(scanStream(body, 8192));
  t.equal(decodedText(noise).length, 0, 'the noise itself has no printable run');
  t.equal(scanStream(noise, 8192), null, 'and is not refused');
});

t.test('a needed literal: pinned to the regex it was read off, and no window with a match lacks it', async (t) => {
  const shapes = defaultShapes();
  const jwt = shapes.shapes.find((shape) => shape.name === 'gitleaks:jwt')!;
  // NEEDS was read off this source: a rule update must be read again (and this line changed)
  t.equal(
    jwt.regex.source,
    String.raw`\b(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9\/\\_-]{17,}\.(?:[a-zA-Z0-9\/\\_-]{10,}={0,2})?)(?:[\x60'"\s;]|\\[nr]|$)`,
  );
  t.equal(jwt.regex.flags, 'g', 'case-sensitive');
  t.same(NEEDS, { jwt: '.ey', 'twilio-api-key': 'SK' });
  t.equal(jwt.needs, '.ey');
  // the same shapes without the literal: the slow path the check stands in for
  const without = new ShapeSet(shapes.shapes.map((shape) => ({ ...shape, needs: undefined })));
  // and jwt alone (sluice's own jwt shape comes first in the full table)
  const alone = new ShapeSet([jwt]);
  const aloneWithout = new ShapeSet([{ ...jwt, needs: undefined }]);
  const header = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
  const payload = Buffer.from('{"sub":"1234567890","name":"John Doe","iat":1516239022}').toString('base64url');
  const piece = fc.oneof(
    fc.constantFrom(
      `${header}.${payload}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`,
      `${header}.${payload}.`,
      `${header}.${payload}`,
      `${header}.Ey${payload.slice(2)}.x`,
      `${header}.ey`,
      'key',
      'KEY',
      '.ey',
      '.eY',
      'ey',
      ' ',
      '"',
      '\n',
      '.',
      'abcdefghijklmnopqrstu',
    ),
    fc.string({ unit: fc.constantFrom('e', 'y', '.', 'a', 'Z', '0', '/', '_', ' '), maxLength: 30 }),
    fc.string({ maxLength: 6 }),
  );
  let found = 0;
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), fc.nat(3000), (pieces, pad) => {
      // padding moves the windows' cut ends (WINDOW_BEFORE, WINDOW_AFTER) across the pieces
      const text = 'x'.repeat(pad % 2 === 0 ? 0 : pad) + pieces.join('');
      const fast = shapes.find(text);
      const slow = without.find(text);
      if (fast?.shape.name !== slow?.shape.name) return false;
      const slowAlone = aloneWithout.find(text) !== null;
      if (slowAlone) found++;
      if ((alone.find(text) !== null) !== slowAlone) return false;
      jwt.regex.lastIndex = 0;
      const any = jwt.regex.test(text);
      jwt.regex.lastIndex = 0;
      return !any || text.includes('.ey');
    }),
    { numRuns: 3000 },
  );
  t.ok(found > 100, `3000 texts, ${found} with a jwt finding`);
});

t.test("twilio-api-key's needed literal: pinned to its regex, and no window with a match lacks it", async (t) => {
  const shapes = defaultShapes();
  const twilio = shapes.shapes.find((shape) => shape.name === 'gitleaks:twilio-api-key')!;
  t.equal(twilio.regex.source, 'SK[0-9a-fA-F]{32}');
  t.equal(twilio.regex.flags, 'g', 'case-sensitive');
  t.equal(twilio.needs, 'SK');
  const alone = new ShapeSet([twilio]);
  const aloneWithout = new ShapeSet([{ ...twilio, needs: undefined }]);
  const key = `SK${'0123456789abcdef'.repeat(2)}`;
  const piece = fc.oneof(
    fc.constantFrom(key, key.toUpperCase(), `sk${key.slice(2)}`, `Sk${key.slice(2)}`, 'task', 'risk', 'SK', 'sk', ' ', '"', '\n'),
    fc.string({ unit: fc.constantFrom('s', 'S', 'k', 'K', '0', 'a', 'F', ' '), maxLength: 40 }),
  );
  let found = 0;
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 30 }), fc.nat(3000), (pieces, pad) => {
      const text = 'x'.repeat(pad % 2 === 0 ? 0 : pad) + pieces.join('');
      const slow = aloneWithout.find(text) !== null;
      if (slow) found++;
      return (alone.find(text) !== null) === slow;
    }),
    { numRuns: 3000 },
  );
  t.ok(found > 100, `3000 texts, ${found} with a twilio finding`);
});

/** unwrap as it was: every text with a break split and joined again (the fast path hands back the text without) */
function unwrapBySplit(text: string): string {
  if (!text.includes('\n') && !text.includes('\\n')) return text;
  const lines = text.split(/\r?\n|\\r?\\n/);
  let out = lines[0]!;
  let changed = false;
  let length = out.length;
  for (let i = 1; i < lines.length; i++) {
    const previous = lines[i - 1]!;
    const joins = previous.length >= 60 && /^[A-Za-z0-9+/=_-]{60}$/.test(previous.slice(-60)) && /^[A-Za-z0-9+/_-]/.test(lines[i]!);
    if (joins) changed = true;
    length += lines[i]!.length;
    out += (joins ? '' : '\n') + lines[i]!;
  }
  return changed || length + lines.length - 1 !== text.length ? out : text;
}

t.test('property: unwrap hands back what splitting every text gives', async (t) => {
  const line = fc.oneof(
    fc.constantFrom(59, 60, 61, 64, 76).map((n) => 'QUJD'.repeat(20).slice(0, n)),
    fc.constantFrom(59, 60, 61).map((n) => `${'x'.repeat(n - 2)}==`),
    fc.constantFrom(60, 61).map((n) => `${' '.repeat(n - 60)}${'a'.repeat(59)} `),
    fc.constantFrom('', 'a', '=', ' ', '-x', '1.1 sluice', '/upload', 'application/json'),
    fc.string({ maxLength: 70 }),
  );
  const brk = fc.constantFrom('\n', '\n', '\r\n', '\\n', '\\r\\n', '\r', '\n\n');
  fc.assert(
    fc.property(fc.array(fc.tuple(line, brk), { maxLength: 8 }), line, (pairs, last) => {
      const text = pairs.map(([l, b]) => l + b).join('') + last;
      return unwrap(text) === unwrapBySplit(text);
    }),
    { numRuns: 5000 },
  );
  for (const text of [
    `${'a'.repeat(60)}\nb`,
    `${'a'.repeat(59)}\nb`,
    `${'a'.repeat(60)}\r\nb`,
    `${'a'.repeat(60)}\\nb`,
    `x\n${'a'.repeat(60)}\nb`,
  ])
    t.equal(unwrap(text), unwrapBySplit(text), JSON.stringify(text.slice(-8)));
  t.not(unwrap(`${'a'.repeat(60)}\nb`), `${'a'.repeat(60)}\nb`, 'a wrapped line is still joined');
});

t.test('property: LeakScan decides a body as detectLeak decides its decoded text', async (t) => {
  const piece = fc.oneof(
    fc.constantFrom(
      GH,
      AWS,
      `"${GH}"`,
      Buffer.from(GH).toString('base64'),
      Buffer.from(GH).toString('hex'),
      '\\u0067hp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A',
    ),
    fc.constantFrom('é', 'ｇｈｐ_', '\u200b', '\x00', '\x1f', '\x7f', '\n', ' ', '"k": "v"', '{', '}', 'key'),
    fc.string({ maxLength: 12 }),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 12 }), fc.boolean(), (pieces, latin1) => {
      const body = Buffer.from(pieces.join(''), latin1 ? 'latin1' : 'utf8');
      const finding = detectLeak(decodedText(body), { budget: new DecodeBudget(16 * 1024 * 1024) });
      const message = scanStream(body, body.length + 1);
      return (finding === null) === (message === null) && (message === null || message.includes(`(${finding!.shape})`));
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 bodies');
});
