// What the data path needs, passed in (no globals). A PolicyRuntime is built once per policy load
// and never changed. Every admission reads the runtime in force at that moment (deps.current()),
// also for each request inside a tunnel opened under an older one.
import type { Limits, LoadedPolicy } from '../config/types.js';
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
  /** issue 17: grants, use counts and the supervisor's queue; absent = no grants, and ask blocks */
  approvals?: AskGate;
}

// issue 17: what the admission pipeline needs from approvals (src/approvals/ implements it).

/** A request held for a supervisor, as GET /approvals lists it. */
export interface HeldRequest {
  tool: string;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** null for a CONNECT */
  path: string | null;
  /** the exchange's request id, so the approval events join its record */
  requestId: string;
}

/** How a held request ended. */
export type SupervisorAnswer =
  | { kind: 'allow-once'; approval: string }
  | { kind: 'allow'; approval: string }
  | { kind: 'deny'; approval: string; detail: string }
  | { kind: 'timeout'; approval: string; detail: string }
  | { kind: 'withdrawn'; approval: string; detail: string };

export type HoldTicket =
  | { held: false; code: 'approval_denied' | 'approval_queue_full'; detail: string }
  | { held: true; approval: string; answer: Promise<SupervisorAnswer> };

export interface AskGate {
  /** the policy with the grants in force compiled in (memoized per policy and grants digest) */
  policyFor(compiled: CompiledPolicy): CompiledPolicy;
  /** uses so far of a rule's usesKey (a bound function: decide calls it on its own) */
  readonly uses: (key: string) => number;
  /** takes one use of a counted rule; false when another request took the last one first */
  take(key: string, max: number): Promise<boolean>;
  /** lists the request as pending (or refuses it at once: a remembered deny, a full queue) */
  hold(req: HeldRequest, limits: Readonly<Limits>): HoldTicket;
  /** takes a held request off the queue because its client went away (audited, no grant, no deny remembered) */
  withdraw(approval: string, why: string): void;
}

export interface SelfCheck {
  isSelf(ip: string, port: number): boolean;
}

/** A raw connection's life in the data path: a reload re-checks it against the new runtime. */
export type Life = ConnectionLife<PolicyRuntime>;
