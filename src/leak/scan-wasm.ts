// The leak scan's WebAssembly loop (src/leak/scan.wat): the keyword automaton and the run survey
// of keywords.ts over the bytes of an ASCII text, at a fraction of the JavaScript loop's cost a
// character. This file lays out its memory and hands back where the results are; keywords.ts reads
// them. A text it cannot take (past ASCII, longer than MAX_TEXT, an automaton whose table is not
// 16-bit) or a runtime without WebAssembly gets null, and the JavaScript loop, which computes the
// same thing, runs instead. The module also checks bytes for control characters (wasmHasControl,
// for detect.ts decodedText).
import { CLASS, NIBBLE, SEXTET } from './runs.js';
import { SCAN_WASM } from './scan-wasm.gen.js';

/** Texts longer than this are scanned by the JavaScript loop (the memory a call needs is ~19 bytes a character). */
export const MAX_TEXT = 256 * 1024;

/** The WebAssembly API this file uses (the project's lib settings declare none). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

type ScanFn = (length: number, next: number, table: number, endFrom: number, warm: number) => void;

// The memory's fixed layout (scan.wat reads and writes at these offsets as constants, which keeps
// the loop's pointers out of registers): counters, the text, its states (16 bits each), hit, run
// and quoted-value records, then the automata's tables. Run records: at most a base64 and a hex
// run in 17 characters each (plus the two the end closes), under a sixth of a record a character.
const SEXTET_AT = 0x100;
const NIBBLE_AT = 0x180;
const CLASS_AT = 0x200;
const TEXT_AT = 0x10000;
const STATES_AT = TEXT_AT + MAX_TEXT;
const HITS_AT = STATES_AT + MAX_TEXT * 4;
/** the second chain's hit records (scan.wat moves them after the first's) */
const HITS_B_AT = HITS_AT + MAX_TEXT * 4;
const RUNS_AT = HITS_AT + MAX_TEXT * 8;
/** quoted values as (start, end, state), 12 bytes: one takes 6 characters or more */
const QUOTED_AT = RUNS_AT + MAX_TEXT * 4;
const TABLES_AT = QUOTED_AT + MAX_TEXT * 3;
/** the layout, for the test that holds scan.wat's constants to it */
export const LAYOUT = { SEXTET_AT, NIBBLE_AT, CLASS_AT, TEXT_AT, STATES_AT, HITS_AT, HITS_B_AT, RUNS_AT, QUOTED_AT } as const;

interface Loaded {
  memory: WasmMemory;
  scan: ScanFn;
  control: (length: number) => number;
  /** the first byte past the automata's tables (a new table goes here) */
  top: number;
  /** views over memory, remade when it grows */
  bytes: Buffer;
  words: Int32Array;
  u16: Uint16Array;
}

let loaded: Loaded | null | undefined;
let enabled = true;

/** Turns the WebAssembly loop off (true: on again), so a test can hold the two loops to each other. */
export function useWasmScan(on: boolean): void {
  enabled = on;
}

/** Loaded on first use (a start that never scans a body pays nothing). null: no WebAssembly here. */
function load(): Loaded | null {
  if (loaded !== undefined) return loaded;
  try {
    const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (api === undefined) return (loaded = null);
    const instance = new api.Instance(new api.Module(Buffer.from(SCAN_WASM, 'base64')));
    const memory = instance.exports.memory as WasmMemory;
    loaded = {
      memory,
      scan: instance.exports.scan as ScanFn,
      control: instance.exports.control as (length: number) => number,
      top: TABLES_AT,
      bytes: Buffer.alloc(0),
      words: new Int32Array(0),
      u16: new Uint16Array(0),
    };
    // room for the text and every record region (pages are committed only as they are touched)
    ensure(loaded, TABLES_AT);
    loaded.bytes.set(SEXTET, SEXTET_AT);
    loaded.bytes.set(NIBBLE, NIBBLE_AT);
    loaded.bytes.set(CLASS, CLASS_AT);
  } catch {
    loaded = null;
  }
  return loaded;
}

function views(l: Loaded): void {
  l.bytes = Buffer.from(l.memory.buffer);
  l.words = new Int32Array(l.memory.buffer);
  l.u16 = new Uint16Array(l.memory.buffer);
}

function ensure(l: Loaded, bytes: number): void {
  const have = l.memory.buffer.byteLength;
  if (bytes <= have) return;
  l.memory.grow(Math.ceil((bytes - have) / 65536));
  views(l);
}

/** An automaton's tables, copied into the module's memory once. */
export interface WasmTables {
  next: number;
  table: number;
  endFrom: number;
  /** the longest keyword: a state stands for at most that many characters (scan.wat's second chain warms up over them) */
  warm: number;
}

/** Copies an automaton's tables in; null when this loop cannot run it (a 32-bit table, no WebAssembly). */
export function wasmTables(next: Uint16Array | Uint32Array, table: Uint16Array, endFrom: number, warm: number): WasmTables | null {
  if (!(next instanceof Uint16Array) || table.length !== 128) return null;
  const l = load();
  if (l === null) return null;
  const nextAt = l.top;
  const tableAt = nextAt + next.byteLength + ((8 - (next.byteLength % 8)) % 8);
  ensure(l, tableAt + table.byteLength + 64);
  new Uint16Array(l.memory.buffer, nextAt, next.length).set(next);
  new Uint16Array(l.memory.buffer, tableAt, table.length).set(table);
  l.top = tableAt + table.byteLength + 8;
  return { next: nextAt, table: tableAt, endFrom, warm };
}

/**
 * Where one scan's results are, as indices into the views: `states` (u16, one a character), `hits`
 * (i32 pairs: state, offset; `hitCount` of them), `runs` (i32 triples, RunSurvey.runs; `runCount`
 * of them), `quoted` (i32 triples, RunSurvey.quoted; `quotedCount` of them), `separated`.
 * Valid until the next scan.
 */
export interface WasmScan {
  u16: Uint16Array;
  words: Int32Array;
  states: number;
  hits: number;
  hitCount: number;
  runs: number;
  runCount: number;
  quoted: number;
  quotedCount: number;
  separated: boolean;
}

/** Scans `text` with an automaton's tables; null when the text is past ASCII or too long (the JavaScript loop takes it). */
export function wasmScan(tables: WasmTables, text: string): WasmScan | null {
  const length = text.length;
  if (!enabled || length > MAX_TEXT) return null;
  // every character ASCII exactly when UTF-8 takes one byte for each
  if (Buffer.byteLength(text, 'utf8') !== length) return null;
  const l = loaded!;
  const written = l.bytes.write(text, TEXT_AT, length, 'latin1');
  if (written !== length) return null;
  l.scan(length, tables.next, tables.table, tables.endFrom, tables.warm);
  const words = l.words;
  return {
    u16: l.u16,
    words,
    states: STATES_AT >> 1,
    hits: HITS_AT >> 2,
    hitCount: words[0]!,
    runs: RUNS_AT >> 2,
    runCount: words[1]!,
    quoted: QUOTED_AT >> 2,
    quotedCount: words[3]!,
    separated: words[2] !== 0,
  };
}

/** Whether `bytes` holds a control byte (detect.ts CONTROL), 16 bytes a step; null when this loop cannot take them (hasControlByte does). */
export function wasmHasControl(bytes: Uint8Array): boolean | null {
  if (!enabled || bytes.length > MAX_TEXT) return null;
  const l = load();
  if (l === null) return null;
  l.bytes.set(bytes, TEXT_AT);
  return l.control(bytes.length) !== 0;
}
