import t, { type Test } from 'tap';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaError, initCa, loadCa, type CaErrorCode } from '../../src/tls/ca.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

interface CustomCa {
  certPem: string;
  keyPem: string;
}

/** A self-made certificate and key with chosen extensions and dates, written like a CA dir. */
async function makeCert(opts: {
  extensions: x509.Extension[];
  notBefore?: Date;
  notAfter?: Date;
  rsa?: boolean;
  p384?: boolean;
}): Promise<CustomCa> {
  const algorithm = opts.rsa
    ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
    : { name: 'ECDSA', namedCurve: opts.p384 ? 'P-384' : 'P-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=custom test CA',
    notBefore: opts.notBefore ?? new Date(Date.now() - HOUR_MS),
    notAfter: opts.notAfter ?? new Date(Date.now() + 365 * DAY_MS),
    keys,
    signingAlgorithm: opts.rsa ? { name: 'RSASSA-PKCS1-v1_5' } : { name: 'ECDSA', hash: 'SHA-256' },
    extensions: opts.extensions,
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

const caExtensions = (): x509.Extension[] => [
  new x509.BasicConstraintsExtension(true, 0, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
];

/** The serial INTEGER's content octets as encoded (with its sign octet, if any). */
function derSerial(der: Buffer): Buffer {
  let at = 0;
  const header = (): number => {
    at += 1; // tag
    const first = der[at++]!;
    if (first < 0x80) return first;
    let length = 0;
    for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + der[at++]!;
    return length;
  };
  header(); // Certificate SEQUENCE
  header(); // TBSCertificate SEQUENCE
  at += der[at + 1]! + 2; // [0] version
  const length = header(); // serialNumber INTEGER
  return der.subarray(at, at + length);
}

function writeCa(dir: string, ca: CustomCa): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), ca.keyPem, { mode: 0o600 });
}

async function rejectsWith(t: Test, promise: Promise<unknown>, code: CaErrorCode, file: string): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof CaError, `rejects with a CaError (${code})`);
  t.equal((err as CaError).code, code);
  t.match((err as CaError).message, file, 'the message names the file');
  t.notMatch((err as CaError).message, /PRIVATE KEY|BEGIN/, 'no PEM in the message');
}

t.test('initCa creates a P-256 CA with a 0600 key and the CA extensions', async (t) => {
  const dir = join(t.testdir(), 'nested', 'certs');
  const before = Date.now();
  const result = await initCa(dir);
  t.same(result, { created: true, certPath: join(dir, 'ca.pem') });

  t.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'ca.pem')).mode & 0o777, 0o644);

  const pem = readFileSync(join(dir, 'ca.pem'), 'utf8');
  const cert = new X509Certificate(pem);
  t.equal(cert.ca, true);
  t.equal(cert.subject, 'CN=sluice interception CA\nO=sluice');
  t.equal(cert.issuer, cert.subject, 'self-signed');
  t.ok(cert.verify(cert.publicKey), 'signature verifies with its own key');
  t.equal(cert.publicKey.asymmetricKeyType, 'ec');
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const validFrom = Date.parse(cert.validFrom);
  const validTo = Date.parse(cert.validTo);
  // X.509 times have one-second precision.
  t.ok(Math.abs(validFrom - (before - HOUR_MS)) < 5_000, 'backdated one hour');
  const years = (validTo - validFrom) / (365.25 * DAY_MS);
  t.ok(years > 9.99 && years < 10.01, `valid ten years (${years.toFixed(3)})`);

  const parsed = new x509.X509Certificate(pem);
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  t.equal(basic?.critical, true);
  t.equal(basic?.ca, true);
  t.equal(basic?.pathLength, 0);
  const usage = parsed.getExtension(x509.KeyUsagesExtension);
  t.equal(usage?.critical, true);
  t.equal(usage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  t.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, 'has a subjectKeyIdentifier');

  const serial = derSerial(Buffer.from(parsed.rawData));
  t.ok(serial.length >= 15 && serial.length <= 17, `serial is ~128 bits (${serial.length} octets)`);
  t.equal(serial[0]! & 0x80, 0, 'serial INTEGER is positive');
});

t.test('initCa refuses to overwrite an existing CA', async (t) => {
  const dir = t.testdir();
  await initCa(dir);
  const certBefore = readFileSync(join(dir, 'ca.pem'), 'utf8');
  const keyBefore = readFileSync(join(dir, 'ca-key.pem'), 'utf8');
  t.same(await initCa(dir), { created: false, certPath: join(dir, 'ca.pem') });
  t.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), certBefore);
  t.equal(readFileSync(join(dir, 'ca-key.pem'), 'utf8'), keyBefore);
});

t.test('initCa does not add a key beside a lone certificate', async (t) => {
  const dir = t.testdir({ 'ca.pem': 'left over' });
  t.same(await initCa(dir), { created: false, certPath: join(dir, 'ca.pem') });
  t.throws(() => statSync(join(dir, 'ca-key.pem')), { code: 'ENOENT' });
});

t.test('loadCa creates when asked, then reuses the same CA', async (t) => {
  const dir = join(t.testdir(), 'certs');
  const first = await loadCa(dir, { create: true });
  const second = await loadCa(dir, { create: true });
  const third = await loadCa(dir, { create: false });
  t.equal(second.fingerprint256, first.fingerprint256);
  t.equal(third.fingerprint256, first.fingerprint256);
  t.equal(first.certPem, readFileSync(join(dir, 'ca.pem'), 'utf8'));
  t.equal(first.fingerprint256, new X509Certificate(first.certPem).fingerprint256);
  const issuer = await first.issuer();
  t.equal(issuer.keyIdentifier, issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  t.equal(first.signingKey.extractable, false, 'the signing key cannot be exported');
  t.same(first.signingKey.usages, ['sign']);
  t.notMatch(JSON.stringify(first), /PRIVATE KEY/, 'the key PEM is not reachable from the CA object');
});

t.test('loadCa refuses a missing dir or file when create is false', async (t) => {
  const root = t.testdir({ 'only-cert': { 'ca.pem': 'x' } });
  await rejectsWith(t, loadCa(join(root, 'nope'), { create: false }), 'SLUICE_CA_MISSING', 'ca.pem');
  await rejectsWith(t, loadCa(join(root, 'only-cert'), { create: false }), 'SLUICE_CA_MISSING', 'ca-key.pem');
  // create: true never pairs a new key with a certificate that is already there.
  await rejectsWith(t, loadCa(join(root, 'only-cert'), { create: true }), 'SLUICE_CA_MISSING', 'ca-key.pem');
});

t.test('loadCa refuses corrupt PEM', async (t) => {
  const good = await makeCert({ extensions: caExtensions() });
  const root = t.testdir();
  const badCert = join(root, 'badCert');
  writeCa(badCert, { certPem: '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', keyPem: good.keyPem });
  await rejectsWith(t, loadCa(badCert, { create: false }), 'SLUICE_CA_CORRUPT', 'ca.pem');

  const badKey = join(root, 'badKey');
  writeCa(badKey, { certPem: good.certPem, keyPem: good.keyPem.slice(0, 80) });
  await rejectsWith(t, loadCa(badKey, { create: false }), 'SLUICE_CA_CORRUPT', 'ca-key.pem');

  const empty = join(root, 'empty');
  writeCa(empty, { certPem: '', keyPem: '' });
  await rejectsWith(t, loadCa(empty, { create: false }), 'SLUICE_CA_CORRUPT', 'ca.pem');
});

t.test('loadCa refuses an unreadable file', async (t) => {
  const dir = t.testdir({ 'ca.pem': {}, 'ca-key.pem': 'x' });
  await rejectsWith(t, loadCa(dir, { create: false }), 'SLUICE_CA_UNREADABLE', 'ca.pem');
});

t.test('loadCa refuses a key that does not match the certificate', async (t) => {
  const root = t.testdir();
  const a = join(root, 'a');
  const b = join(root, 'b');
  await initCa(a);
  await initCa(b);
  writeFileSync(join(a, 'ca-key.pem'), readFileSync(join(b, 'ca-key.pem')));
  await rejectsWith(t, loadCa(a, { create: false }), 'SLUICE_CA_KEY_MISMATCH', 'ca-key.pem');
});

t.test('loadCa refuses a certificate that is not a CA', async (t) => {
  const root = t.testdir();
  const leaf = join(root, 'leaf');
  writeCa(leaf, await makeCert({ extensions: [new x509.BasicConstraintsExtension(false, undefined, true)] }));
  await rejectsWith(t, loadCa(leaf, { create: false }), 'SLUICE_CA_NOT_CA', 'ca.pem');

  const noConstraints = join(root, 'noConstraints');
  writeCa(noConstraints, await makeCert({ extensions: [] }));
  await rejectsWith(t, loadCa(noConstraints, { create: false }), 'SLUICE_CA_NOT_CA', 'ca.pem');

  const noCertSign = join(root, 'noCertSign');
  writeCa(
    noCertSign,
    await makeCert({
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    }),
  );
  await rejectsWith(t, loadCa(noCertSign, { create: false }), 'SLUICE_CA_NOT_CA', 'keyCertSign');
});

t.test('loadCa refuses an expired or not yet valid CA', async (t) => {
  const root = t.testdir();
  const expired = join(root, 'expired');
  writeCa(
    expired,
    await makeCert({
      extensions: caExtensions(),
      notBefore: new Date(Date.now() - 10 * DAY_MS),
      notAfter: new Date(Date.now() - DAY_MS),
    }),
  );
  await rejectsWith(t, loadCa(expired, { create: false }), 'SLUICE_CA_EXPIRED', 'ca.pem');

  const future = join(root, 'future');
  writeCa(
    future,
    await makeCert({
      extensions: caExtensions(),
      notBefore: new Date(Date.now() + DAY_MS),
      notAfter: new Date(Date.now() + 10 * DAY_MS),
    }),
  );
  await rejectsWith(t, loadCa(future, { create: false }), 'SLUICE_CA_NOT_YET_VALID', 'ca.pem');
});

t.test('loadCa accepts an operator CA without keyUsage, a P-384 CA and an RSA CA', async (t) => {
  const root = t.testdir();
  const bare = join(root, 'bare');
  const bareCa = await makeCert({ extensions: [new x509.BasicConstraintsExtension(true, undefined, true)] });
  writeCa(bare, bareCa);
  const loadedBare = await loadCa(bare, { create: false });
  t.equal(loadedBare.certPem.trim(), bareCa.certPem.trim());
  t.match((await loadedBare.issuer()).keyIdentifier, /^[0-9a-f]{40}$/, 'key identifier computed when the CA has no SKI');

  const p384 = join(root, 'p384');
  writeCa(p384, await makeCert({ extensions: caExtensions(), p384: true }));
  const loadedP384 = await loadCa(p384, { create: false });
  t.same(loadedP384.signingAlgorithm, { name: 'ECDSA', hash: 'SHA-384' });
  t.same(loadedP384.signingKey.algorithm, { name: 'ECDSA', namedCurve: 'P-384' });

  const rsa = join(root, 'rsa');
  writeCa(rsa, await makeCert({ extensions: caExtensions(), rsa: true }));
  const loadedRsa = await loadCa(rsa, { create: false });
  t.same(loadedRsa.signingAlgorithm, { name: 'RSASSA-PKCS1-v1_5' });
  t.equal(loadedRsa.signingKey.algorithm.name, 'RSASSA-PKCS1-v1_5');
});

t.test('loadCa refuses a key type it cannot sign with', async (t) => {
  const dir = t.testdir();
  const keys = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=ed25519 CA',
    keys,
    signingAlgorithm: { name: 'Ed25519' },
    extensions: caExtensions(),
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  writeCa(dir, { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') });
  await rejectsWith(t, loadCa(dir, { create: false }), 'SLUICE_CA_UNSUPPORTED_KEY', 'ca-key.pem');
});
