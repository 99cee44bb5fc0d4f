// Which keywords a text holds, in one pass: an Aho-Corasick automaton over ASCII, case folded in
// its table. A regex alternation of some 250 keywords costs tens of nanoseconds a character in a
// backtracking engine; this costs a table lookup a character, so every body is read once for all
// the shapes, and a shape's own regex runs only near its keywords (shapes.ts).

import type { RunTracker } from './runs.js';

const ALPHABET = 128;

export class KeywordAutomaton {
  readonly keywords: readonly string[];
  readonly #next: Uint16Array;
  /** per state: indices of the keywords that end here (its own and its suffixes'), or null */
  readonly #out: Array<number[] | null>;
  /** 1 where a keyword ends */
  readonly #ends: Uint8Array;
  /** character code to table column; 0 for a character no keyword has */
  readonly #classOf: Uint8Array;
  readonly #width: number;
  /** per state: the length of the keyword prefix it stands for */
  readonly #depth: Uint8Array;
  /** the longest keyword */
  readonly maxLength: number;

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
    let next = new Uint16Array(goto.length * ALPHABET);
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
    const narrow = new Uint16Array(goto.length * width);
    for (let s = 0; s < goto.length; s++)
      for (let c = 0; c < ALPHABET; c++) if (classOf[c] !== 0) narrow[s * width + classOf[c]!] = next[s * ALPHABET + c]!;
    this.#classOf = classOf;
    this.#width = width;
    next = narrow;
    this.#next = next;
    this.#out = out;
    this.#ends = Uint8Array.from(out, (list) => (list ? 1 : 0));
    this.#depth = Uint8Array.from(depth, (d) => Math.min(d, 255));
    this.maxLength = Math.max(0, ...keywords.map((keyword) => keyword.length));
  }

  /**
   * Calls `hit(keyword index, start offset)` for every occurrence, in order of their ends. With
   * `states`, the state after each character is written there (a seam check can start from it);
   * with `runs`, every character also steps the run survey (runs.ts), so one read finds both.
   * With `stopAtNonAscii`, the scan stops at the first character past ASCII and returns false
   * (the caller normalises the text and scans again); otherwise it returns true.
   */
  scan(text: string, hit: (keyword: number, start: number) => void, states?: Uint16Array, runs?: RunTracker, stopAtNonAscii = false): boolean {
    const next = this.#next;
    const ends = this.#ends;
    const classOf = this.#classOf;
    const width = this.#width;
    const length = text.length;
    let state = 0;
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code >= ALPHABET && stopAtNonAscii) return false;
      if (runs) runs.step(i, code);
      const column = code < ALPHABET ? classOf[code]! : 0;
      state = column === 0 ? 0 : next[state * width + column]!;
      if (states) states[i] = state;
      if (ends[state] === 1) for (const k of this.#out[state]!) hit(k, i + 1 - this.keywords[k]!.length);
    }
    if (runs) runs.step(length, 0);
    return true;
  }

  /** The length of the keyword prefix a state stands for. */
  depthOf(state: number): number {
    return this.#depth[state]!;
  }

  /**
   * Whether, going on from `state` (read over `left`, its prefix within it) through `right`, a
   * keyword `relevant` says yes to ends in `right` having started in `left`.
   */
  spansFrom(state: number, right: string, relevant: Uint8Array): boolean {
    const next = this.#next;
    const classOf = this.#classOf;
    const width = this.#width;
    for (let j = 0; j < right.length && state !== 0; j++) {
      if (this.#depth[state]! <= j) return false;
      const code = right.charCodeAt(j);
      const column = code < ALPHABET ? classOf[code]! : 0;
      state = column === 0 ? 0 : next[state * width + column]!;
      if (this.#ends[state] === 1) for (const k of this.#out[state]!) if (relevant[k] === 1 && this.keywords[k]!.length > j + 1) return true;
    }
    return false;
  }
}
