// The leak detector over a byte stream (request bodies, WebSocket messages): bytes are scanned in
// pieces of up to PIECE bytes, each cut after a character no credential or encoding uses (so a
// token is never cut in two) and read with the tail of the piece before (so a value split across
// neighbouring fields, or a token at a cut, is still seen). `cleared` says how many bytes have
// been scanned and may go on; the rest is held. A run with no such character for HOLD_MAX bytes
// (a large base64 blob) is cut at a multiple of 4 characters, which keeps base64 aligned.
import { SecretViolation } from '../secrets/violation.js';
import { decodedText, describeFinding, DecodeBudget, DecodeBudgetExceeded, detectLeak, type LeakFinding } from './detect.js';
import type { ShapeSet } from './shapes.js';

export const PIECE = 16 * 1024;
const HOLD_MAX = 8 * 1024;
/** characters of the piece before that are read again with the next */
const CONTEXT = 1024;

/** Bytes a token (a credential, or an encoding of one) may be made of: a cut never falls on one. */
const TOKEN = new Uint8Array(256);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.:%\\~') TOKEN[char.charCodeAt(0)] = 1;
for (let b = 0x80; b < 0x100; b++) TOKEN[b] = 1;

export interface LeakScanOptions {
  shapes?: ShapeSet;
  budget: DecodeBudget;
  /** the surface named in a refusal: 'body', 'a WebSocket message' */
  where: string;
  /** called with the finding before the stream fails */
  onFinding?: (finding: LeakFinding) => void;
}

export class LeakScan {
  readonly #options: LeakScanOptions;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #context = '';
  /** bytes scanned, from the start of the stream */
  cleared = 0;

  constructor(options: LeakScanOptions) {
    this.#options = options;
  }

  /** Takes bytes; scans whole pieces. Throws SecretViolation (secret_leak, request_too_large). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < PIECE) return;
    const bytes = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    let cut = bytes.length;
    const floor = Math.max(0, bytes.length - HOLD_MAX);
    while (cut > floor && TOKEN[bytes[cut - 1]!] === 1) cut--;
    if (cut === floor && floor > 0 && TOKEN[bytes[cut - 1]!] === 1) cut = bytes.length - (bytes.length % 4);
    this.#scan(bytes.subarray(0, cut));
    const rest = bytes.subarray(cut);
    this.#pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.#pendingBytes = rest.length;
  }

  /** Scans what is left: the stream is complete. */
  end(): void {
    // one chunk is scanned as it is (the scan only reads it); more are joined
    const bytes = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#scan(bytes);
  }

  #scan(bytes: Buffer): void {
    const text = this.#context + decodedText(bytes);
    let finding: LeakFinding | null;
    try {
      finding = detectLeak(text, { budget: this.#options.budget, ...(this.#options.shapes ? { shapes: this.#options.shapes } : {}) });
    } catch (error) {
      if (error instanceof DecodeBudgetExceeded) throw new SecretViolation('request_too_large', null, error.message);
      throw error;
    }
    if (finding) {
      this.#options.onFinding?.(finding);
      throw new SecretViolation('secret_leak', null, describeFinding(finding, this.#options.where));
    }
    this.cleared += bytes.length;
    this.#context = text.length > CONTEXT ? text.slice(text.length - CONTEXT) : text;
  }
}
