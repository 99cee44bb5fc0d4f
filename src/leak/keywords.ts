// Which keywords a text holds, in one pass: an Aho-Corasick automaton over ASCII, case folded in
// its table. A regex alternation of some 250 keywords costs tens of nanoseconds a character in a
// backtracking engine; this costs a table lookup a character, so every body is read once for all
// the shapes, and a shape's own regex runs only near its keywords (shapes.ts).

import { wasmScan, wasmTables, type WasmScan, type WasmTables } from './scan-wasm.js';
import { C_B64, C_HEX, C_SEP, C_VALUE, CLASS, colonAfter, freshSurvey, RUN_BASE64, RUN_HEX, type RunSurvey, type SurveyRoom } from './runs.js';

const ALPHABET = 128;
/** texts at least this long go to the WebAssembly loop (scan-wasm.ts); a shorter one costs less in JavaScript than the call */
export const WASM_MIN = 64;
// the run machine (#scanSurveying) reads these class bits by their positions
if (C_B64 !== 1 << 0 || C_HEX !== 1 << 1 || C_SEP !== 1 << 4 || C_VALUE !== 1 << 7) throw new Error('run class bits moved: see #scanSurveying');

export class KeywordAutomaton {
  readonly keywords: readonly string[];
  /**
   * The transitions: a state is the offset of its row (its number times #width), so a step is
   * one add and one read; column 0 of every row (a character no keyword has) leads to the root, 0.
   * 16 bits a transition when every offset fits (half the table to keep in cache), else 32.
   */
  readonly #next: Uint16Array | Uint32Array;
  /** per state number (offset / #width): indices of the keywords that end here (its own and its suffixes'), or null */
  readonly #out: Array<number[] | null>;
  /** states are numbered with those where a keyword ends last: a state at or past this offset is one */
  readonly #endFrom: number;
  /** character code to table column; 0 for a character no keyword has */
  readonly #classOf: Uint8Array;
  /** character code to its table column (low byte) and its run class (runs.ts CLASS, high byte) */
  readonly #columnAndClass: Uint16Array;
  readonly #width: number;
  /** per state number: the length of the keyword prefix it stands for */
  readonly #depth: Uint8Array;
  /** the longest keyword */
  readonly maxLength: number;
  /** the tables in the WebAssembly loop's memory (scan-wasm.ts), made on the first long scan; null when it cannot run them */
  #wasm: WasmTables | null | undefined;

  constructor(keywords: readonly string[]) {
    this.keywords = keywords;
    const goto: Array<Map<number, number>> = [new Map<number, number>()];
    const out: Array<number[] | null> = [null];
    const depth: number[] = [0];
    keywords.forEach((keyword, k) => {
      let state = 0;
      for (const char of keyword.toLowerCase()) {
        const code = char.charCodeAt(0);
        if (code >= ALPHABET) throw new Error(`keyword ${JSON.stringify(keyword)} is not ASCII`);
        let to = goto[state]!.get(code);
        if (to === undefined) {
          to = goto.length;
          goto.push(new Map<number, number>());
          out.push(null);
          depth.push(depth[state]! + 1);
          goto[state]!.set(code, to);
        }
        state = to;
      }
      (out[state] ??= []).push(k);
    });
    if (goto.length > 0xffff) throw new Error('too many keyword states');
    const next = new Uint16Array(goto.length * ALPHABET);
    const fail = new Array<number>(goto.length).fill(0);
    // breadth first: a state's failure link is decided before its children's
    const queue: number[] = [];
    for (let c = 0; c < ALPHABET; c++) {
      const to = goto[0]!.get(c);
      if (to !== undefined) {
        next[c] = to;
        queue.push(to);
      }
    }
    for (let q = 0; q < queue.length; q++) {
      const state = queue[q]!;
      const f = fail[state]!;
      const inherited = out[f];
      if (inherited) out[state] = [...(out[state] ?? []), ...inherited];
      for (let c = 0; c < ALPHABET; c++) {
        const to = goto[state]!.get(c);
        if (to !== undefined) {
          fail[to] = next[f * ALPHABET + c]!;
          next[state * ALPHABET + c] = to;
          queue.push(to);
        } else next[state * ALPHABET + c] = next[f * ALPHABET + c]!;
      }
    }
    // case folding: an upper-case letter moves like its lower-case one
    for (let s = 0; s < goto.length; s++) for (let c = 0x41; c <= 0x5a; c++) next[s * ALPHABET + c] = next[s * ALPHABET + c + 0x20]!;
    // The table is read one row a character: rows only as wide as the characters keywords use
    // (every other character leads back to the root), so the rows in use stay in cache.
    const used = new Set<number>();
    for (const keyword of keywords) for (const char of keyword.toLowerCase()) used.add(char.charCodeAt(0));
    const classOf = new Uint8Array(ALPHABET);
    let width = 1;
    for (const code of [...used].sort((a, b) => a - b)) {
      classOf[code] = width;
      if (code >= 0x61 && code <= 0x7a) classOf[code - 0x20] = width;
      width++;
    }
    // renumbered: the root first, states where no keyword ends next, those where one ends last
    const order = [...out.keys()].sort((x, y) => (out[x] ? 1 : 0) - (out[y] ? 1 : 0) || depth[x]! - depth[y]! || x - y);
    const rank = new Array<number>(goto.length);
    order.forEach((old, r) => (rank[old] = r));
    const narrow = goto.length * width <= 0x10000 ? new Uint16Array(goto.length * width) : new Uint32Array(goto.length * width);
    for (let s = 0; s < goto.length; s++)
      for (let c = 0; c < ALPHABET; c++) if (classOf[c] !== 0) narrow[rank[s]! * width + classOf[c]!] = rank[next[s * ALPHABET + c]!]! * width;
    this.#classOf = classOf;
    this.#columnAndClass = Uint16Array.from(classOf, (column, code) => column | (CLASS[code]! << 8));
    this.#width = width;
    this.#next = narrow;
    this.#out = order.map((old) => out[old]!);
    this.#endFrom = out.filter((list) => !list).length * width;
    this.#depth = Uint8Array.from(order, (old) => Math.min(depth[old]!, 255));
    this.maxLength = Math.max(0, ...keywords.map((keyword) => keyword.length));
  }

  /**
   * Calls `hit(keyword index, start offset)` for every occurrence, in order of their ends. With
   * `states`, the state after each character is written there (a seam check can start from it).
   * With `survey` (a fresh one), the same read finds the text's base64 and hex runs (runs.ts):
   * what surveyRuns() finds. With `stopAtNonAscii`, the scan stops at the first character past
   * ASCII and returns false (the caller normalises the text and scans again); otherwise it
   * returns true.
   */
  scan(text: string, hit: (keyword: number, start: number) => void, states?: Uint32Array, stopAtNonAscii = false, survey?: RunSurvey): boolean {
    if (survey) survey.by = this;
    if (text.length >= WASM_MIN) {
      this.#wasm ??= wasmTables(this.#next, this.#columnAndClass, this.#endFrom, this.maxLength);
      const fast = this.#wasm === null ? null : wasmScan(this.#wasm, text);
      if (fast !== null) {
        this.#fromWasm(fast, text.length, hit, states, survey);
        return true;
      }
    }
    if (survey) return this.#scanSurveying(text, hit, states, stopAtNonAscii, survey);
    const next = this.#next;
    const endFrom = this.#endFrom;
    const classOf = this.#classOf;
    const length = text.length;
    let state = 0;
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i);
      let column = 0;
      if (code < ALPHABET) column = classOf[code]!;
      else if (stopAtNonAscii) return false;
      state = next[state + column]!;
      if (states) states[i] = state;
      if (state >= endFrom) this.#hits(state, i, hit);
    }
    return true;
  }

  /**
   * scan() with the run survey in the same loop, its state in locals: one table read a character
   * for both. The run machine: a base64 run is a stretch of C_B64 characters (16 or more kept),
   * read as hex only when all hex digits in one case; a hex run a stretch of C_HEX ones (16 or
   * more); hex pairs with a C_SEP between them, 7 in a row, mark the separated form; the JSON
   * values (RunSurvey.quoted) are quoted stretches of C_VALUE characters.
   */
  #scanSurveying(
    text: string,
    hit: (keyword: number, start: number) => void,
    states: Uint32Array | undefined,
    stopAtNonAscii: boolean,
    survey: RunSurvey,
  ): boolean {
    const next = this.#next;
    const endFrom = this.#endFrom;
    const table = this.#columnAndClass;
    const length = text.length;
    // a fresh survey's (arrays; only the WebAssembly loop hands over typed ones)
    const runs = survey.runs as number[];
    const quoted = survey.quoted as number[];
    let state = 0;
    /** just after a quote that opens a JSON value, with only value characters since; else -1 */
    let open = -1;
    /** base64 characters in a row up to here, and the union of their classes */
    let b64Length = 0;
    let b64Flags = 0;
    /** hex digits in a row up to here (since the last separator or other character), and 2-digit groups in a row before them */
    let group = 0;
    let chain = 0;
    let separated = false;
    // The run machine in arithmetic: a class bit becomes a mask (0 or -1) that keeps or clears a
    // counter, so the random mix of hex and other letters in base64 and words costs no branch a
    // character; what is left branches only where a run ends long enough to keep, and at quotes.
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i);
      let entry = 0;
      if (code < ALPHABET) entry = table[code]!;
      else if (stopAtNonAscii) return false;
      const before = state;
      state = next[state + (entry & 0xff)]!;
      if (states) states[i] = state;
      if (state >= endFrom) this.#hits(state, i, hit);
      const cls = entry >> 8;
      if (code === 0x22) {
        if (open >= 0 && i - open >= 4 && i - open <= 256) {
          if (colonAfter(text, i + 1) < 0) quoted.push(open, i, before);
          open = -1;
        } else open = i + 1;
      } else open |= ((cls >> 7) & 1) - 1; // C_VALUE: kept; any other character: -1
      const inB64 = (cls << 31) >> 31; // C_B64 (bit 0) as a mask
      // a run of 16 or more ends here: (15 - length) is negative, and the mask keeps it only off the alphabet
      if (((15 - b64Length) & ~inB64) < 0) runs.push(RUN_BASE64 | (b64Flags << 8), i - b64Length, i);
      b64Length = (b64Length + 1) & inB64;
      b64Flags = (b64Flags | cls) & inB64;
      const inHex = (cls << 30) >> 31; // C_HEX (bit 1) as a mask
      if (((15 - group) & ~inHex) < 0) runs.push(RUN_HEX, i - group, i);
      // off hex: a separator (C_SEP, bit 4, never a hex digit) after exactly 2 digits goes on with the chain, else it breaks
      const pair = (cls >> 4) & 1 & (((group ^ 2) - 1) >>> 31);
      chain = (chain & inHex) | ((chain + 1) & (0 - pair));
      if (chain >= 7) separated = true;
      group = (group + 1) & inHex;
    }
    // the end closes the open runs
    if (b64Length >= 16) runs.push(RUN_BASE64 | (b64Flags << 8), length - b64Length, length);
    if (group >= 16) runs.push(RUN_HEX, length - group, length);
    if (separated) survey.separatedHex = true;
    return true;
  }

  /**
   * What the WebAssembly loop found, as the JavaScript loops hand it over: the states (only when
   * asked for: the detector does without), the survey's records (one copy each, into its room
   * when it has one), then the hits (copied out first: a callback may scan again, and a scan
   * reuses the memory).
   */
  #fromWasm(fast: WasmScan, length: number, hit: (keyword: number, start: number) => void, states?: Uint32Array, survey?: RunSurvey): void {
    if (states) states.set(fast.u16.subarray(fast.states, fast.states + Math.min(length, states.length)));
    if (survey) {
      survey.runs = records(fast.words, fast.runs, fast.runCount * 3, survey.room, 'runs');
      survey.quoted = records(fast.words, fast.quoted, fast.quotedCount * 3, survey.room, 'quoted');
      if (fast.separated) survey.separatedHex = true;
    }
    if (fast.hitCount === 0) return;
    const count = fast.hitCount * 2;
    // the shared scratch, unless a callback of this scan's is scanning again (then a copy of its own)
    let found: Int32Array;
    if (hitsBusy) found = fast.words.slice(fast.hits, fast.hits + count);
    else {
      if (hitScratch.length < count) hitScratch = new Int32Array(Math.max(count, hitScratch.length * 2));
      hitScratch.set(fast.words.subarray(fast.hits, fast.hits + count));
      found = hitScratch;
    }
    const outer = !hitsBusy;
    hitsBusy = true;
    try {
      for (let h = 0; h < count; h += 2) this.#hits(found[h]!, found[h + 1]!, hit);
    } finally {
      if (outer) hitsBusy = false;
    }
  }

  #hits(state: number, i: number, hit: (keyword: number, start: number) => void): void {
    for (const k of this.#out[state / this.#width]!) hit(k, i + 1 - this.keywords[k]!.length);
  }

  /** The length of the keyword prefix a state (as scan() writes it) stands for. */
  depthOf(state: number): number {
    return this.#depth[state / this.#width]!;
  }

  /** The state after text[from, to) read from the root: the state of the whole text there when what it stands for starts at `from` or later. */
  stateAfter(text: string, from: number, to: number): number {
    const next = this.#next;
    const classOf = this.#classOf;
    let state = 0;
    for (let i = from; i < to; i++) {
      const code = text.charCodeAt(i);
      state = next[state + (code < ALPHABET ? classOf[code]! : 0)]!;
    }
    return state;
  }

  /**
   * Whether, going on from `state` (read over the left value, its prefix within it) through
   * text[from, to) (the right value), a keyword `relevant` says yes to ends in the right value
   * having started in the left one.
   */
  spansFrom(state: number, text: string, from: number, to: number, relevant: Uint8Array): boolean {
    const next = this.#next;
    const classOf = this.#classOf;
    const width = this.#width;
    for (let j = 0; from + j < to && state !== 0; j++) {
      if (this.#depth[state / width]! <= j) return false;
      const code = text.charCodeAt(from + j);
      state = next[state + (code < ALPHABET ? classOf[code]! : 0)]!;
      if (state >= this.#endFrom)
        for (const k of this.#out[state / width]!) if (relevant[k] === 1 && this.keywords[k]!.length > j + 1) return true;
    }
    return false;
  }
}

/** The WebAssembly scan's hit records, copied out for the callbacks (see #fromWasm). */
let hitScratch = new Int32Array(256);
let hitsBusy = false;

/** `length` numbers of the scan's records from `from`: into the room when there is one (a view of it), else a copy. */
function records(words: Int32Array, from: number, length: number, room: SurveyRoom | undefined, key: keyof SurveyRoom): Int32Array {
  const source = words.subarray(from, from + length);
  if (!room) return source.slice();
  if (room[key].length < length) room[key] = new Int32Array(Math.max(length, room[key].length * 2));
  const into = room[key];
  into.set(source);
  return into.subarray(0, length);
}

let noKeywords: KeywordAutomaton | null = null;

/** One pass over `text`: its base64 and hex runs (the survey of scan(), without keywords). */
export function surveyRuns(text: string): RunSurvey {
  noKeywords ??= new KeywordAutomaton([]);
  const survey = freshSurvey();
  noKeywords.scan(text, () => undefined, undefined, false, survey);
  return survey;
}
