// Ask a supervisor (issue 17): the queue of held requests, the supervisor's decisions, remembered
// denies, and the grants an allow writes. The admission pipeline holds a request here (AskGate) and
// awaits the answer; the admin API lists, decides and streams through the same object. Grants live
// in a GrantStore (the file by default) and are compiled into the policy in force per grants digest,
// so a decision stays a pure function of the policy, the grants, the clock and the use counts.
import { randomBytes } from 'node:crypto';
import type { Limits } from '../config/types.js';
import { hostForUrl } from '../net/host.js';
import type { AuditInput } from '../observe/events.js';
import { normalizePath } from '../match/path.js';
import { compilePolicy, PolicyCompileError, type CompiledPolicy, type GrantDoc } from '../policy/compile.js';
import type { AskGate, HeldRequest, HoldTicket, SupervisorAnswer } from '../proxy/context.js';
import type { GrantRecord, GrantsRefused, GrantStore } from './grants.js';

export type ApproverDecision = 'allow-once' | 'allow' | 'deny';

/** GET /approvals: one held request. */
export interface PendingView {
  id: string;
  tool: string;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  path: string | null;
  requested_at: string;
  expires_at: string;
}

/** A decision as the stream and the page show it. */
export interface DecidedView {
  id: string;
  tool: string;
  host: string;
  port: number;
  path: string | null;
  decision: ApproverDecision | 'timeout' | 'withdrawn';
  scope: 'host' | 'path' | null;
  rule: string | null;
  expires_at: string | null;
  max_uses: number | null;
  decided_at: string;
}

/** GET /approvals/events: what the stream sends. */
export type ApprovalEvent = { type: 'requested'; approval: PendingView } | { type: 'decided' | 'expired'; decision: DecidedView };

/** POST /approvals/{id}: the body, as parsed. */
export interface DecisionBody {
  decision: ApproverDecision;
  ttl_s?: number;
  max_uses?: number;
  scope?: 'host' | 'path';
}

export interface ApprovalMetrics {
  pending(tool: string, count: number): void;
  decision(tool: string, decision: string): void;
}

export interface ApprovalsOptions {
  store: GrantStore;
  /** audit events (approval.*, grants.*) */
  event: (e: AuditInput) => void;
  metrics?: ApprovalMetrics;
  /** a change of the grants store sluice did not make: refused (audited here), then this (halt when pinned, log) */
  onRefused: (refusal: GrantsRefused) => void;
  now?: () => number;
}

/** An allow without ttl_s or max_uses still ends: grants never live forever by default. */
export const DEFAULT_GRANT_TTL_S = 3600;
const MAX_TTL_S = 366 * 24 * 3600;
const RECENT = 20;

interface Pending {
  view: PendingView;
  req: HeldRequest;
  timer: NodeJS.Timeout;
  resolve: (answer: SupervisorAnswer) => void;
  denyRememberMs: number;
}

export class Approvals implements AskGate {
  readonly #store: GrantStore;
  readonly #opts: ApprovalsOptions;
  readonly #now: () => number;
  readonly #pending = new Map<string, Pending>();
  readonly #denied = new Map<string, number>();
  readonly #listeners = new Set<(e: ApprovalEvent) => void>();
  readonly #recent: DecidedView[] = [];
  readonly #compiled = new WeakMap<CompiledPolicy, { digest: string; policy: CompiledPolicy }>();

  constructor(opts: ApprovalsOptions) {
    this.#opts = opts;
    this.#store = opts.store;
    this.#now = opts.now ?? Date.now;
  }

  get digest(): string {
    return this.#store.snapshot().digest;
  }

  get where(): string {
    return this.#store.where;
  }

  policyFor(compiled: CompiledPolicy): CompiledPolicy {
    const snapshot = this.#store.snapshot();
    if (snapshot.grants.length === 0) return compiled;
    const known = this.#compiled.get(compiled);
    if (known?.digest === snapshot.digest) return known.policy;
    const policy = compileWithGrants(compiled, snapshot.digest, snapshot.grants);
    this.#compiled.set(compiled, { digest: snapshot.digest, policy });
    return policy;
  }

  uses = (key: string): number => this.#store.snapshot().uses.get(key) ?? 0;

  async take(key: string, max: number): Promise<boolean> {
    await this.checkStore();
    return this.#store.take(key, max);
  }

  hold(req: HeldRequest, limits: Readonly<Limits>): HoldTicket {
    const now = this.#now();
    const until = this.#denied.get(denyKey(req));
    if (until !== undefined && until > now) {
      return {
        held: false,
        code: 'approval_denied',
        detail: `a supervisor denied tool ${req.tool} access to ${authority(req)}; asking again is refused until ${iso(until)} (ask_deny_remember_ms)`,
      };
    }
    if (until !== undefined) this.#denied.delete(denyKey(req));
    if (this.#count(req.tool) >= limits.max_pending_per_tool) {
      return {
        held: false,
        code: 'approval_queue_full',
        detail: `tool ${req.tool} already has ${limits.max_pending_per_tool} requests waiting for a supervisor (max_pending_per_tool); answer them or retry later`,
      };
    }
    const id = randomBytes(6).toString('hex');
    const view: PendingView = {
      id,
      tool: req.tool,
      method: req.method,
      scheme: req.scheme,
      host: req.host,
      port: req.port,
      path: req.path,
      requested_at: iso(now),
      expires_at: iso(now + limits.ask_timeout_ms),
    };
    const answer = new Promise<SupervisorAnswer>((resolve) => {
      const timer = setTimeout(() => this.#expire(id), limits.ask_timeout_ms);
      this.#pending.set(id, { view, req, timer, resolve, denyRememberMs: limits.ask_deny_remember_ms });
    });
    this.#opts.metrics?.pending(req.tool, this.#count(req.tool));
    this.#audit('approval.requested', req, id, { detail: `held for a supervisor until ${view.expires_at} (ask_timeout_ms)` });
    this.#emit({ type: 'requested', approval: view });
    return { held: true, approval: id, answer };
  }

  /** GET /approvals */
  list(): PendingView[] {
    return [...this.#pending.values()].map((p) => p.view);
  }

  /** the last decisions, newest last */
  recent(): readonly DecidedView[] {
    return this.#recent;
  }

  /** Streams events; returns the unsubscribe. */
  subscribe(listener: (e: ApprovalEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** POST /approvals/{id}: status and JSON body of the answer. */
  async decide(id: string, body: unknown): Promise<{ status: number; body: object }> {
    const pending = this.#pending.get(id);
    if (!pending)
      return { status: 404, body: { error: `no request ${JSON.stringify(id.slice(0, 40))} is waiting (decided, expired, or never held)` } };
    const parsed = parseBody(body, pending.req);
    if (typeof parsed === 'string') return { status: 400, body: { error: parsed } };
    const { req } = pending;
    if (parsed.decision === 'deny') {
      const until = this.#now() + pending.denyRememberMs;
      this.#denied.set(denyKey(req), until);
      // The same tool's other requests to the same target get the same answer now.
      for (const other of this.#sameTarget(req)) this.#deny(other, until);
      return { status: 200, body: { id, decision: 'deny', remembered_until: iso(until) } };
    }
    if (parsed.decision === 'allow-once') {
      this.#settle(pending, { kind: 'allow-once', approval: id }, 'approval.granted', { decision: 'allow-once', scope: null });
      return { status: 200, body: { id, decision: 'allow-once' } };
    }
    const now = this.#now();
    const scope = parsed.scope ?? 'host';
    const ttl = parsed.ttl_s ?? (parsed.max_uses === undefined ? DEFAULT_GRANT_TTL_S : undefined);
    const grant: GrantRecord = {
      id,
      tool: req.tool,
      approval: id,
      scope,
      created_at: iso(now),
      rule: {
        host: hostForUrl(req.host),
        ports: [req.port],
        ...(scope === 'path' ? { paths: [grantPath(req.path!)] } : {}),
        ...(ttl !== undefined ? { expires_at: iso(now + ttl * 1000) } : {}),
        ...(parsed.max_uses !== undefined ? { max_uses: parsed.max_uses } : {}),
      },
    };
    await this.checkStore();
    // The pending request may have expired while the store was written; the grant stands either way.
    const snapshot = await this.#store.add(grant, now);
    const rule = `${req.tool}.grant[${id}]`;
    const fields = { decision: 'allow' as const, scope, rule, expires_at: grant.rule.expires_at ?? null, max_uses: parsed.max_uses ?? null };
    const detail = `a supervisor granted ${rule}: ${authority(req)}${scope === 'path' ? ` path ${grant.rule.paths![0]}` : ''}${
      fields.expires_at ? ` until ${fields.expires_at}` : ''
    }${fields.max_uses !== null ? `, at most ${fields.max_uses} uses` : ''}`;
    const still = this.#pending.get(id);
    if (still) this.#settle(still, { kind: 'allow', approval: id }, 'approval.granted', fields, snapshot.digest, detail);
    // Others of the same tool the grant covers go ahead too (each re-decided, so each takes a use).
    for (const other of this.#sameTarget(req)) {
      if (scope === 'path' && other.req.path !== req.path) continue;
      this.#settle(
        other,
        { kind: 'allow', approval: other.view.id },
        'approval.granted',
        fields,
        snapshot.digest,
        `${detail} (by approval ${id})`,
      );
    }
    return { status: 200, body: { id, decision: 'allow', rule, grant: grant.rule, grants_sha256: snapshot.digest } };
  }

  /** Looks for a change of the store sluice did not make; a refusal is audited and handed to onRefused. */
  async checkStore(): Promise<void> {
    const refusal = await this.#store.check();
    if (!refusal) return;
    this.#opts.event({
      type: 'grants.refused',
      detail: `${refusal.message}; the grants in force stay (sluice rewrites the file on its next change)`,
      grants_sha256: this.#store.snapshot().digest,
      expected_sha256: refusal.found,
    });
    this.#opts.onRefused(refusal);
  }

  /** The client of a held request went away: nothing is left to answer, so it leaves the queue. */
  withdraw(id: string, why: string): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#settle(
      pending,
      { kind: 'withdrawn', approval: id, detail: why },
      'approval.expired',
      { decision: 'withdrawn', scope: null },
      undefined,
      why,
    );
  }

  /** Answers every held request with a timeout (shutdown). */
  close(): void {
    for (const pending of [...this.#pending.values()]) this.#expire(pending.view.id, 'sluice is shutting down');
  }

  #expire(id: string, why?: string): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    const detail =
      why ??
      `no supervisor decided within ask_timeout_ms (held until ${pending.view.expires_at}); approve it with POST /approvals/{id}, the /ui page or \`sluice approvals allow\`, or add a rule for tool ${pending.req.tool}`;
    this.#settle(
      pending,
      { kind: 'timeout', approval: id, detail },
      'approval.expired',
      { decision: 'timeout', scope: null },
      undefined,
      detail,
    );
  }

  #deny(pending: Pending, until: number): void {
    const detail = `a supervisor denied tool ${pending.req.tool} access to ${authority(pending.req)} (approval ${pending.view.id}); retries are refused until ${iso(until)}`;
    this.#settle(
      pending,
      { kind: 'deny', approval: pending.view.id, detail },
      'approval.denied',
      { decision: 'deny', scope: null },
      undefined,
      detail,
    );
  }

  #settle(
    pending: Pending,
    answer: SupervisorAnswer,
    type: 'approval.granted' | 'approval.denied' | 'approval.expired',
    fields: Pick<DecidedView, 'decision' | 'scope'> & Partial<Pick<DecidedView, 'rule' | 'expires_at' | 'max_uses'>>,
    grantsSha256?: string,
    detail?: string,
  ): void {
    const { view, req } = pending;
    if (!this.#pending.delete(view.id)) return;
    clearTimeout(pending.timer);
    const decided: DecidedView = {
      id: view.id,
      tool: view.tool,
      host: view.host,
      port: view.port,
      path: view.path,
      decision: fields.decision,
      scope: fields.scope,
      rule: fields.rule ?? null,
      expires_at: fields.expires_at ?? null,
      max_uses: fields.max_uses ?? null,
      decided_at: iso(this.#now()),
    };
    this.#recent.push(decided);
    if (this.#recent.length > RECENT) this.#recent.shift();
    this.#opts.metrics?.pending(req.tool, this.#count(req.tool));
    this.#opts.metrics?.decision(req.tool, fields.decision);
    this.#audit(type, req, view.id, {
      approval_decision: fields.decision,
      scope: fields.scope,
      rule: fields.rule ?? null,
      detail: detail ?? `${fields.decision} by a supervisor`,
      ...(grantsSha256 !== undefined ? { grants_sha256: grantsSha256 } : {}),
    });
    this.#emit({ type: type === 'approval.expired' ? 'expired' : 'decided', decision: decided });
    pending.resolve(answer);
  }

  #sameTarget(req: HeldRequest): Pending[] {
    return [...this.#pending.values()].filter((p) => p.req.tool === req.tool && p.req.host === req.host && p.req.port === req.port);
  }

  #count(tool: string): number {
    let n = 0;
    for (const p of this.#pending.values()) if (p.req.tool === tool) n++;
    return n;
  }

  #audit(type: AuditInput['type'], req: HeldRequest, id: string, extra: Partial<AuditInput>): void {
    this.#opts.event({
      type,
      request_id: req.requestId,
      tool: req.tool,
      method: req.method,
      scheme: req.scheme,
      host: req.host,
      port: req.port,
      path: req.path,
      approval: id,
      ...extra,
    });
  }

  #emit(e: ApprovalEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(e);
      } catch {
        // A stream that broke is dropped by its own close handler.
      }
    }
  }
}

/** The policy plus the grants; a grant that does not compile (a tool's rules moved on) is left out. */
function compileWithGrants(compiled: CompiledPolicy, digest: string, grants: readonly GrantDoc[]): CompiledPolicy {
  let usable = [...grants];
  for (;;) {
    try {
      return compilePolicy(compiled.doc, compiled.sha256, { sha256: digest, grants: usable });
    } catch (err) {
      const where = err instanceof PolicyCompileError ? /^grants\.([a-z0-9]+)/.exec(err.where)?.[1] : undefined;
      if (where === undefined) return compiled;
      usable = usable.filter((g) => g.id !== where);
    }
  }
}

function parseBody(body: unknown, req: HeldRequest): DecisionBody | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object with "decision"';
  const b = body as Record<string, unknown>;
  const known = new Set(['decision', 'ttl_s', 'max_uses', 'scope']);
  const extra = Object.keys(b).find((k) => !known.has(k));
  if (extra !== undefined) return `unknown field ${JSON.stringify(extra.slice(0, 40))}`;
  if (b.decision !== 'allow-once' && b.decision !== 'allow' && b.decision !== 'deny') {
    return '"decision" must be "allow-once", "allow" or "deny"';
  }
  const out: DecisionBody = { decision: b.decision };
  if (b.decision !== 'allow' && (b.ttl_s !== undefined || b.max_uses !== undefined || b.scope !== undefined)) {
    return '"ttl_s", "max_uses" and "scope" go with "decision": "allow" only';
  }
  if (b.ttl_s !== undefined) {
    if (!Number.isInteger(b.ttl_s) || (b.ttl_s as number) < 1 || (b.ttl_s as number) > MAX_TTL_S) {
      return `"ttl_s" must be a whole number of seconds from 1 to ${MAX_TTL_S}`;
    }
    out.ttl_s = b.ttl_s as number;
  }
  if (b.max_uses !== undefined) {
    if (!Number.isInteger(b.max_uses) || (b.max_uses as number) < 1 || (b.max_uses as number) > 1e9) {
      return '"max_uses" must be a whole number from 1';
    }
    out.max_uses = b.max_uses as number;
  }
  if (b.scope !== undefined) {
    if (b.scope !== 'host' && b.scope !== 'path') return '"scope" must be "host" or "path"';
    if (b.scope === 'path' && req.path === null) return 'a CONNECT has no path: use "scope": "host"';
    if (b.scope === 'path' && !normalizePath(req.path!).ok) return 'the held path cannot be normalized: use "scope": "host"';
    out.scope = b.scope;
  }
  return out;
}

/** The held path as a path rule: normalized, without the query, glob characters never widening it. */
function grantPath(raw: string): string {
  const normalized = normalizePath(raw);
  const path = normalized.ok ? normalized.path : '/';
  return path.replace(/\*/g, '%2A');
}

function denyKey(req: HeldRequest): string {
  return `${req.tool}\u0000${req.host}\u0000${req.port}`;
}

function authority(req: Pick<HeldRequest, 'host' | 'port'>): string {
  return `${hostForUrl(req.host)}:${req.port}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
