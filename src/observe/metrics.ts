// The Prometheus metrics of DESIGN.md "Metrics" on a registry of their own (never prom-client's global
// one, so tests and embedders get isolated registries). Label values arrive already bounded: the
// AuditingObserver maps tool and secret names onto the policy's sets before calling in here.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type ByteDirection = 'up' | 'down';

export interface MetricsOptions {
  /** prom-client's process metrics (CPU, memory, event loop lag, …); default true */
  defaultMetrics?: boolean;
  /** buckets of sluice_upstream_duration_seconds */
  durationBuckets?: number[];
}

export interface SluiceMetrics {
  readonly registry: Registry;
  request(tool: string, decision: string, reason: string): void;
  violation(tool: string, reason: string): void;
  /** a 407 to a request with no credentials at all (a client's probe before it sends Basic) */
  authChallenge(): void;
  secretUse(tool: string, secret: string): void;
  /** sluice_leaks_total: a secret_leak refusal by the shape found and the surface it was on (bounded labels) */
  leak(tool: string, shape: string, surface: string): void;
  bytes(tool: string, direction: ByteDirection, count: number): void;
  upstreamDuration(seconds: number): void;
  connectionOpened(): void;
  connectionClosed(): void;
  certIssued(): void;
  /** sluice_policy_info{sha256}=1 for this policy only */
  policyLoaded(sha256: string): void;
  reloadFailed(): void;
  /** one JSON-RPC call an mcp: rule read (labels already bounded by the observer) */
  mcpCall(tool: string, method: string, mcpTool: string, decision: string): void;
  /**
   * sluice_audit_last_seq: read at each scrape (nothing per record). `worker` labels the series of
   * one worker under --workers, whose primary sums the workers' registries.
   */
  auditSeq(read: () => number, worker?: number | null): void;
  // issue 17
  /** sluice_approvals_pending{tool}: requests held for a supervisor now */
  approvalsPending(tool: string, count: number): void;
  /** sluice_approval_decisions_total{tool,decision}: allow-once, allow, deny, timeout */
  approvalDecision(tool: string, decision: string): void;
  /**
   * sluice_halted: 1 while the proxy is halted (pinned-policy drift, an audit that cannot be
   * written), else 0; read at each scrape. A gauge of its own, so an alert keys on it per instance
   * rather than on a scrape job's name.
   */
  halted(read: () => boolean): void;
}

const DEFAULT_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export function createMetrics(opts: MetricsOptions = {}): SluiceMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const requests = new Counter({
    name: 'sluice_requests_total',
    help: 'Requests and tunnels decided, one per canonical audit event',
    labelNames: ['tool', 'decision', 'reason'] as const,
    registers,
  });
  const violations = new Counter({
    name: 'sluice_policy_violations_total',
    help: 'Denied or reviewed requests and limit hits',
    labelNames: ['tool', 'reason'] as const,
    registers,
  });
  const secretUses = new Counter({
    name: 'sluice_secret_uses_total',
    help: 'Secret placeholders swapped for a real value or injected',
    labelNames: ['tool', 'secret'] as const,
    registers,
  });
  const leaks = new Counter({
    name: 'sluice_leaks_total',
    help: 'Requests and WebSocket messages refused as secret_leak, by credential shape and surface',
    labelNames: ['tool', 'shape', 'surface'] as const,
    registers,
  });
  const bytes = new Counter({
    name: 'sluice_bytes_total',
    help: 'Bytes relayed: up = client to upstream, down = upstream to client',
    labelNames: ['tool', 'direction'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'sluice_upstream_duration_seconds',
    help: 'Time from dialling upstream to the end of its response',
    buckets: opts.durationBuckets ?? DEFAULT_DURATION_BUCKETS,
    registers,
  });
  const openConnections = new Gauge({
    name: 'sluice_open_connections',
    help: 'Client connections currently open',
    registers,
  });
  const certsIssued = new Counter({
    name: 'sluice_tls_certs_issued_total',
    help: 'Leaf certificates minted by the interception CA',
    registers,
  });
  const policyInfo = new Gauge({
    name: 'sluice_policy_info',
    help: 'The policy in force (value 1), by sha256',
    labelNames: ['sha256'] as const,
    registers,
    // Under --workers every worker reports 1 for the policy it runs: 1, not N, in the sum.
    aggregator: 'max',
  });
  // Apart from violations (issue 15): libcurl probes without credentials first, then retries with them.
  const authChallenges = new Counter({
    name: 'sluice_auth_challenges_total',
    help: 'Requests answered 407 that carried no Proxy-Authorization at all (a client probing before it sends Basic); not violations',
    registers,
  });
  const reloadFailures = new Counter({
    name: 'sluice_policy_reload_failures_total',
    help: 'Policy reloads rejected (the last good policy stays in force)',
    registers,
  });

  const mcpCalls = new Counter({
    name: 'sluice_mcp_calls_total',
    help: 'JSON-RPC calls read by mcp: rules, by tool, MCP method, MCP tool (names the policy lists, else "other") and decision',
    labelNames: ['tool', 'method', 'mcp_tool', 'decision'] as const,
    registers,
  });
  // issue 17: the supervisor's queue
  const approvalsPending = new Gauge({
    name: 'sluice_approvals_pending',
    help: 'Requests held for a supervisor (on_violation: ask) now',
    labelNames: ['tool'] as const,
    registers,
  });
  const approvalDecisions = new Counter({
    name: 'sluice_approval_decisions_total',
    help: 'Held requests answered: allow-once, allow, deny, or timeout',
    labelNames: ['tool', 'decision'] as const,
    registers,
  });

  let readAuditSeq: (() => number) | null = null;
  let auditWorker: string | null = null;
  new Gauge({
    name: 'sluice_audit_last_seq',
    help: 'seq of the last audit record written: an anchor outside the file for "sluice audit verify --expect-seq"',
    labelNames: ['worker'] as const,
    registers,
    collect() {
      if (readAuditSeq === null) return;
      if (auditWorker === null) this.set(readAuditSeq());
      else this.set({ worker: auditWorker }, readAuditSeq());
    },
  });

  let readHalted: (() => boolean) | null = null;
  new Gauge({
    name: 'sluice_halted',
    help: '1 while sluice is halted (pinned policy drifted, or the audit cannot be written) and refuses every request; else 0',
    registers,
    // Under --workers the primary reports 1 when any worker is halted.
    aggregator: 'max',
    collect() {
      this.set(readHalted?.() ? 1 : 0);
    },
  });

  // Labelled children kept per label set: prom-client otherwise hashes the label object on every
  // inc. Label values are bounded (policy names and closed sets), so these maps are too.
  const requestChildren = new Map<string, { inc(): void }>();
  const byteChildren = new Map<string, { inc(n: number): void }>();
  const secretUseChildren = new Map<string, { inc(): void }>();
  return {
    registry,
    request: (tool, decision, reason) => {
      const key = `${tool}\n${decision}\n${reason}`;
      let child = requestChildren.get(key);
      if (!child) requestChildren.set(key, (child = requests.labels({ tool, decision, reason })));
      child.inc();
    },
    violation: (tool, reason) => violations.inc({ tool, reason }),
    authChallenge: () => authChallenges.inc(),
    secretUse: (tool, secret) => {
      // one per request that injects a secret: the labelled child is looked up once, as for requests
      const key = `${tool}\n${secret}`;
      let child = secretUseChildren.get(key);
      if (!child) secretUseChildren.set(key, (child = secretUses.labels({ tool, secret })));
      child.inc();
    },
    leak: (tool, shape, surface) => leaks.inc({ tool, shape, surface }),
    bytes: (tool, direction, count) => {
      if (!(count > 0 && Number.isFinite(count))) return;
      const key = `${tool}\n${direction}`;
      let child = byteChildren.get(key);
      if (!child) byteChildren.set(key, (child = bytes.labels({ tool, direction })));
      child.inc(count);
    },
    upstreamDuration: (seconds) => {
      if (seconds >= 0 && Number.isFinite(seconds)) duration.observe(seconds);
    },
    connectionOpened: () => openConnections.inc(),
    connectionClosed: () => openConnections.dec(),
    certIssued: () => certsIssued.inc(),
    policyLoaded: (sha256) => {
      policyInfo.reset();
      policyInfo.set({ sha256 }, 1);
    },
    reloadFailed: () => reloadFailures.inc(),
    mcpCall: (tool, method, mcpTool, decision) => mcpCalls.inc({ tool, method, mcp_tool: mcpTool, decision }),
    approvalsPending: (tool, count) => approvalsPending.set({ tool }, count),
    approvalDecision: (tool, decision) => approvalDecisions.inc({ tool, decision }),
    auditSeq: (read, worker) => {
      readAuditSeq = read;
      auditWorker = worker == null ? null : String(worker);
    },
    halted: (read) => {
      readHalted = read;
    },
  };
}
