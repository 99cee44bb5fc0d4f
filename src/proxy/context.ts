// What the data path needs, passed in (no globals). A PolicyRuntime is built once per policy load
// and never changed: a connection keeps the runtime it started with, so a reload affects only
// new requests.
import type { LoadedPolicy } from '../config/types.js';
import type { UpstreamPools } from '../net/dial.js';
import type { VettingResolver } from '../net/resolve.js';
import type { Observer } from '../observe/events.js';
import type { CompiledPolicy } from '../policy/compile.js';
import type { SecretStore } from '../secrets/store.js';
import type { ToolTokens } from './auth.js';
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
  /** sluice's own listening endpoints, never dialled */
  self: ReadonlyArray<{ host: string; port: number }>;
  /** per-tool concurrency and rate, kept across reloads */
  limiter: ToolLimiter;
}
