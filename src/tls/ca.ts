// The interception CA: created once (`sluice ca init`, or `serve` on first start), loaded and
// checked on every start. Keys are generated and used through WebCrypto, so signing runs off the
// event loop; the certificate is encoded by @peculiar/x509. That library (with its ASN.1 stack) is
// about a tenth of a start's CPU, so a start with an existing CA checks it with node:crypto alone
// and loads @peculiar/x509 only when a CA is created, a check fails, or the first leaf is issued.
import type * as X509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';

const HOUR_MS = 3_600_000;
const CA_VALIDITY_YEARS = 10;
const CA_NAME: X509.JsonName = [{ CN: ['sluice interception CA'] }, { O: ['sluice'] }];
const P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

export const CA_ERROR_CODES = [
  'SLUICE_CA_MISSING',
  'SLUICE_CA_UNREADABLE',
  'SLUICE_CA_CORRUPT',
  'SLUICE_CA_NOT_CA',
  'SLUICE_CA_KEY_MISMATCH',
  'SLUICE_CA_UNSUPPORTED_KEY',
  'SLUICE_CA_EXPIRED',
  'SLUICE_CA_NOT_YET_VALID',
] as const;
export type CaErrorCode = (typeof CA_ERROR_CODES)[number];

export class CaError extends Error {
  override readonly name = 'CaError';
  constructor(
    readonly code: CaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What the leaf issuer and the admin port need; the private key never leaves WebCrypto. */
export interface CertificateAuthority {
  /** PEM of the CA certificate, served at /ca.pem and appended to every leaf chain. */
  readonly certPem: string;
  readonly certPath: string;
  /** SHA-256 fingerprint as Node prints it (AA:BB:...). */
  readonly fingerprint256: string;
  /** What issuing a leaf needs from the certificate; parsed (and @peculiar/x509 loaded) on first use. */
  issuer(): Promise<CaIssuer>;
  /** Non-extractable signing key. */
  readonly signingKey: webcrypto.CryptoKey;
  readonly signingAlgorithm: webcrypto.EcdsaParams | webcrypto.Algorithm;
}

export interface CaIssuer {
  readonly cert: X509.X509Certificate;
  /** Hex key identifier of the CA key, for the leaves' authorityKeyIdentifier. */
  readonly keyIdentifier: string;
}

let x509Loading: Promise<typeof X509> | null = null;

/** @peculiar/x509, loaded once on first need (it wants reflect-metadata loaded before it). */
export function loadX509(): Promise<typeof X509> {
  x509Loading ??= import('reflect-metadata').then(() => import('@peculiar/x509'));
  return x509Loading;
}

/** A random 128-bit serial; x509 encodes it as a positive INTEGER (RFC 5280 §4.1.2.2: ≤ 20 octets). */
export function randomSerial(): string {
  return randomBytes(16).toString('hex');
}

/** Creates ca.pem and ca-key.pem in dir unless a CA (or either file) is already there. */
export async function initCa(dir: string): Promise<{ created: boolean; certPath: string }> {
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  await mkdir(dir, { recursive: true });
  if ((await exists(certPath)) || (await exists(keyPath))) return { created: false, certPath };

  const x509 = await loadX509();
  const keys = await webcrypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  const now = Date.now();
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_VALIDITY_YEARS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: CA_NAME,
    notBefore: new Date(now - HOUR_MS),
    notAfter,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');

  // 'wx' makes the create exclusive (no overwrite, no race with a second `ca init`), and the key
  // file is born 0600: it is never readable by others, not even for an instant.
  try {
    await writeFile(keyPath, keyPem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if (isCode(err, 'EEXIST')) return { created: false, certPath };
    throw err;
  }
  await writeFile(certPath, cert.toString('pem') + '\n', { mode: 0o644, flag: 'wx' });
  return { created: true, certPath };
}

/** Loads and checks the CA in dir; with create, makes one first when none is there. */
export async function loadCa(dir: string, opts: { create: boolean }): Promise<CertificateAuthority> {
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  if (opts.create) await initCa(dir);

  const certPem = await readPem(certPath, 'certificate', dir);
  const keyPem = await readPem(keyPath, 'private key', dir);

  let nodeCert: X509Certificate;
  try {
    nodeCert = new X509Certificate(certPem);
  } catch (cause) {
    throw new CaError('SLUICE_CA_CORRUPT', `${certPath} is not a valid PEM certificate`, { cause });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch {
    // The parser's message is dropped on purpose: nothing derived from key material goes into errors.
    throw new CaError('SLUICE_CA_CORRUPT', `${keyPath} is not a valid PEM private key`);
  }

  // OpenSSL's CA check refuses a missing basicConstraints CA:true and, RFC 5280 §4.2.1.3, a keyUsage
  // without keyCertSign (an absent keyUsage means "any use", OpenSSL's default for `req -x509`).
  if (!nodeCert.ca) throw await notCaError(certPem, certPath);
  if (!nodeCert.checkPrivateKey(privateKey)) {
    throw new CaError('SLUICE_CA_KEY_MISMATCH', `${keyPath} is not the private key of ${certPath}`);
  }
  const now = Date.now();
  if (Date.parse(nodeCert.validTo) <= now) {
    throw new CaError('SLUICE_CA_EXPIRED', `${certPath} expired on ${nodeCert.validTo}; create a new CA`);
  }
  if (Date.parse(nodeCert.validFrom) > now) {
    throw new CaError('SLUICE_CA_NOT_YET_VALID', `${certPath} is not valid before ${nodeCert.validFrom}; check the clock`);
  }

  const { importParams, signingAlgorithm } = signingParams(privateKey, keyPath);
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, importParams, false, ['sign']);
  let issuer: Promise<CaIssuer> | null = null;

  return Object.freeze({
    certPem: nodeCert.toString(),
    certPath,
    fingerprint256: nodeCert.fingerprint256,
    issuer: () => (issuer ??= parseIssuer(certPem)),
    signingKey,
    signingAlgorithm,
  });
}

async function parseIssuer(certPem: string): Promise<CaIssuer> {
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(certPem);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyIdentifier = ski?.keyId ?? Buffer.from(await cert.publicKey.getKeyIdentifier({ name: 'SHA-1' })).toString('hex');
  return { cert, keyIdentifier };
}

/** Why a certificate OpenSSL will not take as a CA is not one, as precisely as its extensions tell. */
async function notCaError(certPem: string, certPath: string): Promise<CaError> {
  const x509 = await loadX509();
  const keyUsage = new x509.X509Certificate(certPem).getExtension(x509.KeyUsagesExtension);
  if (keyUsage && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    return new CaError('SLUICE_CA_NOT_CA', `${certPath} may not sign certificates (keyUsage lacks keyCertSign)`);
  }
  return new CaError('SLUICE_CA_NOT_CA', `${certPath} is not a CA certificate (basicConstraints CA:true is missing)`);
}

function signingParams(
  key: KeyObject,
  keyPath: string,
): {
  importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signingAlgorithm: webcrypto.EcdsaParams | webcrypto.Algorithm;
} {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') {
      return { importParams: P256, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } };
    }
    if (curve === 'secp384r1') {
      return {
        importParams: { name: 'ECDSA', namedCurve: 'P-384' },
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      };
    }
  }
  if (key.asymmetricKeyType === 'rsa') {
    return {
      importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' },
    };
  }
  throw new CaError(
    'SLUICE_CA_UNSUPPORTED_KEY',
    `${keyPath} holds a ${key.asymmetricKeyType ?? 'unknown'} key; sluice signs with ECDSA P-256/P-384 or RSA`,
  );
}

async function readPem(path: string, what: string, dir: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) {
      throw new CaError('SLUICE_CA_MISSING', `CA ${what} ${path} not found; run "sluice ca init --dir ${dir}"`);
    }
    throw new CaError('SLUICE_CA_UNREADABLE', `cannot read CA ${what} ${path}: ${errorCode(err)}`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function isCode(err: unknown, code: string): boolean {
  return errorCode(err) === code;
}

function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'unknown error';
}
