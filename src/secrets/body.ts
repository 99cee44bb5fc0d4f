// Request bodies: swap in-scope placeholders for values as the body streams through, and fail the
// stream (SecretViolation) before the first byte of anything the tool may not send. A body with a
// Content-Encoding is decoded and scanned whole before it is passed on, unchanged (codings.ts).
import { Transform, type TransformCallback } from 'node:stream';
import type { SecretDoc } from '../config/types.js';
import { DecodedScanGate, requestCodings, type RequestCoding } from './codings.js';
import { valueForms } from './forms.js';
import { LEAK_PATTERNS, type LeakPattern } from './leak-patterns.js';
import { insecureDetail, misplacedDetail, placesOf } from './placement.js';
import { placeholderIndex } from './placeholders.js';
import { NeedleSet, RewriteStream, type Needle, type NeedleAction, type RewriteStreamOptions } from './rewrite.js';
import { SecretViolation } from './violation.js';
import { DecodeBudget } from '../leak/detect.js';
import { leakDetectorMode } from '../leak/mode.js';
import { LeakScan } from '../leak/stream.js';

export interface BodySwapOptions {
  tool: string;
  granted: readonly string[];
  inScope: readonly string[];
  secrets: Record<string, SecretDoc>;
  values: (alias: string) => string | null;
  /** values to treat as leaks; default: values() of every alias (pass SecretStore.knownValues() for rotated ones) */
  known?: ReadonlyArray<{ alias: string; value: string }>;
  /** credential shapes to refuse; default LEAK_PATTERNS */
  leakPatterns?: readonly LeakPattern[];
  /** once per alias per body, after its value has been passed on */
  onUse?: (alias: string, where: 'body') => void;
  /** the request goes upstream over TLS sluice verified: only then are values swapped in (unless allow_plaintext) */
  tls: boolean;
  /** the request's headers, for its Content-Encoding lines */
  headers?: ReadonlyArray<readonly [string, string]>;
  /** the request limit, which every decoded layer of a coded body counts against; default 1 MiB */
  maxDecodedBytes?: number;
}

/** A placeholder as written raw, and fully percent-encoded with upper- and lower-case hex (form bodies). */
function writtenForms(placeholder: string): Array<{ text: string; encoded: boolean }> {
  const upper = Array.from(Buffer.from(placeholder, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return [
    { text: placeholder, encoded: false },
    { text: upper, encoded: true },
    { text: upper.toLowerCase(), encoded: true },
  ];
}

function needle(text: string, action: NeedleAction): Needle {
  return { bytes: Buffer.from(text, 'utf8'), action };
}

export function createBodySwapper(options: BodySwapOptions): Transform {
  const coded = requestCodings(options.headers ?? []);
  if (!coded.ok) return new Refusing(new SecretViolation('bad_request', null, coded.detail));
  if (coded.codings.length === 0) return new RewriteStream(rewriteOptions(options, null));
  // Inside a compressed body a placeholder cannot be swapped: the scan refuses it, and passes the body on as sent.
  const scanner = new RewriteStream(rewriteOptions(options, coded.codings));
  return new DecodedScanGate(coded.codings, scanner, options.maxDecodedBytes ?? 1024 * 1024);
}

/** Needles and leak patterns for the body as sent (`codings` null) or as decoded from those codings. */
function rewriteOptions(options: BodySwapOptions, codings: RequestCoding[] | null): RewriteStreamOptions {
  const index = placeholderIndex(options.secrets);
  const needles: Needle[] = [];

  for (const { alias, placeholder } of index.entries) {
    const secret = options.secrets[alias]!;
    const inScope = options.inScope.includes(alias);
    const value = inScope ? options.values(alias) : null;
    for (const form of writtenForms(placeholder)) {
      let action: NeedleAction;
      if (!options.granted.includes(alias)) {
        action = {
          kind: 'refuse',
          reason: 'secret_not_granted',
          alias,
          detail: `tool "${options.tool}" is not granted secret "${alias}" (placeholder in body)`,
        };
      } else if (!inScope) {
        action = {
          kind: 'refuse',
          reason: 'secret_out_of_scope',
          alias,
          detail: `secret "${alias}" may only be sent to its own hosts, and this host is not one of them (placeholder in body)`,
        };
      } else if (!placesOf(secret).body) {
        action = { kind: 'refuse', reason: 'secret_misplaced', alias, detail: misplacedDetail(alias, secret, 'body') };
      } else if (codings !== null) {
        action = {
          kind: 'refuse',
          reason: 'secret_misplaced',
          alias,
          detail: `secret "${alias}" cannot be swapped inside a body sent with Content-Encoding ${codings.join(', ')}; send the body uncompressed`,
        };
      } else if (!options.tls && !secret.allow_plaintext) {
        action = { kind: 'refuse', reason: 'secret_insecure', alias, detail: insecureDetail(alias, 'its placeholder in the body') };
      } else if (!value) {
        action = {
          kind: 'refuse',
          reason: 'secret_unavailable',
          alias,
          detail: `secret "${alias}" has no value right now (its source is missing or empty)`,
        };
      } else {
        action = { kind: 'replace', with: Buffer.from(form.encoded ? encodeURIComponent(value) : value, 'utf8'), use: alias };
      }
      needles.push(needle(form.text, action));
    }
  }

  const known =
    options.known ??
    Object.keys(options.secrets).flatMap((alias) => {
      const value = options.values(alias);
      return value ? [{ alias, value }] : [];
    });
  for (const { alias, value } of known) {
    for (const form of valueForms(value)) {
      needles.push(
        needle(form, {
          kind: 'refuse',
          reason: 'secret_leak',
          alias,
          detail: `the body carries the real value of secret "${alias}"; send its placeholder instead`,
        }),
      );
    }
  }

  const onUse = options.onUse;
  // The layered detector replaces the plain shape scan unless the caller (or the bench switch) asks for it.
  const layered = options.leakPatterns === undefined && leakDetectorMode() === 'layered';
  return {
    needles: new NeedleSet(needles),
    leakPatterns: layered ? [] : (options.leakPatterns ?? LEAK_PATTERNS),
    ...(layered ? { leakScan: new LeakScan({ budget: new DecodeBudget(options.maxDecodedBytes ?? 1024 * 1024), where: 'body' }) } : {}),
    ...(onUse && codings === null ? { onUse: (alias: string) => onUse(alias, 'body') } : {}),
  };
}

/** A body that may not go upstream at all: fails on its first byte (or at its end, if it has none). */
class Refusing extends Transform {
  readonly #violation: SecretViolation;

  constructor(violation: SecretViolation) {
    super();
    this.#violation = violation;
  }

  override _transform(_chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(this.#violation);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.#violation);
  }
}
