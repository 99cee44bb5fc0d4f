// A run survey (src/leak/runs.ts) in the form the tests compare: the records of each kind apart (the
// WebAssembly scan and the JavaScript loop may interleave the kinds differently), without the dead
// marks only the WebAssembly scan sets (scan-wasm.test.ts checks those on their own), as arrays.
import { RUN_BASE64, RUN_DEAD, RUN_HEX, type RunSurvey } from '../../src/leak/runs.js';

export interface BareSurvey {
  /** base64 runs: (flags, start, end) */
  base64: number[];
  /** hex runs: (start, end) */
  hex: number[];
  separatedHex: boolean;
  /** JSON values: (start, end, state) */
  quoted: number[];
}

export function bareSurvey(survey: RunSurvey): BareSurvey {
  const base64: number[] = [];
  const hex: number[] = [];
  for (let r = 0; r < survey.runs.length; r += 3) {
    const kind = survey.runs[r]! & ~RUN_DEAD;
    if ((kind & 0xf) === RUN_BASE64) base64.push(kind >> 8, survey.runs[r + 1]!, survey.runs[r + 2]!);
    else if (kind === RUN_HEX) hex.push(survey.runs[r + 1]!, survey.runs[r + 2]!);
    else throw new Error(`a run record of kind ${kind}`);
  }
  return { base64, hex, separatedHex: survey.separatedHex, quoted: Array.from(survey.quoted) };
}
