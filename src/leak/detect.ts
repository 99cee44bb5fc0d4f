// The outbound leak detector: a credential shape found in what a tool sends, through the
// encodings a tool can wrap it in. Pure: text in, the shape and the chain of decodings out.
//
// Each level of a text is normalised (JSON \u escapes undone; zero-width and bidi controls taken
// out; NFKC, so full-width and other compatibility forms become plain ASCII) and matched against
// the shapes; neighbouring JSON string values and form fields are matched joined in pairs (a key
// split across two fields); then, up to MAX_DEPTH levels, the level is decoded and the result is
// a level of its own: percent-encoding (so double encoding is two levels), and every run that
// looks like base64/base64url (padding optional, wrapped lines joined) or hex (plain, or with
// `-`/`:` separators). The decoded runs of one kind are joined into one text, so a level is
// matched once whatever the number of runs. Decoded bytes count against a budget (the request
// limit): more is DecodeBudgetExceeded. A determined sender can always find an encoding this does
// not undo: it raises the cost of a leak, it is not a proof that none left.
import { isUtf8 } from 'node:buffer';
import type { KeywordAutomaton } from './keywords.js';
import {
  C_SLASH,
  colonAfter,
  freshSurvey,
  hexOnlyRun,
  NIBBLE,
  RUN_BASE64,
  RUN_DEAD,
  RUN_HEX,
  SEXTET,
  surveyRoom,
  type RunSurvey,
  type SurveyRoom,
} from './runs.js';
import { defaultShapes, type ScanNotes, type ShapeSet } from './shapes.js';
import { wasmHasControl } from './scan-wasm.js';

/** Decoding levels under the text as sent. */
export const MAX_DEPTH = 3;

export type Decoding = 'percent' | 'base64' | 'hex';

export interface LeakFinding {
  /** the shape's bounded name */
  shape: string;
  /** the decodings that uncovered it, outermost first; empty when it was there as sent */
  chain: Decoding[];
  /** it was found only with two neighbouring values joined */
  split: boolean;
}

/** Decoded bytes left for one request: shared by every surface of it. */
export class DecodeBudget {
  left: number;
  constructor(readonly limit: number) {
    this.left = limit;
  }
  take(bytes: number): void {
    this.left -= bytes;
    if (this.left < 0) throw new DecodeBudgetExceeded(this.limit);
  }
}

export class DecodeBudgetExceeded extends Error {
  constructor(readonly limit: number) {
    super(`the request decodes (percent, base64, hex layers) to more than the limit of ${limit} bytes`);
    this.name = 'DecodeBudgetExceeded';
  }
}

/** Zero-width characters, bidi controls and other invisible format characters a key can be salted with. */
// Listed one by one as escapes (a class of combining marks would read as one character to a linter).
const INVISIBLE = new RegExp(
  // eslint-disable-next-line no-misleading-character-class -- each is its own character here, not a mark on the one before
  '[\\u00ad\\u034f\\u061c\\u115f\\u1160\\u17b4\\u17b5\\u180b-\\u180f\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u206f\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0]',
  'g',
);
const NON_ASCII = /[\u0080-\uffff]/;
const JSON_ESCAPE = /\\u([0-9a-fA-F]{4})|\\\//g;

/** The text as the shapes should see it (see the file comment). */
export function normalize(text: string): string {
  const out = unescapeJson(text);
  return NON_ASCII.test(out) ? foldNonAscii(out) : out;
}

/** JSON \u escapes and \/ undone */
function unescapeJson(text: string): string {
  if (!text.includes('\\u') && !text.includes('\\/')) return text;
  return text.replace(JSON_ESCAPE, (m, hex: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : '/'));
}

/** invisible characters out, compatibility forms folded (NFKC): the part of normalize for text past ASCII */
function foldNonAscii(text: string): string {
  return text.replace(INVISIBLE, '').normalize('NFKC').replace(INVISIBLE, '');
}

/** Bytes as text: UTF-8 when they are valid UTF-8, else one character per byte. */
export function bytesAsText(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

const PERCENT = /%[0-9a-fA-F]{2}/;
/** a line break, raw or JSON-escaped */
const LINE_BREAK = /\r?\n|\\r?\\n/;
const WRAPPED_LINE_END = /^[A-Za-z0-9+/=_-]{60}$/;
const ALPHABET_START = /^[A-Za-z0-9+/_-]/;

/**
 * Text with base64 line wraps taken out: a break that ends a line whose last 60 characters are all
 * base64 (MIME and PEM wrap at 64 or 76) joins it to the next. Line by line, never a regex over
 * the whole text that could backtrack across a long run.
 */
export function unwrap(text: string): string {
  // JSON escapes (\r\n, \n) break lines too: a wrapped value inside a JSON string carries no real line break.
  const escaped = text.includes('\\n');
  if (!escaped && !text.includes('\n')) return text;
  // every break a raw \n and no line before one of 60 characters (a head's surfaces): none joins, the text as it is
  if (!escaped && !text.includes('\r\n') && !longLineBeforeBreak(text)) return text;
  const lines = text.split(LINE_BREAK);
  let out = lines[0]!;
  let changed = false;
  let length = out.length;
  for (let i = 1; i < lines.length; i++) {
    const previous = lines[i - 1]!;
    const joins = previous.length >= 60 && WRAPPED_LINE_END.test(previous.slice(-60)) && ALPHABET_START.test(lines[i]!);
    if (joins) changed = true;
    length += lines[i]!.length;
    out += (joins ? '' : '\n') + lines[i]!;
  }
  // every break one character (a raw \n, the only one-character break) and none joined: the text as it was
  return changed || length + lines.length - 1 !== text.length ? out : text;
}
/** Whether a line of `text` that a raw \n ends is 60 characters or more (what a join needs of the line before it). */
function longLineBeforeBreak(text: string): boolean {
  let from = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) {
    if (at - from >= 60) return true;
    from = at + 1;
  }
  return false;
}
const BASE64_RUN = /[A-Za-z0-9+/_-]{16,}/g;
const HEX_RUN = /(?<![0-9a-fA-F])(?:[0-9a-fA-F]{16,}|[0-9a-fA-F]{2}(?:([-:])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){6,})(?![0-9a-fA-F])/g;
const HEX_ONLY = /^[0-9a-fA-F]+$/;

function percentDecode(text: string): string {
  return decodedText(
    Buffer.from(
      text.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
      'latin1',
    ),
  );
}

export { surveyRuns } from './keywords.js';
export type { RunSurvey } from './runs.js';

/** Where runs are decoded: grown as needed, so a run costs no allocation unless it decodes to text. */
let scratch = Buffer.allocUnsafe(4096);

/**
 * decodedText of `bytes` when it could be 8 characters or more (what decodedRuns keeps), else
 * null, deciding most random bytes without making a string: text needs valid UTF-8 without control
 * characters, or else a printable run (PRINTABLE_RUN: 10 or more, not starting with a space).
 */
export function keptText(bytes: Buffer): string | null {
  return keptScratch(bytes, bytes.length);
}

/** keptText of buffer[0, length), making the Buffer view only when it has to look further (decodedText). */
function keptScratch(buffer: Buffer, length: number): string | null {
  if (length < 8) return null;
  let control = false;
  let run = 0;
  let printable = false;
  for (let i = 0; i < length; i++) {
    const b = buffer[i]!;
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
    // with a control byte, only a printable run keeps the bytes: none can reach 10 in what is left
    if (control && run + length - 1 - i < 10) return null;
  }
  if (!printable && (control || !validUtf8(buffer, length))) return null;
  const text = decodedText(length === buffer.length ? buffer : buffer.subarray(0, length));
  return text.length >= 8 ? text : null;
}

/**
 * isUtf8(buffer[0, length)) without the view and the native call for the short buffers a run
 * decodes to: well-formed UTF-8 (RFC 3629: no overlong form, no surrogate, nothing past U+10FFFF).
 */
export function validUtf8(buffer: Uint8Array, length: number): boolean {
  if (length > 256) return isUtf8(buffer.subarray(0, length));
  let i = 0;
  while (i < length) {
    const b = buffer[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) low = 0xa0;
      else if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) low = 0x90;
      else if (b === 0xf4) high = 0x8f;
    } else return false;
    if (i + need >= length) return false;
    const second = buffer[i + 1]!;
    if (second < low || second > high) return false;
    for (let k = 2; k <= need; k++) {
      const c = buffer[i + k]!;
      if (c < 0x80 || c > 0xbf) return false;
    }
    i += need + 1;
  }
  return true;
}

function decodeInto(run: string, encoding: 'base64' | 'hex'): Buffer {
  const need = encoding === 'hex' ? run.length >> 1 : ((run.length * 3) >> 2) + 3;
  if (scratch.length < need) scratch = Buffer.allocUnsafe(Math.max(need, scratch.length * 2));
  const written = scratch.write(run, 0, encoding);
  return scratch.subarray(0, written);
}

function room(bytes: number): void {
  if (scratch.length < bytes) scratch = Buffer.allocUnsafe(Math.max(bytes, scratch.length * 2));
}

/**
 * text[start, end), a run of base64/base64url characters without padding, decoded as
 * Buffer.from(run, 'base64') would (a trailing group of 2 or 3 characters gives 1 or 2 bytes),
 * without the substring and the native call a run.
 */
export function decodeBase64Range(text: string, start: number, end: number): Buffer {
  return scratch.subarray(0, base64IntoScratch(text, start, end));
}

/** decodeBase64Range into scratch: the bytes written, from its start. */
function base64IntoScratch(text: string, start: number, end: number): number {
  room(((end - start) * 3) >> 2);
  const out = scratch;
  let n = 0;
  let acc = 0;
  let bits = 0;
  for (let i = start; i < end; i++) {
    acc = ((acc << 6) | SEXTET[text.charCodeAt(i)]!) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return n;
}

/** text[start, end), an even run of hex digits, decoded. */
export function decodeHexRange(text: string, start: number, end: number): Buffer {
  return scratch.subarray(0, hexIntoScratch(text, start, end));
}

/** decodeHexRange into scratch: the bytes written, from its start. */
function hexIntoScratch(text: string, start: number, end: number): number {
  room((end - start) >> 1);
  const out = scratch;
  let n = 0;
  for (let i = start; i + 1 < end; i += 2) out[n++] = (NIBBLE[text.charCodeAt(i)]! << 4) | NIBBLE[text.charCodeAt(i + 1)]!;
  return n;
}

function decodedRuns(text: string, run: RegExp, decode: (match: RegExpExecArray) => Buffer | null): string | null {
  run.lastIndex = 0;
  const parts: string[] = [];
  for (let m = run.exec(text); m; m = run.exec(text)) {
    const bytes = decode(m);
    if (bytes) {
      const text = keptText(bytes);
      if (text !== null) parts.push(text);
    }
  }
  return parts.length === 0 ? null : parts.join('\n');
}

function base64Runs(text: string, survey: RunSurvey): string | null {
  // wrapped lines are joined first: the regex path, over the unwrapped text (when it is another text)
  const unwrapped = unwrap(text);
  if (unwrapped !== text) {
    const parts: string[] = [];
    BASE64_RUN.lastIndex = 0;
    for (let m = BASE64_RUN.exec(unwrapped); m; m = BASE64_RUN.exec(unwrapped)) {
      const run = m[0];
      // all-hex runs are read as hex too; as base64 they are read only when mixed-case, like real base64
      if (HEX_ONLY.test(run) && (run === run.toLowerCase() || run === run.toUpperCase())) continue;
      pushRun(parts, unwrapped, m.index, m.index + run.length, run.includes('/'));
    }
    return parts.length === 0 ? null : parts.join('\n');
  }
  const parts: string[] = [];
  const runs = survey.runs;
  for (let r = 0; r < runs.length; r += 3) {
    const kind = runs[r]!;
    if ((kind & 0xf) !== RUN_BASE64) continue;
    const flags = kind >> 8;
    if (hexOnlyRun(flags)) continue;
    pushRun(parts, text, runs[r + 1]!, runs[r + 2]!, (flags & C_SLASH) !== 0, (kind & RUN_DEAD) !== 0);
  }
  return parts.length === 0 ? null : parts.join('\n');
}

/** runs at most this long are also read segment by segment (see pushRun) */
const MAX_SEGMENTED_RUN = 2048;

/**
 * Decodes one base64 run (both alphabets, with or without padding) into parts. "/" is in the base64
 * alphabet, so a base64url value in a path ("/notes/<value>") reads as one run from the first "/"
 * on, out of step by the segments before it: in a run as short as a path its segments are read
 * apart too (in a long blob "/" is base64's own, and reading it twice would double the cost).
 */
function pushRun(parts: string[], text: string, start: number, end: number, slash: boolean, dead = false): void {
  // (scratch read after the decode: it may have grown)
  if (!dead) {
    const written = base64IntoScratch(text, start, (end - start) % 4 === 1 ? end - 1 : end);
    const kept = keptScratch(scratch, written);
    if (kept !== null) parts.push(kept);
  }
  // a run with no "/" has one segment, the run itself, already read
  if (!slash || end - start > MAX_SEGMENTED_RUN) return;
  let from = start;
  for (let i = start; i <= end; i++) {
    if (i < end && text.charCodeAt(i) !== 0x2f) continue;
    // a run with no "/" has one segment, the run itself, already read
    if (i - from >= 16 && !(from === start && i === end)) {
      const written = base64IntoScratch(text, from, (i - from) % 4 === 1 ? i - 1 : i);
      const segment = keptScratch(scratch, written);
      if (segment !== null) parts.push(segment);
    }
    from = i + 1;
  }
}

function hexRuns(text: string, survey: RunSurvey): string | null {
  if (survey.separatedHex)
    return decodedRuns(text, HEX_RUN, (m) => {
      const digits = m[1] ? m[0].split(m[1]).join('') : m[0];
      return decodeInto(digits.length % 2 === 1 ? digits.slice(0, -1) : digits, 'hex');
    });
  const parts: string[] = [];
  const runs = survey.runs;
  for (let r = 0; r < runs.length; r += 3) {
    const kind = runs[r]!;
    if ((kind & 0xf) !== RUN_HEX || (kind & RUN_DEAD) !== 0) continue;
    const start = runs[r + 1]!;
    const end = runs[r + 2]!;
    const written = hexIntoScratch(text, start, (end - start) % 2 === 1 ? end - 1 : end);
    const kept = keptScratch(scratch, written);
    if (kept !== null) parts.push(kept);
  }
  return parts.length === 0 ? null : parts.join('\n');
}

/**
 * A JSON string value made of a credential's alphabet; one followed by a colon is a key, not a
 * value. jsonValues() finds what this regex's exec loop finds (the fast-path test holds it to that).
 */
export const JSON_PIECE = /"([A-Za-z0-9_\-.+/=~]{4,256})"(\s*:)?/g;
/** a form field's value made of a credential's alphabet */
const FORM_PIECE = /(?:^|[&?;\n])[^=&\s]{0,128}=([A-Za-z0-9_\-.+/~]{4,256})(?=[&\s]|$)/g;
const MAX_JOINED_VALUES = 4096;

/** For seam checks of a text's values: the keyword automaton and which of its keywords are the join keywords. */
export interface Seams {
  automaton: KeywordAutomaton;
  relevant: Uint8Array;
}

/**
 * Whether a join keyword spans the seam of the values at values[v - 3] and values[v] (records of
 * start, end and the automaton's state after the value, or -1 when it is not known). A known
 * state is the state of the left value read alone when what it stands for lies within the value;
 * when it reaches further back the seam is taken to span (the exact path decides). An unknown one
 * is read off the value's last characters from the root: a state stands for at most the longest
 * keyword, so that is the state of the value read alone.
 */
function spansSeam(seams: Seams, text: string, values: ArrayLike<number>, v: number): boolean {
  const leftStart = values[v - 3]!;
  const leftEnd = values[v - 2]!;
  let state = values[v - 1]!;
  if (state < 0) state = seams.automaton.stateAfter(text, Math.max(leftStart, leftEnd - seams.automaton.maxLength), leftEnd);
  else if (seams.automaton.depthOf(state) > leftEnd - leftStart) return true;
  return seams.automaton.spansFrom(state, text, values[v]!, values[v + 1]!, seams.relevant);
}

/** JSON_PIECE's value characters */
const JSON_VALUE = new Uint8Array(128);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/=~') JSON_VALUE[char.charCodeAt(0)] = 1;

/**
 * The values JSON_PIECE finds in `text` (its matches without the colon of a key), at most
 * MAX_JOINED_VALUES, as records (start, end, -1) pushed onto `out` (the scan's survey finds the
 * same, RunSurvey.quoted); what the regex's exec loop finds,
 * without a match array and a substring a value. A match starts at a quote followed by 4 to 256
 * value characters and a quote (the value characters hold no quote, so the run after a quote is
 * the only candidate); it takes a colon after white space along, and the next match is looked for
 * after it. A failed start goes on at the next quote.
 */
function jsonValues(text: string, out: number[]): void {
  const length = text.length;
  let count = 0;
  for (let q = text.indexOf('"'); q !== -1 && count < MAX_JOINED_VALUES;) {
    const start = q + 1;
    const limit = Math.min(length, start + 257);
    let end = start;
    while (end < limit) {
      const code = text.charCodeAt(end);
      if (code >= 128 || JSON_VALUE[code] === 0) break;
      end++;
    }
    const run = end - start;
    if (run < 4 || run > 256 || end >= length || text.charCodeAt(end) !== 0x22) {
      q = text.indexOf('"', q + 1);
      continue;
    }
    const colon = colonAfter(text, end + 1);
    if (colon >= 0) {
      // a key
      q = text.indexOf('"', colon + 1);
      continue;
    }
    out.push(start, end, -1);
    count++;
    q = text.indexOf('"', end + 1);
  }
}

/**
 * The survey's JSON values as joinedNeighbours reads them: as they are (at most MAX_JOINED_VALUES),
 * their states made unknown (-1) when they are another automaton's than the seams'.
 */
function surveyValues(survey: RunSurvey, seams: Seams | undefined): ArrayLike<number> {
  const quoted = survey.quoted;
  const length = Math.min(quoted.length, MAX_JOINED_VALUES * 3);
  if (seams === undefined || survey.by === seams.automaton) return length === quoted.length ? quoted : quoted.slice(0, length);
  const values = Array.from(quoted.slice(0, length));
  for (let v = 2; v < length; v += 3) values[v] = -1;
  return values;
}

/** The values FORM_PIECE finds in `text`, at most MAX_JOINED_VALUES, as records (start, end, -1) pushed onto `out`. */
function formValues(text: string, out: number[]): void {
  FORM_PIECE.lastIndex = 0;
  let count = 0;
  for (let m = FORM_PIECE.exec(text); m && count < MAX_JOINED_VALUES; m = FORM_PIECE.exec(text)) {
    const end = m.index + m[0].length;
    out.push(end - m[1]!.length, end, -1);
    count++;
  }
}

/**
 * Neighbouring values (JSON strings, then form fields), each pair joined on a line of its own; null
 * when fewer than two. With `seams` (the forJoins automaton, given when the text holds none of its
 * keywords), also null when no pair holds a keyword across its seam: then no joined line can hold
 * one, and no joined shape can match. `survey`, of the keyword scan of `text`, saves reading the
 * text again for its JSON values (and, when it is of the seams' automaton, for their states).
 * Values are found as offsets, and made strings only when their lines are made.
 */
export function joinedNeighbours(text: string, seams?: Seams, survey?: RunSurvey): string | null {
  let spans = seams === undefined;
  const lines: Array<ArrayLike<number>> = [];
  for (const kind of ['"', '='] as const) {
    if (!text.includes(kind)) continue;
    let values: ArrayLike<number>;
    if (kind === '"' && survey) values = surveyValues(survey, seams);
    else {
      const found: number[] = [];
      if (kind === '"') jsonValues(text, found);
      else formValues(text, found);
      values = found;
    }
    if (values.length < 6) continue;
    lines.push(values);
    for (let v = 3; v < values.length && !spans; v += 3) spans = spansSeam(seams!, text, values, v);
  }
  if (lines.length === 0 || !spans) return null;
  const out: string[] = [];
  for (const values of lines)
    for (let v = 3; v < values.length; v += 3) out.push(text.slice(values[v - 3], values[v - 2]) + text.slice(values[v], values[v + 1]));
  return out.join('\n');
}

/**
 * Runs of printable ASCII long enough to hold a credential: all of binary data a shape can match.
 * Line breaks and tabs stay inside a run, so a wrapped value keeps its short last line.
 */
const PRINTABLE_RUN = /[\x21-\x7e][\x20-\x7e\t\r\n]{9,}/g;
/** what tells binary from text (hasControlByte looks for these bytes) */
// eslint-disable-next-line no-control-regex -- control characters are what tells binary from text
export const CONTROL = /[\x00-\x08\x0e-\x1f\x7f]/;

/**
 * Decoded bytes as text for the next level: text as it is (UTF-8, or ASCII without control
 * characters); anything else (compressed or random bytes, what a base64 decode of a word gives)
 * cut down to its printable runs, one a line.
 */
export function decodedText(bytes: Buffer): string {
  // (a control character of valid UTF-8 is its own byte: every byte of a longer sequence is 0x80 or more)
  if (isUtf8(bytes) && !hasControl(bytes)) return bytes.toString('utf8');
  const latin1 = bytes.toString('latin1');
  PRINTABLE_RUN.lastIndex = 0;
  const runs: string[] = [];
  for (let m = PRINTABLE_RUN.exec(latin1); m; m = PRINTABLE_RUN.exec(latin1)) runs.push(m[0]);
  return runs.join('\n');
}

/** bytes at least this many are looked at by the WebAssembly loop (scan-wasm.ts); fewer cost less here than the copy */
const CONTROL_WASM_MIN = 256;

function hasControl(bytes: Uint8Array): boolean {
  return (bytes.length >= CONTROL_WASM_MIN ? wasmHasControl(bytes) : null) ?? hasControlByte(bytes);
}

/** 1 for the bytes CONTROL matches */
const CONTROL_BYTE = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) if (b <= 0x08 || b >= 0x0e) CONTROL_BYTE[b] = 1;
CONTROL_BYTE[0x7f] = 1;

/**
 * Whether `bytes` holds a byte CONTROL matches, four bytes a step: a word with no byte below 0x20
 * and none 0x7f (the two exact SWAR tests of a byte below n and a byte equal to n) has none; the
 * bytes of any other word are looked up one by one.
 */
export function hasControlByte(bytes: Uint8Array): boolean {
  const length = bytes.length;
  let i = 0;
  while (i < length && ((bytes.byteOffset + i) & 3) !== 0) if (CONTROL_BYTE[bytes[i++]!] === 1) return true;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset + i, (length - i) >> 2);
  for (let w = 0; w < words.length; w++) {
    const x = words[w]!;
    const y = x ^ 0x7f7f7f7f;
    if ((((x - 0x20202020) & ~x) | ((y - 0x01010101) & ~y)) & 0x80808080) {
      const at = i + w * 4;
      if (
        CONTROL_BYTE[bytes[at]!] === 1 ||
        CONTROL_BYTE[bytes[at + 1]!] === 1 ||
        CONTROL_BYTE[bytes[at + 2]!] === 1 ||
        CONTROL_BYTE[bytes[at + 3]!] === 1
      )
        return true;
    }
  }
  for (let j = i + words.length * 4; j < length; j++) if (CONTROL_BYTE[bytes[j]!] === 1) return true;
  return false;
}

export interface DetectOptions {
  shapes?: ShapeSet;
  budget: DecodeBudget;
  /** levels to decode under the text (default MAX_DEPTH) */
  depth?: number;
}

/** The first credential shape in `text`, at any level of decoding; throws DecodeBudgetExceeded. */
export function detectLeak(text: string, options: DetectOptions): LeakFinding | null {
  return level(text, options.shapes ?? defaultShapes(), options.budget, options.depth ?? MAX_DEPTH, []);
}

/**
 * Each level's survey records (RunSurvey.room), by depth left: a level's survey is read after the
 * levels under it have scanned (hexRuns after the base64 level), so each level has its own, and
 * only one level of each depth runs at a time (detectLeak runs to its end without a callback out).
 */
const rooms: SurveyRoom[] = [];

function level(raw: string, shapes: ShapeSet, budget: DecodeBudget, depth: number, chain: Decoding[]): LeakFinding | null {
  // One read of the text finds its keywords, its runs and whether it is all ASCII; a text past
  // ASCII is normalised (normalize) and read again.
  let text = unescapeJson(raw);
  // the survey also gives the JSON values' states for the seam check, at every level
  const room = (rooms[depth] ??= surveyRoom());
  let survey = freshSurvey(room);
  let seen: ScanNotes = { joinKeyword: false, survey, stopAtNonAscii: true };
  let found = shapes.find(text, seen);
  if (seen.stopped) {
    text = foldNonAscii(text);
    survey = freshSurvey(room);
    seen = { joinKeyword: false, survey };
    found = shapes.find(text, seen);
  }
  if (text.length > raw.length) budget.take(text.length - raw.length);
  if (found) return { shape: found.shape.name, chain, split: false };
  const joins = shapes.forJoins();
  // without a join keyword in the text, a joined line can hold one only across a seam
  const joined = joinedNeighbours(text, seen.joinKeyword ? undefined : { automaton: shapes.keywords, relevant: shapes.joinKeywords }, survey);
  if (joined !== null) {
    const split = joins.find(joined);
    if (split) return { shape: split.shape.name, chain, split: true };
  }
  if (depth === 0) return null;
  const children: Array<[Decoding, () => string | null]> = [
    ['percent', () => (text.includes('%') && PERCENT.test(text) ? percentDecode(text) : null)],
    ['base64', () => base64Runs(text, survey)],
    ['hex', () => hexRuns(text, survey)],
  ];
  for (const [kind, decode] of children) {
    const child = decode();
    if (child === null || child === text) continue;
    budget.take(child.length);
    const hit = level(child, shapes, budget, depth - 1, [...chain, kind]);
    if (hit) return hit;
  }
  return null;
}

/** How a finding reads in a refusal: the shape, where, and through what (never the value). */
export function describeFinding(finding: LeakFinding, where: string): string {
  const how = [finding.chain.length > 0 ? `under ${finding.chain.join(' then ')}` : '', finding.split ? 'split across neighbouring values' : '']
    .filter(Boolean)
    .join(', ');
  return `the request carries what looks like a credential (${finding.shape}) in ${where}${how ? `, ${how}` : ''}`;
}

/** Where a leak was found, as a metric label: a closed set. */
export const LEAK_SURFACES = ['header', 'path', 'query', 'body', 'websocket', 'hostname', 'other'] as const;
export type LeakSurface = (typeof LEAK_SURFACES)[number];

function surfaceLabel(where: string): LeakSurface {
  if (where.startsWith('header') || where === 'the headers joined') return 'header';
  if (where === 'path' || where === 'query' || where === 'body' || where === 'hostname') return where;
  if (where.includes('WebSocket')) return 'websocket';
  return 'other';
}

const FINDING = /^the request carries what looks like a credential \(([^)]{1,120})\) in (.+?)(?:, (?:under|split) .*)?$/;
const KNOWN = /^the (?:request|body) carries the real value of secret "[^"]*"(?: in (.+?))?;/;

/**
 * The bounded labels of a secret_leak refusal, read back from its detail (every transport writes
 * it through describeFinding, or the known-value sentence): the shape, one of `shapes` or
 * 'known_value' or 'unknown', and the surface, one of LEAK_SURFACES.
 */
export function leakLabels(detail: string, shapes: ReadonlySet<string>): { shape: string; surface: LeakSurface } {
  const finding = FINDING.exec(detail);
  if (finding) return { shape: shapes.has(finding[1]!) ? finding[1]! : 'unknown', surface: surfaceLabel(finding[2]!) };
  const known = KNOWN.exec(detail);
  if (known) return { shape: 'known_value', surface: known[1] ? surfaceLabel(known[1]) : 'body' };
  return { shape: 'unknown', surface: 'other' };
}
