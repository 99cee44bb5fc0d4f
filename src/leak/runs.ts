// The base64 and hex runs of a text, found in one pass (src/leak/detect.ts decodes them). The
// character table and the run state machine are here so the keyword scan (keywords.ts) can run
// them in its own loop: one read of a body finds both its keywords and its runs.

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
export const CLASS = new Uint8Array(128);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-') CLASS[char.charCodeAt(0)]! |= C_B64;
for (const char of '0123456789abcdefABCDEF') CLASS[char.charCodeAt(0)]! |= C_HEX;
for (const char of 'abcdef') CLASS[char.charCodeAt(0)]! |= C_LOWER_HEX;
for (const char of 'ABCDEF') CLASS[char.charCodeAt(0)]! |= C_UPPER_HEX;
CLASS[0x2d]! |= C_SEP;
CLASS[0x3a]! |= C_SEP;

/** The runs of a text: starts and ends (exclusive) of base64 runs >= 16 and of plain hex runs >= 16. */
export interface RunSurvey {
  base64: number[];
  /** per base64 run: 1 when it is all hex digits in one case (read as hex only) */
  hexOnly: number[];
  hex: number[];
  /** hex pairs with `-`/`:` between them, 7 in a row: the separated form may be there (HEX_RUN decides) */
  separatedHex: boolean;
}

/**
 * The run state machine, one character a step: what BASE64_RUN and HEX_RUN (without separators)
 * would find. A class so the keyword scan can drive it from its own loop (a small method V8 inlines).
 */
export class RunTracker {
  readonly survey: RunSurvey = { base64: [], hexOnly: [], hex: [], separatedHex: false };
  #b64Start = -1;
  #b64Flags = 0;
  #b64Hex = true;
  #hexStart = -1;
  /** hex digits since the last separator or other character, and 2-digit groups in a row before it */
  #group = 0;
  #chain = 0;

  /** character `code` at offset `i`; after the last, step(length, 0) closes the open runs */
  step(i: number, code: number): void {
    const cls = code < 128 ? CLASS[code]! : 0;
    if ((cls & C_B64) !== 0) {
      if (this.#b64Start < 0) {
        this.#b64Start = i;
        this.#b64Flags = 0;
        this.#b64Hex = true;
      }
      if ((cls & C_HEX) === 0) this.#b64Hex = false;
      this.#b64Flags |= cls;
    } else if (this.#b64Start >= 0) {
      if (i - this.#b64Start >= 16) {
        this.survey.base64.push(this.#b64Start, i);
        // like the regex path: all hex in one case (or digits only) is read as hex, not base64
        const bothCases = (this.#b64Flags & (C_LOWER_HEX | C_UPPER_HEX)) === (C_LOWER_HEX | C_UPPER_HEX);
        this.survey.hexOnly.push(this.#b64Hex && !bothCases ? 1 : 0);
      }
      this.#b64Start = -1;
    }
    if ((cls & C_HEX) !== 0) {
      if (this.#hexStart < 0) this.#hexStart = i;
      this.#group++;
    } else {
      if (this.#hexStart >= 0 && i - this.#hexStart >= 16) this.survey.hex.push(this.#hexStart, i);
      this.#hexStart = -1;
      if ((cls & C_SEP) !== 0 && this.#group === 2) {
        if (++this.#chain >= 7) this.survey.separatedHex = true;
      } else this.#chain = 0;
      this.#group = 0;
    }
  }
}

/** One pass over `text`: its base64 and hex runs. */
export function surveyRuns(text: string): RunSurvey {
  const tracker = new RunTracker();
  for (let i = 0; i < text.length; i++) tracker.step(i, text.charCodeAt(i));
  tracker.step(text.length, 0);
  return tracker.survey;
}
