// Per-tool concurrency and request rate. One tool at its cap waits (briefly) or is refused on its
// own counters, so it never slows another tool. Counters live for the whole process, across policy
// reloads: a reload changes the caps, not the exchanges already in flight.
import type { Limits } from '../config/types.js';

/** How long an exchange over a tool's concurrency cap waits for a slot before a 429. */
export const DEFAULT_SLOT_WAIT_MS = 1000;

export type ToolCaps = Pick<Limits, 'max_connections_per_tool' | 'requests_per_minute'>;

export type SlotGrant = { ok: true; release: () => void } | { ok: false; detail: string; retryAfterSeconds: number };

/** A token bucket holding up to one minute's worth of requests, refilled continuously. */
export interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Takes one token for a request at `now`. Pure: returns the next bucket and, when refused, how many
 * whole seconds until a token is back.
 */
export function takeToken(bucket: Bucket | null, perMinute: number, now: number): { bucket: Bucket; ok: boolean; retryAfterSeconds: number } {
  const perMs = perMinute / 60_000;
  const start = bucket ?? { tokens: perMinute, at: now };
  const tokens = Math.min(perMinute, start.tokens + Math.max(0, now - start.at) * perMs);
  if (tokens >= 1) return { bucket: { tokens: tokens - 1, at: now }, ok: true, retryAfterSeconds: 0 };
  return { bucket: { tokens, at: now }, ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / perMs / 1000)) };
}

const NO_RELEASE = (): void => undefined;

interface ToolState {
  active: number;
  waiters: Array<(granted: boolean) => void>;
  bucket: Bucket | null;
}

export class ToolLimiter {
  readonly #tools = new Map<string, ToolState>();
  readonly #waitMs: number;
  readonly #now: () => number;

  constructor(opts: { waitMs?: number; now?: () => number } = {}) {
    this.#waitMs = opts.waitMs ?? DEFAULT_SLOT_WAIT_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Exchanges of this tool holding a slot now. */
  active(tool: string): number {
    return this.#tools.get(tool)?.active ?? 0;
  }

  /**
   * Asks for one exchange's rate token and, unless `slot` is false, a slot; the grant's release()
   * must be called exactly once. `key` is the tool, or the tool and a rule for a rule's own caps;
   * `who` names it in the refusal.
   */
  async acquire(key: string, caps: ToolCaps, opts: { slot?: boolean; who?: string } = {}): Promise<SlotGrant> {
    const who = opts.who ?? `tool ${key}`;
    const state = this.#state(key);
    if (caps.requests_per_minute > 0) {
      const taken = takeToken(state.bucket, caps.requests_per_minute, this.#now());
      state.bucket = taken.bucket;
      if (!taken.ok) {
        return {
          ok: false,
          detail: `${who} exceeded its rate of ${caps.requests_per_minute} requests per minute`,
          retryAfterSeconds: taken.retryAfterSeconds,
        };
      }
    }
    if (opts.slot === false) return { ok: true, release: NO_RELEASE };
    if (state.active < caps.max_connections_per_tool) {
      state.active++;
      return { ok: true, release: this.#releaser(state) };
    }
    const granted = await new Promise<boolean>((resolve) => {
      const waiter = (ok: boolean): void => {
        clearTimeout(timer);
        resolve(ok);
      };
      const timer = setTimeout(() => {
        state.waiters.splice(state.waiters.indexOf(waiter), 1);
        resolve(false);
      }, this.#waitMs);
      state.waiters.push(waiter);
    });
    if (granted) return { ok: true, release: this.#releaser(state) };
    return {
      ok: false,
      detail: `${who} has ${caps.max_connections_per_tool} exchanges in flight (its max_connections_per_tool) and none finished within ${this.#waitMs} ms`,
      retryAfterSeconds: 1,
    };
  }

  #state(tool: string): ToolState {
    let state = this.#tools.get(tool);
    if (!state) {
      state = { active: 0, waiters: [], bucket: null };
      this.#tools.set(tool, state);
    }
    return state;
  }

  #releaser(state: ToolState): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // A freed slot passes straight to the longest waiter, so active never dips below the cap under load.
      const next = state.waiters.shift();
      if (next) next(true);
      else state.active--;
    };
  }
}
