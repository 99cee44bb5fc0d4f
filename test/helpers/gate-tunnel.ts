// Raw clients for the "one gate" e2e tests (issue 13): a CONNECT followed by TLS on the same socket,
// and an HTTP/1.1 conversation on one connection read response by response. A test can then send
// several requests on one kept-alive tunnel, see exactly what came back, and see whether (not when)
// sluice closed the connection. Every wait is bounded and reports a timeout instead of hanging.
import net, { type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { connectTunnel, type Tunnel } from './clients.js';
import { parseHttpResponses, type ParsedResponse } from './http-response.js';
import type { AuditRecord, TestSluice } from './sluice.js';

/** What the next read on a conversation gave: a final response, the peer's close, or nothing in time. */
export type Next = { kind: 'response'; response: ParsedResponse } | { kind: 'closed' } | { kind: 'timeout' };

const DEFAULT_WAIT_MS = 5_000;

/**
 * Reads HTTP/1.1 responses off one connection in order. Responses are parsed from everything
 * received so far, so a response split across TLS records or pipelined after another is found.
 */
export class Conversation {
  #buf = Buffer.alloc(0);
  /** final responses already handed out by next() */
  #taken = 0;
  #closed = false;
  #wake: Array<() => void> = [];
  readonly socket: Duplex;
  /** the TCP socket under a TLS one, for reset() */
  readonly #tcp: Socket | null;

  constructor(socket: Duplex, tcp: Socket | null = null) {
    this.socket = socket;
    this.#tcp = tcp ?? (socket instanceof net.Socket && !(socket instanceof tls.TLSSocket) ? socket : null);
    socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      this.#notify();
    });
    const closed = (): void => {
      this.#closed = true;
      this.#notify();
    };
    socket.on('close', closed);
    socket.on('end', closed);
    socket.on('error', closed);
    socket.resume();
  }

  /** The peer closed (or reset) the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Everything received so far, as latin1. */
  raw(): string {
    return this.#buf.toString('latin1');
  }

  /** Writes bytes if the connection is still writable; false when it is not. */
  send(bytes: string | Buffer): boolean {
    if (this.#closed || this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(bytes);
    return true;
  }

  /** Sends one request and waits for its response. */
  async request(bytes: string | Buffer, timeoutMs = DEFAULT_WAIT_MS): Promise<Next> {
    this.send(bytes);
    return this.next(timeoutMs);
  }

  /** The next final response not handed out yet, or the close, or a timeout. */
  async next(timeoutMs = DEFAULT_WAIT_MS): Promise<Next> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const responses = parseHttpResponses(this.#buf, { closed: this.#closed, requestMethod: 'GET' }).responses.filter(
        (r) => r.status >= 200 || r.status === 101,
      );
      if (responses.length > this.#taken) return { kind: 'response', response: responses[this.#taken++]! };
      if (this.#closed) return { kind: 'closed' };
      const left = deadline - Date.now();
      if (left <= 0) return { kind: 'timeout' };
      await this.#sleep(left);
    }
  }

  /** True once the peer closed the connection; false if it is still open after timeoutMs. */
  async waitClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.#sleep(left);
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Ends the connection with a TCP reset, which the peer cannot mistake for a half-close. */
  reset(): void {
    if (this.#tcp && !this.#tcp.destroyed) this.#tcp.resetAndDestroy();
    this.socket.destroy();
  }

  #notify(): void {
    const waiting = this.#wake;
    this.#wake = [];
    for (const wake of waiting) wake();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake.push(done);
    });
  }
}

/** Resolves true when the socket closes (at once if it already has), false after timeoutMs. */
export function waitSocketClosed(socket: Socket | Duplex, timeoutMs = DEFAULT_WAIT_MS): Promise<boolean> {
  if ((socket as Socket).closed || socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export interface TlsTunnel {
  tunnel: Tunnel;
  socket: tls.TLSSocket;
  conversation: Conversation;
}

/**
 * CONNECT `target` through sluice, then a TLS handshake over the tunnel trusting `ca` (sluice's
 * interception CA for an intercepted host, the upstream's CA for a passthrough one). Rejects when
 * the CONNECT is not answered 200 or the handshake fails.
 */
export async function openTlsTunnel(
  proxyPort: number,
  target: string,
  authHeader: string,
  options: { ca: string; servername?: string; tls?: tls.ConnectionOptions; timeoutMs?: number },
): Promise<TlsTunnel> {
  const tunnel = await connectTunnel(proxyPort, target, authHeader, { timeoutMs: options.timeoutMs });
  if (tunnel.status !== 200) {
    tunnel.socket.destroy();
    throw new Error(
      `CONNECT ${target} was answered ${tunnel.status} (${tunnel.headers['x-sluice-deny'] ?? tunnel.headers['x-sluice-error'] ?? ''})`,
    );
  }
  const servername = options.servername ?? target.slice(0, target.lastIndexOf(':'));
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`no TLS handshake through the tunnel to ${target} within the bound`)),
      options.timeoutMs ?? DEFAULT_WAIT_MS,
    );
    const s = tls.connect({ socket: tunnel.socket, ca: options.ca, servername, ...options.tls }, () => {
      clearTimeout(timer);
      s.off('error', fail);
      s.off('close', onClose);
      resolve(s);
    });
    function fail(error: Error): void {
      clearTimeout(timer);
      s.destroy();
      reject(error);
    }
    function onClose(): void {
      fail(new Error('the tunnel closed before the TLS handshake finished'));
    }
    s.once('error', fail);
    s.once('close', onClose);
  });
  socket.on('error', () => undefined);
  return { tunnel, socket, conversation: new Conversation(socket, tunnel.socket) };
}

/** A GET in origin form, as a client inside a tunnel sends it. */
export function originGet(path: string, authority: string, extra: Record<string, string> = {}): string {
  const lines = [`GET ${path} HTTP/1.1`, `Host: ${authority}`, ...Object.entries(extra).map(([n, v]) => `${n}: ${v}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * The audit records matching `match`, once at least `atLeast` of them are on disk (bounded), plus a
 * short settle so a duplicate written a moment later is counted too. The settle bounds a wait; no
 * assertion depends on how long anything took.
 */
export async function settledRecords(
  sluice: { audit(): Promise<AuditRecord[]> },
  match: (r: AuditRecord) => boolean,
  atLeast = 1,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<AuditRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await sluice.audit()).filter(match);
    if (found.length >= atLeast || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 150));
  return (await sluice.audit()).filter(match);
}

/** The audit types that are the one canonical event of a request or tunnel. */
export const CANONICAL_TYPES = new Set(['net.req', 'net.tunnel', 'policy.violation', 'limit.exceeded', 'auth.challenge']);

/** Canonical records of the CONNECT (the tunnel itself) to `host`. */
export const tunnelRecordsOf =
  (host: string) =>
  (r: AuditRecord): boolean =>
    CANONICAL_TYPES.has(r.type) && r.method === 'CONNECT' && r.host === host;

/** Canonical records of requests (not the CONNECT) to `host`. */
export const requestRecordsOf =
  (host: string) =>
  (r: AuditRecord): boolean =>
    CANONICAL_TYPES.has(r.type) && r.method !== 'CONNECT' && r.host === host;

/** The one record of a request sluice answered with X-Request-Id `id`, once it is on disk. */
export async function recordOf(sluice: TestSluice, id: string | undefined): Promise<AuditRecord[]> {
  if (!id) return [];
  return settledRecords(sluice, (r) => r.request_id === id);
}
