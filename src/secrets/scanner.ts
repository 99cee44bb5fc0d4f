// The scrubber's scanning core: every known form of every known value becomes its placeholder, in
// whole strings and in byte streams split anywhere, synchronously (no stream machinery per chunk).
//
// Two stages, one after the other:
// 1. text forms (raw, percent-encoded, JSON-escaped) are matched in the bytes as they are;
// 2. encoded forms (base64, base64url, hex) are matched in a view of the bytes where the line
//    breaks of wrapped text are taken out, so a value that a wrapped blob breaks across lines is
//    still found; the whole span, breaks included, is replaced.
// A line break counts as a wrap when at least MIN_WRAP_LINE base64/hex alphabet characters come
// right before it: LF, CR, CRLF, or the JSON escapes \n, \r, \r\n (GitHub's contents API writes
// its base64 inside JSON). Matching is leftmost, then longest; a position is decided only once
// every needle starting there is in view, so the output is the same whatever the chunking.

/** A wrapped line shorter than this is not joined to the next (base64 wraps at 60, 64 or 76). */
export const MIN_WRAP_LINE = 60;

const EMPTY: Buffer = Buffer.alloc(0);

/** base64, base64url and hex characters, and `=` padding */
const ALPHA = new Uint8Array(256);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-') ALPHA[char.charCodeAt(0)] = 1;

const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const LOWER_N = 0x6e;
const LOWER_R = 0x72;

/** What to look for and what to put in its place. */
export interface ScrubNeedle {
  bytes: Buffer;
  replacement: Buffer;
}

/** A set of needles searched together. Empty needles are dropped; for the same bytes the first wins. */
export class ScrubNeedles {
  readonly needles: readonly ScrubNeedle[];
  /** the needles as text, for a quick check before a byte scan of a string */
  readonly texts: readonly string[];
  /** the needles as latin1 text (one character per byte), for strings that carry raw bytes */
  readonly latin1: readonly string[];
  readonly longest: number;
  /** the shortest needle, in UTF-16 units: a shorter string cannot hold one */
  readonly shortest: number;

  constructor(needles: Iterable<ScrubNeedle>) {
    const byBytes = new Map<string, ScrubNeedle>();
    for (const needle of needles) {
      const key = needle.bytes.toString('latin1');
      if (needle.bytes.length > 0 && !byBytes.has(key)) byBytes.set(key, needle);
    }
    this.needles = [...byBytes.values()];
    this.texts = this.needles.map((n) => n.bytes.toString('utf8'));
    this.latin1 = this.needles.map((n) => n.bytes.toString('latin1'));
    this.longest = Math.max(0, ...this.needles.map((n) => n.bytes.length));
    this.shortest = Math.min(...this.texts.map((text) => text.length));
  }

  get empty(): boolean {
    return this.needles.length === 0;
  }
}

interface Match {
  start: number;
  end: number;
  replacement: Buffer;
}

/**
 * Needle occurrences in `input` that start before `limit` (they may end past it), leftmost first,
 * the longest at one position, none overlapping an earlier one.
 */
function findMatches(input: Buffer, set: ScrubNeedles, limit: number): readonly Match[] {
  const { needles } = set;
  // The first look finds nothing in almost every chunk: nothing is allocated for it.
  let first = -1;
  for (let i = 0; i < needles.length && first === -1; i++) {
    const at = input.indexOf(needles[i]!.bytes);
    if (at !== -1 && at < limit) first = i;
  }
  if (first === -1) return NO_MATCHES;
  const matches: Match[] = [];
  // where each needle was last seen, so each is searched once per position it could be at
  const next = new Array<number>(needles.length).fill(-2);
  let cursor = 0;
  for (;;) {
    let best = -1;
    let bestAt = Infinity;
    for (let i = 0; i < needles.length; i++) {
      let at = next[i]!;
      if (at === -2 || (at !== -1 && at < cursor)) at = next[i] = input.indexOf(needles[i]!.bytes, cursor);
      if (at === -1 || at >= limit) continue;
      if (at < bestAt || (at === bestAt && needles[i]!.bytes.length > needles[best]!.bytes.length)) {
        best = i;
        bestAt = at;
      }
    }
    if (best === -1) return matches;
    const needle = needles[best]!;
    matches.push({ start: bestAt, end: bestAt + needle.bytes.length, replacement: needle.replacement });
    cursor = bestAt + needle.bytes.length;
  }
}

const NO_MATCHES: readonly Match[] = Object.freeze([]);

/** The number of bytes of the line break at input[i], or 0 when there is none. */
function breakLength(input: Buffer, i: number): number {
  const b = input[i];
  if (b === LF) return 1;
  if (b === CR) return input[i + 1] === LF ? 2 : 1;
  if (b === BACKSLASH) {
    const c = input[i + 1];
    if (c === LOWER_N) return 2;
    if (c === LOWER_R) return input[i + 2] === BACKSLASH && input[i + 3] === LOWER_N ? 4 : 2;
  }
  return 0;
}

/** One stage of the scrubber: bytes in, bytes out, at most its window less one held between pushes. */
interface Stage {
  push(input: Buffer, complete: boolean): Buffer;
  /** replacements made so far */
  readonly matched: number;
}

/** Stage 1: needles matched in the bytes as they are. */
class TextStage implements Stage {
  readonly #set: ScrubNeedles;
  readonly #window: number;
  #held: Buffer = EMPTY;
  matched = 0;

  constructor(set: ScrubNeedles) {
    this.#set = set;
    this.#window = Math.max(1, set.longest);
  }

  push(chunk: Buffer, complete: boolean): Buffer {
    const input = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    const limit = complete ? input.length : Math.max(0, input.length - this.#window + 1);
    const matches = findMatches(input, this.#set, limit);
    if (matches.length === 0) {
      // copy: a subarray would keep the whole chunk alive
      this.#held = limit < input.length ? Buffer.from(input.subarray(limit)) : EMPTY;
      return limit === input.length ? input : input.subarray(0, limit);
    }
    this.matched += matches.length;
    let cursor = 0;
    const pieces: Buffer[] = [];
    for (const m of matches) {
      pieces.push(input.subarray(cursor, m.start), m.replacement);
      cursor = m.end;
    }
    const consumed = Math.max(cursor, limit);
    pieces.push(input.subarray(cursor, consumed));
    this.#held = consumed < input.length ? Buffer.from(input.subarray(consumed)) : EMPTY;
    return Buffer.concat(pieces);
  }
}

/** Stage 2: needles matched with wrapped lines joined. */
class UnwrapStage implements Stage {
  readonly #set: ScrubNeedles;
  readonly #window: number;
  #held: Buffer = EMPTY;
  /** alphabet characters right before #held (capped at MIN_WRAP_LINE) */
  #run = 0;
  matched = 0;

  constructor(set: ScrubNeedles) {
    this.#set = set;
    this.#window = Math.max(1, set.longest);
  }

  push(chunk: Buffer, complete: boolean): Buffer {
    const input = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    const n = input.length;
    const { gaps, end } = findGaps(input, complete, this.#run);
    if (gaps === null) {
      // No wrap to join (almost always): the view is the input itself.
      const limit = complete ? end : Math.max(0, end - this.#window + 1);
      const matches = findMatches(input, this.#set, limit);
      if (matches.length === 0) {
        const consumed = limit === end && complete ? n : limit;
        this.#run = runBefore(input, consumed, this.#run, -1);
        this.#held = consumed < n ? Buffer.from(input.subarray(consumed)) : EMPTY;
        return consumed === n ? input : input.subarray(0, consumed);
      }
    }
    const view = gaps === null ? input.subarray(0, end) : joined(input, end, gaps);
    /** the input offset of a view offset */
    const at = gaps === null ? (v: number): number => v : inputOffset(gaps);

    const limit = complete ? view.length : Math.max(0, view.length - this.#window + 1);
    const matches = findMatches(view, this.#set, limit);
    this.matched += matches.length;
    let cursor = 0;
    let viewCursor = 0;
    const pieces: Buffer[] = [];
    for (const m of matches) {
      const start = at(m.start);
      pieces.push(input.subarray(cursor, start), m.replacement);
      cursor = at(m.end - 1) + 1;
      viewCursor = m.end;
    }
    const decided = Math.max(viewCursor, limit);
    const consumed = decided < view.length ? at(decided) : end;
    pieces.push(input.subarray(cursor, consumed));
    this.#run = runBefore(input, consumed, this.#run, lastGapEnd(gaps, consumed));
    this.#held = consumed < n ? Buffer.from(input.subarray(consumed)) : EMPTY;
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }
}

/**
 * The wrap breaks in input: offsets and lengths, and where the joined view must end (before a
 * break that could be longer than what is in view). Only LF, CR and backslash can start a break,
 * so they are found with indexOf (native, many times faster than a loop over every byte) and the
 * alphabet characters before each are counted backwards, at most MIN_WRAP_LINE of them.
 */
function findGaps(input: Buffer, complete: boolean, before: number): { gaps: number[] | null; end: number } {
  const n = input.length;
  let gaps: number[] | null = null;
  // where each kind of break character is next; -2: not looked for yet
  let lf = -2;
  let cr = -2;
  let bs = -2;
  let pos = 0;
  /** a run cannot reach back past this: the start of input, the end of the last gap, or past the last candidate */
  let lower = 0;
  /** the run may go on into `before` when it reaches the start of input */
  let fromStart = true;
  for (;;) {
    if (lf !== -1 && lf < pos) lf = input.indexOf(LF, pos);
    if (cr !== -1 && cr < pos) cr = input.indexOf(CR, pos);
    if (bs !== -1 && bs < pos) bs = input.indexOf(BACKSLASH, pos);
    let i = n;
    if (lf !== -1) i = lf;
    if (cr !== -1 && cr < i) i = cr;
    if (bs !== -1 && bs < i) i = bs;
    if (i === n) return { gaps, end: n };
    let run = 0;
    if (i - lower + (fromStart ? before : 0) >= MIN_WRAP_LINE) {
      let k = i - 1;
      while (k >= lower && run < MIN_WRAP_LINE && ALPHA[input[k]!] === 1) {
        run++;
        k--;
      }
      if (k < lower && fromStart) run += before;
    }
    const b = input[i]!;
    if (run >= MIN_WRAP_LINE) {
      if (!complete && b !== LF && i + 3 >= n) return { gaps, end: i };
      const length = breakLength(input, i);
      if (length > 0) {
        (gaps ??= []).push(i, length);
        pos = lower = i + length;
        fromStart = false;
        continue;
      }
    }
    // the candidate itself is not an alphabet character: no run reaches back past it
    pos = lower = i + 1;
    fromStart = false;
  }
}

/** input[0, end) without the gaps. */
function joined(input: Buffer, end: number, gaps: number[]): Buffer {
  let removed = 0;
  for (let k = 1; k < gaps.length; k += 2) removed += gaps[k]!;
  const view = Buffer.allocUnsafe(end - removed);
  let from = 0;
  let to = 0;
  for (let k = 0; k < gaps.length; k += 2) {
    to += input.copy(view, to, from, gaps[k]);
    from = gaps[k]! + gaps[k + 1]!;
  }
  input.copy(view, to, from, end);
  return view;
}

/** Maps a view offset back to its input offset, given the gaps taken out. */
function inputOffset(gaps: number[]): (v: number) => number {
  // view offset at which each gap sits, and the bytes removed up to and including it
  const sits: number[] = [];
  const removed: number[] = [];
  let total = 0;
  for (let k = 0; k < gaps.length; k += 2) {
    sits.push(gaps[k]! - total);
    total += gaps[k + 1]!;
    removed.push(total);
  }
  return (v) => {
    let lo = 0;
    let hi = sits.length;
    // the number of gaps sitting at or before v
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sits[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    return v + (lo === 0 ? 0 : removed[lo - 1]!);
  };
}

/** Where the last gap that ends at or before `offset` ends; -1 when none does. */
function lastGapEnd(gaps: number[] | null, offset: number): number {
  if (gaps === null) return -1;
  for (let k = gaps.length - 2; k >= 0; k -= 2) {
    const gapEnd = gaps[k]! + gaps[k + 1]!;
    if (gapEnd <= offset) return gapEnd;
  }
  return -1;
}

/**
 * Alphabet characters right before input[offset], as the forward scan counts them: the count
 * starts again after a break taken out (whose own `n` or `r` does not count), and continues from
 * `before` (what came before input) when the run reaches the start. Capped at MIN_WRAP_LINE.
 */
function runBefore(input: Buffer, offset: number, before: number, floor: number): number {
  let run = 0;
  for (let i = offset - 1; run < MIN_WRAP_LINE; i--) {
    if (i < floor) return run;
    if (i < 0) return Math.min(MIN_WRAP_LINE, run + before);
    if (ALPHA[input[i]!] !== 1) return run;
    run++;
  }
  return run;
}

/** The needles of both stages: built once per set of values (see scrub.ts). */
export interface ScrubPlan {
  text: ScrubNeedles;
  encoded: ScrubNeedles;
}

/**
 * A streaming scrubber: push() returns what may go to the client now, end() the rest. It holds
 * back fewer bytes than the longest text form plus the longest encoded form.
 */
export class Scrubber {
  readonly #stages: Stage[];
  /** for whole(): the prefilter (a stream pushed piece by piece goes through the stages) */
  readonly #plan: ScrubPlan | null;

  constructor(plan: ScrubPlan) {
    this.#plan = plan;
    this.#stages = [];
    if (!plan.text.empty) this.#stages.push(new TextStage(plan.text));
    if (!plan.encoded.empty) this.#stages.push(new UnwrapStage(plan.encoded));
  }

  push(chunk: Buffer): Buffer {
    let out = chunk;
    for (const stage of this.#stages) out = stage.push(out, false);
    return out;
  }

  end(): Buffer {
    let out: Buffer = EMPTY;
    for (const stage of this.#stages) out = stage.push(out, true);
    return out;
  }

  /** A whole body at once (nothing pushed before): each stage scans it once, unless the prefilter clears it. */
  whole(bytes: Buffer): Buffer {
    if (this.#plan !== null && surelyClean(bytes, this.#plan)) return bytes;
    let out = bytes;
    for (const stage of this.#stages) out = stage.push(out, true);
    return out;
  }

  /** replacements made so far, both stages */
  get matched(): number {
    return this.#stages.reduce((sum, stage) => sum + stage.matched, 0);
  }
}

/** The prefilter of each plan: every needle of both stages in one regex, over the bytes read as latin1. */
const prefilters = new WeakMap<ScrubPlan, RegExp | null>();

function prefilterOf(plan: ScrubPlan): RegExp | null {
  let regex = prefilters.get(plan);
  if (regex === undefined) {
    const needles = [...plan.text.latin1, ...plan.encoded.latin1];
    // latin1: one character per byte, so the regex matches exactly where indexOf on the bytes would
    regex = needles.length === 0 ? null : new RegExp(needles.map((needle) => needle.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')).join('|'));
    prefilters.set(plan, regex);
  }
  return regex;
}

/**
 * Whether a whole buffer surely holds no form of any value, so both stages would pass it on as it is:
 * no needle of either stage occurs in the bytes as they stand (one combined search, cheaper than a
 * search per needle and the stages' bookkeeping), and there is no wrap the second stage would join.
 * false means "scan it": the stages decide.
 */
export function surelyClean(bytes: Buffer, plan: ScrubPlan): boolean {
  const regex = prefilterOf(plan);
  if (regex === null) return true;
  if (regex.test(bytes.toString('latin1'))) return false;
  return plan.encoded.empty || findGaps(bytes, true, 0).gaps === null;
}

/** The bytes may hold a wrap to join: only then is the slower joined scan needed for a string. */
function mayWrap(text: string): boolean {
  return text.includes('\n') || text.includes('\r') || text.includes('\\n') || text.includes('\\r');
}

/** Every form of every value in a whole string replaced (utf8). */
/**
 * Every form of every value in a whole string replaced. `encoding` says how the string holds its
 * bytes: 'utf8' for text (audit fields, log lines), 'latin1' for what Node's HTTP parser hands over
 * one byte per character (raw header values), so a value with non-ASCII characters is found there.
 */
export function scrubString(text: string, plan: ScrubPlan, encoding: 'utf8' | 'latin1' = 'utf8'): string {
  // Most text (a header value, an audit field) is shorter than any form of any value.
  if (text.length < plan.text.shortest && text.length < plan.encoded.shortest) return text;
  const textNeedles = encoding === 'utf8' ? plan.text.texts : plan.text.latin1;
  // Most text carries no needle: a string search is far cheaper than the byte scan.
  const text1 = textNeedles.some((needle) => text.includes(needle)) ? runWhole(new TextStage(plan.text), text, encoding) : text;
  if (plan.encoded.empty) return text1;
  const encodedNeedles = encoding === 'utf8' ? plan.encoded.texts : plan.encoded.latin1;
  if (!mayWrap(text1) && !encodedNeedles.some((needle) => text1.includes(needle))) return text1;
  return runWhole(new UnwrapStage(plan.encoded), text1, encoding);
}

function runWhole(stage: Stage, text: string, encoding: 'utf8' | 'latin1'): string {
  return stage.push(Buffer.from(text, encoding), true).toString(encoding);
}

/** Whether a whole buffer carries any form of any value (for a check that must not rewrite). */
export function carriesValue(bytes: Buffer, plan: ScrubPlan): boolean {
  const probe = new Scrubber(plan);
  probe.push(bytes);
  probe.end();
  return probe.matched > 0;
}
