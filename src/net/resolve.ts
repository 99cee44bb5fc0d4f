// Resolve once, vet every answer, hand back only addresses sluice may dial. The cache holds
// vetted results (never raw answers), so a cached entry can not be rebound to another address.
import { promises as dns } from 'node:dns';
import { growingLru } from './lru.js';
import { classifyAddress, type AddressPolicy, type AddressVerdict } from './address.js';

export type Resolution =
  | { ok: true; addresses: string[]; verdicts: AddressVerdict[] }
  | { ok: false; reason: 'private_ip'; verdicts: AddressVerdict[] }
  | { ok: false; reason: 'dns_failure'; error: string };

interface Answer {
  address: string;
  ttl: number;
}

/** How long answers from the system resolver (getaddrinfo gives no TTL) are kept. */
const SYSTEM_TTL_SECONDS = 5;
/** An upper bound whatever the zone says, so a policy change to allow_private_cidrs is felt soon. */
const MAX_TTL_SECONDS = 300;

export class VettingResolver {
  readonly #policy: AddressPolicy;
  readonly #resolver: dns.Resolver | null;
  readonly #timeoutMs: number;
  readonly #cache = growingLru<string, { result: Resolution; expires: number }>(10_000);
  readonly #inFlight = new Map<string, Promise<Resolution>>();
  readonly #literals = growingLru<string, Resolution>(4096);

  /** the longest dns_timeout_ms at any level of the policy */
  readonly #maxTimeoutMs: number;

  constructor(opts: { policy: AddressPolicy; servers: readonly string[]; timeoutMs: number; maxTimeoutMs?: number }) {
    this.#policy = opts.policy;
    this.#timeoutMs = opts.timeoutMs;
    this.#maxTimeoutMs = Math.max(opts.timeoutMs, opts.maxTimeoutMs ?? 0);
    if (opts.servers.length > 0) {
      this.#resolver = new dns.Resolver({ timeout: Math.ceil(this.#maxTimeoutMs / 2), tries: 2 });
      this.#resolver.setServers([...opts.servers]);
    } else {
      this.#resolver = null;
    }
  }

  /** Vets an IP literal target without any lookup (the verdict depends only on the address and the policy). */
  vetLiteral(ip: string): Resolution {
    let result = this.#literals.get(ip);
    if (!result) {
      const verdict = classifyAddress(ip, this.#policy);
      result = verdict.allowed
        ? { ok: true, addresses: [verdict.ip], verdicts: [verdict] }
        : { ok: false, reason: 'private_ip', verdicts: [verdict] };
      this.#literals.set(ip, result);
    }
    return result;
  }

  /**
   * Resolves and vets a name. `timeoutMs` is the caller's dns_timeout_ms (a tool or rule may set its
   * own); callers that share one lookup in flight each wait only as long as their own limit.
   */
  async resolve(name: string, timeoutMs = this.#timeoutMs): Promise<Resolution> {
    const cached = this.#cache.get(name);
    if (cached && cached.expires > Date.now()) return cached.result;
    let lookup = this.#inFlight.get(name);
    if (!lookup) {
      lookup = this.#lookupAndVet(name).finally(() => this.#inFlight.delete(name));
      this.#inFlight.set(name, lookup);
    }
    try {
      return await withTimeout(lookup, timeoutMs, `DNS lookup of ${name} timed out after ${timeoutMs} ms (dns_timeout_ms)`);
    } catch (err) {
      return { ok: false, reason: 'dns_failure', error: describeDnsError(name, err) };
    }
  }

  async #lookupAndVet(name: string): Promise<Resolution> {
    let answers: Answer[];
    try {
      // The longest any caller may wait: each caller's own dns_timeout_ms is applied in resolve().
      answers = await withTimeout(this.#query(name), this.#maxTimeoutMs, `DNS lookup of ${name} timed out`);
    } catch (err) {
      return { ok: false, reason: 'dns_failure', error: describeDnsError(name, err) };
    }
    if (answers.length === 0) return { ok: false, reason: 'dns_failure', error: `${name} has no A or AAAA record` };
    const verdicts = answers.map((a) => classifyAddress(a.address, this.#policy));
    const allowed = verdicts.filter((v) => v.allowed).map((v) => v.ip);
    const result: Resolution = allowed.length > 0 ? { ok: true, addresses: allowed, verdicts } : { ok: false, reason: 'private_ip', verdicts };
    const ttl = Math.min(MAX_TTL_SECONDS, ...answers.map((a) => a.ttl));
    if (ttl > 0) this.#cache.set(name, { result, expires: Date.now() + ttl * 1000 });
    return result;
  }

  async #query(name: string): Promise<Answer[]> {
    if (this.#resolver === null) {
      const found = await dns.lookup(name, { all: true, verbatim: true });
      return found.map((f) => ({ address: f.address, ttl: SYSTEM_TTL_SECONDS }));
    }
    const resolver = this.#resolver;
    const settled = await Promise.allSettled([resolver.resolve4(name, { ttl: true }), resolver.resolve6(name, { ttl: true })]);
    const answers = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
    if (answers.length === 0) {
      const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failure) throw failure.reason;
    }
    return answers;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(message), { code: 'ETIMEOUT' })), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function describeDnsError(name: string, err: unknown): string {
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'ENOTFOUND':
    case 'ENODATA':
      return `${name} does not resolve`;
    case 'ETIMEOUT':
    case 'ETIMEDOUT':
      return (err as Error).message.startsWith('DNS lookup') ? (err as Error).message : `DNS lookup of ${name} timed out`;
    default:
      return `DNS lookup of ${name} failed (${code ?? 'error'})`;
  }
}
