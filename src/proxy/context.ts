// What the data path needs, passed in (no globals). A PolicyRuntime is built once per policy load
// and never changed. Every admission reads the runtime in force at that moment (deps.current()),
// also for each request inside a tunnel opened under an older one.
import type { LoadedPolicy } from '../config/types.js';
import type { UpstreamPools } from '../net/dial.js';
import type { VettingResolver } from '../net/resolve.js';
import type { Observer } from '../observe/events.js';
import type { CompiledPolicy } from '../policy/compile.js';
import type { SecretStore } from '../secrets/store.js';
import type { ToolTokens } from './auth.js';
import type { ConnectionLife, OpenConnections } from './lifecycle.js';
import type { ToolLimiter } from './limits.js';

export interface PolicyRuntime {
  readonly loaded: LoadedPolicy;
  readonly compiled: CompiledPolicy;
  readonly tokens: ToolTokens;
  readonly resolver: VettingResolver;
  readonly pools: UpstreamPools;
  /** roots trusted for upstream TLS */
  readonly upstreamCa: readonly string[];
  /** values of the secrets some tool is granted */
  readonly secrets: SecretStore;
}

export interface ProxyDeps {
  current(): PolicyRuntime;
  /** a sentence when the proxy is halted (pinned policy drifted), else null */
  halted(): string | null;
  observer: Observer;
  /** sluice's own listening endpoints, never dialled, whatever the spelling of the address */
  self: SelfCheck;
  /** per-tool concurrency and rate, kept across reloads */
  limiter: ToolLimiter;
  /** open raw connections (tunnels, upgraded requests): re-checked on reload, cut at shutdown */
  open: OpenConnections<PolicyRuntime>;
  /** the operator's sentence appended to the detail of every refusal (--deny-message); null = none */
  denyMessage?: string | null;
}

export interface SelfCheck {
  isSelf(ip: string, port: number): boolean;
}

/** A raw connection's life in the data path: a reload re-checks it against the new runtime. */
export type Life = ConnectionLife<PolicyRuntime>;
