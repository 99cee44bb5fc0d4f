// The one admission pipeline. Every way a tool asks sluice for something goes through admit(): an
// absolute-form request, a CONNECT, an Upgrade, and every request read inside a tunnel (intercepted
// TLS, or plain HTTP in a tunnel), each against the policy and the identity in force at that moment.
// The steps, in order (each refusal is settled on the exchange and answered by the caller):
//   halted → authenticate → parse target → framing → Host → decide → ask → uses → size → slot and rate → vet address
// ask (issue 17): a tool with on_violation: ask has a refusal decide could review held for a
// supervisor here, holding the tool's connection slot while it waits, on every transport alike.
// Nothing is sent upstream until this says yes. No transport writes its own copy of these steps.
import type { Duplex } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { CanonicalHost } from '../net/host.js';
import type { Limits } from '../config/types.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { allowedOnce, decide } from '../policy/decide.js';
import { OUTCOME, type Outcome } from '../policy/reasons.js';
import type { Decision, DecisionRequest } from '../policy/types.js';
import type { Answer } from './answers.js';
import type { AuthResult } from './auth.js';
import type { PolicyRuntime, ProxyDeps } from './context.js';
import { Exchange } from './exchange.js';
import { framingProblem } from './framing.js';
import { parseAbsoluteTarget, parseConnectTarget, sameAuthority, type Target } from './target.js';
import { vetDestination } from './vet.js';

/** What a transport read from the client: a request line and its headers. */
export interface Head {
  kind: 'request' | 'connect' | 'upgrade';
  method: string;
  url: string;
  httpVersion: string;
  rawHeaders: readonly string[];
  headers: IncomingHttpHeaders;
  /** the client's connection: a request held for a supervisor leaves the queue when it closes */
  client?: ClientConnection | undefined;
}

/** The client's socket, as admission watches it while a request is held. */
export type ClientConnection = Duplex;

/** at most this much of what a held CONNECT or Upgrade client sends early is kept; then it is not read further */
const HELD_READ_MAX = 64 * 1024;

/**
 * Calls `gone` when the client of a held request goes away; returns the unwatch. A request's socket
 * belongs to the HTTP server, which sees its close. A CONNECT's or an Upgrade's socket is off the
 * parser and nobody reads it while the request is held, so its FIN would go unseen: it is read
 * here, what arrives is kept (bounded) and given back, in order, when the hold ends.
 */
function watchClient(head: Head, gone: () => void): () => void {
  const client = head.client;
  if (!client) return NOTHING_HELD;
  if (client.destroyed) {
    gone();
    return NOTHING_HELD;
  }
  client.once('close', gone);
  if (head.kind === 'request') return () => void client.off('close', gone);
  const kept: Buffer[] = [];
  let size = 0;
  const keep = (chunk: Buffer): void => {
    kept.push(chunk);
    size += chunk.length;
    if (size >= HELD_READ_MAX) client.pause();
  };
  client.on('data', keep);
  client.once('end', gone);
  client.resume();
  return () => {
    client.off('close', gone);
    client.off('end', gone);
    client.off('data', keep);
    client.pause();
    if (size > 0) client.unshift(kept.length === 1 ? kept[0]! : Buffer.concat(kept));
  };
}

/** A tunnel sluice reads inside: whose CONNECT it was (re-authenticated on every request) and to where. */
export interface TunnelScope {
  /** the CONNECT's Proxy-Authorization, checked again against the policy in force for each request */
  credentials: string | undefined;
  target: Target;
  /** the tool the CONNECT's listener is bound to (--listen-tool), checked again for each request */
  boundTool?: string | undefined;
}

/** Where a head arrived: straight on the proxy port, or inside a tunnel. */
export interface RequestScope {
  scheme: 'http' | 'https';
  tunnel: TunnelScope | null;
  /** arrived on a listener bound to this tool (--listen-tool): that tool, without Proxy-Authorization */
  boundTool?: string | undefined;
}

export interface Admitted {
  ok: true;
  ex: Exchange;
  runtime: PolicyRuntime;
  tool: string;
  target: Target;
  decision: Decision;
  ip: string;
  /** the path sent upstream: the one the decision was made on */
  upstreamPath: string;
  /** gives back the slot (and the rule's slot) this admission took; call exactly once */
  release: () => void;
}

export interface Refused {
  ok: false;
  ex: Exchange;
  answer: Answer;
  /** the connection's later bytes cannot be trusted: close it after the answer */
  close: boolean;
}

export type Admission = Admitted | Refused;

const NOTHING_HELD = (): void => undefined;

export async function admit(deps: ProxyDeps, scope: RequestScope, head: Head): Promise<Admission> {
  const ex = new Exchange(deps.observer, scope.scheme);
  ex.method = head.method;
  ex.denyNote = deps.denyMessage ?? null;
  let release = NOTHING_HELD;
  const refuse = (code: Outcome, detail: string, close = false, retryAfterSeconds?: number): Refused => {
    release();
    return { ok: false, ex, answer: ex.answer(code, detail, retryAfterSeconds), close };
  };

  // 1. halted: a drifted pinned policy or a failed audit stops everything.
  const halted = deps.halted();
  if (halted) return refuse('policy_halted', halted, true);

  // 2. authenticate, against the tokens in force now (also for a tunnel opened under an older policy).
  const runtime = deps.current();
  const credentials = scope.tunnel ? scope.tunnel.credentials : head.headers['proxy-authorization'];
  const boundTool = scope.tunnel ? scope.tunnel.boundTool : scope.boundTool;
  const auth = identify(runtime, credentials, boundTool);
  ex.credentialsAbsent = credentials === undefined && boundTool === undefined;
  // What the next hop could read differently from sluice: found now, refused once the record can name who sent it.
  const framing = head.kind === 'connect' ? null : framingProblem(head);
  if (!auth.ok) return refuse('unauthenticated', `proxy authentication failed: ${auth.why}`, scope.tunnel !== null || framing !== null);
  const tool = auth.tool;
  ex.tool = tool;

  if (scope.tunnel) {
    ex.host = scope.tunnel.target.host.host;
    ex.port = scope.tunnel.target.port;
  }

  // 3. parse the target: authority-form for CONNECT, origin-form inside a tunnel, absolute-form otherwise.
  const parsed =
    head.kind === 'connect'
      ? parseConnectTarget(head.url)
      : scope.tunnel
        ? originFormTarget(head.url, scope.tunnel.target)
        : parseAbsoluteTarget(head.url);
  if (!parsed.ok) return refuse('bad_request', parsed.why, true);
  const target = parsed.target;
  ex.host = target.host.host;
  ex.port = target.port;
  if (head.kind !== 'connect') ex.path = target.path;

  // 4. framing: ambiguous framing, look-alike framing headers, h2c; the connection's later bytes are not trusted.
  if (framing) return refuse('bad_request', framing, true);

  // 5. Host: a request must name the target it is decided on, so the upstream reads the same one.
  if (head.kind !== 'connect') {
    const hostHeader = head.headers.host;
    const defaultPort = scope.scheme === 'https' ? 443 : 80;
    if (hostHeader === undefined ? scope.tunnel !== null : !sameAuthority(hostHeader, target, defaultPort)) {
      const named = (hostHeader ?? 'missing').slice(0, 100);
      return refuse('bad_request', `the Host header (${named}) does not name the request target ${target.authority}`, true);
    }
  }

  // 6. decide, against the policy with the grants in force, the clock and the use counts.
  const asked: DecisionRequest = {
    phase: head.kind === 'connect' ? 'connect' : 'request',
    host: target.host.host,
    port: target.port,
    method: head.kind === 'connect' ? 'CONNECT' : head.method.toUpperCase(),
    ...(head.kind === 'connect' ? {} : { path: target.path }),
  };
  const approvals = deps.approvals;
  const decideNow = (): Decision =>
    decide(approvals ? approvals.policyFor(runtime.compiled) : runtime.compiled, tool, {
      ...asked,
      now: Date.now(),
      ...(approvals ? { uses: approvals.uses } : {}),
    });
  let decision = decideNow();
  ex.decided(decision);

  // 6a. ask: held for a supervisor, holding the tool's slot (a tunnel's request rides on the tunnel's).
  let slotHeld = false;
  if (decision.verdict === 'deny' && approvals && asks(runtime.compiled, tool, decision)) {
    const toolLimits = runtime.compiled.tools.get(tool)!.limits;
    if (scope.tunnel === null) {
      const slot = await deps.limiter.acquire(tool, { ...toolLimits, requests_per_minute: 0 });
      if (!slot.ok) return refuse('rate_limited', slot.detail, false, slot.retryAfterSeconds);
      release = slot.release;
      slotHeld = true;
    }
    const answered = await askSupervisor(deps, approvals, ex, tool, target, asked, toolLimits, decideNow, runtime, head);
    if (!answered.ok) return refuse(answered.code, answered.detail, false, answered.retryAfterSeconds);
    decision = answered.decision;
    ex.decided(decision);
  }
  if (decision.verdict === 'deny') return refuse(decision.reason ?? 'no_rule', decision.detail);

  // 6b. uses: a rule with max_uses counts the requests (and passthrough tunnels) it allows; an
  // intercepted tunnel's requests are counted one by one instead. Lost a race for the last use: decide again.
  if (decision.uses && approvals && (asked.phase === 'request' || !decision.intercept)) {
    if (!(await approvals.take(decision.uses.key, decision.uses.max))) {
      decision = decideNow();
      ex.decided(decision);
      if (decision.verdict === 'deny') return refuse(decision.reason ?? 'no_rule', decision.detail);
    }
  }
  // How sluice saw it: what a rule written from the audit record must say (issue 16).
  if (scope.tunnel) ex.via = scope.scheme === 'https' ? 'intercept' : 'tunnel';
  else if (head.kind === 'connect') ex.via = decision.intercept ? 'intercept' : 'passthrough';
  const limits = decision.limits;

  // 7. size: a body declared larger than the limit is refused before it is read.
  const declared = head.headers['content-length'];
  if (declared !== undefined && Number(declared) > limits.max_request_bytes) {
    return refuse(
      'request_too_large',
      `the request body (${declared} bytes) exceeds the limit of ${limits.max_request_bytes} bytes for tool ${tool}`,
      true,
    );
  }

  // 8. slot and rate: a request inside a tunnel takes a rate token; the tunnel holds the slot.
  const toolCaps = runtime.compiled.tools.get(tool)?.limits ?? limits;
  // Inside a tunnel with no rate to count there is nothing to take (and no turn of the event loop to wait).
  // A request that was held already holds its slot.
  if ((scope.tunnel === null && !slotHeld) || toolCaps.requests_per_minute > 0) {
    const grant = await deps.limiter.acquire(tool, toolCaps, { slot: scope.tunnel === null && !slotHeld });
    if (!grant.ok) return refuse('rate_limited', grant.detail, false, grant.retryAfterSeconds);
    release = both(release, grant.release);
  }
  if (decision.ruleCaps && decision.rule) {
    const ruleGrant = await deps.limiter.acquire(`${tool}\u0000${decision.rule}`, decision.ruleCaps, { who: `rule ${decision.rule}` });
    if (!ruleGrant.ok) return refuse('rate_limited', ruleGrant.detail, false, ruleGrant.retryAfterSeconds);
    release = both(release, ruleGrant.release);
  }

  // 9. vet the address: resolve once, refuse internal ranges and sluice itself; only this IP is dialled.
  const vetted = await vetDestination(runtime, deps.self, target.host, target.port, limits.dns_timeout_ms);
  if (!vetted.ok) return refuse(vetted.reason, vetted.detail);
  ex.ip = vetted.ip;
  return { ok: true, ex, runtime, tool, target, decision, ip: vetted.ip, upstreamPath: upstreamPath(target.path, decision), release };
}

/** Whether a tool asks a supervisor about this refusal: on_violation: ask, and a refusal review could wave through. */
function asks(policy: CompiledPolicy, tool: string, decision: Decision): boolean {
  return policy.tools.get(tool)?.onViolation === 'ask' && decision.reason !== null && OUTCOME[decision.reason].reviewable;
}

type Asked = { ok: true; decision: Decision } | { ok: false; code: Outcome; detail: string; retryAfterSeconds?: number };

/** Holds the request until a supervisor answers (or ask_timeout_ms passes), then the decision it goes on with. */
async function askSupervisor(
  deps: ProxyDeps,
  approvals: NonNullable<ProxyDeps['approvals']>,
  ex: Exchange,
  tool: string,
  target: Target,
  asked: DecisionRequest,
  limits: Readonly<Limits>,
  decideNow: () => Decision,
  runtime: PolicyRuntime,
  head: Head,
): Promise<Asked> {
  const ticket = approvals.hold(
    {
      tool,
      method: asked.method,
      scheme: ex.scheme,
      host: target.host.host,
      port: target.port,
      path: asked.phase === 'request' ? target.path : null,
      requestId: ex.requestId,
    },
    limits,
  );
  if (!ticket.held) {
    return { ok: false, code: ticket.code, detail: ticket.detail, ...(ticket.code === 'approval_queue_full' ? { retryAfterSeconds: 5 } : {}) };
  }
  // A client that gives up (closes) while held takes its request off the supervisor's queue.
  const unwatch = watchClient(head, () =>
    approvals.withdraw(ticket.approval, 'withdrawn: the client closed its connection while the request was held'),
  );
  const answer = await ticket.answer;
  unwatch();
  // The proxy may have halted while the request waited: nothing goes out then.
  const halted = deps.halted();
  if (halted) return { ok: false, code: 'policy_halted', detail: halted };
  switch (answer.kind) {
    case 'timeout':
    case 'withdrawn':
      return { ok: false, code: 'approval_timeout', detail: answer.detail };
    case 'deny':
      return { ok: false, code: 'approval_denied', detail: answer.detail };
    case 'allow-once': {
      const once = allowedOnce(runtime.compiled, tool, asked, answer.approval);
      return once ? { ok: true, decision: once } : { ok: false, code: 'bad_request', detail: 'the request can no longer be decided' };
    }
    case 'allow':
      // The grant is in the store now: decided again like any request, so it takes its use like any other.
      return { ok: true, decision: decideNow() };
  }
}

/**
 * Who is asking: the tool its Basic credentials name, or on a listener bound to one tool
 * (--listen-tool, for clients such as the JDK that send no Basic on CONNECT) that tool, as long as
 * the policy in force defines it. Credentials sent there anyway must be that tool's. The one
 * authentication step: admission, the re-check of open tunnels at reload, and the records of
 * malformed input inside a tunnel all ask this.
 */
export function identify(runtime: PolicyRuntime, credentials: string | undefined, boundTool: string | undefined): AuthResult {
  if (boundTool === undefined) return runtime.tokens.authenticate(credentials);
  if (!runtime.compiled.tools.has(boundTool)) {
    return { ok: false, claimed: null, why: `this listener is bound to tool ${boundTool}, which the policy in force does not define` };
  }
  if (credentials === undefined) return { ok: true, tool: boundTool };
  const auth = runtime.tokens.authenticate(credentials);
  if (!auth.ok) return auth;
  if (auth.tool !== boundTool) {
    return {
      ok: false,
      claimed: auth.tool,
      why: `this listener is bound to tool ${boundTool}; credentials of tool ${auth.tool} are refused on it`,
    };
  }
  return auth;
}

/** The head of a request Node's parser read. */
export function headOf(
  kind: Head['kind'],
  req: {
    method?: string | undefined;
    url?: string | undefined;
    httpVersion: string;
    rawHeaders: string[];
    headers: IncomingHttpHeaders;
    socket?: ClientConnection | null;
  },
): Head {
  return {
    kind,
    method: req.method ?? 'GET',
    url: req.url ?? '',
    httpVersion: req.httpVersion,
    rawHeaders: req.rawHeaders,
    headers: req.headers,
    client: req.socket ?? undefined,
  };
}

function both(a: () => void, b: () => void): () => void {
  return () => {
    a();
    b();
  };
}

/** The path sent upstream is the one the decision was made on, so upstream can not read it otherwise. */
function upstreamPath(raw: string, decision: Decision): string {
  if (decision.path === null) return raw;
  const q = raw.indexOf('?');
  return q < 0 ? decision.path : decision.path + raw.slice(q);
}

function originFormTarget(url: string, tunnelTarget: Target): { ok: true; target: Target } | { ok: false; why: string } {
  if (!url.startsWith('/')) return { ok: false, why: 'requests inside a tunnel must use origin-form (/path)' };
  if (url.includes('#')) return { ok: false, why: 'a fragment (#) is not allowed in a request target' };
  return { ok: true, target: { ...tunnelTarget, path: url } };
}

export function servernameOf(host: CanonicalHost): string | null {
  return host.kind === 'name' ? host.host : null;
}
