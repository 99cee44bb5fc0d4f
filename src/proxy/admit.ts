// The one admission pipeline. Every way a tool asks sluice for something goes through admit(): an
// absolute-form request, a CONNECT, an Upgrade, and every request read inside a tunnel (intercepted
// TLS, or plain HTTP in a tunnel), each against the policy and the identity in force at that moment.
// The steps, in order (each refusal is settled on the exchange and answered by the caller):
//   halted → authenticate → parse target → framing → Host → decide → size → slot and rate → vet address
// Nothing is sent upstream until this says yes. No transport writes its own copy of these steps.
import type { IncomingHttpHeaders } from 'node:http';
import type { CanonicalHost } from '../net/host.js';
import { decide } from '../policy/decide.js';
import type { Outcome } from '../policy/reasons.js';
import type { Decision } from '../policy/types.js';
import type { Answer } from './answers.js';
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
}

/** A tunnel sluice reads inside: whose CONNECT it was (re-authenticated on every request) and to where. */
export interface TunnelScope {
  /** the CONNECT's Proxy-Authorization, checked again against the policy in force for each request */
  credentials: string | undefined;
  target: Target;
}

/** Where a head arrived: straight on the proxy port, or inside a tunnel. */
export interface RequestScope {
  scheme: 'http' | 'https';
  tunnel: TunnelScope | null;
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
  const auth = runtime.tokens.authenticate(credentials);
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

  // 6. decide.
  const decision = decide(runtime.compiled, tool, {
    phase: head.kind === 'connect' ? 'connect' : 'request',
    host: target.host.host,
    port: target.port,
    method: head.kind === 'connect' ? 'CONNECT' : head.method.toUpperCase(),
    ...(head.kind === 'connect' ? {} : { path: target.path }),
    now: Date.now(),
  });
  ex.decided(decision);
  if (decision.verdict === 'deny') return refuse(decision.reason ?? 'no_rule', decision.detail);
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
  if (scope.tunnel === null || toolCaps.requests_per_minute > 0) {
    const grant = await deps.limiter.acquire(tool, toolCaps, { slot: scope.tunnel === null });
    if (!grant.ok) return refuse('rate_limited', grant.detail, false, grant.retryAfterSeconds);
    release = grant.release;
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

/** The head of a request Node's parser read. */
export function headOf(
  kind: Head['kind'],
  req: { method?: string | undefined; url?: string | undefined; httpVersion: string; rawHeaders: string[]; headers: IncomingHttpHeaders },
): Head {
  return {
    kind,
    method: req.method ?? 'GET',
    url: req.url ?? '',
    httpVersion: req.httpVersion,
    rawHeaders: req.rawHeaders,
    headers: req.headers,
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
