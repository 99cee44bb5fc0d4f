// The way back: every real value (raw, percent-encoded, JSON-escaped, base64, base64url) that a
// response carries becomes the secret's placeholder again, so the tool never sees it.
import { Duplex, type Readable, type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { valueForms } from './forms.js';
import { NeedleSet, RewriteStream, rewriteString, type Needle } from './rewrite.js';

/** A value to hide and what to show instead. SecretStore.knownValues() entries fit. */
export interface ScrubEntry {
  value: string;
  placeholder: string;
}

/** Needle sets by the values they replace: built once, not for every header or audit line. */
const needleCache = new Map<string, NeedleSet>();
const NEEDLE_CACHE_MAX = 64;

/** By identity for frozen lists (SecretStore.knownValues() returns the same one until it changes). */
const needlesByList = new WeakMap<readonly ScrubEntry[], NeedleSet>();

function scrubNeedles(values: readonly ScrubEntry[]): NeedleSet {
  const known = needlesByList.get(values);
  if (known) return known;
  const key = values.map((v) => `${v.value}\u0000${v.placeholder}`).join('\u0000\u0000');
  let set = needleCache.get(key);
  if (!set) {
    if (needleCache.size >= NEEDLE_CACHE_MAX) needleCache.clear();
    set = buildNeedles(values);
    needleCache.set(key, set);
  }
  if (Object.isFrozen(values)) needlesByList.set(values, set);
  return set;
}

function buildNeedles(values: readonly ScrubEntry[]): NeedleSet {
  const needles: Needle[] = [];
  for (const { value, placeholder } of values) {
    if (value.length === 0) continue;
    const replacement = Buffer.from(placeholder, 'utf8');
    for (const form of valueForms(value)) {
      needles.push({ bytes: Buffer.from(form, 'utf8'), action: { kind: 'replace', with: replacement, use: null } });
    }
  }
  return new NeedleSet(needles);
}

/** For error messages, log lines, audit details: anything else that could carry a value. */
export function scrubText(text: string, values: readonly ScrubEntry[]): string {
  return rewriteString(text, scrubNeedles(values));
}

/** Response header names and values with every real value replaced. */
export function scrubHeaders(headers: ReadonlyArray<readonly [string, string]>, values: readonly ScrubEntry[]): Array<[string, string]> {
  const needles = scrubNeedles(values);
  return headers.map(([name, value]) => [rewriteString(name, needles), rewriteString(value, needles)]);
}

/** A response body stream with every real value replaced, across chunk boundaries. */
export function createScrubber(values: readonly ScrubEntry[]): Transform {
  return new RewriteStream({ needles: scrubNeedles(values) });
}

/** Content codings sluice can decode, so a body can be scrubbed. Send these as Accept-Encoding. */
export const DECODABLE_ENCODINGS = ['gzip', 'deflate', 'br'] as const;

type Coding = (typeof DECODABLE_ENCODINGS)[number];

/** Codings in the order to undo them (the last applied first), or null if one is unknown. */
function parseCodings(contentEncoding: string | null | undefined): Coding[] | null {
  const codings: Coding[] = [];
  for (const raw of (contentEncoding ?? '').split(',')) {
    const coding = raw.trim().toLowerCase();
    if (coding === '' || coding === 'identity') continue;
    if (coding === 'gzip' || coding === 'x-gzip') codings.push('gzip');
    else if (coding === 'deflate' || coding === 'br') codings.push(coding);
    else return null;
  }
  return codings.reverse();
}

function decoderFor(coding: Coding, firstByte: number | undefined): Transform {
  switch (coding) {
    case 'gzip':
      return createGunzip();
    case 'br':
      return createBrotliDecompress();
    case 'deflate':
      // "deflate" should be zlib-wrapped, but servers also send raw deflate; a zlib header's
      // first byte has compression method 8 in its low nibble (the test undici uses)
      return firstByte === undefined || (firstByte & 0x0f) === 0x08 ? createInflate() : createInflateRaw();
  }
}

/**
 * Decodes, then scrubs: a Duplex taking the encoded body and giving the plain, scrubbed body.
 * Decoders are built on the first bytes so a raw deflate body can be told from a zlib one.
 */
class DecodeThenScrub extends Duplex {
  readonly #codings: Coding[];
  readonly #scrubber: Transform;
  /** decoders then the scrubber, built on the first write */
  #stages: Transform[] = [];

  constructor(codings: Coding[], scrubber: Transform) {
    super();
    this.#codings = codings;
    this.#scrubber = scrubber;
    scrubber.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) scrubber.pause();
    });
    scrubber.on('end', () => this.push(null));
    scrubber.on('error', (error) => this.destroy(error));
  }

  #head(firstByte: number | undefined): Transform {
    if (this.#stages.length === 0) {
      const decoders = this.#codings.map((coding, i) => decoderFor(coding, i === 0 ? firstByte : undefined));
      this.#stages = [...decoders, this.#scrubber];
      let upstream: Readable | null = null;
      for (const stage of decoders) {
        stage.on('error', (error) => this.destroy(error));
        upstream?.pipe(stage);
        upstream = stage;
      }
      upstream?.pipe(this.#scrubber);
    }
    return this.#stages[0]!;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const head = this.#head(chunk[0]);
    if (head.write(chunk)) callback();
    else head.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#head(undefined).end();
    callback();
  }

  override _read(): void {
    this.#scrubber.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const stage of this.#stages) stage.destroy();
    this.#scrubber.destroy();
    callback(error);
  }
}

/**
 * For a body sent with `Content-Encoding: contentEncoding` (gzip, x-gzip, deflate, br, identity,
 * or a comma list of them): a stream that decodes it and scrubs it, emitting the plain body. The
 * caller drops Content-Encoding and Content-Length and counts the response limit on the output.
 *
 * Returns null for any other coding: the body cannot be scrubbed, so the caller must not pass it
 * on (answer 502 upstream_protocol). To avoid that case, send Accept-Encoding with only
 * DECODABLE_ENCODINGS upstream on requests whose responses are scrubbed.
 */
export function createDecodingScrubber(contentEncoding: string | null | undefined, values: readonly ScrubEntry[]): Duplex | null {
  const codings = parseCodings(contentEncoding);
  if (codings === null) return null;
  const scrubber = createScrubber(values);
  return codings.length === 0 ? scrubber : new DecodeThenScrub(codings, scrubber);
}
