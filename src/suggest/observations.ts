// What `sluice policy suggest` learns from: the audit records of requests and tunnels a tool made
// (issue 16). Pure: audit lines in, observations out. A record counts when a rule would have to
// allow it: every allowed request or tunnel (net.req, net.tunnel, and limit.exceeded ones a rule
// matched), and the violations a rule could fix (no_rule, port, method, path), whether on_violation
// let them through (review) or not (deny). Refusals a rule cannot fix (private addresses, secrets,
// authentication, malformed requests, rate limits) are left out.
import { normalizePath } from '../match/path.js';

export interface Observation {
  ts: string;
  tool: string;
  /** upper case; CONNECT for a tunnel */
  method: string;
  scheme: string;
  /** canonical, as the audit records it (IPv6 without brackets) */
  host: string;
  port: number;
  /** normalized, without the query; null for a CONNECT */
  path: string | null;
  /** how sluice saw it (audit `via`): passthrough, intercept, tunnel; null on the proxy port or in an older audit */
  via: string | null;
}

/** A secret alias a tool's requests used, and where (secret.use events). */
export interface SecretUse {
  tool: string;
  alias: string;
  host: string;
}

export interface Observed {
  observations: Observation[];
  secretUses: SecretUse[];
  /** records left out, by why (for the output's header) */
  skipped: Map<string, number>;
}

const RULE_REASONS = new Set(['no_rule', 'port_not_allowed', 'method_not_allowed', 'path_not_allowed']);

interface Line {
  type?: unknown;
  ts?: unknown;
  tool?: unknown;
  decision?: unknown;
  reason?: unknown;
  method?: unknown;
  scheme?: unknown;
  host?: unknown;
  port?: unknown;
  path?: unknown;
  rule?: unknown;
  secret?: unknown;
  via?: unknown;
}

/** Reads audit lines (JSON, one record each); tool: only that tool's records, null = every tool. */
export function observe(lines: Iterable<string>, tool: string | null): Observed {
  const observations: Observation[] = [];
  const secretUses: SecretUse[] = [];
  const skipped = new Map<string, number>();
  const skip = (why: string): void => void skipped.set(why, (skipped.get(why) ?? 0) + 1);
  for (const text of lines) {
    if (text.trim() === '') continue;
    let record: Line;
    try {
      record = JSON.parse(text) as Line;
    } catch {
      skip('not a JSON audit record');
      continue;
    }
    if (typeof record !== 'object' || record === null || typeof record.tool !== 'string') continue;
    if (tool !== null && record.tool !== tool) continue;
    if (record.type === 'secret.use') {
      if (typeof record.secret === 'string' && typeof record.host === 'string') {
        secretUses.push({ tool: record.tool, alias: record.secret, host: record.host });
      }
      continue;
    }
    if (!counts(record)) continue;
    if (
      typeof record.host !== 'string' ||
      typeof record.port !== 'number' ||
      typeof record.method !== 'string' ||
      typeof record.ts !== 'string'
    ) {
      skip('no host, port, method or time');
      continue;
    }
    const method = record.method.toUpperCase();
    let path: string | null = null;
    if (method !== 'CONNECT') {
      const normalized = normalizePath(typeof record.path === 'string' ? record.path : '/');
      if (!normalized.ok) {
        skip(`a path that cannot be checked (${normalized.why})`);
        continue;
      }
      path = normalized.path;
    }
    observations.push({
      ts: record.ts,
      tool: record.tool,
      method,
      scheme: typeof record.scheme === 'string' ? record.scheme : 'http',
      host: record.host,
      port: record.port,
      path,
      via: typeof record.via === 'string' ? record.via : null,
    });
  }
  return { observations, secretUses, skipped };
}

function counts(record: Line): boolean {
  if (record.type === 'net.req' || record.type === 'net.tunnel') return true;
  if (record.type === 'policy.violation') return typeof record.reason === 'string' && RULE_REASONS.has(record.reason);
  if (record.type === 'limit.exceeded') return typeof record.rule === 'string';
  return false;
}
