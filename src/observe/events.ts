// What the data path reports. Observability (audit, metrics, logs) subscribes through Observer;
// the data path never imports prom-client or the audit sink.
import type { Outcome } from '../policy/reasons.js';
import type { Verdict } from '../policy/types.js';

export const AUDIT_TYPES = [
  'net.req',
  'net.tunnel',
  'policy.violation',
  'secret.use',
  'limit.exceeded',
  'policy.load',
  'policy.reload_failed',
  'policy.drift',
  // One per JSON-RPC call an mcp: rule read (issue 18), besides the exchange's own record.
  'mcp.call',
  // Written by the audit sink itself (signed, about the trail), never by the data path; not a request.
  'audit.checkpoint',
] as const;
export type AuditType = (typeof AUDIT_TYPES)[number];

/** One audit event as the data path reports it; the sink adds ts, seq, policy_sha256, prev, hash. */
export interface AuditInput {
  type: AuditType;
  request_id?: string | null;
  tool?: string | null;
  decision?: Verdict | null;
  reason?: Outcome | null;
  method?: string | null;
  scheme?: 'http' | 'https' | null;
  host?: string | null;
  port?: number | null;
  /** path with query values redacted */
  path?: string | null;
  ip?: string | null;
  status?: number | null;
  bytes_up?: number | null;
  bytes_down?: number | null;
  duration_ms?: number | null;
  rule?: string | null;
  /** secret alias, never a value */
  secret?: string | null;
  /** where a secret was used: header:Authorization, query, body */
  where?: string | null;
  /** a human sentence (reload errors, limit details); scrubbed of secret values */
  detail?: string | null;
  /** the other hash of a drift, or of a reload */
  expected_sha256?: string | null;
  /** issue 16: how sluice saw a request or tunnel: passthrough, intercept, tunnel (absent: on the proxy port) */
  via?: 'passthrough' | 'intercept' | 'tunnel' | null;
  /** mcp.call: the JSON-RPC method and the tool, resource or prompt it names (bounded) */
  mcp_method?: string | null;
  mcp_name?: string | null;
}

export interface Observer {
  event(e: AuditInput): void;
  /** a client connection to the proxy port opened / closed (sluice_open_connections) */
  connectionOpened(): void;
  connectionClosed(): void;
  upstreamDuration(tool: string, seconds: number): void;
  certIssued(): void;
}
