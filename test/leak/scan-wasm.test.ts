// The leak scan's WebAssembly loop (src/leak/scan.wat, issue 22) against the JavaScript loops it
// stands in for: on every ASCII text the keyword hits, the automaton's states and the run survey
// must be exactly what KeywordAutomaton's JavaScript loops give, and whole detections must agree.
// The committed module must be what the .wat assembles to.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import fc from '../helpers/fc.js';
import t from 'tap';
import { CONTROL, DecodeBudget, decodeBase64Range, decodeHexRange, detectLeak, hasControlByte, keptText } from '../../src/leak/detect.js';
import { WASM_MIN } from '../../src/leak/keywords.js';
import { freshSurvey, RUN_BASE64, RUN_DEAD, RUN_HEX, type RunSurvey } from '../../src/leak/runs.js';
import { LAYOUT, MAX_TEXT, useWasmScan, wasmHasControl } from '../../src/leak/scan-wasm.js';
import { defaultShapes } from '../../src/leak/shapes.js';
import { CREDENTIALS } from './fixtures.js';
import { bareSurvey, type BareSurvey } from './survey.js';

interface Scanned {
  complete: boolean;
  hits: number[];
  states: Uint32Array;
  survey: BareSurvey;
  plainHits: number[];
}

function scanWith(wasm: boolean, text: string): Scanned {
  const automaton = defaultShapes().keywords;
  useWasmScan(wasm);
  try {
    const hits: number[] = [];
    const plainHits: number[] = [];
    const states = new Uint32Array(text.length);
    const survey = freshSurvey();
    const complete = automaton.scan(text, (k, start) => hits.push(k, start), states, false, survey);
    automaton.scan(text, (k, start) => plainHits.push(k, start));
    // the runs whose decoding is surely dropped: only the WebAssembly scan tells (checked on their own below)
    return { complete, hits, states, survey: bareSurvey(survey), plainHits };
  } finally {
    useWasmScan(true);
  }
}

/** ASCII texts of keywords, credentials, runs and JSON: what makes hits, runs and quoted values */
const asciiText = fc
  .array(
    fc.oneof(
      // a credential in about one text of two, so detections go both ways
      { arbitrary: fc.oneof(...Object.values(CREDENTIALS)), weight: 1 },
      {
        arbitrary: fc.constantFrom('a', 'F', '0', '9', 'z', 'Q', '+', '/', '_', '-', ':', ' ', '"', '=', '%', '\\', '\n', '{', '}', ','),
        weight: 40,
      },
      {
        arbitrary: fc.constantFrom(
          '0123456789abcdef',
          'DEADBEEFCAFE0123',
          'aa:bb:cc:dd:ee:ff:00:11',
          '0A-1B-2C-3D-4E-5F-6A-7B',
          'ab:'.repeat(7),
          'QUJDREVGR0hJSktMTU5PUFFS',
          '"token":"',
          'ghp_',
          'xoxb-',
          'sk-ant-',
          'AKIA',
          'github_pat_',
          'private key',
          `"${'v'.repeat(256)}"`,
          `"${'v'.repeat(257)}"`,
        ),
        weight: 10,
      },
      { arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((code) => String.fromCharCode(code)), maxLength: 24 }), weight: 10 },
    ),
    { minLength: 8, maxLength: 80, size: 'large' },
  )
  .map((parts) => parts.join(''));

t.test('property: the WebAssembly loop scans and surveys as the JavaScript loops', async (t) => {
  let long = 0;
  fc.assert(
    fc.property(asciiText, (text) => {
      if (text.length >= WASM_MIN) long++;
      const js = scanWith(false, text);
      const wasm = scanWith(true, text);
      return isDeepStrictEqual(wasm, js);
    }),
    { numRuns: 3000 },
  );
  t.ok(long > 1500, `${long} of 3000 texts long enough for the WebAssembly loop`);
});

/**
 * Texts that put run, pair and quote edges at every offset of the WebAssembly loop's 64-character
 * blocks: stretches of one class 1 to 80 long, separated hex chains of 5 to 9 pairs, quoted values
 * near the 4 and 256 bounds, and single characters of every class.
 */
const blockEdges = fc
  .array(
    fc.oneof(
      fc
        .tuple(fc.constantFrom('a', 'F', '0', 'z', 'Q', '+', '/', '_', '-', 'v', '.'), fc.integer({ min: 1, max: 80 }))
        .map(([c, n]) => c.repeat(n)),
      fc
        .tuple(fc.constantFrom(':', '-'), fc.integer({ min: 5, max: 9 }), fc.constantFrom('ab', 'F0', '9c'))
        .map(([sep, n, pair]) => `${pair}${sep}`.repeat(n)),
      fc
        .tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 250, max: 260 }), fc.boolean())
        .map(([a, b, long]) => `"${'v'.repeat(long ? b : a)}"`),
      fc.constantFrom('"', ' ', ':', '-', '=', '~', '\n', ',', '{', '}', '%'),
    ),
    { minLength: 4, maxLength: 60 },
  )
  .map((parts) => parts.join(''))
  .filter((text) => text.length >= WASM_MIN);

t.test('property: the WebAssembly loop agrees at every block edge', async (t) => {
  let runs = 0;
  fc.assert(
    fc.property(blockEdges, (text) => {
      const js = scanWith(false, text);
      runs += js.survey.base64.length + js.survey.hex.length + js.survey.quoted.length;
      return isDeepStrictEqual(scanWith(true, text), js);
    }),
    { numRuns: 3000 },
  );
  t.ok(runs > 10000, `${runs} runs and values compared`);
});

/** Whether every run the WebAssembly scan calls dead decodes to bytes keptText drops; counts them. */
function deadRunsDrop(text: string, counts: { dead: number; alive: number }): boolean {
  const survey: RunSurvey = freshSurvey();
  defaultShapes().keywords.scan(text, () => undefined, undefined, false, survey);
  const runs = survey.runs;
  const decoders: Record<number, (start: number, end: number) => Buffer> = {
    [RUN_BASE64]: (start, end) => decodeBase64Range(text, start, (end - start) % 4 === 1 ? end - 1 : end),
    [RUN_HEX]: (start, end) => decodeHexRange(text, start, (end - start) % 2 === 1 ? end - 1 : end),
  };
  for (let r = 0; r < runs.length; r += 3) {
    const dead = (runs[r]! & RUN_DEAD) !== 0;
    // the JavaScript loop marks none
    if (dead && text.length < WASM_MIN) return false;
    const kept = keptText(decoders[runs[r]! & 0xf]!(runs[r + 1]!, runs[r + 2]!));
    if (dead) {
      counts.dead++;
      if (kept !== null) return false;
    } else counts.alive++;
  }
  return true;
}

t.test('property: a run the WebAssembly scan calls dead decodes to nothing keptText keeps', async (t) => {
  const counts = { dead: 0, alive: 0 };
  // runs of base64 and hex of text, of random bytes, and of bytes with a printable stretch
  const encoded = fc.oneof(
    fc.string({ minLength: 6, maxLength: 40 }).map((s) => Buffer.from(s).toString('base64')),
    fc.uint8Array({ minLength: 6, maxLength: 60 }).map((b) => Buffer.from(b).toString('base64url')),
    fc.uint8Array({ minLength: 6, maxLength: 60 }).map((b) => Buffer.from(b).toString('hex')),
    fc
      .tuple(fc.uint8Array({ maxLength: 8 }), fc.string({ minLength: 8, maxLength: 14 }))
      .map(([b, s]) => Buffer.concat([Buffer.from(b), Buffer.from(s)]).toString('base64')),
    fc.tuple(fc.uint8Array({ maxLength: 8 }), fc.string({ minLength: 8, maxLength: 14 })).map(([b, s]) =>
      Buffer.concat([Buffer.from(b), Buffer.from(s)])
        .toString('hex')
        .toUpperCase(),
    ),
  );
  const text = fc
    .array(fc.oneof(encoded, asciiText, fc.constantFrom(' ', '"', '\n', '=', '/')), { minLength: 2, maxLength: 12 })
    .map((p) => p.join(' '));
  fc.assert(
    fc.property(text, (text) => deadRunsDrop(text, counts)),
    { numRuns: 3000 },
  );
  t.ok(counts.dead > 1000 && counts.alive > 1000, `${counts.dead} runs dead, ${counts.alive} decoded`);
});

t.test('property: a detection decides the same with either loop', async (t) => {
  const detect = (text: string) => detectLeak(text, { budget: new DecodeBudget(16 * 1024 * 1024) });
  let found = 0;
  fc.assert(
    fc.property(asciiText, (text) => {
      useWasmScan(false);
      let js;
      try {
        js = detect(text);
      } finally {
        useWasmScan(true);
      }
      const wasm = detect(text);
      if (wasm !== null) found++;
      return isDeepStrictEqual(wasm, js);
    }),
    { numRuns: 1000 },
  );
  t.ok(found > 100 && found < 900, `${found} of 1000 texts hold a credential both loops find`);
});

t.test('property: the WebAssembly control-byte check finds what CONTROL finds', async (t) => {
  let found = 0;
  // printable text with now and then a byte from around the control ranges' edges
  const bytes = fc
    .array(
      fc.oneof(
        { arbitrary: fc.integer({ min: 0x20, max: 0x7e }), weight: 100 },
        { arbitrary: fc.constantFrom(0x00, 0x08, 0x09, 0x0a, 0x0d, 0x0e, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff), weight: 1 },
      ),
      { minLength: 0, maxLength: 1200, size: 'max' },
    )
    .map((codes) => Buffer.from(codes));
  fc.assert(
    fc.property(bytes, (b) => {
      const expected = CONTROL.test(b.toString('latin1'));
      if (expected) found++;
      return wasmHasControl(b) === expected && hasControlByte(b) === expected;
    }),
    { numRuns: 3000 },
  );
  t.ok(found > 500 && found < 2900, `${found} of 3000 hold one`);
  t.equal(wasmHasControl(Buffer.alloc(MAX_TEXT + 1, 0x41)), null, 'past MAX_TEXT: the JavaScript check');
  t.equal(wasmHasControl(Buffer.concat([Buffer.alloc(MAX_TEXT - 1, 0x41), Buffer.from([0x7f])])), true, 'the last byte of MAX_TEXT');
});

t.test('a process whose first look is the control-byte check (before any scan has loaded tables)', async (t) => {
  const dir = t.testdir({
    'child.ts': `import { decodedText } from ${JSON.stringify(path.resolve('src/leak/detect.js'))};
import { wasmHasControl } from ${JSON.stringify(path.resolve('src/leak/scan-wasm.js'))};
const text = Buffer.alloc(4096, 0x61);
console.log(JSON.stringify([wasmHasControl(text), decodedText(text).length, decodedText(Buffer.concat([text, Buffer.from([1])])).length]));
`,
  });
  const child = spawnSync(process.execPath, [...process.execArgv, path.join(dir, 'child.ts')], { encoding: 'utf8' });
  t.equal(child.status, 0, child.stderr);
  // a control byte makes the text its printable runs: the 4096 letters
  t.same(JSON.parse(child.stdout), [false, 4096, 4096]);
});

t.test('the WebAssembly loop on edges, one row each', async (t) => {
  const rows = [
    'x'.repeat(WASM_MIN - 1),
    'x'.repeat(WASM_MIN),
    `${'a'.repeat(WASM_MIN)}ghp_`,
    `ghp_${'a'.repeat(WASM_MIN)}`,
    `${'A'.repeat(16)}"${'b'.repeat(WASM_MIN)}`,
    `${'0'.repeat(WASM_MIN)}${'g'.repeat(20)}`,
    `"${'v'.repeat(4)}"${' '.repeat(WASM_MIN)}"${'v'.repeat(256)}"`,
    `${'ab:'.repeat(7)}ab${' '.repeat(WASM_MIN)}`,
    `${'ab-'.repeat(6)}ab${' '.repeat(WASM_MIN)}`,
    'Q'.repeat(MAX_TEXT),
    `${'Q'.repeat(MAX_TEXT)}ghp_`,
    `${'a'.repeat(WASM_MIN)}é${'ghp_'.repeat(4)}`,
  ];
  for (const text of rows) t.same(scanWith(true, text), scanWith(false, text), `${text.slice(0, 24)}... (${text.length})`);
});

t.test('a JSON key (a value with a colon after it) at every offset of a block, and at the end of the text', async (t) => {
  let compared = 0;
  for (let pad = 50; pad <= 140; pad++)
    for (const after of [':', ' :', '\t\n :', ' ', '', ' x:', '"']) {
      const text = `${' '.repeat(pad)}"abcd"${after}${' '.repeat(pad % 7)}`;
      const js = scanWith(false, text);
      if (!isDeepStrictEqual(scanWith(true, text), js)) t.fail(JSON.stringify(text));
      compared++;
    }
  t.ok(compared > 500, `${compared} texts compared`);
  // what a scan before left in the module's memory past the end of a text is not read: a colon
  // there does not make the value at the end a key (a text of whole blocks: nothing past its end
  // is cleared)
  const before = `${' '.repeat(58)}"abcd":"efgh"`;
  const text = `${' '.repeat(58)}"abcd"`;
  t.equal(text.length % 64, 0);
  scanWith(true, before);
  const wasm = scanWith(true, text);
  t.same(wasm, scanWith(false, text));
  t.equal(wasm.survey.quoted.length, 3, 'the value at the end is a value');
});

t.test('a keyword across the middle, where the second chain of the WebAssembly loop starts', async (t) => {
  // the second chain starts from the root the longest keyword's length before the middle: a long
  // keyword that starts before the middle and ends after it is where a short warm-up would miss
  const keywords = [...defaultShapes().keywords.keywords].sort((a, b) => b.length - a.length).slice(0, 6);
  let compared = 0;
  for (const keyword of keywords)
    for (const length of [256, 257, 1000, 1001])
      for (let end = (length >> 1) - 1; end <= (length >> 1) + keyword.length + 1; end++) {
        const start = end - keyword.length;
        const text = `${'.'.repeat(start)}${keyword}`.padEnd(length, '.');
        const js = scanWith(false, text);
        if (!isDeepStrictEqual(scanWith(true, text), js)) t.fail(`${keyword} ending at ${end} of ${length}`);
        compared++;
      }
  t.ok(compared > 500, `${compared} texts compared`);
});

t.test('a text past ASCII scans in JavaScript and still stops at its first non-ASCII character', async (t) => {
  const automaton = defaultShapes().keywords;
  const text = `${'ghp_'.repeat(20)}é${'a'.repeat(100)}`;
  const hits: number[] = [];
  t.equal(
    automaton.scan(text, (k, start) => hits.push(k, start), undefined, true),
    false,
  );
  t.ok(hits.length > 0, 'the hits before it were reported, as the JavaScript loop does');
});

t.test('the committed module is what the .wat assembles to', async (t) => {
  t.doesNotThrow(() => execFileSync(process.execPath, ['scripts/gen-scan-wasm.mjs', '--check'], { stdio: 'pipe' }));
});

t.test("the .wat's memory offsets are the layout scan-wasm.ts writes and reads", async (t) => {
  const wat = readFileSync('src/leak/scan.wat', 'utf8');
  const used = new Set([...wat.matchAll(/offset=(\d+)/g)].map((m) => Number(m[1])));
  const { SEXTET_AT, NIBBLE_AT, CLASS_AT, TEXT_AT, STATES_AT, HITS_AT, HITS_B_AT, RUNS_AT, QUOTED_AT } = LAYOUT;
  t.same(
    [...used].sort((a, b) => a - b),
    [
      SEXTET_AT,
      NIBBLE_AT,
      CLASS_AT,
      TEXT_AT,
      TEXT_AT + 1,
      TEXT_AT + 2,
      TEXT_AT + 3,
      STATES_AT,
      HITS_AT,
      HITS_AT + 4,
      HITS_B_AT,
      HITS_B_AT + 4,
      RUNS_AT,
      RUNS_AT + 4,
      RUNS_AT + 8,
      QUOTED_AT,
      QUOTED_AT + 8,
    ],
  );
});
