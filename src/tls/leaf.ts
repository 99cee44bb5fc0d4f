// Leaf certificates for intercepted hosts, issued on demand by the interception CA and kept as
// ready-to-use SecureContexts. Signing runs on libuv's thread pool (WebCrypto); what stays on the
// event loop (ASN.1 encoding, building the context) is cut into slices of about a millisecond.
import type * as X509 from '@peculiar/x509';
import { KeyObject, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { LRUCache } from 'lru-cache';
import { growingLru } from '../net/lru.js';
import { canonicalHost } from '../net/host.js';
import { loadX509, randomSerial, type CaIssuer, type CertificateAuthority } from './ca.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const MAX_VALIDITY_DAYS = 30;

export interface LeafCertificateOptions {
  /** How many hosts' contexts to keep (LRU). Default 10,000. */
  max?: number;
  /** Leaf validity in days, at most 30. Default 30. */
  validityDays?: number;
  /** Called once for every certificate issued (metrics). */
  onIssued?: () => void;
  /** Clock in ms since the epoch; tests move it to exercise renewal. */
  now?: () => number;
}

interface CacheEntry {
  readonly context: Promise<SecureContext>;
  /** Set once issued; until then concurrent callers share `context`. */
  notAfterMs: number | null;
}

interface LeafKey {
  readonly publicKey: webcrypto.CryptoKey;
  readonly privateKeyPem: string;
}

export class LeafCertificates {
  readonly #ca: CertificateAuthority;
  readonly #validityMs: number;
  readonly #renewBeforeMs: number;
  readonly #onIssued: () => void;
  readonly #now: () => number;
  readonly #cache: LRUCache<string, CacheEntry>;
  /** @peculiar/x509, the CA as it reads it, and the extensions every leaf has: made on the first issue */
  #encoding: Promise<{ x509: typeof X509; issuer: CaIssuer; fixedExtensions: readonly X509.Extension[] }> | null = null;
  #leafKey: Promise<LeafKey> | null = null;
  // Issues run one after another. Each has about a millisecond of synchronous work (ASN.1 encoding,
  // OpenSSL decoding the key PEM inside createSecureContext); run side by side, a burst of new hosts
  // would finish together and chain those slices into one long stall of the event loop.
  #issuing: Promise<unknown> = Promise.resolve();

  constructor(ca: CertificateAuthority, opts: LeafCertificateOptions = {}) {
    const validityDays = opts.validityDays ?? MAX_VALIDITY_DAYS;
    if (!(validityDays > 0 && validityDays <= MAX_VALIDITY_DAYS)) {
      throw new RangeError(`validityDays must be in (0, ${MAX_VALIDITY_DAYS}], got ${validityDays}`);
    }
    this.#ca = ca;
    this.#validityMs = validityDays * DAY_MS;
    // Renew a day ahead, or earlier in the life of short-lived leaves.
    this.#renewBeforeMs = Math.min(DAY_MS, this.#validityMs / 4);
    this.#onIssued = opts.onIssued ?? (() => {});
    this.#now = opts.now ?? Date.now;
    this.#cache = growingLru(opts.max ?? 10_000);
  }

  #encoder(): Promise<{ x509: typeof X509; issuer: CaIssuer; fixedExtensions: readonly X509.Extension[] }> {
    this.#encoding ??= (async () => {
      const [x509, issuer] = await Promise.all([loadX509(), this.#ca.issuer()]);
      // The same for every leaf; built once because each extension is DER-encoded on construction.
      const fixedExtensions = [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.AuthorityKeyIdentifierExtension(issuer.keyIdentifier),
      ];
      return { x509, issuer, fixedExtensions };
    })();
    // A failure is not kept: the next issue tries again (as a failed leaf is not cached).
    this.#encoding.catch(() => (this.#encoding = null));
    return this.#encoding;
  }

  /** Number of hosts currently cached (issued or being issued). */
  get size(): number {
    return this.#cache.size;
  }

  /** A context presenting a leaf for host (a DNS name or IP literal) chained to the CA. */
  secureContextFor(host: string): Promise<SecureContext> {
    // canonicalHost drops a ":port" (it reads the host as a URL would); here a port is a caller bug.
    const hasPort = host.includes(':') && isIP(host) !== 6;
    const canonical = hasPort ? null : canonicalHost(host);
    if (!canonical) return Promise.reject(new TypeError(`cannot issue a certificate for host ${JSON.stringify(host)}`));
    const key = canonical.host;

    const cached = this.#cache.get(key);
    if (cached && (cached.notAfterMs === null || cached.notAfterMs - this.#now() > this.#renewBeforeMs)) {
      return cached.context;
    }
    const entry: CacheEntry = {
      notAfterMs: null,
      context: this.#serially(() => this.#issue(key)).then((leaf) => {
        entry.notAfterMs = leaf.notAfterMs;
        return leaf.context;
      }),
    };
    this.#cache.set(key, entry);
    // A failure is not cached: the next caller tries again.
    entry.context.catch(() => {
      if (this.#cache.get(key) === entry) this.#cache.delete(key);
    });
    return entry.context;
  }

  #serially<T>(job: () => Promise<T>): Promise<T> {
    // A turn of the event loop between issues keeps one issue's last slice and the next one's first
    // from running back to back in one macrotask.
    const result = this.#issuing.then(() => nextTurn()).then(job);
    this.#issuing = result.catch(() => undefined);
    return result;
  }

  async #issue(host: string): Promise<{ context: SecureContext; notAfterMs: number }> {
    const leafKey = await this.#sharedLeafKey();
    const { x509, issuer, fixedExtensions } = await this.#encoder();
    const now = this.#now();
    const notAfter = new Date(now + this.#validityMs);
    const subjectAltName: X509.JsonGeneralName = isIP(host) ? { type: 'ip', value: host } : { type: 'dns', value: host };
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: [host] }],
      issuer: issuer.cert.subjectName,
      notBefore: new Date(now - HOUR_MS),
      notAfter,
      publicKey: leafKey.publicKey,
      signingKey: this.#ca.signingKey,
      signingAlgorithm: this.#ca.signingAlgorithm,
      extensions: [...fixedExtensions, new x509.SubjectAlternativeNameExtension([subjectAltName])],
    });
    // Building the context is the largest synchronous slice (OpenSSL parses cert, chain and key):
    // give it a macrotask of its own rather than appending it to the encoding above.
    await nextTurn();
    const context = createSecureContext({
      key: leafKey.privateKeyPem,
      cert: `${cert.toString('pem')}\n${this.#ca.certPem}`,
      // A tool may not renegotiate (TLS 1.2): each renegotiation is a full handshake sluice pays
      // for, and nothing a tool needs uses it. OpenSSL answers it with a no_renegotiation alert.
      secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
    });
    this.#onIssued();
    return { context, notAfterMs: notAfter.getTime() };
  }

  // One P-256 key serves every leaf: the CA is ours and leaves only ever live in this process, so a
  // per-host key would add key generation to every issue without making anything safer. It is
  // never the CA key.
  #sharedLeafKey(): Promise<LeafKey> {
    if (!this.#leafKey) {
      const generating = generateLeafKey();
      generating.catch(() => (this.#leafKey = null));
      this.#leafKey = generating;
    }
    return this.#leafKey;
  }
}

async function generateLeafKey(): Promise<LeafKey> {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const privateKeyPem = KeyObject.from(pair.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { publicKey: pair.publicKey, privateKeyPem };
}
