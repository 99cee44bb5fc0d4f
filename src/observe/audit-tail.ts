// Tail recovery: what sluice finds at the end of an existing audit file when it starts, read from
// the end backwards (an audit file may be large). Unsigned, it continues the chain from the last
// record, refusing a torn or foreign one. Signed (--audit-key), it continues only a trail sealed by a
// shutdown checkpoint that verifies with its key; anything else (a crash, a kill, a cut tail, a torn
// line, another key) is a break: the file is set aside and the new one opens with a checkpoint that
// says what was found, so a restart never buries a truncation under fresh records.
import fs from 'node:fs';
import { GENESIS_HASH, hashMatches, signedPart, splitLine } from './audit-chain.js';
import { AuditError } from './audit-error.js';
import { signatureValid, type AuditVerifyKey } from './audit-key.js';

const TAIL_CHUNK = 64 * 1024;

export interface ChainHead {
  seq: number;
  hash: string;
}

export const EMPTY_HEAD: ChainHead = { seq: 0, hash: GENESIS_HASH };

/**
 * The last complete line of a file (without its newline) and whether an unterminated piece follows
 * it; null when the file is missing or empty.
 */
export function readTail(file: string): { last: string | null; torn: boolean } | null {
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
    let start = size;
    let torn: boolean | null = null;
    while (start > 0) {
      const from = Math.max(0, start - TAIL_CHUNK);
      const chunk = Buffer.alloc(start - from);
      fs.readSync(fd, chunk, 0, chunk.length, from);
      start = from;
      torn ??= chunk[chunk.length - 1] !== 0x0a;
      chunks.unshift(chunk);
      const joined = Buffer.concat(chunks);
      // The end of the last complete line: the final newline, or (torn) the last one before the piece.
      const end = torn ? joined.lastIndexOf(0x0a) : joined.length - 1;
      if (end < 0) {
        if (start === 0) return { last: null, torn };
        continue;
      }
      const before = end === 0 ? -1 : joined.lastIndexOf(0x0a, end - 1);
      if (before >= 0 || start === 0) return { last: joined.subarray(before + 1, end).toString('utf8'), torn };
    }
    return { last: null, torn: torn ?? false };
  } finally {
    fs.closeSync(fd);
  }
}

/** seq and hash of a line, when it is a record whose seq and hash are well-formed. */
function headOf(line: string | null): { head: ChainHead; record: Record<string, unknown> } | null {
  if (line === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const { seq, hash } = parsed as { seq?: unknown; hash?: unknown };
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 || typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) return null;
  return { head: { seq, hash }, record: parsed as Record<string, unknown> };
}

/** Unsigned: last seq/hash of an existing audit file (or of its newest rotation when it is empty). */
export function readChainHead(file: string): ChainHead {
  for (const candidate of [file, `${file}.1`]) {
    const tail = readTail(candidate);
    if (tail === null) continue;
    if (tail.torn) {
      // A crash mid-write: continuing would chain onto a record nobody can verify.
      throw new AuditError(
        'AUDIT_TORN_TAIL',
        `${candidate}: last record is incomplete (no newline); run "sluice audit verify" and move the file aside`,
      );
    }
    try {
      JSON.parse(tail.last ?? '');
    } catch (err) {
      throw new AuditError('AUDIT_BAD_TAIL', `${candidate}: last record is not JSON; run "sluice audit verify"`, { cause: err });
    }
    const found = headOf(tail.last);
    if (!found) throw new AuditError('AUDIT_BAD_TAIL', `${candidate}: last record has no valid seq/hash; run "sluice audit verify"`);
    return found.head;
  }
  return EMPTY_HEAD;
}

/**
 * How a signed sink begins. `fresh`: no trail yet. `continue`: the trail ends sealed; `from` is the
 * file holding that seal (the audit file itself, or FILE.1 when FILE is empty or missing). `break`:
 * the trail did not end sealed, for the reason in `detail`; `setAside` is true when FILE must be
 * moved out of the way (rotated to FILE.1) first; `head` is the last record found, which the break
 * checkpoint chains onto when it could be read.
 */
export type TailOpening =
  | { kind: 'fresh'; head: ChainHead }
  | { kind: 'continue'; head: ChainHead; from: string }
  | { kind: 'break'; head: ChainHead; detail: string; setAside: boolean };

export function inspectSignedTail(file: string, key: AuditVerifyKey): TailOpening {
  let from: string | null = null;
  let tail: { last: string | null; torn: boolean } | null = null;
  for (const candidate of [file, `${file}.1`]) {
    tail = readTail(candidate);
    if (tail !== null) {
      from = candidate;
      break;
    }
  }
  if (from === null || tail === null) return { kind: 'fresh', head: EMPTY_HEAD };
  const setAside = from === file;
  const found = headOf(tail.last);
  const broken = (why: string): TailOpening => ({ kind: 'break', head: found?.head ?? EMPTY_HEAD, detail: why, setAside });
  if (tail.torn) return broken(`${from}: the last record is incomplete (a crash mid-write or a cut); the file was not sealed`);
  if (!found) return broken(`${from}: the last line is not an audit record; the file was not sealed`);
  const { seq } = found.head;
  const record = found.record;
  if (record.type !== 'audit.checkpoint' || record.checkpoint !== 'shutdown') {
    return broken(`${from} ends at seq ${seq} with no shutdown checkpoint (a crash, a kill or a cut tail)`);
  }
  const parts = splitLine(tail.last!);
  if (!parts || typeof record.prev !== 'string' || !hashMatches(record.prev, parts.canonical, parts.hash)) {
    return broken(`${from}: the shutdown checkpoint at seq ${seq} does not match its hash`);
  }
  if (record.key_id !== key.keyId) {
    return broken(`${from}: the shutdown checkpoint at seq ${seq} was signed by another key (key id ${String(record.key_id)})`);
  }
  const signed = signedPart(parts.canonical);
  if (!signed || !signatureValid(key, signed.message, signed.signature)) {
    return broken(`${from}: the signature of the shutdown checkpoint at seq ${seq} does not verify`);
  }
  return { kind: 'continue', head: found.head, from };
}
