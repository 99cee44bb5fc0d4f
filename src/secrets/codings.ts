// Content codings, both ways: which ones sluice undoes (for the response scrubber and the request
// leak scan alike), in what order, and the one decoder for each.
//
// Request bodies sent with a Content-Encoding: the leak scan must read what the upstream will
// decode, not the compressed bytes, or a gzip body carries any credential past it. A body whose
// coding sluice cannot undo is refused; a coded body is decoded (every layer bounded by the request
// limit) and scanned in full before any of it goes upstream, since a decoder's output lags its
// input and a leak found late would already be on its way.
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { SecretViolation } from './violation.js';

/** Content codings sluice can decode, so a body can be scrubbed or scanned. Sent as Accept-Encoding. */
export const DECODABLE_ENCODINGS = ['gzip', 'deflate', 'br'] as const;

export type Coding = (typeof DECODABLE_ENCODINGS)[number];
export type RequestCoding = Coding;

/** More layers than this is no client's doing; refused like an unknown coding. */
export const MAX_REQUEST_CODINGS = 3;

/**
 * The codings of Content-Encoding fields in the order to undo them (the last applied first); every
 * field in order is one list (`gzip` then `br` on two lines is `gzip, br`). Or the first unknown one.
 */
function readCodings(fields: readonly string[]): { codings: Coding[] } | { unknown: string } {
  const codings: Coding[] = [];
  for (const field of fields) {
    for (const raw of field.split(',')) {
      const coding = raw.trim().toLowerCase();
      if (coding === '' || coding === 'identity') continue;
      if (coding === 'gzip' || coding === 'x-gzip') codings.push('gzip');
      else if (coding === 'deflate' || coding === 'br') codings.push(coding);
      else return { unknown: coding };
    }
  }
  return { codings: codings.reverse() };
}

/** A response's codings in the order to undo them, or null if one is unknown. */
export function parseCodings(contentEncoding: string | readonly string[] | null | undefined): Coding[] | null {
  const read = readCodings(typeof contentEncoding === 'string' ? [contentEncoding] : (contentEncoding ?? []));
  return 'codings' in read ? read.codings : null;
}

/**
 * The codings of a request body in the order to undo them, read from every Content-Encoding line;
 * or why the body cannot be checked.
 */
export function requestCodings(
  headers: ReadonlyArray<readonly [string, string]>,
): { ok: true; codings: RequestCoding[] } | { ok: false; detail: string } {
  const read = readCodings(headers.filter(([name]) => name.toLowerCase() === 'content-encoding').map(([, value]) => value));
  if ('unknown' in read) {
    return {
      ok: false,
      detail: `the request body's Content-Encoding "${read.unknown.slice(0, 40)}" is not one sluice can decode to check it (gzip, deflate, br); send it with one of those or uncompressed`,
    };
  }
  if (read.codings.length > MAX_REQUEST_CODINGS) {
    return {
      ok: false,
      detail: `the request body is encoded ${read.codings.length} times over; sluice decodes at most ${MAX_REQUEST_CODINGS} layers to check it`,
    };
  }
  return { ok: true, codings: read.codings };
}

/** The decoder of one coding; `first` (the body's first bytes, if known) tells raw deflate from zlib. */
export function decoderFor(coding: Coding, first: Buffer | null): Transform {
  switch (coding) {
    case 'gzip':
      return createGunzip();
    case 'br':
      return createBrotliDecompress();
    case 'deflate':
      // "deflate" should be zlib-wrapped, but peers also send raw deflate: a zlib header has
      // compression method 8 and a check value making its first two bytes a multiple of 31
      return first === null || isZlibHeader(first) ? createInflate() : createInflateRaw();
  }
}

function isZlibHeader(bytes: Buffer): boolean {
  if (bytes.length < 2) return (bytes[0]! & 0x0f) === 0x08;
  return (bytes[0]! & 0x0f) === 0x08 && bytes[0]! >> 4 <= 7 && (bytes[0]! * 256 + bytes[1]!) % 31 === 0;
}

/**
 * Passes a coded request body through unchanged, but only once all of it has been decoded and the
 * decoded bytes went through `scanner` (which fails with SecretViolation on anything forbidden) to
 * their end. Each layer's output counts against `maxDecodedBytes` (request_too_large); a body that
 * does not decode is bad_request. What it holds is bounded by the request limit the caller counts.
 */
export class DecodedScanGate extends Transform {
  readonly #codings: RequestCoding[];
  readonly #scanner: Transform;
  readonly #max: number;
  readonly #held: Buffer[] = [];
  #head: Writable | null = null;
  #stages: Transform[] = [];
  #scanned: Promise<void>;
  #markScanned!: () => void;
  #failed = false;

  constructor(codings: RequestCoding[], scanner: Transform, maxDecodedBytes: number) {
    super();
    this.#codings = codings;
    this.#scanner = scanner;
    this.#max = maxDecodedBytes;
    this.#scanned = new Promise<void>((resolve) => (this.#markScanned = resolve));
    scanner.on('data', () => undefined);
    scanner.on('end', () => this.#markScanned());
    scanner.on('error', (error) => this.#fail(error));
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    for (const stage of this.#stages) stage.destroy();
    this.#scanner.destroy();
    this.destroy(error instanceof SecretViolation ? error : new SecretViolation('bad_request', null, 'the request body could not be checked'));
  }

  /** The decoders, built on the first bytes so a raw deflate body can be told from a zlib one. */
  #pipeline(first: Buffer | null): Writable {
    if (this.#head) return this.#head;
    const decoders = this.#codings.map((coding, i) => decoderFor(coding, i === 0 ? first : null));
    this.#stages = decoders;
    let upstream: Transform | null = null;
    for (const [i, stage] of decoders.entries()) {
      let out = 0;
      stage.on('error', (error: NodeJS.ErrnoException) =>
        this.#fail(
          new SecretViolation(
            'bad_request',
            null,
            `the request body is not valid ${this.#codings[i]} (${error.code ?? 'decode error'}); sluice must decode it to check it`,
          ),
        ),
      );
      stage.on('data', (chunk: Buffer) => {
        out += chunk.length;
        if (out > this.#max) {
          this.#fail(new SecretViolation('request_too_large', null, `the request body decodes to more than the limit of ${this.#max} bytes`));
        }
      });
      upstream?.pipe(stage);
      upstream = stage;
    }
    upstream!.pipe(this.#scanner);
    this.#head = decoders[0]!;
    return this.#head;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#failed) return callback();
    this.#held.push(chunk);
    this.#pipeline(chunk).write(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#failed) return callback();
    this.#pipeline(null).end();
    void this.#scanned.then(() => {
      if (this.#failed) return;
      for (const chunk of this.#held.splice(0)) this.push(chunk);
      callback();
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const stage of this.#stages) stage.destroy();
    this.#scanner.destroy();
    this.#held.length = 0;
    callback(error);
  }
}
