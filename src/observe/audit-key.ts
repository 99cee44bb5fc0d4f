// The audit signing key: an Ed25519 pair (`sluice audit keygen`), loaded by `serve --audit-key` to
// sign checkpoints and by `audit verify --key` to check them. node:crypto only. The key id names a
// public key in every checkpoint: the first 16 hex digits of the SHA-256 of its DER
// SubjectPublicKeyInfo (`openssl pkey -pubin -in audit-key.pub.pem -outform DER | sha256sum`).
import { createPrivateKey, createPublicKey, generateKeyPairSync, hash, sign, verify, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CHECKPOINT_SIGNING_PREFIX, withSignature } from './audit-chain.js';
import type { AuditRecord } from './audit-record.js';

export const AUDIT_PRIVATE_KEY_FILE = 'audit-key.pem';
export const AUDIT_PUBLIC_KEY_FILE = 'audit-key.pub.pem';

/** A key file that cannot be used; the message names the file, never key material. */
export class AuditKeyError extends Error {
  override readonly name = 'AuditKeyError';
}

export interface AuditVerifyKey {
  keyId: string;
  publicKey: KeyObject;
}

export interface AuditSigner extends AuditVerifyKey {
  /** the record with `signature` added (over CHECKPOINT_SIGNING_PREFIX and the record's JSON) */
  sign(record: AuditRecord): AuditRecord;
}

export function keyIdOf(publicKey: KeyObject): string {
  return hash('sha256', publicKey.export({ type: 'spki', format: 'der' }), 'hex').slice(0, 16);
}

function readKeyFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new AuditKeyError(`audit key ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function requireEd25519(key: KeyObject, file: string): void {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AuditKeyError(
      `audit key ${file}: not an Ed25519 key (${key.asymmetricKeyType ?? 'unknown'}); make one with "sluice audit keygen"`,
    );
  }
}

/** The private key of `serve --audit-key FILE` (PKCS#8 PEM). */
export function loadAuditSigner(file: string): AuditSigner {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readKeyFile(file));
  } catch (err) {
    if (err instanceof AuditKeyError) throw err;
    throw new AuditKeyError(`audit key ${file}: not a private key in PEM`);
  }
  requireEd25519(privateKey, file);
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey);
  return {
    keyId,
    publicKey,
    sign: (record) => {
      const signature = sign(null, Buffer.from(CHECKPOINT_SIGNING_PREFIX + JSON.stringify(record)), privateKey).toString('base64');
      return withSignature(record, signature);
    },
  };
}

/** The public key of `audit verify --key FILE` (a private key file works too: its public half is used). */
export function loadAuditVerifyKey(file: string): AuditVerifyKey {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(readKeyFile(file));
  } catch (err) {
    if (err instanceof AuditKeyError) throw err;
    throw new AuditKeyError(`audit key ${file}: not a public or private key in PEM`);
  }
  requireEd25519(publicKey, file);
  return { keyId: keyIdOf(publicKey), publicKey };
}

export function signatureValid(key: AuditVerifyKey, message: string, signature: string): boolean {
  return verify(null, Buffer.from(message), key.publicKey, Buffer.from(signature, 'base64'));
}

/**
 * Writes DIR/audit-key.pem (private, mode 0600) and DIR/audit-key.pub.pem. Refuses when either is
 * there already: a new key would leave the trails it signed without their verifier.
 */
export function generateAuditKeys(dir: string): { privateFile: string; publicFile: string; keyId: string } {
  const privateFile = path.join(dir, AUDIT_PRIVATE_KEY_FILE);
  const publicFile = path.join(dir, AUDIT_PUBLIC_KEY_FILE);
  for (const file of [privateFile, publicFile]) {
    if (fs.existsSync(file)) throw new AuditKeyError(`${file} exists; keygen never overwrites a key (move it aside first)`);
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(privateFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(publicFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  return { privateFile, publicFile, keyId: keyIdOf(publicKey) };
}
