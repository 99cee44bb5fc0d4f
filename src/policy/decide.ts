// The policy decision: values in, one immutable Decision out. No sockets, DNS, clock or files.
//
// Checks run in a fixed order so the reason is the most useful one: which rules of the tool name
// the host (none → no_rule), which of those allow the port (none → port_not_allowed); a CONNECT
// stops there. A request then filters by method (method_not_allowed) and by path
// (path_not_allowed). issue 22: a wildcard rule that judges hostname labels drops out for a host whose
// labels read as encoded data (none left → encoded_hostname, on the CONNECT line too). The first rule in file order that satisfies every constraint is the rule.
import type { Limits } from '../config/types.js';
import { canonicalHost, hostForUrl, type CanonicalHost } from '../net/host.js';
import { OUTCOME, type DenyReason } from './reasons.js';
import type { Decision, DecisionRequest } from './types.js';
import { isPort, labelFinding, type CompiledPolicy, type CompiledRule, type CompiledTool, type Route } from './compile.js';
import { detail } from './detail.js';
import { patternMatchesHost } from '../match/host-match.js';
import { normalizePath, type NormalizedPath } from '../match/path.js';

const NO_SECRETS: readonly string[] = Object.freeze([]);

export interface ConsideredRule {
  rule: string;
  matched: boolean;
  why: string;
}

/** What the tool may do with this request. Never throws. */
export function decide(policy: CompiledPolicy, tool: string, req: DecisionRequest): Decision {
  const compiled = policy.tools.get(tool);
  if (!compiled) {
    return freeze({
      ...refusedBase(req, tool, policy.limits),
      reason: 'unauthenticated',
      detail: detail.unknownTool(tool),
    });
  }
  if (!isPort(req.port)) {
    return freeze({ ...refusedBase(req, compiled.name, compiled.limits), reason: 'bad_request', detail: detail.badPort(req.port) });
  }
  const route = compiled.route(req.host, req.port);
  if (!route.host) {
    return freeze({ ...refusedBase(req, compiled.name, compiled.limits), reason: 'bad_request', detail: detail.badHost(req.host) });
  }
  return decideForRoute(policy, compiled, live(compiled, route as ValidRoute, req), req);
}

/** issue 17: the route without the rules that expired or are used up (only a tool with such rules pays for this). */
function live(tool: CompiledTool, route: ValidRoute, req: DecisionRequest): ValidRoute {
  if (!tool.bounded) return route;
  const alive = (rule: CompiledRule): boolean => ruleLive(rule, req) === null;
  return { ...route, byHost: route.byHost.filter(alive), byPort: route.byPort.filter(alive) };
}

/** Null while the rule may match; else why not (expired, used up). */
function ruleLive(rule: CompiledRule, req: DecisionRequest): string | null {
  if (rule.expiresAt !== null && req.now !== undefined && req.now >= rule.expiresAt) {
    return `the rule expired at ${new Date(rule.expiresAt).toISOString()}`;
  }
  if (rule.maxUses !== null && (req.uses?.(rule.usesKey) ?? 0) >= rule.maxUses) return `the rule is used up (max_uses ${rule.maxUses})`;
  return null;
}

/** The decision plus, for each rule of the tool in file order, whether it matched and why not. */
export function explain(policy: CompiledPolicy, tool: string, req: DecisionRequest): { decision: Decision; considered: ConsideredRule[] } {
  const decision = decide(policy, tool, req);
  const compiled = policy.tools.get(tool);
  const host = canonicalHost(req.host);
  if (!compiled || !host || !isPort(req.port)) return { decision, considered: [] };
  const path = req.phase === 'request' ? normalizePath(req.path ?? '/') : null;
  const considered = compiled.rules.map((rule) => ({ rule: rule.id, ...consider(rule, host, req, path) }));
  return { decision, considered };
}

type ValidRoute = Route & { host: CanonicalHost };

function decideForRoute(policy: CompiledPolicy, tool: CompiledTool, route: ValidRoute, req: DecisionRequest): Decision {
  const host = route.host.host;
  const { port } = req;
  const refuse = (reason: DenyReason, sentence: string, path: string | null = null): Decision =>
    violation(policy, tool, route, req, reason, sentence, path);

  if (route.byHost.length === 0) return refuse('no_rule', detail.noRule(tool.name, host));
  if (route.byPort.length === 0) {
    const allowed = [...new Set(route.byHost.flatMap((rule) => rule.ports))].sort((a, b) => a - b);
    return refuse('port_not_allowed', detail.portNotAllowed(tool.name, host, port, allowed));
  }
  // issue 22: judged on every transport alike, since every one asks here (the CONNECT host, a request's host).
  const byPort = route.encoded.size === 0 ? route.byPort : route.byPort.filter((rule) => !route.encoded.has(rule));
  if (byPort.length === 0) {
    const [rule, finding] = route.encoded.entries().next().value!;
    return refuse('encoded_hostname', detail.encodedHostname(tool.name, host, rule.id, rule.host.text, finding));
  }

  if (req.phase === 'connect') {
    const rule = byPort[0]!;
    const intercept = mustIntercept(byPort, route);
    return allow(tool, route, req, rule, null, intercept, detail.tunnelAllowed(tool.name, host, port, rule.id, intercept));
  }

  const byMethod = byPort.filter((rule) => methodAllowed(rule, req.method));
  if (byMethod.length === 0) {
    const allowed = [...new Set(byPort.flatMap((rule) => rule.methods ?? []))];
    return refuse('method_not_allowed', detail.methodNotAllowed(tool.name, host, port, req.method, allowed));
  }

  const path = normalizePath(req.path ?? '/');
  const matchedPath = path.ok ? path.path : null;
  const rule = byMethod.find((candidate) => pathAllowed(candidate, path));
  if (!rule) {
    const sentence = path.ok
      ? detail.pathNotAllowed(tool.name, host, port, req.method, path.path, patternsOf(byMethod))
      : detail.pathUncheckable(tool.name, host, port, path.why);
    return refuse('path_not_allowed', sentence, matchedPath);
  }
  return allow(tool, route, req, rule, matchedPath, false, detail.requestAllowed(tool.name, host, port, req.method, matchedPath, rule.id));
}

function methodAllowed(rule: CompiledRule, method: string): boolean {
  return rule.methods === null || rule.methods.includes(method);
}

/** A rule without paths allows any path, even one that cannot be normalized: it never looks. */
function pathAllowed(rule: CompiledRule, path: NormalizedPath): boolean {
  if (rule.paths === null) return true;
  return path.ok && rule.paths.some((glob) => glob.regex.test(path.path));
}

function patternsOf(rules: readonly CompiledRule[]): string[] {
  return [...new Set(rules.flatMap((rule) => rule.paths?.map((glob) => glob.pattern) ?? []))];
}

/**
 * A tunnel must be opened up when a rule it relies on checks methods, paths or a digest, or when a
 * secret applies to the host: a granted one is swapped inside, and any secret's value may come
 * back from its hosts, whoever asks, so the responses must be read to be scrubbed. The scheme the client claims does not matter: a tunnel is
 * opaque either way, and intercepting one that does not carry TLS fails closed.
 */
function mustIntercept(rules: readonly CompiledRule[], route: Route): boolean {
  return route.secrets.length > 0 || route.secretHost || rules.some((rule) => rule.inspects);
}

function allow(
  tool: CompiledTool,
  route: ValidRoute,
  req: DecisionRequest,
  rule: CompiledRule,
  path: string | null,
  intercept: boolean,
  sentence: string,
): Decision {
  return freeze({
    verdict: 'allow',
    reason: null,
    detail: sentence,
    tool: tool.name,
    rule: rule.id,
    host: route.host.host,
    port: req.port,
    intercept,
    limits: rule.limits,
    sha256: rule.sha256,
    ruleCaps: rule.caps,
    path,
    secrets: route.secrets,
    uses: rule.maxUses === null ? null : { key: rule.usesKey, max: rule.maxUses },
  });
}

function violation(
  policy: CompiledPolicy,
  tool: CompiledTool,
  route: ValidRoute,
  req: DecisionRequest,
  reason: DenyReason,
  sentence: string,
  path: string | null,
): Decision {
  // issue 16: the tool's own review window or the policy's; issue 17: an ask tool is never reviewed (its tool mode is not null).
  const mode = reviewMode(policy, tool, req.now);
  const review = mode.review && OUTCOME[reason].reviewable;
  return freeze({
    verdict: review ? 'review' : 'deny',
    reason,
    detail: mode.describe(sentence),
    tool: tool.name,
    rule: null,
    host: route.host.host,
    port: req.port,
    // A reviewed tunnel still needs opening up if a secret is to be swapped inside it.
    intercept: review && req.phase === 'connect' && mustIntercept([], route),
    limits: tool.limits,
    sha256: null,
    ruleCaps: null,
    path,
    secrets: route.secrets,
    uses: null,
  });
}

/**
 * issue 17: a supervisor allowed this one request (allow-once) that no rule allows: an allow without
 * a rule, with the tool's limits. Null when the request could not have been decided (unknown tool, bad host or port).
 */
export function allowedOnce(policy: CompiledPolicy, toolName: string, req: DecisionRequest, approval: string): Decision | null {
  const tool = policy.tools.get(toolName);
  if (!tool || !isPort(req.port)) return null;
  const route = tool.route(req.host, req.port);
  if (!route.host) return null;
  const path = req.phase === 'request' ? normalizePath(req.path ?? '/') : null;
  return freeze({
    verdict: 'allow',
    reason: null,
    detail: `a supervisor allowed this request of tool ${tool.name} once (approval ${approval})`,
    tool: tool.name,
    rule: `${tool.name}.approval[${approval}]`,
    host: route.host.host,
    port: req.port,
    intercept: req.phase === 'connect' && mustIntercept([], route),
    limits: tool.limits,
    sha256: null,
    ruleCaps: null,
    path: path?.ok ? path.path : null,
    secrets: route.secrets,
    uses: null,
  });
}

/**
 * issue 16: whether a violation of this tool is let through and recorded, and the sentence it gets.
 * A tool's own on_violation wins over the policy's; its review lasts while now < review_until, and
 * past it (or with no time given) the tool blocks and the refusal says the review ended.
 */
function reviewMode(policy: CompiledPolicy, tool: CompiledTool, now: number | undefined): { review: boolean; describe: (s: string) => string } {
  if (tool.onViolation === 'review') {
    const until = tool.reviewUntil;
    if (until === null || (now !== undefined && now < until)) {
      return { review: true, describe: (s) => detail.toolReview(tool.name, until === null ? null : new Date(until).toISOString(), s) };
    }
    return { review: false, describe: (s) => detail.reviewEnded(tool.name, new Date(until).toISOString(), s) };
  }
  if (tool.onViolation === null && policy.doc.on_violation === 'review') return { review: true, describe: detail.review };
  return { review: false, describe: (s) => s };
}

/** The fields of a refusal made before any rule could be looked at. */
function refusedBase(req: DecisionRequest, tool: string, limits: Readonly<Limits>) {
  return {
    verdict: 'deny' as const,
    tool,
    rule: null,
    // Canonical when possible; otherwise what the client sent, bounded, for the audit record.
    host: canonicalHost(req.host)?.host ?? req.host.slice(0, 255),
    port: req.port,
    intercept: false,
    limits,
    sha256: null,
    ruleCaps: null,
    path: null,
    secrets: NO_SECRETS,
    uses: null,
  };
}

function freeze(decision: Decision): Decision {
  return Object.freeze(decision);
}

function consider(
  rule: CompiledRule,
  host: CanonicalHost,
  req: DecisionRequest,
  path: NormalizedPath | null,
): { matched: boolean; why: string } {
  const dead = ruleLive(rule, req);
  if (dead !== null) return { matched: false, why: dead };
  if (!patternMatchesHost(rule.host, host)) {
    return { matched: false, why: `host ${hostForUrl(host.host)} does not match "${rule.host.text}"` };
  }
  if (!rule.ports.includes(req.port)) {
    return { matched: false, why: `port ${req.port} is not among the allowed ports ${rule.ports.join(', ')}` };
  }
  const encoded = labelFinding(rule, host);
  if (encoded) return { matched: false, why: detail.labelWhy(encoded) };
  if (path === null) {
    const why = rule.mcp
      ? 'host and port match; an mcp: rule intercepts TLS and checks the JSON-RPC calls of each request'
      : rule.git
        ? 'host and port match; methods, paths and git pushes (git:) are checked on each request after TLS interception'
        : rule.inspects
          ? 'host and port match; methods, paths and digest are checked on each request after TLS interception'
          : 'host and port match';
    return { matched: true, why };
  }
  if (!methodAllowed(rule, req.method)) {
    return { matched: false, why: `method ${JSON.stringify(req.method)} is not among ${rule.methods!.join(', ')}` };
  }
  if (!pathAllowed(rule, path)) {
    const patterns = rule.paths!.map((glob) => glob.pattern).join(', ');
    const why = path.ok ? `path ${JSON.stringify(path.path)} matches none of ${patterns}` : `the path cannot be checked: ${path.why}`;
    return { matched: false, why };
  }
  const pinned = rule.sha256 === null ? '' : '; the body must match the pinned sha256';
  const git = rule.git === null ? '' : '; a push is checked ref by ref against git:';
  const mcp = rule.mcp === null ? '' : `; MCP calls are checked (tools: ${rule.mcp.tools.patterns.join(', ') || 'none'})`;
  return { matched: true, why: `host, port, method and path match${pinned}${git}${mcp}` };
}
