// The audit sink: one JSON object per line, hash-chained, to a file and/or stdout; rotation, fsync
// and, with a signing key, checkpoints. Records of one event-loop turn are batched; the file is
// written synchronously once per turn (pino's default; the thread pool's wake-ups cost more than
// the write), stdout (a pipe that may stall) asynchronously.
//
// The other jobs live beside it: the record and its field order (audit-record.ts), the chain math
// (audit-chain.ts), keys and signatures (audit-key.ts), the tail found at start (audit-tail.ts), one
// destination (audit-destination.ts) and the verifier (audit-verify.ts).
//
// Checkpoints (only with a signer). A signed `audit.checkpoint` record is written when the sink
// starts (`start`, or `break` when the trail it found did not end sealed), after every N records
// or T seconds with records (`periodic`), as the first record of every file a rotation begins
// (`rotate`) and as the last record of a clean close (`shutdown`). Each carries the seq, the
// instance, the key id and, in `prev`, the hash of everything before it, all under the signature.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chainLine } from './audit-chain.js';
import { Destination } from './audit-destination.js';
import { AuditError } from './audit-error.js';
import type { AuditSigner } from './audit-key.js';
import { checkpointRecord, eventRecord, type AuditRecord, type CheckpointKind } from './audit-record.js';
import { EMPTY_HEAD, inspectSignedTail, readChainHead, type ChainHead, type TailOpening } from './audit-tail.js';
import type { AuditInput } from './events.js';

export { AuditError } from './audit-error.js';
export { GENESIS_HASH } from './audit-chain.js';
export { AUDIT_FIELD_MAX, boundField, redactQuery, type AuditRecord } from './audit-record.js';
export { verifyAuditFiles, type VerifyReport } from './audit-verify.js';

const DEFAULT_KEEP = 10;
const FSYNC_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_RECORDS = 1000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;

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
  /** the `instance` of every record (this process); default a random id */
  instance?: string;
  /** signs checkpoints; absent = no checkpoints (a hash chain only) */
  signer?: AuditSigner | null;
  /** a periodic checkpoint after this many records (default 1000) */
  checkpointRecords?: number;
  /** and after this long when records were written since the last one (default 60 s) */
  checkpointIntervalMs?: number;
}

/** The last checkpoint written, as the admin port's /audit/head shows it. */
export interface AuditHead {
  instance: string;
  key_id: string;
  checkpoint: CheckpointKind;
  ts: string;
  seq: number;
  prev: string;
  hash: string;
  signature: string;
}

/** How the sink began: a new trail, a continued one, or a break (with what was found). */
export type AuditOpening = { kind: 'fresh' | 'continue' } | { kind: 'break'; detail: string };

/** A default instance id: random, so two processes never share one. */
export function randomInstance(): string {
  return randomBytes(6).toString('hex');
}

export class AuditSink {
  readonly #file: string | null;
  readonly #fsync: FsyncMode;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #scrub: (s: string) => string;
  readonly #onError: ((err: Error) => void) | undefined;
  readonly #instance: string;
  readonly #signer: AuditSigner | null;
  readonly #checkpointRecords: number;
  readonly #checkpointIntervalMs: number;
  #fileDest: Destination | null = null;
  #stdoutDest: Destination | null = null;
  /** destinations of rotated files still flushing their last records */
  #retiring = new Set<Destination>();
  #fileBytes = 0;
  #head: ChainHead;
  #policySha256: string | null = null;
  /** records written since the last checkpoint */
  #sinceCheckpoint = 0;
  #lastCheckpoint: AuditHead | null = null;
  #opening: AuditOpening = { kind: 'fresh' };
  #fsyncTimer: NodeJS.Timeout | null = null;
  #checkpointTimer: NodeJS.Timeout | null = null;
  #failure: Error | null = null;
  #closed = false;

  private constructor(opts: AuditSinkOptions, head: ChainHead) {
    this.#file = opts.file ?? null;
    this.#fsync = opts.fsync ?? 'never';
    this.#maxBytes = opts.maxBytes ?? 0;
    this.#keep = Math.max(1, opts.keep ?? DEFAULT_KEEP);
    this.#scrub = opts.scrub ?? ((s) => s);
    this.#onError = opts.onError;
    this.#instance = opts.instance ?? randomInstance();
    this.#signer = opts.signer ?? null;
    this.#checkpointRecords = Math.max(1, opts.checkpointRecords ?? DEFAULT_CHECKPOINT_RECORDS);
    this.#checkpointIntervalMs = Math.max(1, opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
    this.#head = head;
  }

  static async open(opts: AuditSinkOptions): Promise<AuditSink> {
    const file = opts.file ?? null;
    const signer = opts.signer ?? null;
    let opening: TailOpening = { kind: 'fresh', head: EMPTY_HEAD };
    if (file !== null) opening = signer ? inspectSignedTail(file, signer) : { kind: 'continue', head: readChainHead(file), from: file };
    const sink = new AuditSink(opts, opening.head);
    if (file !== null) {
      // The trail found is not continued: it stays as it is, as FILE.1, and FILE begins anew.
      if (opening.kind === 'break' && opening.setAside) sink.#shiftRotated();
      const fd = openAppend(file);
      sink.#fileBytes = fs.fstatSync(fd).size;
      sink.#fileDest = sink.#destination(fd, true);
    }
    if (opts.stdout) sink.#stdoutDest = sink.#destination(1, false);
    if (sink.#fsync === 'interval' && file !== null) {
      sink.#fsyncTimer = setInterval(() => sink.#fsyncFile(), FSYNC_INTERVAL_MS);
      sink.#fsyncTimer.unref();
    }
    if (signer) {
      if (opening.kind === 'break') {
        sink.#opening = { kind: 'break', detail: opening.detail };
        sink.#checkpoint('break', `${opening.detail}${opening.setAside ? `; it was set aside as ${file}.1` : ''}`);
      } else {
        sink.#opening = { kind: opening.kind };
        // Continuing the seal found in FILE.1 into an empty FILE: the new file opens as after a rotation.
        if (opening.kind === 'continue' && opening.from !== file) sink.#checkpoint('rotate');
        sink.#checkpoint('start');
      }
      sink.#checkpointTimer = setInterval(() => {
        if (sink.#sinceCheckpoint > 0 && !sink.#closed && !sink.#failure) sink.#checkpoint('periodic');
      }, sink.#checkpointIntervalMs);
      sink.#checkpointTimer.unref();
    } else if (file !== null && opening.head.seq > 0) {
      sink.#opening = { kind: 'continue' };
    }
    return sink;
  }

  /** seq and hash of the last record written (0 and 64 zeros before the first). */
  get head(): { seq: number; hash: string } {
    return { ...this.#head };
  }

  /** the last checkpoint written; null without a signer */
  get lastCheckpoint(): AuditHead | null {
    return this.#lastCheckpoint && { ...this.#lastCheckpoint };
  }

  get instance(): string {
    return this.#instance;
  }

  /** how the sink began; a break names what it found */
  get opening(): AuditOpening {
    return this.#opening;
  }

  /** Builds, chains and queues one record; never waits for the disk. Throws once the sink failed or closed. */
  write(e: AuditInput, policySha256: string | null): void {
    if (this.#failure) throw new AuditError('AUDIT_WRITE_FAILED', 'audit log is failing; no record written', { cause: this.#failure });
    if (this.#closed) throw new AuditError('AUDIT_CLOSED', 'audit log is closed');
    this.#policySha256 = policySha256;
    const record = eventRecord(e, this.#place(), this.#scrub);
    let { line, hash } = chainLine(record);
    let size = Buffer.byteLength(line);
    if (this.#mustRotate(size)) {
      this.#rotateNow();
      // A rotate checkpoint went first: the record follows it.
      if (record.seq !== this.#head.seq + 1) {
        record.seq = this.#head.seq + 1;
        record.prev = this.#head.hash;
        ({ line, hash } = chainLine(record));
        size = Buffer.byteLength(line);
      }
    }
    this.#put(line, size, record.seq, hash);
    if (this.#signer && ++this.#sinceCheckpoint >= this.#checkpointRecords) this.#checkpoint('periodic');
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

  /** Seals the trail (a shutdown checkpoint, when signing), writes out everything queued, fsyncs and closes; later writes throw. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#signer && !this.#failure) this.#checkpoint('shutdown');
    this.#closed = true;
    if (this.#fsyncTimer) clearInterval(this.#fsyncTimer);
    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    const destinations = [this.#fileDest, this.#stdoutDest, ...this.#retiring].filter((d): d is Destination => d !== null);
    await Promise.all(destinations.map((d) => d.drained()));
    await Promise.all(destinations.map((d) => d.close()));
    if (this.#failure) throw new AuditError('AUDIT_WRITE_FAILED', 'audit log failed before close', { cause: this.#failure });
  }

  #place(): { seq: number; prev: string; instance: string; policySha256: string | null } {
    return { seq: this.#head.seq + 1, prev: this.#head.hash, instance: this.#instance, policySha256: this.#policySha256 };
  }

  #mustRotate(size: number): boolean {
    return this.#fileDest !== null && this.#maxBytes > 0 && this.#fileBytes > 0 && this.#fileBytes + size > this.#maxBytes;
  }

  /** Queues a chained line on every destination; it is the new head. */
  #put(line: string, size: number, seq: number, hash: string): void {
    if (this.#fileDest) {
      this.#fileBytes += size;
      this.#fileDest.write(line);
    }
    this.#stdoutDest?.write(line);
    this.#head = { seq, hash };
  }

  /** Writes one signed checkpoint (rotating first when it would not fit, except for the rotate checkpoint itself). */
  #checkpoint(kind: CheckpointKind, detail?: string): void {
    const signer = this.#signer!;
    const build = (): { record: AuditRecord; line: string; hash: string; size: number } => {
      const record = signer.sign(checkpointRecord(kind, signer.keyId, this.#place(), detail === undefined ? undefined : this.#scrub(detail)));
      const { line, hash } = chainLine(record);
      return { record, line, hash, size: Buffer.byteLength(line) };
    };
    let built = build();
    if (kind !== 'rotate' && this.#mustRotate(built.size)) {
      this.#rotateNow();
      built = build();
    }
    const { record, line, hash, size } = built;
    this.#put(line, size, record.seq, hash);
    this.#sinceCheckpoint = 0;
    this.#lastCheckpoint = {
      instance: record.instance,
      key_id: record.key_id!,
      checkpoint: kind,
      ts: record.ts,
      seq: record.seq,
      prev: record.prev,
      hash,
      signature: record.signature!,
    };
  }

  /** Rotates; a signed sink opens the new file with a rotate checkpoint. A failed rotation leaves the current file in place. */
  #rotateNow(): void {
    try {
      this.#rotate();
    } catch (err) {
      // This record still lands in the current file; later ones throw.
      this.#fail(err as Error);
      return;
    }
    if (this.#signer) this.#checkpoint('rotate');
  }

  #destination(fd: number, sync: boolean): Destination {
    return new Destination(fd, { sync, fsyncEach: this.#fsync === 'always' }, (err) => this.#fail(err));
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    this.#onError?.(err);
  }

  /** audit.log.N → N+1 … audit.log → audit.log.1 (the oldest beyond `keep` is overwritten). */
  #shiftRotated(): void {
    const file = this.#file!;
    for (let i = this.#keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    fs.renameSync(file, `${file}.1`);
  }

  #rotate(): void {
    this.#shiftRotated();
    // The old descriptor follows the renamed inode, so its queued records still land in .1.
    const old = this.#fileDest!;
    this.#retiring.add(old);
    void old
      .drained()
      .then(() => old.close())
      .then(() => this.#retiring.delete(old));
    this.#fileDest = this.#destination(openAppend(this.#file!), true);
    this.#fileBytes = 0;
  }

  #fsyncFile(): void {
    const fd = this.#fileDest?.fd;
    if (fd !== undefined) fs.fsync(fd, () => {});
  }
}

function openAppend(file: string): number {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return fs.openSync(file, 'a', 0o600);
}
