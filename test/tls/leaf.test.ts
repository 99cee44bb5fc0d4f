import t, { type Test } from 'tap';
import { X509Certificate, webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { TLSSocket, checkServerIdentity, connect, createServer, type PeerCertificate, type SecureContext } from 'node:tls';
import { loadCa, type CertificateAuthority } from '../../src/tls/ca.js';
import { LeafCertificates } from '../../src/tls/leaf.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

const ca = await loadCa(t.testdir(), { create: true });
const caCert = new X509Certificate(ca.certPem);

interface Handshake {
  authorized: boolean;
  authorizationError: string | null;
  cert: X509Certificate;
  /** What checkServerIdentity was asked about, when it was called. */
  identityChecked: { host: string; subjectaltname: string | undefined } | null;
}

/** A TLS client trusting only the CA, against a loopback server presenting `context`. */
async function handshake(t: Test, server: { port: number; host: string }, servername: string | undefined): Promise<Handshake> {
  let identityChecked: Handshake['identityChecked'] = null;
  const socket = connect({
    host: server.host,
    port: server.port,
    ca: [ca.certPem],
    ...(servername === undefined ? {} : { servername }),
    rejectUnauthorized: false,
    checkServerIdentity: (host: string, cert: PeerCertificate) => {
      identityChecked = { host, subjectaltname: cert.subjectaltname };
      return checkServerIdentity(host, cert);
    },
  });
  t.teardown(() => socket.destroy());
  await once(socket, 'secureConnect');
  const cert = socket.getPeerX509Certificate();
  if (!cert) throw new Error('no peer certificate');
  const result = {
    authorized: socket.authorized,
    authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
    cert,
    identityChecked,
  };
  socket.end();
  return result;
}

/** A TLS server that picks its leaf by SNI, as the proxy does for a tunnel's ClientHello. */
async function sniServer(t: Test, leaves: LeafCertificates): Promise<{ port: number; host: string }> {
  const server = createServer(
    {
      SNICallback: (name, done) => {
        leaves.secureContextFor(name).then((context) => done(null, context), done);
      },
    },
    (socket) => socket.end(),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as AddressInfo).port, host: '127.0.0.1' };
}

/** A TCP server that terminates TLS itself with the leaf for a known host (CONNECT to an IP literal). */
async function fixedHostServer(t: Test, context: SecureContext, host: '127.0.0.1' | '::1'): Promise<{ port: number; host: string }> {
  const server = createTcpServer((raw) => {
    const tls = new TLSSocket(raw, { isServer: true, secureContext: context });
    tls.on('secure', () => tls.end());
    tls.on('error', () => raw.destroy());
  });
  server.listen(0, host);
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as AddressInfo).port, host };
}

t.test('a DNS leaf verifies against the CA over a real TLS handshake', async (t) => {
  let issued = 0;
  const leaves = new LeafCertificates(ca, { onIssued: () => issued++ });
  const server = await sniServer(t, leaves);
  const before = Date.now();
  const result = await handshake(t, server, 'example.test');

  t.equal(result.authorizationError, null);
  t.equal(result.authorized, true);
  t.same(result.identityChecked, { host: 'example.test', subjectaltname: 'DNS:example.test' });
  const cert = result.cert;
  t.ok(cert.verify(caCert.publicKey), 'signed by the CA key');
  t.ok(cert.checkIssued(caCert), 'issued by the CA');
  t.equal(cert.subject, 'CN=example.test');
  t.equal(cert.issuer, caCert.subject);
  t.equal(cert.ca, false);
  t.same(cert.keyUsage, [SERVER_AUTH], 'EKU is serverAuth only');
  t.equal(cert.checkHost('example.test'), 'example.test');
  t.equal(cert.checkHost('other.test'), undefined);
  t.not(
    cert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    caCert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    'leaf key is not the CA key',
  );
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const validFrom = Date.parse(cert.validFrom);
  const validTo = Date.parse(cert.validTo);
  t.ok(Math.abs(validFrom - (before - HOUR_MS)) < 5_000, 'backdated one hour');
  t.ok(validTo - Date.now() <= 30 * DAY_MS, 'valid at most 30 days from now');
  t.ok(validTo - Date.now() > 29 * DAY_MS, 'valid about 30 days by default');
  t.equal(issued, 1);
});

t.test('the leaf carries the extensions a browser-grade client expects', async (t) => {
  const { X509Certificate: PeculiarCertificate, ...x509 } = await import('@peculiar/x509');
  const leaves = new LeafCertificates(ca);
  const server = await sniServer(t, leaves);
  const { cert } = await handshake(t, server, 'ext.example.test');
  const parsed = new PeculiarCertificate(cert.raw);
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  t.equal(basic?.ca, false);
  t.equal(basic?.critical, true);
  const usage = parsed.getExtension(x509.KeyUsagesExtension);
  t.equal(usage?.usages, x509.KeyUsageFlags.digitalSignature);
  t.equal(usage?.critical, true);
  t.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, (await ca.issuer()).keyIdentifier);
});

t.test('an IPv4 leaf carries an iPAddress SAN and passes hostname checks without SNI', async (t) => {
  const leaves = new LeafCertificates(ca);
  const server = await fixedHostServer(t, await leaves.secureContextFor('127.0.0.1'), '127.0.0.1');
  const result = await handshake(t, server, undefined);
  t.equal(result.authorized, true);
  t.same(result.identityChecked, { host: '127.0.0.1', subjectaltname: 'IP Address:127.0.0.1' });
  t.equal(result.cert.subject, 'CN=127.0.0.1');
  t.equal(result.cert.checkIP('127.0.0.1'), '127.0.0.1');
});

t.test('an IPv6 leaf carries an iPAddress SAN', async (t) => {
  const leaves = new LeafCertificates(ca);
  const server = await fixedHostServer(t, await leaves.secureContextFor('::1'), '::1');
  const result = await handshake(t, server, undefined);
  t.equal(result.authorized, true);
  t.equal(result.identityChecked?.subjectaltname, 'IP Address:0:0:0:0:0:0:0:1');
  t.equal(result.cert.checkIP('::1'), '::1');
});

t.test('an operator RSA or P-384 CA issues leaves that verify', async (t) => {
  const x509 = await import('@peculiar/x509');
  const root = t.testdir();
  const algorithms = {
    rsa: {
      key: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      signing: { name: 'RSASSA-PKCS1-v1_5' },
    },
    p384: { key: { name: 'ECDSA', namedCurve: 'P-384' }, signing: { name: 'ECDSA', hash: 'SHA-384' } },
  };
  for (const [name, algorithm] of Object.entries(algorithms)) {
    const keys = await webcrypto.subtle.generateKey(algorithm.key, true, ['sign', 'verify']);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: `CN=operator ${name} CA`,
      keys,
      signingAlgorithm: algorithm.signing,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    const dir = join(root, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'ca.pem'), cert.toString('pem'));
    writeFileSync(join(dir, 'ca-key.pem'), x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
    const operatorCa = await loadCa(dir, { create: false });
    const leaves = new LeafCertificates(operatorCa);
    const context = await leaves.secureContextFor('127.0.0.1');
    const server = await fixedHostServer(t, context, '127.0.0.1');
    let identity: string | undefined;
    const socket = connect({
      host: server.host,
      port: server.port,
      ca: [operatorCa.certPem],
      checkServerIdentity: (host, peer) => {
        identity = peer.subjectaltname;
        return checkServerIdentity(host, peer);
      },
    });
    t.teardown(() => socket.destroy());
    await once(socket, 'secureConnect');
    t.equal(socket.authorized, true, `${name}: authorized`);
    t.equal(identity, 'IP Address:127.0.0.1');
    t.ok(socket.getPeerX509Certificate()?.verify(new X509Certificate(operatorCa.certPem).publicKey), `${name}: signed by the CA`);
    socket.end();
  }
});

t.test('every leaf gets its own random serial', async (t) => {
  const leaves = new LeafCertificates(ca);
  const server = await sniServer(t, leaves);
  const serials = new Set<string>();
  for (const host of ['a.test', 'b.test', 'c.test', 'd.test']) {
    serials.add((await handshake(t, server, host)).cert.serialNumber);
  }
  t.equal(serials.size, 4);
  for (const serial of serials) t.ok(serial.length >= 30, `serial ${serial} is ~128 bits`);
});

t.test('concurrent first requests for one host share one issue', async (t) => {
  let issued = 0;
  const leaves = new LeafCertificates(ca, { onIssued: () => issued++ });
  const contexts = await Promise.all(Array.from({ length: 25 }, () => leaves.secureContextFor('busy.test')));
  t.equal(issued, 1);
  t.ok(
    contexts.every((context) => context === contexts[0]),
    'all callers get the same context',
  );
  t.equal(await leaves.secureContextFor('busy.test'), contexts[0], 'later calls hit the cache');
  t.equal(await leaves.secureContextFor('BUSY.test.'), contexts[0], 'the cache key is the canonical host');
  t.equal(issued, 1);
  await leaves.secureContextFor('other.test');
  t.equal(issued, 2);
});

t.test('the LRU bound evicts the least recently used host', async (t) => {
  let issued = 0;
  const leaves = new LeafCertificates(ca, { max: 2, onIssued: () => issued++ });
  const a = await leaves.secureContextFor('a.test');
  await leaves.secureContextFor('b.test');
  t.equal(await leaves.secureContextFor('a.test'), a, 'a is cached and now most recent');
  await leaves.secureContextFor('c.test'); // evicts b
  t.equal(leaves.size, 2);
  t.equal(issued, 3);
  t.equal(await leaves.secureContextFor('a.test'), a);
  t.equal(issued, 3, 'a survived');
  await leaves.secureContextFor('b.test');
  t.equal(issued, 4, 'b was evicted and issued again');
});

t.test('a leaf is re-issued before it expires', async (t) => {
  let clock = Date.now();
  let issued = 0;
  const leaves = new LeafCertificates(ca, { validityDays: 30, now: () => clock, onIssued: () => issued++ });
  const first = await leaves.secureContextFor('renew.test');
  clock += 28 * DAY_MS;
  t.equal(await leaves.secureContextFor('renew.test'), first, 'two days left: still cached');
  clock += 1.5 * DAY_MS;
  const second = await leaves.secureContextFor('renew.test');
  t.not(second, first, 'half a day left: re-issued');
  t.equal(issued, 2);
  t.equal(await leaves.secureContextFor('renew.test'), second);
  t.equal(issued, 2);
});

t.test('short validity renews a quarter before expiry', async (t) => {
  let clock = Date.now();
  let issued = 0;
  const leaves = new LeafCertificates(ca, { validityDays: 1, now: () => clock, onIssued: () => issued++ });
  await leaves.secureContextFor('short.test');
  clock += 17 * HOUR_MS;
  await leaves.secureContextFor('short.test');
  t.equal(issued, 1, '7 hours left of 24: cached');
  clock += 2 * HOUR_MS;
  await leaves.secureContextFor('short.test');
  t.equal(issued, 2, '5 hours left of 24: re-issued');
});

t.test('a failed issue is not cached', async (t) => {
  const publicOnly = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  let attempts = 0;
  // The first issue signs with a public key (WebCrypto refuses); later ones with the real CA key.
  const flakyCa: CertificateAuthority = {
    ...ca,
    get signingKey() {
      return attempts++ === 0 ? publicOnly.publicKey : ca.signingKey;
    },
  };
  let issued = 0;
  const leaves = new LeafCertificates(flakyCa, { onIssued: () => issued++ });
  const failures = await Promise.allSettled([leaves.secureContextFor('flaky.test'), leaves.secureContextFor('flaky.test')]);
  t.same(
    failures.map((f) => f.status),
    ['rejected', 'rejected'],
    'both waiters see the one failure',
  );
  t.equal(leaves.size, 0, 'nothing cached');
  t.equal(issued, 0);
  t.ok(await leaves.secureContextFor('flaky.test'), 'the next call issues afresh');
  t.equal(issued, 1);
  t.equal(attempts, 2);
});

t.test('refuses hosts that are not hosts and validity beyond 30 days', async (t) => {
  const leaves = new LeafCertificates(ca);
  for (const bad of ['', 'a b', 'evil.test/path', 'x'.repeat(300), '[::1]:443', 'example.test:443', 'user@host']) {
    await t.rejects(leaves.secureContextFor(bad), TypeError, `refuses ${JSON.stringify(bad).slice(0, 20)}`);
  }
  t.equal(leaves.size, 0);
  t.throws(() => new LeafCertificates(ca, { validityDays: 31 }), RangeError);
  t.throws(() => new LeafCertificates(ca, { validityDays: 0 }), RangeError);
  t.throws(() => new LeafCertificates(ca, { validityDays: Number.NaN }), RangeError);
});
