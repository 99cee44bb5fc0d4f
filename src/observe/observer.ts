// The Observer the data path reports to: every event goes to the audit sink and moves the metrics.
// Metric labels stay bounded: a tool or secret name not in the current policy (or none at all) is
// counted as "unknown"; decision and reason values outside their closed unions likewise. The audit
// record keeps the (scrubbed) name as reported.
import { leakLabels } from '../leak/detect.js';
import { shapeNames } from '../leak/shapes.js';
import { OUTCOMES } from '../policy/reasons.js';
import type { AuditSink } from './audit.js';
import type { AuditInput, AuditType, Observer } from './events.js';
import type { SluiceMetrics } from './metrics.js';

export const UNKNOWN_LABEL = 'unknown';

/** The one event per request or tunnel; each increments sluice_requests_total exactly once. */
const CANONICAL_TYPES: ReadonlySet<AuditType> = new Set(['net.req', 'net.tunnel', 'policy.violation', 'limit.exceeded', 'auth.challenge']);
/** A limit hit breaks the policy's limits, so it counts as a violation too. */
const VIOLATION_TYPES: ReadonlySet<AuditType> = new Set(['policy.violation', 'limit.exceeded']);
const DECISIONS: ReadonlySet<string> = new Set(['allow', 'deny', 'review']);
const REASONS: ReadonlySet<string> = new Set<string>(OUTCOMES);

export interface PolicyLabels {
  sha256: string;
  tools: readonly string[];
  secrets: readonly string[];
  /** MCP tool names listed literally under some rule's mcp.tools (issue 18); absent = none */
  mcpTools?: readonly string[];
}

/** The mcp_tool label of a name the policy does not list, and the method label of an unknown method. */
export const OTHER_LABEL = 'other';
/** MCP methods counted under their own name (sluice_mcp_calls_total{method}); any other is "other". */
const MCP_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
]);

export interface AuditingObserverOptions {
  sink: AuditSink;
  metrics: SluiceMetrics;
  /**
   * An audit record could not be written (the sink failed or was closed); halting the proxy keeps
   * invariant 4. Absent: the record is dropped here and the failure is left to the sink's onError.
   */
  onAuditFailure?: (err: Error) => void;
  /** each request's or tunnel's one record, as it is written (the debug log line) */
  onRequest?: (e: AuditInput) => void;
}

export class AuditingObserver implements Observer {
  readonly #sink: AuditSink;
  readonly #metrics: SluiceMetrics;
  readonly #onAuditFailure: ((err: Error) => void) | undefined;
  readonly #onRequest: ((e: AuditInput) => void) | undefined;
  #policySha256: string | null = null;
  #tools: ReadonlySet<string> = new Set();
  #secrets: ReadonlySet<string> = new Set();
  #mcpTools: ReadonlySet<string> = new Set();

  constructor(opts: AuditingObserverOptions) {
    this.#sink = opts.sink;
    this.#metrics = opts.metrics;
    this.#onAuditFailure = opts.onAuditFailure;
    this.#onRequest = opts.onRequest;
  }

  /** Call with the new policy before reporting its policy.load event, so the event carries its hash. */
  setPolicy(policy: PolicyLabels): void {
    this.#policySha256 = policy.sha256;
    this.#tools = new Set(policy.tools);
    this.#secrets = new Set(policy.secrets);
    this.#mcpTools = new Set(policy.mcpTools ?? []);
    this.#metrics.policyLoaded(policy.sha256);
  }

  event(e: AuditInput): void {
    this.#count(e);
    try {
      this.#sink.write(e, this.#policySha256);
    } catch (err) {
      this.#onAuditFailure?.(err as Error);
    }
  }

  connectionOpened(): void {
    this.#metrics.connectionOpened();
  }

  connectionClosed(): void {
    this.#metrics.connectionClosed();
  }

  upstreamDuration(_tool: string, seconds: number): void {
    this.#metrics.upstreamDuration(seconds);
  }

  certIssued(): void {
    this.#metrics.certIssued();
  }

  #count(e: AuditInput): void {
    const tool = this.#toolLabel(e.tool);
    if (CANONICAL_TYPES.has(e.type)) {
      this.#metrics.request(tool, labelIn(DECISIONS, e.decision), labelIn(REASONS, e.reason));
      this.#metrics.bytes(tool, 'up', e.bytes_up ?? 0);
      this.#metrics.bytes(tool, 'down', e.bytes_down ?? 0);
      this.#onRequest?.(e);
    }
    if (VIOLATION_TYPES.has(e.type)) this.#metrics.violation(tool, labelIn(REASONS, e.reason));
    // Not a violation (libcurl probes without credentials, then retries with them): counted apart.
    if (e.type === 'auth.challenge') this.#metrics.authChallenge();
    if (CANONICAL_TYPES.has(e.type) && e.reason === 'secret_leak') {
      const labels = leakLabels(e.detail ?? '', shapeNames());
      this.#metrics.leak(tool, labels.shape, labels.surface);
    }
    if (e.type === 'secret.use') {
      const secret = e.secret != null && this.#secrets.has(e.secret) ? e.secret : UNKNOWN_LABEL;
      this.#metrics.secretUse(tool, secret);
    }
    if (e.type === 'policy.reload_failed') this.#metrics.reloadFailed();
    if (e.type === 'mcp.call') {
      const method = e.mcp_method != null && MCP_METHODS.has(e.mcp_method) ? e.mcp_method : OTHER_LABEL;
      // Only tools/call names a tool; its label is a name the policy lists, never one a server or agent made up.
      const mcpTool = method !== 'tools/call' ? '' : e.mcp_name != null && this.#mcpTools.has(e.mcp_name) ? e.mcp_name : OTHER_LABEL;
      this.#metrics.mcpCall(tool, method, mcpTool, labelIn(DECISIONS, e.decision));
    }
  }

  #toolLabel(tool: string | null | undefined): string {
    return tool != null && this.#tools.has(tool) ? tool : UNKNOWN_LABEL;
  }
}

/** "" when absent (no reason), the value when it is in the closed set, "unknown" otherwise. */
function labelIn(allowed: ReadonlySet<string>, value: string | null | undefined): string {
  if (value == null) return '';
  return allowed.has(value) ? value : UNKNOWN_LABEL;
}
