// The audit record: its fields and their order (defined here once; the tests import it), how an
// event becomes a record (scrubbed, query values redacted) and what a checkpoint record holds.
//
// Conventions (fixed by the team; other modules report through Observer in events.ts):
// - Each request or tunnel gets exactly ONE canonical event: `net.req` (a plain HTTP request, or a
//   request inside an intercepted tunnel), `net.tunnel` (a CONNECT), or, when the outcome was a
//   denial or review, `policy.violation` with the same fields (decision deny|review, reason), or
//   `limit.exceeded` when a size/time limit cut it. `secret.use` is one additional event per alias
//   used. `policy.load`, `policy.reload_failed` and `policy.drift` are lifecycle events.
//   `audit.checkpoint` is written by the sink itself (with --audit-key) and is about the trail.
//
// Layout. Every record has AUDIT_FIELDS in that order, with null for an absent value, then the
// AUDIT_EXTRAS that are set (in that order), then `prev` and `hash` (audit-chain.ts). `seq` counts
// from 1 and continues across rotations and restarts; `instance` names the process that wrote the
// record. Every string passes through the sink's scrub function (secret values never reach the
// file); `path` has its query values replaced by REDACTED.
//
// Bounds. A tool chooses much of what a record holds (its path, header names, a Host), and records
// must not be large enough for a few thousand requests to rotate older evidence out of retention.
// After scrubbing, a string field longer than its bound keeps its first characters and ends with
// the marker `…[cut, N chars]` (N = the length before the cut): `path` 2048 characters, `detail`
// 1024, every other string field 256. Lifecycle events (policy.load, policy.reload_failed,
// policy.drift) keep their whole detail: the operator's policy file is its source, not a tool.
import { AUDIT_TYPES, type AuditInput } from './events.js';

export const AUDIT_FIELDS = [
  'ts',
  'seq',
  'instance',
  'type',
  'request_id',
  'tool',
  'decision',
  'reason',
  'method',
  'scheme',
  'host',
  'port',
  'path',
  'ip',
  'status',
  'bytes_up',
  'bytes_down',
  'duration_ms',
  'rule',
  'secret',
  'policy_sha256',
] as const;
/** Present only when set; a checkpoint has `checkpoint`, `key_id` and `signature` (and `detail` for a break). */
export const AUDIT_EXTRAS = [
  'where',
  'detail',
  'expected_sha256',
  // issue 17: approvals and grants
  'approval',
  'approval_decision',
  'scope',
  'grants_sha256',
  // issue 16
  'via',
  'mcp_method',
  'mcp_name',
  'checkpoint',
  'key_id',
  'signature',
] as const;

/**
 * Why a checkpoint was written. `start`: a process began (seq 1 of a new trail, or right after the
 * shutdown checkpoint it continues); `periodic`: every N records or T seconds; `rotate`: the first
 * record of a file a rotation began; `shutdown`: the last record of a clean stop (the trail is
 * sealed); `break`: the first record of a file begun because the previous one did not end sealed.
 */
export const CHECKPOINT_KINDS = ['start', 'periodic', 'rotate', 'shutdown', 'break'] as const;
export type CheckpointKind = (typeof CHECKPOINT_KINDS)[number];
/** The kinds that may open a file (besides the genesis record, seq 1). */
export const FILE_OPENING_KINDS: ReadonlySet<string> = new Set<CheckpointKind>(['rotate', 'break']);

/** The record as written, before `hash` is added; the order of keys is AUDIT_FIELDS, AUDIT_EXTRAS, prev. */
export interface AuditRecord {
  ts: string;
  seq: number;
  instance: string;
  type: string;
  request_id: string | null;
  tool: string | null;
  decision: string | null;
  reason: string | null;
  method: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  ip: string | null;
  status: number | null;
  bytes_up: number | null;
  bytes_down: number | null;
  duration_ms: number | null;
  rule: string | null;
  secret: string | null;
  policy_sha256: string | null;
  where?: string;
  detail?: string;
  expected_sha256?: string;
  approval?: string;
  approval_decision?: string;
  scope?: string;
  grants_sha256?: string;
  /** issue 16: passthrough | intercept | tunnel */
  via?: string;
  mcp_method?: string;
  mcp_name?: string;
  checkpoint?: CheckpointKind;
  key_id?: string;
  signature?: string;
  prev: string;
}

/** Where the next record goes in the chain, and what every record carries. */
export interface RecordPlace {
  seq: number;
  prev: string;
  instance: string;
  policySha256: string | null;
}

/** Keeps query keys and replaces every value: `/a?q=x&t=y&flag` → `/a?q=REDACTED&t=REDACTED&flag`. */
export function redactQuery(pathWithQuery: string): string {
  const mark = pathWithQuery.indexOf('?');
  if (mark < 0) return pathWithQuery;
  const query = pathWithQuery
    .slice(mark + 1)
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0 ? part : `${part.slice(0, eq)}=REDACTED`;
    })
    .join('&');
  return `${pathWithQuery.slice(0, mark)}?${query}`;
}

let lastMs = -1;
let lastIso = '';

/** Records of one millisecond share a timestamp; Date#toISOString formats through snprintf each time. */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** The record of one reported event. */
/** Field bounds, in UTF-16 code units. */
export const AUDIT_FIELD_MAX = Object.freeze({ path: 2048, detail: 1024, other: 256 });
const LIFECYCLE_TYPES: ReadonlySet<string> = new Set(['policy.load', 'policy.reload_failed', 'policy.drift']);

/** `text` cut to `max` characters plus a marker with its original length; short text unchanged. */
export function boundField(text: string, max: number): string {
  if (text.length <= max) return text;
  // never split a surrogate pair
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, end)}…[cut, ${text.length} chars]`;
}

/** A text field scrubbed and bounded; null when absent. Module-level, so a record builds no closures. */
function textField(v: string | null | undefined, scrub: (s: string) => string, max: number = AUDIT_FIELD_MAX.other): string | null {
  return typeof v === 'string' ? boundField(scrub(v), max) : null;
}

function num(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function eventRecord(e: AuditInput, at: RecordPlace, scrub: (s: string) => string): AuditRecord {
  const other: number = AUDIT_FIELD_MAX.other;
  const record = {
    ts: isoNow(),
    seq: at.seq,
    instance: at.instance,
    type: AUDIT_TYPES.includes(e.type) ? e.type : boundField(scrub(String(e.type)), other),
    request_id: textField(e.request_id, scrub),
    tool: textField(e.tool, scrub),
    decision: textField(e.decision, scrub),
    reason: textField(e.reason, scrub),
    method: textField(e.method, scrub),
    scheme: textField(e.scheme, scrub),
    host: textField(e.host, scrub),
    port: num(e.port),
    path: typeof e.path === 'string' ? boundField(scrub(redactQuery(e.path)), AUDIT_FIELD_MAX.path) : null,
    ip: textField(e.ip, scrub),
    status: num(e.status),
    bytes_up: num(e.bytes_up),
    bytes_down: num(e.bytes_down),
    duration_ms: num(e.duration_ms),
    rule: textField(e.rule, scrub),
    secret: textField(e.secret, scrub),
    policy_sha256: textField(at.policySha256, scrub),
  } as AuditRecord;
  // Extras sit between policy_sha256 and prev; keys are added in canonical order.
  if (typeof e.where === 'string') record.where = textField(e.where, scrub)!;
  // Lifecycle events keep their whole detail: the operator's policy file is its source, not a tool.
  if (typeof e.detail === 'string')
    record.detail = LIFECYCLE_TYPES.has(e.type) ? scrub(e.detail) : textField(e.detail, scrub, AUDIT_FIELD_MAX.detail)!;
  if (typeof e.expected_sha256 === 'string') record.expected_sha256 = textField(e.expected_sha256, scrub)!;
  if (typeof e.approval === 'string') record.approval = textField(e.approval, scrub)!;
  if (typeof e.approval_decision === 'string') record.approval_decision = textField(e.approval_decision, scrub)!;
  if (typeof e.scope === 'string') record.scope = textField(e.scope, scrub)!;
  if (typeof e.grants_sha256 === 'string') record.grants_sha256 = textField(e.grants_sha256, scrub)!;
  if (typeof e.via === 'string') record.via = textField(e.via, scrub)!;
  if (typeof e.mcp_method === 'string') record.mcp_method = textField(e.mcp_method, scrub)!;
  if (typeof e.mcp_name === 'string') record.mcp_name = textField(e.mcp_name, scrub)!;
  record.prev = at.prev;
  return record;
}

/** A checkpoint record without its signature (audit-key.ts signs it and puts `signature` before `prev`). */
export function checkpointRecord(kind: CheckpointKind, keyId: string, at: RecordPlace, detail?: string): AuditRecord {
  const record: AuditRecord = {
    ts: isoNow(),
    seq: at.seq,
    instance: at.instance,
    type: 'audit.checkpoint',
    request_id: null,
    tool: null,
    decision: null,
    reason: null,
    method: null,
    scheme: null,
    host: null,
    port: null,
    path: null,
    ip: null,
    status: null,
    bytes_up: null,
    bytes_down: null,
    duration_ms: null,
    rule: null,
    secret: null,
    policy_sha256: at.policySha256,
    ...(detail !== undefined ? { detail } : {}),
    checkpoint: kind,
    key_id: keyId,
    prev: at.prev,
  };
  return record;
}
