// Multi-needle find-and-replace over bytes, for whole strings and for streams split at any byte.
// Matching is leftmost, then longest: the same result whatever the chunking, because a position is
// only decided once every needle (and every leak pattern) starting there is fully in view.
import { Transform, type TransformCallback } from 'node:stream';
import { findLeakIn, type LeakPattern } from './leak-patterns.js';
import type { LeakScan } from '../leak/stream.js';
import { SecretViolation, type SecretFailure } from './violation.js';

export type NeedleAction =
  /** replace the needle; `use` is the alias to report as used, if any */
  | { kind: 'replace'; with: Buffer; use: string | null }
  /** fail: nothing of the needle is passed on */
  | { kind: 'refuse'; reason: SecretFailure; alias: string | null; detail: string };

export interface Needle {
  bytes: Buffer;
  action: NeedleAction;
}

export class NeedleSet {
  readonly needles: readonly Needle[];
  /** the needles as text, for a quick check before a byte scan */
  readonly texts: readonly string[];
  readonly longest: number;

  /** Empty needles are dropped; for the same bytes the first needle wins. */
  constructor(needles: Iterable<Needle>) {
    const byBytes = new Map<string, Needle>();
    for (const needle of needles) {
      const key = needle.bytes.toString('latin1');
      if (needle.bytes.length > 0 && !byBytes.has(key)) byBytes.set(key, needle);
    }
    this.needles = [...byBytes.values()];
    this.texts = this.needles.map((n) => n.bytes.toString('utf8'));
    this.longest = Math.max(0, ...this.needles.map((n) => n.bytes.length));
  }
}

export interface ScanResult {
  /** output, in order: untouched input and replacements */
  pieces: Buffer[];
  /** input bytes [0, consumed) are done; the rest must be scanned again with what follows */
  consumed: number;
  /** aliases of the replacements made, in order, repeats included */
  uses: string[];
}

/**
 * Replaces needle occurrences that start before `limit` (occurrences may end past it).
 * Throws SecretViolation at the first `refuse` needle, before producing anything.
 */
export function scan(input: Buffer, set: NeedleSet, limit: number): ScanResult {
  const { needles } = set;
  const next = needles.map((needle) => input.indexOf(needle.bytes));
  const pieces: Buffer[] = [];
  const uses: string[] = [];
  let cursor = 0;
  for (;;) {
    let best = -1;
    let bestAt = Infinity;
    for (let i = 0; i < needles.length; i++) {
      if (next[i]! !== -1 && next[i]! < cursor) next[i] = input.indexOf(needles[i]!.bytes, cursor);
      const at = next[i]!;
      if (at === -1 || at >= limit) continue;
      if (at < bestAt || (at === bestAt && needles[i]!.bytes.length > needles[best]!.bytes.length)) {
        best = i;
        bestAt = at;
      }
    }
    if (best === -1) break;
    const { bytes, action } = needles[best]!;
    if (action.kind === 'refuse') throw new SecretViolation(action.reason, action.alias, action.detail);
    pieces.push(input.subarray(cursor, bestAt), action.with);
    if (action.use !== null) uses.push(action.use);
    cursor = bestAt + bytes.length;
  }
  const consumed = Math.max(cursor, limit);
  pieces.push(input.subarray(cursor, consumed));
  return { pieces, consumed, uses };
}

/** Replaces every needle in a whole string (utf8). Throws SecretViolation on a refuse needle. */
export function rewriteString(text: string, set: NeedleSet): string {
  // Most text carries no needle: a string search is far cheaper than the byte scan.
  if (!set.texts.some((needle) => text.includes(needle))) return text;
  const input = Buffer.from(text, 'utf8');
  return Buffer.concat(scan(input, set, input.length).pieces).toString('utf8');
}

export interface RewriteStreamOptions {
  needles: NeedleSet;
  /** credential shapes that fail the stream as secret_leak; empty for none */
  leakPatterns?: readonly LeakPattern[];
  /** called once per alias, after the first replacement of it has been pushed */
  onUse?: (alias: string) => void;
  /** the layered leak detector over the bytes as sent: nothing past what it cleared is passed on */
  leakScan?: LeakScan;
}

/**
 * A Transform applying a NeedleSet to a byte stream. It holds back at most
 * max(longest needle, longest leak pattern + 1) - 1 bytes between chunks.
 */
export class RewriteStream extends Transform {
  readonly #needles: NeedleSet;
  readonly #patterns: readonly LeakPattern[];
  readonly #onUse: ((alias: string) => void) | undefined;
  readonly #leakScan: LeakScan | undefined;
  /** bytes taken in so far: #held ends at this offset of the stream */
  #received = 0;
  readonly #reported = new Set<string>();
  /** a position is decided once this many bytes from it on are in view */
  readonly #window: number;
  #held: Buffer = Buffer.alloc(0);
  /** the byte just before #held, so look-behinds of leak patterns see it */
  #before: Buffer = Buffer.alloc(0);

  constructor(options: RewriteStreamOptions) {
    super();
    this.#needles = options.needles;
    this.#patterns = options.leakPatterns ?? [];
    this.#onUse = options.onUse;
    this.#leakScan = options.leakScan;
    const patternWindow = this.#patterns.length > 0 ? Math.max(...this.#patterns.map((p) => p.maxLength)) + 1 : 0;
    this.#window = Math.max(1, this.#needles.longest, patternWindow);
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, callback: TransformCallback): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    this.#received += bytes.length;
    try {
      this.#leakScan?.push(bytes);
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.#process(this.#held.length > 0 ? Buffer.concat([this.#held, bytes]) : bytes, false, callback);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#leakScan?.end();
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.#process(this.#held, true, callback);
  }

  #process(input: Buffer, complete: boolean, callback: TransformCallback): void {
    let result: ScanResult | null;
    try {
      this.#checkLeaks(input, complete);
      let limit = complete ? input.length : Math.max(0, input.length - this.#window + 1);
      // bytes the leak scan holds are not decided yet: input ends at #received
      if (this.#leakScan && !complete) limit = Math.max(0, Math.min(limit, this.#leakScan.cleared - (this.#received - input.length)));
      // nothing decided yet (the leak scan holds it, or it is shorter than the window): held as it
      // is, not searched for needles it could not act on before more comes
      result = limit === 0 && !complete ? null : scan(input, this.#needles, limit);
    } catch (error) {
      callback(error as Error);
      return;
    }
    if (result === null) {
      // a chunk of its own is copied (a subarray would keep a larger buffer alive); a join is new
      this.#held = this.#held.length > 0 ? input : Buffer.from(input);
      callback();
      return;
    }
    const output = Buffer.concat(result.pieces);
    if (output.length > 0) this.push(output);
    if (result.consumed > 0) this.#before = Buffer.from(input.subarray(result.consumed - 1, result.consumed));
    // copy: a subarray would keep the whole chunk alive
    this.#held = Buffer.from(input.subarray(result.consumed));
    for (const alias of result.uses) {
      if (this.#reported.has(alias)) continue;
      this.#reported.add(alias);
      this.#onUse?.(alias);
    }
    callback();
  }

  #checkLeaks(input: Buffer, complete: boolean): void {
    if (this.#patterns.length === 0) return;
    // latin1 maps each byte to one char, so offsets agree; every pattern is ASCII
    const text = this.#before.toString('latin1') + input.toString('latin1');
    const found = findLeakIn(text, this.#before.length, complete, this.#patterns);
    if (found) throw new SecretViolation('secret_leak', null, `the body carries what looks like a credential (${found.name})`);
  }
}
