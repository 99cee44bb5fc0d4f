// The decision half of every HTTP request (plain, intercepted, upgrade): authenticate, parse the
// target, decide, vet the address. Nothing is sent upstream until this says yes.
import type { IncomingMessage } from 'node:http';
import type { CanonicalHost } from '../net/host.js';
import { decide } from '../policy/decide.js';
import type { DenyReason } from '../policy/reasons.js';
import type { Decision } from '../policy/types.js';
import type { Answer } from './answers.js';
import type { PolicyRuntime, ProxyDeps } from './context.js';
import { Exchange } from './exchange.js';
import { parseAbsoluteTarget, sameAuthority, type Target } from './target.js';
import { vetDestination } from './vet.js';

/** Where a request arrived: straight on the proxy port, or inside a tunnel sluice terminated. */
export interface RequestScope {
  runtime: PolicyRuntime;
  scheme: 'http' | 'https';
  /** set inside an intercepted tunnel: the tool authenticated on CONNECT and the CONNECT target */
  tunnel: { tool: string; target: Target } | null;
}

export type Admission =
  | { ok: true; ex: Exchange; tool: string; target: Target; decision: Decision; ip: string; upstreamPath: string }
  | { ok: false; ex: Exchange; answer: Answer; close: boolean };

export async function admitRequest(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage): Promise<Admission> {
  const ex = new Exchange(deps.observer, scope.scheme);
  ex.method = req.method ?? null;
  const refuse = (reason: DenyReason, detail: string, close = false): Admission => {
    const answer = ex.refusal(reason, detail);
    return { ok: false, ex, answer, close };
  };

  const halted = deps.halted();
  if (halted) return refuse('policy_halted', halted, true);

  let tool: string;
  if (scope.tunnel) {
    tool = scope.tunnel.tool;
  } else {
    const auth = scope.runtime.tokens.authenticate(req.headers['proxy-authorization']);
    if (!auth.ok) {
      return refuse('unauthenticated', `proxy authentication failed: ${auth.why}`);
    }
    tool = auth.tool;
  }
  ex.tool = tool;

  const parsed = scope.tunnel ? originFormTarget(req.url ?? '', scope.tunnel.target) : parseAbsoluteTarget(req.url ?? '');
  if (!parsed.ok) return refuse('bad_request', parsed.why, true);
  const target = parsed.target;
  ex.host = target.host.host;
  ex.port = target.port;
  ex.path = target.path;
  const hostHeader = req.headers.host;
  const defaultPort = scope.scheme === 'https' ? 443 : 80;
  if (hostHeader === undefined ? scope.tunnel !== null : !sameAuthority(hostHeader, target, defaultPort)) {
    return refuse(
      'bad_request',
      `the Host header (${(hostHeader ?? 'missing').slice(0, 100)}) does not name the request target ${target.authority}`,
      true,
    );
  }

  const decision = decide(scope.runtime.compiled, tool, {
    phase: 'request',
    scheme: scope.scheme,
    host: target.host.host,
    port: target.port,
    method: (req.method ?? 'GET').toUpperCase(),
    path: target.path,
  });
  ex.applyDecision(decision);
  if (decision.verdict === 'deny') return refuse(decision.reason ?? 'no_rule', decision.detail);

  const vetted = await vetDestination(scope.runtime, deps.self, target.host, target.port);
  if (!vetted.ok) return refuse(vetted.reason, vetted.detail);
  ex.ip = vetted.ip;
  return { ok: true, ex, tool, target, decision, ip: vetted.ip, upstreamPath: upstreamPath(target.path, decision) };
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
