// The base64 and hex runs of a text: the character classes and the survey's shape. The keyword
// scan (keywords.ts) finds the runs in its own loop, so one read of a body finds both; detect.ts
// decodes them.

/**
 * Character classes for the run survey (ASCII): base64/base64url alphabet, hex digit, and which
 * case of hex letter. One table read a character finds every base64 and hex run of a text in one
 * pass, where the two run regexes took two (the hex one with look-arounds tried at every offset).
 */
export const C_B64 = 1;
export const C_HEX = 2;
export const C_LOWER_HEX = 4;
export const C_UPPER_HEX = 8;
export const C_SEP = 16;
export const C_NOT_HEX = 32;
export const C_SLASH = 64;
/** a character of a JSON value the leak detector joins (detect.ts JSON_PIECE) */
export const C_VALUE = 128;
export const CLASS = new Uint8Array(128);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-') CLASS[char.charCodeAt(0)]! |= C_B64;
for (const char of 'GHIJKLMNOPQRSTUVWXYZghijklmnopqrstuvwxyz+/_-') CLASS[char.charCodeAt(0)]! |= C_NOT_HEX;
for (const char of '0123456789abcdefABCDEF') CLASS[char.charCodeAt(0)]! |= C_HEX;
for (const char of 'abcdef') CLASS[char.charCodeAt(0)]! |= C_LOWER_HEX;
for (const char of 'ABCDEF') CLASS[char.charCodeAt(0)]! |= C_UPPER_HEX;
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/=~') CLASS[char.charCodeAt(0)]! |= C_VALUE;
CLASS[0x2d]! |= C_SEP;
CLASS[0x2f]! |= C_SLASH;
CLASS[0x3a]! |= C_SEP;

/**
 * What one read of a text finds besides keywords: its base64 runs of 16 or more, its plain hex runs
 * of 16 or more, and its quoted JSON values. As flat records (three numbers each), so the
 * WebAssembly scan's records are handed over with one copy.
 */
export interface RunSurvey {
  /**
   * Run records: RUN_BASE64 or RUN_HEX | RUN_DEAD | flags << 8, start, end (exclusive). The records
   * of one kind are in order of their starts; the kinds may interleave. A base64 run's flags are
   * the union of its characters' classes (hexOnlyRun reads them); a hex run has none. RUN_DEAD
   * marks a run whose bytes, decoded whole, are surely not text keptText keeps (fewer than 8, or a
   * control byte and no printable run of 10): only the WebAssembly scan (scan.wat) marks them.
   */
  runs: number[] | Int32Array;
  /** hex pairs with `-`/`:` between them, 7 in a row: the separated form may be there (HEX_RUN decides) */
  separatedHex: boolean;
  /**
   * The JSON values JSON_PIECE (detect.ts) matches, as records (start, end, state): the characters
   * between the quotes, a quote followed by 4 to 256 value characters (C_VALUE) and a quote, the
   * closing quote taken (it opens no match of its own); and the keyword automaton's state after
   * the value's last character (the seam check of two values starts from it). A match followed by
   * a colon (after white space) is a key: taken, but not recorded.
   */
  quoted: number[] | Int32Array;
  /** the automaton whose states `quoted` holds (set by its scan): another one's seam check reads its own */
  by?: object;
  /** where the WebAssembly scan copies the records (`runs` and `quoted` are then views of it); without it, new arrays */
  room?: SurveyRoom;
}

/**
 * Room for a survey's records, reused from scan to scan: a new typed array for each scan's records
 * would cost an allocation of its own memory (about a microsecond each) on every body. A survey's
 * records in a room are valid until the next scan into the same room: the caller keeps one room
 * for each survey it holds at a time (detect.ts: one a level).
 */
export interface SurveyRoom {
  runs: Int32Array;
  quoted: Int32Array;
}

export function surveyRoom(): SurveyRoom {
  return { runs: new Int32Array(384), quoted: new Int32Array(1536) };
}

export const RUN_BASE64 = 1;
export const RUN_HEX = 2;
export const RUN_DEAD = 16;

/** A fresh survey for one scan, its records copied into `room` when there is one. */
export function freshSurvey(room?: SurveyRoom): RunSurvey {
  return room ? { runs: [], separatedHex: false, quoted: [], room } : { runs: [], separatedHex: false, quoted: [] };
}

/** Of a base64 run's flags: whether it is all hex digits in one case (or digits only), which is read as hex and not as base64. */
export function hexOnlyRun(flags: number): boolean {
  return (flags & C_NOT_HEX) === 0 && (flags & (C_LOWER_HEX | C_UPPER_HEX)) !== (C_LOWER_HEX | C_UPPER_HEX);
}

/** Whether `code` is what \s matches (ECMAScript WhiteSpace and LineTerminator). */
function isSpace(code: number): boolean {
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0xa0) return false;
  return (
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/**
 * Where a colon follows text[at] after white space, or -1: a quoted value ending just before `at`
 * is then a JSON key (what JSON_PIECE's `(\s*:)?` takes along).
 */
export function colonAfter(text: string, at: number): number {
  while (at < text.length && isSpace(text.charCodeAt(at))) at++;
  return at < text.length && text.charCodeAt(at) === 0x3a ? at : -1;
}

/** sextet of a base64 or base64url character (the survey only hands over runs of those) */
export const SEXTET = new Uint8Array(128);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((char, n) => (SEXTET[char.charCodeAt(0)] = n));
SEXTET[0x2d] = 62;
SEXTET[0x5f] = 63;
/** value of a hex digit */
export const NIBBLE = new Uint8Array(128);
'0123456789abcdef'.split('').forEach((char, n) => (NIBBLE[char.charCodeAt(0)] = n));
'ABCDEF'.split('').forEach((char, n) => (NIBBLE[char.charCodeAt(0)] = n + 10));
