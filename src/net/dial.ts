// The one place sluice opens connections upstream. Callers hand it an address that the resolver
// vetted; the name is kept only for SNI and certificate checks, so nothing here resolves again.
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import type * as Undici from 'undici';
import type { LRUCache } from 'lru-cache';
import { growingLru } from './lru.js';

// undici's index loads all of undici (fetch, cookies, WebSocket, mocks, proxy agents): about four
// times what a start spends on the two modules sluice uses (issue 20). Pool.dispatch is the pool's
// own method, not one of the api helpers the index adds to Dispatcher.prototype. Even those two are
// some 50 files, which a start need not read before it listens: they are required (synchronously,
// so no request races them) by the first pool made, or by warmUpstreamClient() at the first request.
const requireUndici = createRequire(import.meta.url);
type Pool = Undici.Pool;
let undici: { Pool: typeof Undici.Pool; buildConnector: typeof Undici.buildConnector } | null = null;

function loadUndici(): NonNullable<typeof undici> {
  return (undici ??= {
    Pool: requireUndici('undici/lib/dispatcher/pool') as typeof Undici.Pool,
    buildConnector: requireUndici('undici/lib/core/connect') as typeof Undici.buildConnector,
  });
}

/** Loads the upstream HTTP client now (sluice serve calls it at the first request), so the first forward does not; once loaded, a no-op. */
export function warmUpstreamClient(): void {
  loadUndici();
}

export interface DialTarget {
  /** vetted IP literal */
  ip: string;
  port: number;
  /** the name the client asked for: SNI and certificate identity for TLS; null for an IP target */
  servername: string | null;
}

export class ConnectTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
}

/** Plain TCP to a vetted address (tunnels, WebSocket upgrades); `onread` reads into caller-owned buffers. */
export function dialTcp(target: DialTarget, timeoutMs: number, onread?: net.OnReadOpts): Promise<net.Socket> {
  const socket = net.connect({ host: target.ip, port: target.port, noDelay: true, ...(onread ? { onread } : {}) });
  return settled(socket, 'connect', timeoutMs, `connect to ${target.ip}:${target.port}`);
}

/** TLS to a vetted address, verified against the trusted roots for the requested name. */
export function dialTls(target: DialTarget, opts: { timeoutMs: number; ca: readonly string[]; alpn?: string[] }): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    host: target.ip,
    port: target.port,
    ...(target.servername ? { servername: target.servername } : {}),
    ca: [...opts.ca],
    ALPNProtocols: opts.alpn ?? ['http/1.1'],
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(target.servername ?? target.ip, cert),
  });
  return settled(socket, 'secureConnect', opts.timeoutMs, `TLS connect to ${target.ip}:${target.port}`);
}

/** Resolves with the socket once it is ready, or rejects on its error or the deadline. */
function settled<T extends net.Socket>(socket: T, ready: 'connect' | 'secureConnect', timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectTimeoutError(`${what} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Keep-alive pools to upstreams, keyed by vetted address and TLS name, so a pooled connection is
 * only ever reused for the same (address, name) pair that was vetted.
 */
export class UpstreamPools {
  readonly #pools: LRUCache<string, Pool>;
  readonly #ca: readonly string[];
  /** parsed once: loading the ~150 bundled roots costs about 15 ms per new upstream connection otherwise */
  #trust: tls.SecureContext | null = null;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;

  constructor(opts: { ca: readonly string[]; connectTimeoutMs: number; idleTimeoutMs: number; maxPools?: number }) {
    this.#ca = opts.ca;
    this.#connectTimeoutMs = opts.connectTimeoutMs;
    this.#idleTimeoutMs = opts.idleTimeoutMs;
    this.#pools = growingLru<string, Pool>(opts.maxPools ?? 1024, {
      dispose: (pool) => void pool.close().catch(() => undefined),
    });
  }

  /** `connectTimeoutMs`: the rule's connect_timeout_ms (pools are kept per value, so each rule's holds). */
  get(scheme: 'http' | 'https', target: DialTarget, connectTimeoutMs = this.#connectTimeoutMs): { pool: Pool; origin: string } {
    const host = net.isIPv6(target.ip) ? `[${target.ip}]` : target.ip;
    const origin = `${scheme}://${host}:${target.port}`;
    const key = `${origin}|${target.servername ?? ''}|${connectTimeoutMs}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      const { Pool, buildConnector } = loadUndici();
      const connector = buildConnector({
        timeout: connectTimeoutMs,
        ...(scheme === 'https'
          ? {
              secureContext: (this.#trust ??= tls.createSecureContext({ ca: [...this.#ca] })),
              ...(target.servername ? { servername: target.servername } : {}),
              ALPNProtocols: ['http/1.1'],
            }
          : {}),
      });
      pool = new Pool(origin, {
        connect: connector,
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 60_000,
        headersTimeout: this.#idleTimeoutMs,
        bodyTimeout: this.#idleTimeoutMs,
        pipelining: 1,
      });
      this.#pools.set(key, pool);
    }
    return { pool, origin };
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
}

/** Roots trusted for upstream TLS: Node's bundled store plus the policy's optional extra CA. */
export function upstreamRoots(extraCaPem: string | null): string[] {
  return extraCaPem ? [...tls.rootCertificates, extraCaPem] : [...tls.rootCertificates];
}
