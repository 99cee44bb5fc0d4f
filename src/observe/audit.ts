// Hash-chained audit log: one JSON object per line. Records of one event-loop turn are batched; the
// file is written synchronously once per turn (pino's default; the thread pool's wake-ups cost more
// than the write), stdout (a pipe that may stall) asynchronously.
//
// Conventions (fixed by the team; other modules report through Observer in events.ts):
// - Each request or tunnel gets exactly ONE canonical event: `net.req` (a plain HTTP request, or a
//   request inside an intercepted tunnel), `net.tunnel` (a CONNECT), or, when the outcome was a
//   denial or review, `policy.violation` with the same fields (decision deny|review, reason), or
//   `limit.exceeded` when a size/time limit cut it. `secret.use` is one additional event per alias
//   used. `policy.load`, `policy.reload_failed` and `policy.drift` are lifecycle events.
//
// Record layout. Every record has these keys, in this order, with null for an absent value:
//   ts (ISO 8601, UTC), seq, type, request_id, tool, decision, reason, method, scheme, host, port,
//   path, ip, status, bytes_up, bytes_down, duration_ms, rule, secret, policy_sha256,
// then `where`, `detail`, `expected_sha256` (each only when set, in that order), then `prev`, `hash`.
// `seq` counts from 1 and continues across rotations and restarts. Every string is passed through
// the sink's scrub function (secret values never reach the file); `path` has its query values
// replaced by REDACTED.
//
// Bounds. A tool chooses much of what a record holds (its path, header names, a Host), and records
// must not be large enough for a few thousand requests to rotate older evidence out of retention.
// After scrubbing, a string field longer than its bound keeps its first characters and ends with
// the marker `…[cut, N chars]` (N = the length before the cut): `path` 2048 characters, `detail`
// 1024, every other string field 256. Lifecycle events (policy.load, policy.reload_failed,
// policy.drift) keep their whole detail: the operator's policy file is its source, not a tool.
//
// Chain. Let C be the canonical text of a record: JSON.stringify of the record WITHOUT `hash`, keys
// in the order above, no whitespace (i.e. the written line up to and excluding `,"hash":`, plus "}").
//   hash = lowercase hex SHA-256 over the UTF-8 bytes of (prev + C)
//   prev = the previous record's hash; 64 "0" for the very first record (seq 1)
// The written line is C with its final "}" replaced by `,"hash":"<hash>"}`, then "\n". A verifier
// therefore needs no re-serialisation: C = line[0 : len(line) - 75] + "}" (75 = len(',"hash":"') +
// 64 + len('"}')). The chain spans rotated files: the first record of a fresh audit.log has as prev
// the last hash of audit.log.1.
import { hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { AUDIT_TYPES, type AuditInput } from './events.js';

export const GENESIS_HASH = '0'.repeat(64);
const HASH_SUFFIX_LENGTH = ',"hash":"'.length + 64 + '"}'.length;
const HASH_SUFFIX = /,"hash":"([0-9a-f]{64})"\}$/;
const DEFAULT_KEEP = 10;
const FSYNC_INTERVAL_MS = 1000;
const TAIL_CHUNK = 64 * 1024;

/** Field bounds, in UTF-16 code units (see the header comment). */
export const AUDIT_FIELD_MAX = Object.freeze({ path: 2048, detail: 1024, other: 256 });
const LIFECYCLE_TYPES: ReadonlySet<string> = new Set(['policy.load', 'policy.reload_failed', 'policy.drift']);

/** `text` cut to `max` characters plus a marker with its original length; short text unchanged. */
export function boundField(text: string, max: number): string {
  if (text.length <= max) return text;
  // never split a surrogate pair
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, end)}…[cut, ${text.length} chars]`;
}

export type FsyncMode = 'never' | 'always' | 'interval';

export interface AuditSinkOptions {
  /** audit file path; null/absent = no file */
  file?: string | null;
  /** also write each record to stdout */
  stdout?: boolean;
  /** 'always' fsyncs after each batch written (blocks the event loop on the disk), 'interval' every second */
  fsync?: FsyncMode;
  /** rotate before a record would take the file past this many bytes; 0 = never */
  maxBytes?: number;
  /** rotated files kept (audit.log.1 … audit.log.N); older ones are deleted */
  keep?: number;
  /** replaces secret values in every string field */
  scrub?: (s: string) => string;
  /** told once when a destination fails; afterwards write() throws */
  onError?: (err: Error) => void;
}

export class AuditError extends Error {
  readonly code: 'AUDIT_TORN_TAIL' | 'AUDIT_BAD_TAIL' | 'AUDIT_WRITE_FAILED' | 'AUDIT_CLOSED';
  constructor(code: AuditError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditError';
    this.code = code;
  }
}

/** The record as written, before `hash` is added; key order here IS the canonical order. */
export interface AuditRecord {
  ts: string;
  seq: number;
  type: string;
  request_id: string | null;
  tool: string | null;
  decision: string | null;
  reason: string | null;
  method: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  ip: string | null;
  status: number | null;
  bytes_up: number | null;
  bytes_down: number | null;
  duration_ms: number | null;
  rule: string | null;
  secret: string | null;
  policy_sha256: string | null;
  where?: string;
  detail?: string;
  expected_sha256?: string;
  prev: string;
}

/** Keeps query keys and replaces every value: `/a?q=x&t=y&flag` → `/a?q=REDACTED&t=REDACTED&flag`. */
export function redactQuery(pathWithQuery: string): string {
  const mark = pathWithQuery.indexOf('?');
  if (mark < 0) return pathWithQuery;
  const query = pathWithQuery
    .slice(mark + 1)
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0 ? part : `${part.slice(0, eq)}=REDACTED`;
    })
    .join('&');
  return `${pathWithQuery.slice(0, mark)}?${query}`;
}

let lastMs = -1;
let lastIso = '';

/** Records of one millisecond share a timestamp; Date#toISOString formats through snprintf each time. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

function sha256Hex(text: string): string {
  // crypto.hash: one call, about 3x cheaper than a Hash object for a record-sized input.
  return hash('sha256', text, 'hex');
}

/** Builds the line for one record: canonical JSON with the chained hash appended as the last key. */
function chainLine(record: AuditRecord): { line: string; hash: string } {
  const canonical = JSON.stringify(record);
  const hash = sha256Hex(record.prev + canonical);
  return { line: `${canonical.slice(0, -1)},"hash":"${hash}"}\n`, hash };
}

interface ChainHead {
  seq: number;
  hash: string;
}

/** Last seq/hash of an existing audit file (or of its newest rotation when it is empty). */
function readChainHead(file: string): ChainHead {
  for (const candidate of [file, `${file}.1`]) {
    const last = readLastLine(candidate);
    if (last === null) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(last);
    } catch (err) {
      throw new AuditError('AUDIT_BAD_TAIL', `${candidate}: last record is not JSON; run "sluice audit verify"`, { cause: err });
    }
    const { seq, hash } = parsed as { seq?: unknown; hash?: unknown };
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 || typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new AuditError('AUDIT_BAD_TAIL', `${candidate}: last record has no valid seq/hash; run "sluice audit verify"`);
    }
    return { seq, hash };
  }
  return { seq: 0, hash: GENESIS_HASH };
}

/** The last complete line of a file, null when the file is missing or empty; reads only the tail. */
function readLastLine(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return null;
    const chunks: Buffer[] = [];
    let end = size;
    let sawFinalNewline = false;
    while (end > 0) {
      const start = Math.max(0, end - TAIL_CHUNK);
      const chunk = Buffer.alloc(end - start);
      fs.readSync(fd, chunk, 0, chunk.length, start);
      if (!sawFinalNewline) {
        if (chunk[chunk.length - 1] !== 0x0a) {
          // A crash mid-write: continuing would chain onto a record nobody can verify.
          throw new AuditError(
            'AUDIT_TORN_TAIL',
            `${file}: last record is incomplete (no newline); run "sluice audit verify" and move the file aside`,
          );
        }
        sawFinalNewline = true;
      }
      chunks.unshift(chunk);
      const joined = Buffer.concat(chunks);
      const previousNewline = joined.lastIndexOf(0x0a, joined.length - 2);
      if (previousNewline >= 0) return joined.subarray(previousNewline + 1, joined.length - 1).toString('utf8');
      end = start;
    }
    return Buffer.concat(chunks).subarray(0, -1).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function openAppend(file: string): number {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return fs.openSync(file, 'a', 0o600);
}

/**
 * A SonicBoom plus the byte counts needed to know when everything handed to it is on disk.
 * Records queued in one turn of the event loop go out as one write at the end of that turn. To a
 * file the write is synchronous (pino's default): into the page cache it costs less than handing
 * it to the thread pool, whose wake-ups cost about 4 µs of CPU per request on a busy 2-core machine
 * (small GET: 47 -> 42.5 CPU ms per 1000 requests), and a disk that stops taking writes slows the
 * proxy rather than letting records pile up in memory. To stdout (a pipe to a log collector that
 * may stall) it stays asynchronous.
 */
class Destination {
  readonly boom: ReturnType<typeof pino.destination>;
  #queued = 0;
  #written = 0;
  #pending: string[] = [];
  #flushScheduled = false;
  #waiters: Array<() => void> = [];
  #closed: Promise<void> | null = null;
  /** after a write error the queued bytes never land: nobody may wait for them */
  #failed = false;
  /** a process that exits before the turn ends still writes what it queued */
  readonly #flushOnExit = (): void => {
    this.#flush();
    try {
      this.boom.flushSync();
    } catch {
      // nothing left to write, or the destination already failed (reported through 'error')
    }
  };

  readonly fd: number;

  constructor(fd: number, opts: { sync: boolean; fsyncEach: boolean }, onError: (err: Error) => void) {
    this.fd = fd;
    this.boom = pino.destination({ fd, sync: opts.sync, fsync: opts.fsyncEach });
    this.boom.on('write', (n: number) => {
      this.#written += n;
      if (this.#written >= this.#queued) this.#wake();
    });
    this.boom.on('error', (err: Error) => {
      if (this.#failed) return;
      this.#failed = true;
      onError(err);
      this.#wake();
      // An async SonicBoom keeps retrying what it holds; a failed destination is abandoned instead.
      this.boom.destroy();
    });
    process.on('exit', this.#flushOnExit);
  }

  write(line: string): void {
    this.#queued += Buffer.byteLength(line);
    this.#pending.push(line);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** Resolves once every queued byte was written (or the destination failed). */
  drained(): Promise<void> {
    if (this.#failed || this.#written >= this.#queued) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  close(): Promise<void> {
    this.#closed ??= new Promise((resolve) => {
      process.off('exit', this.#flushOnExit);
      // A failed destination was destroyed when it failed: there is nothing left to close.
      if (this.#failed) return resolve();
      this.#flush();
      this.boom.once('close', () => resolve());
      this.boom.once('error', () => resolve());
      this.boom.end();
    });
    return this.#closed;
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#pending.length === 0) return;
    const batch = this.#pending.join('');
    this.#pending = [];
    // SonicBoom reports a failed write as an 'error' event, handled above.
    this.boom.write(batch);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

export class AuditSink {
  readonly #file: string | null;
  readonly #fsync: FsyncMode;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #scrub: (s: string) => string;
  readonly #onError: ((err: Error) => void) | undefined;
  #fileDest: Destination | null = null;
  #stdoutDest: Destination | null = null;
  /** destinations of rotated files still flushing their last records */
  #retiring = new Set<Destination>();
  #fileBytes = 0;
  #head: ChainHead;
  #fsyncTimer: NodeJS.Timeout | null = null;
  #failure: Error | null = null;
  #closed = false;

  private constructor(opts: AuditSinkOptions, head: ChainHead) {
    this.#file = opts.file ?? null;
    this.#fsync = opts.fsync ?? 'never';
    this.#maxBytes = opts.maxBytes ?? 0;
    this.#keep = Math.max(1, opts.keep ?? DEFAULT_KEEP);
    this.#scrub = opts.scrub ?? ((s) => s);
    this.#onError = opts.onError;
    this.#head = head;
  }

  static async open(opts: AuditSinkOptions): Promise<AuditSink> {
    const file = opts.file ?? null;
    const head = file === null ? { seq: 0, hash: GENESIS_HASH } : readChainHead(file);
    const sink = new AuditSink(opts, head);
    if (file !== null) {
      const fd = openAppend(file);
      sink.#fileBytes = fs.fstatSync(fd).size;
      sink.#fileDest = sink.#destination(fd, true);
    }
    if (opts.stdout) sink.#stdoutDest = sink.#destination(1, false);
    if (sink.#fsync === 'interval' && file !== null) {
      sink.#fsyncTimer = setInterval(() => sink.#fsyncFile(), FSYNC_INTERVAL_MS);
      sink.#fsyncTimer.unref();
    }
    return sink;
  }

  /** seq and hash of the last record written (0 and 64 zeros before the first). */
  get head(): { seq: number; hash: string } {
    return { ...this.#head };
  }

  /** Builds, chains and queues one record; never waits for the disk. Throws once the sink failed or closed. */
  write(e: AuditInput, policySha256: string | null): void {
    if (this.#failure) throw new AuditError('AUDIT_WRITE_FAILED', 'audit log is failing; no record written', { cause: this.#failure });
    if (this.#closed) throw new AuditError('AUDIT_CLOSED', 'audit log is closed');
    const record = this.#record(e, policySha256);
    const { line, hash } = chainLine(record);
    if (this.#fileDest) {
      const size = Buffer.byteLength(line);
      if (this.#maxBytes > 0 && this.#fileBytes > 0 && this.#fileBytes + size > this.#maxBytes) {
        // A failed rotation leaves the current file in place: this record still lands, later ones throw.
        try {
          this.#rotate();
        } catch (err) {
          this.#fail(err as Error);
        }
      }
      this.#fileBytes += size;
      this.#fileDest.write(line);
    }
    this.#stdoutDest?.write(line);
    this.#head = { seq: record.seq, hash };
  }

  /** Resolves when every record written so far is on disk (fsynced for a file). */
  async flush(): Promise<void> {
    const destinations = [this.#fileDest, this.#stdoutDest, ...this.#retiring].filter((d): d is Destination => d !== null);
    await Promise.all(destinations.map((d) => d.drained()));
    await Promise.all([...this.#retiring].map((d) => d.close()));
    const fd = this.#fileDest?.fd;
    if (fd !== undefined && !this.#closed) await new Promise<void>((resolve) => fs.fsync(fd, () => resolve()));
    if (this.#failure) throw new AuditError('AUDIT_WRITE_FAILED', 'audit log is failing', { cause: this.#failure });
  }

  /** Writes out everything queued, fsyncs and closes; later writes throw. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fsyncTimer) clearInterval(this.#fsyncTimer);
    const destinations = [this.#fileDest, this.#stdoutDest, ...this.#retiring].filter((d): d is Destination => d !== null);
    await Promise.all(destinations.map((d) => d.drained()));
    await Promise.all(destinations.map((d) => d.close()));
    if (this.#failure) throw new AuditError('AUDIT_WRITE_FAILED', 'audit log failed before close', { cause: this.#failure });
  }

  #destination(fd: number, sync: boolean): Destination {
    return new Destination(fd, { sync, fsyncEach: this.#fsync === 'always' }, (err) => this.#fail(err));
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    this.#onError?.(err);
  }

  #record(e: AuditInput, policySha256: string | null): AuditRecord {
    const other: number = AUDIT_FIELD_MAX.other;
    const text = (v: string | null | undefined, max = other): string | null => (typeof v === 'string' ? boundField(this.#scrub(v), max) : null);
    const num = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const record = {
      ts: isoNow(),
      seq: this.#head.seq + 1,
      type: AUDIT_TYPES.includes(e.type) ? e.type : boundField(this.#scrub(String(e.type)), other),
      request_id: text(e.request_id),
      tool: text(e.tool),
      decision: text(e.decision),
      reason: text(e.reason),
      method: text(e.method),
      scheme: text(e.scheme),
      host: text(e.host),
      port: num(e.port),
      path: typeof e.path === 'string' ? boundField(this.#scrub(redactQuery(e.path)), AUDIT_FIELD_MAX.path) : null,
      ip: text(e.ip),
      status: num(e.status),
      bytes_up: num(e.bytes_up),
      bytes_down: num(e.bytes_down),
      duration_ms: num(e.duration_ms),
      rule: text(e.rule),
      secret: text(e.secret),
      policy_sha256: text(policySha256),
    } as AuditRecord;
    // Extras sit between policy_sha256 and prev; keys are added in canonical order.
    if (typeof e.where === 'string') record.where = text(e.where)!;
    if (typeof e.detail === 'string') {
      record.detail = LIFECYCLE_TYPES.has(e.type) ? this.#scrub(e.detail) : text(e.detail, AUDIT_FIELD_MAX.detail)!;
    }
    if (typeof e.expected_sha256 === 'string') record.expected_sha256 = text(e.expected_sha256)!;
    record.prev = this.#head.hash;
    return record;
  }

  /** audit.log → audit.log.1 (older ones shift up, the oldest beyond `keep` is overwritten). */
  #rotate(): void {
    const file = this.#file!;
    for (let i = this.#keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    fs.renameSync(file, `${file}.1`);
    // The old descriptor follows the renamed inode, so its queued records still land in .1.
    const old = this.#fileDest!;
    this.#retiring.add(old);
    void old
      .drained()
      .then(() => old.close())
      .then(() => this.#retiring.delete(old));
    this.#fileDest = this.#destination(openAppend(file), true);
    this.#fileBytes = 0;
  }

  #fsyncFile(): void {
    const fd = this.#fileDest?.fd;
    if (fd !== undefined) fs.fsync(fd, () => {});
  }
}

export type VerifyResult =
  { ok: true; records: number; firstSeq: number | null; lastSeq: number | null } | { ok: false; file: string; line: number; why: string };

/** Lines of a file, read in chunks so a large audit file is never held in memory whole. */
function* fileLines(fd: number): Generator<{ text: string; terminated: boolean }> {
  try {
    const chunk = Buffer.alloc(1 << 20);
    let pending = Buffer.alloc(0);
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      let data = Buffer.concat([pending, chunk.subarray(0, n)]);
      let nl: number;
      while ((nl = data.indexOf(0x0a)) >= 0) {
        yield { text: data.subarray(0, nl).toString('utf8'), terminated: true };
        data = data.subarray(nl + 1);
      }
      pending = Buffer.from(data);
    }
    if (pending.length > 0) yield { text: pending.toString('utf8'), terminated: false };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Checks the chain across files given oldest first (audit.log.2 audit.log.1 audit.log) and reports
 * the first bad line (1-based, in the file as it is now). A deleted record shows as a seq gap at the
 * line where the next record now sits; an edited record as a hash mismatch at its own line; swapped
 * records as a seq error at the first of them. A chain whose first record has seq > 1 (older
 * rotations pruned) is anchored on that record's prev.
 */
export function verifyAuditFiles(files: string[]): VerifyResult {
  let previous: ChainHead | null = null;
  let firstSeq: number | null = null;
  let records = 0;
  for (const file of files) {
    let lineNo = 0;
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (err) {
      return { ok: false, file, line: 0, why: `cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    for (const { text, terminated } of fileLines(fd)) {
      lineNo++;
      const fail = (why: string): VerifyResult => ({ ok: false, file, line: lineNo, why });
      if (!terminated) return fail('incomplete last record (no newline)');
      if (text === '') return fail('empty line');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return fail('not JSON');
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('not a JSON object');
      const { seq, prev } = parsed as { seq?: unknown; prev?: unknown };
      const suffix = HASH_SUFFIX.exec(text);
      if (!suffix) return fail('"hash" is missing or not the last field');
      const hash = suffix[1]!;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return fail('"seq" is not a positive integer');
      if (typeof prev !== 'string' || !/^[0-9a-f]{64}$/.test(prev)) return fail('"prev" is not a sha256 hex');
      if (previous === null) {
        if (seq === 1 && prev !== GENESIS_HASH) return fail('first record (seq 1) must have prev of 64 zeros');
        firstSeq = seq;
      } else {
        if (seq !== previous.seq + 1) return fail(`seq ${seq} follows seq ${previous.seq} (a record is missing, added or out of order)`);
        if (prev !== previous.hash) return fail("prev does not match the previous record's hash");
      }
      const canonical = `${text.slice(0, text.length - HASH_SUFFIX_LENGTH)}}`;
      if (sha256Hex(prev + canonical) !== hash) return fail('hash mismatch (record altered)');
      previous = { seq, hash };
      records++;
    }
  }
  return { ok: true, records, firstSeq, lastSeq: previous?.seq ?? null };
}

/** What `sluice audit verify` prints: `file:line: why` on failure (exit 1), a summary on success. */
export function formatVerifyResult(result: VerifyResult): string {
  if (!result.ok) return `${result.file}:${result.line}: ${result.why}`;
  if (result.records === 0) return 'ok: 0 records';
  return `ok: ${result.records} records, seq ${result.firstSeq}..${result.lastSeq}`;
}
