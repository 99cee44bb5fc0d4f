// Request bodies sent with a Content-Encoding: the leak scan must read what the upstream will
// decode, not the compressed bytes, or a gzip body carries any credential past it. A body whose
// coding sluice cannot undo is refused; a coded body is decoded (every layer bounded by the request
// limit) and scanned in full before any of it goes upstream, since a decoder's output lags its
// input and a leak found late would already be on its way.
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { SecretViolation } from './violation.js';

export type RequestCoding = 'gzip' | 'deflate' | 'br';

/** More layers than this is no client's doing; refused like an unknown coding. */
export const MAX_REQUEST_CODINGS = 3;

/**
 * The codings of a request body in the order to undo them (the last applied first), read from
 * every Content-Encoding line (stacked lines are one list); or why the body cannot be checked.
 */
export function requestCodings(
  headers: ReadonlyArray<readonly [string, string]>,
): { ok: true; codings: RequestCoding[] } | { ok: false; detail: string } {
  const codings: RequestCoding[] = [];
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== 'content-encoding') continue;
    for (const raw of value.split(',')) {
      const coding = raw.trim().toLowerCase();
      if (coding === '' || coding === 'identity') continue;
      if (coding === 'gzip' || coding === 'x-gzip') codings.push('gzip');
      else if (coding === 'deflate' || coding === 'br') codings.push(coding);
      else {
        return {
          ok: false,
          detail: `the request body's Content-Encoding "${coding.slice(0, 40)}" is not one sluice can decode to check it (gzip, deflate, br); send it with one of those or uncompressed`,
        };
      }
    }
  }
  if (codings.length > MAX_REQUEST_CODINGS) {
    return {
      ok: false,
      detail: `the request body is encoded ${codings.length} times over; sluice decodes at most ${MAX_REQUEST_CODINGS} layers to check it`,
    };
  }
  return { ok: true, codings: codings.reverse() };
}

function decoderFor(coding: RequestCoding, firstByte: number | undefined): Transform {
  switch (coding) {
    case 'gzip':
      return createGunzip();
    case 'br':
      return createBrotliDecompress();
    case 'deflate':
      // "deflate" should be zlib-wrapped, but clients also send raw deflate; a zlib header's first
      // byte has compression method 8 in its low nibble
      return firstByte === undefined || (firstByte & 0x0f) === 0x08 ? createInflate() : createInflateRaw();
  }
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
  #pipeline(firstByte: number | undefined): Writable {
    if (this.#head) return this.#head;
    const decoders = this.#codings.map((coding, i) => decoderFor(coding, i === 0 ? firstByte : undefined));
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
    this.#pipeline(chunk[0]).write(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#failed) return callback();
    this.#pipeline(undefined).end();
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
