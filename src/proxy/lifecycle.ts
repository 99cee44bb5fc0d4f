// One lifecycle for every raw connection sluice holds open: a CONNECT tunnel (passthrough or
// intercepted) and an upgraded request. It owns the connection's timer (the ClientHello or header
// wait, then the idle timeout), the tool slot it holds, the upstream it is linked to, and the one
// audit event it reports however it ends: completed, closed by either side, timed out, cut by a
// limit, refused by the gate, closed by a reload, cut at shutdown, or aborted. The forwarded requests
// in flight are tracked here too, so a shutdown drains and cuts everything through one place.
import type { Duplex } from 'node:stream';
import type { Outcome } from '../policy/reasons.js';
import type { Exchange } from './exchange.js';

const LIFE = Symbol('sluice.life');
type Owned = Duplex & { [LIFE]?: { closed(): void; timedOut(): void }; setTimeout?: (ms: number) => unknown };

/** Shared listeners (one function for every socket, not a closure each: idle tunnels keep them). */
function onClientClose(this: Owned): void {
  this[LIFE]?.closed();
}
function onTimeout(this: Owned): void {
  this[LIFE]?.timedOut();
}
function destroySelf(this: Duplex): void {
  this.destroy();
}

/** `R` is what a reload re-checks the connection against (the policy runtime). */
export class ConnectionLife<R = unknown> {
  readonly client: Owned;
  readonly ex: Exchange;
  readonly #kind: 'net.req' | 'net.tunnel';
  readonly #open: OpenConnections<R>;
  #release: (() => void) | null = null;
  #upstream: Duplex | null = null;
  /** what the current timer means when it fires */
  #onTimer: (() => void) | null = null;
  #ended = false;
  /** how the connection ended if it closes now with nothing else said (e.g. before its first bytes) */
  closeNote: string | null = null;
  /** re-decides the connection under a new policy: a sentence when it may no longer stay open */
  recheck: ((runtime: R) => string | null) | null = null;

  constructor(open: OpenConnections<R>, client: Duplex, ex: Exchange, kind: 'net.req' | 'net.tunnel') {
    this.client = client;
    this.ex = ex;
    this.#kind = kind;
    this.#open = open;
    this.client[LIFE] = this;
    client.on('error', destroySelf);
    client.on('close', onClientClose);
    open.add(this);
    if (client.destroyed) this.closed();
  }

  /** The tool slot (and rule slot) this connection holds until it closes. */
  hold(release: () => void): void {
    if (this.#ended) release();
    else this.#release = release;
  }

  /** Each side's close ends the other. */
  link(upstream: Duplex): void {
    this.#upstream = upstream;
    upstream.on('error', destroySelf);
    upstream.on('close', () => this.client.destroy());
    if (this.#ended) upstream.destroy();
  }

  /** Arms the connection's one timer; it restarts on every byte either way on the client socket. */
  timer(ms: number, onFire: () => void): void {
    this.#onTimer = onFire;
    if (typeof this.client.setTimeout !== 'function') return;
    this.client.setTimeout(ms);
    if (!this.client.listeners('timeout').includes(onTimeout)) this.client.on('timeout', onTimeout);
  }

  /**
   * No timer of its own: a connection whose requests sluice serves (TLS it terminated, plain HTTP)
   * is timed by its server (header timeout, keep-alive timeout) and by each request's own limits.
   */
  untimed(): void {
    this.#onTimer = null;
    if (typeof this.client.setTimeout === 'function') this.client.setTimeout(0);
  }

  /** The idle timeout of an open connection. */
  idle(ms: number): void {
    this.timer(ms, () => this.end(null, `the connection was silent for idle_timeout_ms (${ms} ms); sluice closed it`));
  }

  timedOut(): void {
    const fire = this.#onTimer;
    if (fire) fire();
    else this.client.destroy();
  }

  /** Ends the connection: with an outcome (a refusal, a limit, a timeout), or a sentence on why it closed. */
  end(code: Outcome | null, detail: string): void {
    if (code) this.ex.settle(code, detail);
    else this.ex.note(detail);
    this.client.destroy();
    this.#upstream?.destroy();
  }

  /** Runs once, when the client socket closes: every way a connection ends passes here. */
  closed(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#onTimer = null;
    this.#release?.();
    this.#release = null;
    this.#upstream?.destroy();
    this.#open.delete(this);
    if (this.closeNote) this.ex.note(this.closeNote);
    this.ex.report(this.#kind);
  }
}

/** A forwarded request in flight (it has no raw connection of its own): cut at shutdown like one. */
interface InFlight {
  ex: Exchange;
  /** sent straight to the proxy port (not inside a tunnel, whose life is counted already) */
  direct: boolean;
  /** ends the request now, after its exchange was settled */
  cut(): void;
}

/**
 * The raw connections open now, and the forwarded requests in flight: re-checked on every reload,
 * drained and then cut at shutdown.
 */
export class OpenConnections<R = unknown> {
  readonly #lives = new Set<ConnectionLife<R>>();
  readonly #requests = new Set<InFlight>();
  /** resolves drained() once nothing is open */
  #onEmpty: (() => void) | null = null;

  add(life: ConnectionLife<R>): void {
    this.#lives.add(life);
  }

  delete(life: ConnectionLife<R>): void {
    this.#lives.delete(life);
    this.#checkEmpty();
  }

  /** A forwarded request until it closes; returns what to call then. */
  request(ex: Exchange, direct: boolean, cut: () => void): () => void {
    const entry: InFlight = { ex, direct, cut };
    this.#requests.add(entry);
    return () => {
      this.#requests.delete(entry);
      this.#checkEmpty();
    };
  }

  get size(): number {
    return this.#lives.size;
  }

  /** What a drain waits for: raw connections plus requests sent straight to the proxy port. */
  get busy(): number {
    let direct = 0;
    for (const r of this.#requests) if (r.direct) direct++;
    return this.#lives.size + direct;
  }

  /** Resolves once no connection is open and no request is in flight. */
  drained(): Promise<void> {
    if (this.#lives.size === 0 && this.#requests.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.#onEmpty;
      this.#onEmpty = () => {
        before?.();
        resolve();
      };
    });
  }

  #checkEmpty(): void {
    if (this.#onEmpty === null || this.#lives.size > 0 || this.#requests.size > 0) return;
    const fire = this.#onEmpty;
    this.#onEmpty = null;
    fire();
  }

  /** After a reload: every connection whose admission the new policy no longer gives is closed. */
  recheck(runtime: R): number {
    let closed = 0;
    for (const life of [...this.#lives]) {
      const why = life.recheck?.(runtime) ?? null;
      if (why === null) continue;
      life.end(null, `closed by a policy reload: ${why}`);
      closed++;
    }
    return closed;
  }

  /**
   * At shutdown, once the drain timeout ran out: every request still in flight and every connection
   * still open is cut, and its record says so (reason shutdown, with the bytes it had carried), so a
   * transfer cut short is never recorded as a complete one. Returns how many were cut.
   */
  cutAll(drainMs: number): number {
    const why = (ex: Exchange): string =>
      `sluice shut down and the drain timeout (${drainMs} ms) ran out with this transfer open; ` +
      `it was cut after ${ex.bytesDown} bytes down and ${ex.bytesUp} bytes up`;
    let cut = 0;
    for (const r of [...this.#requests]) {
      r.ex.settle('shutdown', why(r.ex));
      r.cut();
      cut++;
    }
    for (const life of [...this.#lives]) {
      life.end('shutdown', why(life.ex));
      cut++;
    }
    return cut;
  }
}
