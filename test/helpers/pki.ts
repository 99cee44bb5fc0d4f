// A test PKI made at test time (ECDSA P-256 via WebCrypto and @peculiar/x509): no key is committed.
// @peculiar/x509 picks up Node's global WebCrypto (the same as node:crypto's webcrypto) and needs
// the Reflect metadata shim that src/tls uses, imported before it.
// One CA per process signs the upstream servers' certificates; tests hand its PEM to sluice
// (tls.upstream_ca) and to clients. makeSelfSigned gives an upstream nobody trusts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const EC_SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const HOUR_MS = 3_600_000;

/** Every name the shared server certificate carries (DNS names and IP literals). */
export const SERVER_CERT_NAMES = [
  'localhost',
  '127.0.0.1',
  '127.0.0.2',
  '::1',
  '93.184.216.34',
  'upstream.test',
  'api.test',
  'other.test',
  '*.wild.test',
] as const;

export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

export interface TestPki {
  caPem: string;
  caKeyPem: string;
  /** Signed by the CA, valid for SERVER_CERT_NAMES. */
  server: CertAndKey;
}

export interface LeafOptions {
  notBefore?: Date;
  notAfter?: Date;
}

interface CaState {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

async function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function subjectAltNames(names: readonly string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(names.map((name) => ({ type: isIP(name) ? 'ip' : 'dns', value: name }) as const));
}

function leafExtensions(names: readonly string[]): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    subjectAltNames(names),
  ];
}

function commonName(names: readonly string[]): string {
  // Clients check the SAN; the CN only has to be a valid, readable name.
  return `CN=${(names[0] ?? 'sluice-test').replace(/[^A-Za-z0-9.*-]/g, '_')}`;
}

async function issueWith(ca: CaState, names: readonly string[], options: LeafOptions): Promise<CertAndKey> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    subject: commonName(names),
    issuer: ca.cert.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - HOUR_MS),
    notAfter: options.notAfter ?? new Date(Date.now() + 7 * 24 * HOUR_MS),
    signingAlgorithm: EC_SIGNING,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      ...leafExtensions(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

async function createCa(): Promise<CaState> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=sluice test CA, O=sluice tests',
    keys,
    notBefore: new Date(Date.now() - HOUR_MS),
    notAfter: new Date(Date.now() + 7 * 24 * HOUR_MS),
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

let caState: Promise<CaState> | undefined;
let testPki: Promise<TestPki> | undefined;

function ca(): Promise<CaState> {
  caState ??= createCa();
  return caState;
}

async function createTestPki(): Promise<TestPki> {
  const state = await ca();
  return {
    caPem: state.cert.toString('pem'),
    caKeyPem: await privateKeyPem(state.keys.privateKey),
    server: await issueWith(state, SERVER_CERT_NAMES, {}),
  };
}

/** The per-process test PKI: a CA and one server certificate for SERVER_CERT_NAMES. */
export function makeTestPki(): Promise<TestPki> {
  testPki ??= createTestPki();
  return testPki;
}

/** A further leaf signed by the test CA, e.g. for a name the shared certificate lacks, or expired. */
export async function issueLeaf(names: readonly string[], options: LeafOptions = {}): Promise<CertAndKey> {
  return issueWith(await ca(), names, options);
}

/** A self-signed leaf that no client trusts: the "untrusted upstream". */
export async function makeSelfSigned(names: readonly string[]): Promise<CertAndKey> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: commonName(names),
    keys,
    notBefore: new Date(Date.now() - HOUR_MS),
    notAfter: new Date(Date.now() + 7 * 24 * HOUR_MS),
    signingAlgorithm: EC_SIGNING,
    extensions: leafExtensions(names),
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

let scratchDir: string | undefined;

/**
 * Writes a PEM (or any text) to a file in a per-process temporary directory that is removed when
 * the process exits, for tools that take a path (curl --cacert, python cafile, tls.upstream_ca).
 */
export function writeTempFile(name: string, contents: string): string {
  if (scratchDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
    scratchDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const path = join(scratchDir, name);
  writeFileSync(path, contents, { mode: 0o600 });
  return path;
}

/** The test CA written to a file, for clients and sluice's tls.upstream_ca. */
export async function testCaFile(): Promise<string> {
  return writeTempFile('test-ca.pem', (await makeTestPki()).caPem);
}
