// The way back: every known form of every real value (forms.ts) that a response carries becomes the
// secret's placeholder again, so the tool never sees it: in header names and values, status lines,
// log and audit text, and in bodies, through every content coding. A body that is gzip data without
// saying so is held, decoded aside and checked; it goes on unchanged only when it carries no value.
import { Duplex, Transform, type Readable, type TransformCallback } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { decoderFor, parseCodings, type Coding } from './codings.js';
import { encodedForms, textForms } from './forms.js';
import { Scrubber, ScrubNeedles, scrubString, type ScrubNeedle, type ScrubPlan } from './scanner.js';

/** A value to hide and what to show instead. SecretStore.knownValues() entries fit. */
export interface ScrubEntry {
  value: string;
  placeholder: string;
}

/** Plans by the values they replace: built once, not for every header or audit line. */
const planCache = new Map<string, ScrubPlan>();
const PLAN_CACHE_MAX = 64;

/** By identity for frozen lists (SecretStore.knownValues() returns the same one until it changes). */
const plansByList = new WeakMap<readonly ScrubEntry[], ScrubPlan>();

/** The needles for a list of values; cached. */
export function scrubPlan(values: readonly ScrubEntry[]): ScrubPlan {
  const known = plansByList.get(values);
  if (known) return known;
  const key = values.map((v) => `${v.value}\u0000${v.placeholder}`).join('\u0000\u0000');
  let plan = planCache.get(key);
  if (!plan) {
    if (planCache.size >= PLAN_CACHE_MAX) planCache.clear();
    plan = buildPlan(values);
    planCache.set(key, plan);
  }
  if (Object.isFrozen(values)) plansByList.set(values, plan);
  return plan;
}

function buildPlan(values: readonly ScrubEntry[]): ScrubPlan {
  const text: ScrubNeedle[] = [];
  const encoded: ScrubNeedle[] = [];
  for (const { value, placeholder } of values) {
    if (value.length === 0) continue;
    const replacement = Buffer.from(placeholder, 'utf8');
    for (const form of textForms(value)) text.push({ bytes: Buffer.from(form, 'utf8'), replacement });
    for (const form of encodedForms(value)) encoded.push({ bytes: Buffer.from(form, 'utf8'), replacement });
  }
  return { text: new ScrubNeedles(text), encoded: new ScrubNeedles(encoded) };
}

/**
 * For error messages, log lines, audit details, status lines: anything else that could carry a
 * value. `encoding`: 'latin1' for a string that holds raw bytes (Node's parser's status message).
 */
export function scrubText(text: string, values: readonly ScrubEntry[], encoding: 'utf8' | 'latin1' = 'utf8'): string {
  if (values.length === 0 || text.length === 0) return text;
  return scrubString(text, scrubPlan(values), encoding);
}

/**
 * Response header names and values with every real value replaced. Header strings hold raw bytes
 * one per character (latin1), as Node's and undici's parsers give them and as Node writes them.
 */
export function scrubHeaders(headers: ReadonlyArray<readonly [string, string]>, values: readonly ScrubEntry[]): Array<[string, string]> {
  const plan = scrubPlan(values);
  const out: Array<[string, string]> = [];
  for (const pair of headers) {
    const n = scrubString(pair[0], plan, 'latin1');
    const v = scrubString(pair[1], plan, 'latin1');
    // the pair itself when nothing changed (almost always): no copy per header; callers never mutate pairs
    out.push(n === pair[0] && v === pair[1] ? (pair as [string, string]) : [n, v]);
  }
  return out;
}

/** A body stream with every real value replaced, across chunk boundaries (no decoding). */
export function createScrubber(values: readonly ScrubEntry[]): Transform {
  return new ScrubTransform(scrubPlan(values));
}

class ScrubTransform extends Transform {
  readonly #scrubber: Scrubber;

  constructor(plan: ScrubPlan) {
    super();
    this.#scrubber = new Scrubber(plan);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const out = this.#scrubber.push(chunk);
    if (out.length > 0) this.push(out);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out = this.#scrubber.end();
    if (out.length > 0) this.push(out);
    callback();
  }
}

export { DECODABLE_ENCODINGS, parseCodings } from './codings.js';

/** Why a response body was not passed on; `code` is the outcome the caller answers or records. */
export class ScrubFailure extends Error {
  constructor(
    readonly code: 'upstream_protocol' | 'response_too_large',
    message: string,
  ) {
    super(message);
    this.name = 'ScrubFailure';
  }
}

/** Where a scrubbed response body goes (the client). */
export interface ScrubSink {
  /**
   * The head may be sent now: called once, before the first data() or end(). `length` is the
   * body's length when all of it is known at that point (send it as Content-Length), else null.
   */
  head(length: number | null): void;
  /** false: stop until ResponseScrub.resume() */
  data(chunk: Buffer): boolean;
  end(): void;
  /** called once at most, and never after end() */
  fail(error: Error): void;
}

export interface ResponseScrubOptions {
  /** decoded bytes allowed, for a body decoded to be sent or only to be checked (max_response_bytes) */
  maxDecodedBytes: number;
  /**
   * The Content-Length of a body sent without a coding. Up to WHOLE_BODY_MAX such a body is
   * scrubbed whole and sent with its new length (cheaper, and the client keeps a length).
   */
  contentLength?: number | null;
}

/** Bodies up to this size, of known length and without a coding, are scrubbed in one piece. */
export const WHOLE_BODY_MAX = 64 * 1024;

const GZIP_MAGIC = [0x1f, 0x8b, 0x08];

/**
 * One response body on its way to the client: content codings undone, then every form of every
 * value replaced. A body (after its codings) that starts with the gzip magic is held whole: its
 * gzip data is decoded aside and scanned, and it goes on, unchanged but for the usual scrub of its
 * bytes, only when the decoded data carries no value (else fail(upstream_protocol)): a .tar.gz
 * keeps its checksum, and a value cannot come back gzipped.
 *
 * write() returns false when the caller must wait for onWritable before writing more.
 */
export class ResponseScrub {
  readonly #codings: Coding[];
  readonly #plan: ScrubPlan;
  readonly #sink: ScrubSink;
  readonly #max: number;
  readonly #scrubber: Scrubber;
  /** decoders, built on the first bytes (a raw deflate body is told from a zlib one by them) */
  #decoders: Transform[] | null = null;
  /** the first byte, when it came alone: the decoders wait for the second */
  #first: Buffer | null = null;
  /** sniff: the first bytes are not in yet; whole: a small body collected; hold: gzip data checked aside */
  #mode: 'sniff' | 'whole' | 'pass' | 'hold' | 'done' = 'sniff';
  #sniffed: Buffer[] = [];
  /** bytes after the codings: sniffed, held or collected */
  #plainBytes = 0;
  #held: Buffer[] = [];
  #heldBytes = 0;
  #aside: Gunzip | null = null;
  #asideDecoded = 0;
  #asideProbe: Scrubber | null = null;
  #inputEnded = false;
  #headSent = false;
  /** set by the caller: the input may flow again after write() returned false */
  onWritable: (() => void) | null = null;

  constructor(codings: Coding[], plan: ScrubPlan, sink: ScrubSink, options: ResponseScrubOptions) {
    this.#codings = codings;
    this.#plan = plan;
    this.#sink = sink;
    this.#max = options.maxDecodedBytes;
    this.#scrubber = new Scrubber(plan);
    const length = options.contentLength ?? null;
    if (codings.length === 0 && length !== null && length <= WHOLE_BODY_MAX) this.#mode = 'whole';
  }

  write(chunk: Buffer): boolean {
    if (this.#mode === 'done' || chunk.length === 0) return true;
    if (this.#codings.length === 0) return this.#plain(chunk);
    if (!this.#decoders) {
      // The decoders are chosen on the first two bytes (raw deflate or zlib).
      const first = this.#first ? Buffer.concat([this.#first, chunk]) : chunk;
      if (first.length < 2) {
        this.#first = first;
        return true;
      }
      this.#first = null;
      return this.#chain(first)[0]!.write(first);
    }
    return this.#decoders[0]!.write(chunk);
  }

  end(): void {
    if (this.#mode === 'done') return;
    if (this.#codings.length === 0) return this.#plainEnd();
    const first = this.#first;
    this.#first = null;
    const head = this.#chain(first)[0]!;
    if (first) head.write(first);
    head.end();
  }

  /** The sink drained after data() returned false. */
  resume(): void {
    if (this.#decoders) this.#decoders.at(-1)!.resume();
    else this.onWritable?.();
  }

  /** Stops everything (the client or the upstream went away); no more sink calls. */
  destroy(): void {
    this.#mode = 'done';
    for (const decoder of this.#decoders ?? []) decoder.destroy();
    this.#aside?.destroy();
  }

  #chain(first: Buffer | null): Transform[] {
    if (this.#decoders) return this.#decoders;
    const decoders = this.#codings.map((coding, i) => decoderFor(coding, i === 0 ? first : null));
    this.#decoders = decoders;
    let upstream: Readable | null = null;
    for (const stage of decoders) {
      stage.on('error', () => this.#fail(new ScrubFailure('upstream_protocol', 'the response body is not valid for its Content-Encoding')));
      upstream?.pipe(stage);
      upstream = stage;
    }
    const last = decoders.at(-1)!;
    last.on('data', (chunk: Buffer) => {
      if (!this.#plain(chunk)) last.pause();
    });
    last.on('end', () => this.#plainEnd());
    decoders[0]!.on('drain', () => this.onWritable?.());
    return decoders;
  }

  /** Bytes after every content coding. */
  #plain(chunk: Buffer): boolean {
    if (this.#codings.length > 0) {
      // The cap also holds for the decoded body, so a compression bomb cannot get past it.
      this.#plainBytes += chunk.length;
      if (this.#plainBytes > this.#max) {
        this.#fail(new ScrubFailure('response_too_large', `the decoded response crossed the limit of ${this.#max} bytes; it was cut`));
        return true;
      }
    }
    switch (this.#mode) {
      case 'pass':
        return this.#emit(this.#scrubber.push(chunk), null);
      case 'hold':
        return this.#hold(chunk);
      case 'whole':
        this.#held.push(chunk);
        return true;
      case 'sniff': {
        this.#sniffed.push(chunk);
        if (this.#sniffed.reduce((n, b) => n + b.length, 0) < GZIP_MAGIC.length) return true;
        return this.#decide(Buffer.concat(this.#sniffed.splice(0)));
      }
      case 'done':
        return true;
    }
  }

  #plainEnd(): void {
    if (this.#mode === 'done') return;
    this.#inputEnded = true;
    if (this.#mode === 'whole') {
      // one chunk (a small body usually comes in one): no copy
      const body = this.#held.length === 1 ? this.#held.pop()! : Buffer.concat(this.#held.splice(0));
      if (isGzip(body)) {
        this.#mode = 'hold';
        this.#startAside();
        this.#hold(body);
      } else {
        const out = this.#scrubber.whole(body);
        this.#emit(out, out.length);
        this.#finish();
        return;
      }
    }
    if (this.#mode === 'sniff') this.#decide(Buffer.concat(this.#sniffed.splice(0)));
    if (this.#mode === 'hold') {
      this.#aside!.end();
      return;
    }
    if (this.#mode !== 'pass') return;
    this.#emit(this.#scrubber.end(), null);
    this.#finish();
  }

  /** Enough bytes (or all of them) to tell gzip data from anything else. */
  #decide(first: Buffer): boolean {
    if (isGzip(first)) {
      this.#mode = 'hold';
      this.#startAside();
      return this.#hold(first);
    }
    this.#mode = 'pass';
    return this.#emit(this.#scrubber.push(first), null);
  }

  #startAside(): void {
    const aside = createGunzip();
    this.#aside = aside;
    this.#asideProbe = new Scrubber(this.#plan);
    aside.on('data', (decoded: Buffer) => {
      this.#asideDecoded += decoded.length;
      if (this.#asideDecoded > this.#max) {
        const detail = `the response is gzip data that decodes to more than ${this.#max} bytes; sluice cannot check it for secret values`;
        this.#fail(new ScrubFailure('response_too_large', detail));
        return;
      }
      this.#asideProbe!.push(decoded);
      this.#checkAside();
    });
    aside.on('error', () =>
      this.#fail(new ScrubFailure('upstream_protocol', 'the response starts like gzip data but is not readable gzip, so it cannot be checked')),
    );
    aside.on('end', () => {
      this.#asideProbe!.end();
      if (this.#checkAside() && this.#inputEnded) this.#release();
    });
  }

  /** False (and the body failed) when the decoded data carried a value. */
  #checkAside(): boolean {
    if (this.#mode !== 'hold') return false;
    if (this.#asideProbe!.matched === 0) return true;
    this.#fail(new ScrubFailure('upstream_protocol', 'the response is gzip data that carries a secret value; sluice does not pass it on'));
    return false;
  }

  #hold(chunk: Buffer): boolean {
    this.#heldBytes += chunk.length;
    if (this.#heldBytes > this.#max) {
      this.#fail(new ScrubFailure('response_too_large', `the response crossed the limit of ${this.#max} bytes; it was cut`));
      return true;
    }
    this.#held.push(chunk);
    this.#aside!.write(chunk);
    return true;
  }

  /** A held gzip body came out clean: it goes on whole. */
  #release(): void {
    const held = Buffer.concat(this.#held.splice(0));
    const out = this.#scrubber.whole(held);
    this.#mode = 'pass';
    this.#emit(out, out.length);
    this.#finish();
  }

  #emit(out: Buffer, length: number | null): boolean {
    if (!this.#headSent) {
      this.#headSent = true;
      this.#sink.head(length);
      if (this.#mode === 'done') return true;
    }
    return out.length === 0 ? true : this.#sink.data(out);
  }

  #finish(): void {
    if (this.#mode === 'done') return;
    if (!this.#headSent) {
      this.#headSent = true;
      this.#sink.head(0);
    }
    this.#mode = 'done';
    this.#sink.end();
  }

  #fail(error: Error): void {
    if (this.#mode === 'done') return;
    this.destroy();
    this.#sink.fail(error);
  }
}

function isGzip(bytes: Buffer): boolean {
  return bytes.length >= GZIP_MAGIC.length && GZIP_MAGIC.every((byte, i) => bytes[i] === byte);
}

/** A ResponseScrub for a response's Content-Encoding field(s), or null for a coding sluice cannot decode. */
export function createResponseScrub(
  contentEncoding: string | readonly string[] | null | undefined,
  values: readonly ScrubEntry[],
  sink: ScrubSink,
  options: ResponseScrubOptions,
): ResponseScrub | null {
  const codings = parseCodings(contentEncoding);
  return codings === null ? null : new ResponseScrub(codings, scrubPlan(values), sink, options);
}

/**
 * The same as a Duplex: the encoded body in, the plain, scrubbed body out. Returns null for a coding
 * sluice cannot decode: then the body cannot be scrubbed, and the caller must not pass it on.
 */
export function createDecodingScrubber(
  contentEncoding: string | readonly string[] | null | undefined,
  values: readonly ScrubEntry[],
  options: ResponseScrubOptions = { maxDecodedBytes: Number.MAX_SAFE_INTEGER },
): Duplex | null {
  const codings = parseCodings(contentEncoding);
  if (codings === null) return null;
  return new ScrubDuplex(codings, scrubPlan(values), options);
}

class ScrubDuplex extends Duplex {
  readonly #scrub: ResponseScrub;
  #pendingWrite: (() => void) | null = null;

  constructor(codings: Coding[], plan: ScrubPlan, options: ResponseScrubOptions) {
    super();
    this.#scrub = new ResponseScrub(
      codings,
      plan,
      {
        head: () => undefined,
        data: (chunk) => this.push(chunk),
        end: () => this.push(null),
        fail: (error) => this.destroy(error),
      },
      options,
    );
    this.#scrub.onWritable = () => {
      const callback = this.#pendingWrite;
      this.#pendingWrite = null;
      callback?.();
    };
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#scrub.write(chunk)) callback();
    else this.#pendingWrite = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#scrub.end();
    callback();
  }

  override _read(): void {
    this.#scrub.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#scrub.destroy();
    callback(error);
  }
}
