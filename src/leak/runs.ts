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

/** The runs of a text: starts and ends (exclusive) of base64 runs >= 16 and of plain hex runs >= 16. */
export interface RunSurvey {
  base64: number[];
  /** per base64 run: 1 when it is all hex digits in one case (read as hex only) */
  hexOnly: number[];
  /** per base64 run: 1 when it holds a "/" */
  slash: number[];
  hex: number[];
  /** hex pairs with `-`/`:` between them, 7 in a row: the separated form may be there (HEX_RUN decides) */
  separatedHex: boolean;
  /**
   * What JSON_PIECE (detect.ts) matches, keys included, as [start, end) of the characters between
   * the quotes: a quote followed by 4 to 256 value characters (C_VALUE) and a quote, the closing
   * quote taken (it opens no match of its own).
   */
  quoted: number[] | Int32Array;
  /**
   * Per base64 run and per hex run, 1 when the bytes the whole run decodes to are surely not text
   * keptText keeps (fewer than 8, or a control byte and no printable run of 10): the decode of it
   * can be skipped. Filled by the WebAssembly scan only (scan.wat); absent, every run is decoded.
   */
  dead?: number[];
  hexDead?: number[];
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
