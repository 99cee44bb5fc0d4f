// Audit trails built by the test itself, in the format the README documents (record layout, hash
// chain, signed checkpoints), so `sluice audit verify` is checked against the written contract and
// not against the sink's own code; plus the edits an attacker makes: cut lines, re-chain after an
// edit, re-sign a checkpoint with another key.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export const GENESIS = '0'.repeat(64);
/** What an Ed25519 checkpoint signature is over: this prefix, then the record's JSON without `signature` and `hash`. */
export const CHECKPOINT_SIGNING_PREFIX = 'sluice-audit-checkpoint-v1\n';
const POLICY_SHA = 'a'.repeat(64);

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

export interface TestKey {
  privateKey: KeyObject;
  publicPem: string;
  /** the first 16 hex digits of the sha256 of the public key's DER SubjectPublicKeyInfo */
  keyId: string;
}

export function testKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: sha256(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16),
  };
}

type Fields = Record<string, unknown>;

/** hash = sha256(prev + JSON without hash); the written line is that JSON with `"hash"` as its last key. */
function chained(fields: Fields): { line: string; hash: string } {
  const canonical = JSON.stringify(fields);
  const hash = sha256(`${fields.prev as string}${canonical}`);
  return { line: `${canonical.slice(0, -1)},"hash":"${hash}"}`, hash };
}

/** Adds `signature` (just before `prev`) over the prefix and the record's JSON without it. */
function signed(fields: Fields, key: KeyObject): Fields {
  const { prev, ...rest } = fields;
  const signature = sign(null, Buffer.from(CHECKPOINT_SIGNING_PREFIX + JSON.stringify({ ...rest, prev })), key).toString('base64');
  return { ...rest, signature, prev };
}

const EMPTY = {
  request_id: null,
  tool: null,
  decision: null,
  reason: null,
  method: null,
  scheme: null,
  host: null,
  port: null,
  path: null,
  ip: null,
  status: null,
  bytes_up: null,
  bytes_down: null,
  duration_ms: null,
  rule: null,
  secret: null,
};

function request(seq: number, instance: string, prev: string): Fields {
  return {
    ts: '2030-01-01T00:00:00.000Z',
    seq,
    instance,
    type: 'net.req',
    ...EMPTY,
    request_id: `req-${seq}`,
    tool: 'web-fetch',
    decision: 'allow',
    method: 'GET',
    scheme: 'http',
    host: 'example.test',
    port: 80,
    path: `/n/${seq}`,
    ip: '127.0.0.2',
    status: 200,
    bytes_down: 10,
    duration_ms: 1,
    rule: 'web-fetch.allow[0]',
    policy_sha256: POLICY_SHA,
    prev,
  };
}

export type CheckpointKind = 'start' | 'periodic' | 'rotate' | 'shutdown' | 'break';

function checkpoint(seq: number, instance: string, prev: string, kind: CheckpointKind, key: TestKey, detail?: string): Fields {
  return signed(
    {
      ts: '2030-01-01T00:00:00.000Z',
      seq,
      instance,
      type: 'audit.checkpoint',
      ...EMPTY,
      policy_sha256: POLICY_SHA,
      ...(detail ? { detail } : {}),
      checkpoint: kind,
      key_id: key.keyId,
      prev,
    },
    key.privateKey,
  );
}

export interface TrailSpec {
  /** null: an unsigned trail (no checkpoints), as sluice writes without --audit-key */
  key: TestKey | null;
  /** request records in the whole trail */
  records: number;
  instance?: string;
  /** a periodic checkpoint after every this many records (default 10) */
  every?: number;
  /** start a new file (opened by a rotate checkpoint) once a file has this many lines; 0 = one file */
  perFile?: number;
  /** end with a shutdown checkpoint (default true) */
  sealed?: boolean;
}

/**
 * The lines of each file of one trail, oldest file first. Signed: seq 1 is a start checkpoint (the
 * genesis), a periodic checkpoint follows every `every` records, every later file opens with a rotate
 * checkpoint, and a sealed trail ends with a shutdown checkpoint.
 */
export function buildTrail(spec: TrailSpec): string[][] {
  const instance = spec.instance ?? 'test-instance';
  const every = spec.every ?? 10;
  const files: string[][] = [[]];
  let seq = 0;
  let prev = GENESIS;
  const push = (fields: Fields): void => {
    const { line, hash } = chained(fields);
    files.at(-1)!.push(line);
    prev = hash;
  };
  const key = spec.key;
  if (key) push(checkpoint(++seq, instance, prev, 'start', key));
  for (let i = 0; i < spec.records; i++) {
    if (spec.perFile && files.at(-1)!.length >= spec.perFile) {
      files.push([]);
      if (key) push(checkpoint(++seq, instance, prev, 'rotate', key));
    }
    push(request(++seq, instance, prev));
    if (key && (i + 1) % every === 0) push(checkpoint(++seq, instance, prev, 'periodic', key));
  }
  if (key && (spec.sealed ?? true)) push(checkpoint(++seq, instance, prev, 'shutdown', key));
  return files;
}

/**
 * Recomputes every prev and hash from the first line's prev on, as a forger without the key can;
 * with `signWith`, checkpoints are signed again too (as sluice itself would write them).
 */
export function rechain(lines: string[], prev?: string, signWith?: TestKey): string[] {
  let last = prev ?? (JSON.parse(lines[0]!) as { prev: string }).prev;
  return lines.map((line) => {
    const { hash: _hash, prev: _prev, signature, ...rest } = JSON.parse(line) as Fields;
    const fields = { ...rest, ...(signature !== undefined ? { signature } : {}), prev: last };
    const next = chained(
      signWith && rest.type === 'audit.checkpoint' ? signed({ ...rest, key_id: signWith.keyId, prev: last }, signWith.privateKey) : fields,
    );
    last = next.hash;
    return next.line;
  });
}

/** A checkpoint line signed again with `key`; `claimKeyId` keeps another key's id in `key_id`. */
export function resign(line: string, key: TestKey, claimKeyId?: string): string {
  const { hash: _hash, signature: _signature, ...fields } = JSON.parse(line) as Fields;
  fields.key_id = claimKeyId ?? key.keyId;
  return chained(signed(fields, key.privateKey)).line;
}

/** Changes fields of a line (the order of keys is kept) without fixing its hash: call rechain after. */
export function edit(line: string, change: Fields): string {
  const fields = JSON.parse(line) as Fields;
  return JSON.stringify({ ...fields, ...change });
}

/**
 * Writes the files as sluice names them, oldest first: NAME.(n-1) … NAME.1, NAME. Returns the paths
 * in the same order.
 */
export function writeTrail(dir: string, files: string[][], name = 'audit.log'): string[] {
  return files.map((lines, i) => {
    const index = files.length - 1 - i;
    const file = path.join(dir, index === 0 ? name : `${name}.${index}`);
    writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
    return file;
  });
}
