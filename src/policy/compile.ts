// PolicyDoc → CompiledPolicy, once per load. Everything the hot path needs is precomputed here:
// canonical host patterns indexed by exact host and by wildcard suffix, allowed ports per rule,
// path globs as RegExp, merged limits. A CompiledPolicy is immutable and replaced on reload; its
// only mutable part is the per-tool route memo, which dies with it.
import { createHash } from 'node:crypto';
import { growingLru } from '../net/lru.js';
import { canonicalHost, type CanonicalHost } from '../net/host.js';
import { DEFAULT_LIMITS, type Limits, type PolicyDoc, type RuleDoc, type SecretDoc, type ToolDoc } from '../config/types.js';
import { compileHostPattern, patternCovers, type HostPattern } from '../match/host-match.js';
import { compilePathGlob, type PathGlob } from '../match/path.js';
import { compileMcp, type CompiledMcp } from '../mcp/names.js';
import { compileGitRule, type CompiledGitRule } from '../git/rules.js';
import { parseReviewUntil } from '../config/review.js';
import { DEFAULT_LABEL_CHECK, encodedLabel, type LabelCheck, type LabelFinding } from './labels.js';

/** A policy that does not compile is invalid: the loader reports this like a schema error. */
export class PolicyCompileError extends Error {
  override readonly name = 'PolicyCompileError';
  /** where in the policy, e.g. "tools.web-fetch.allow[2].host" */
  readonly where: string;
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.where = where;
  }
}

export interface CompiledRule {
  /** "web-fetch.allow[2]" */
  readonly id: string;
  /** position in the tool's allow list: the first satisfied rule (file order) wins */
  readonly index: number;
  readonly host: HostPattern;
  /** the port named in the host, else the rule's ports, else network.allow_ports */
  readonly ports: readonly number[];
  /** upper case; null = any method */
  readonly methods: readonly string[] | null;
  /** null = any path */
  readonly paths: readonly PathGlob[] | null;
  readonly sha256: string | null;
  /** policy, then tool, then rule limits */
  readonly limits: Readonly<Limits>;
  /** methods, paths or a digest: sluice has to see inside HTTPS to enforce this rule */
  readonly inspects: boolean;
  /** the rule's own concurrency and rate caps, counted per (tool, rule) on top of the tool's; null = none */
  readonly caps: RuleCaps | null;
  /** MCP-aware rule (issue 18): the JSON-RPC calls it allows; null = not an MCP rule */
  readonly mcp: CompiledMcp | null;
  /** issue 21: git push rules, read by the content seam (src/proxy/inspect.ts); null = none */
  readonly git: CompiledGitRule | null;
  // issue 17: a rule may stop matching at a time or after a number of uses
  /** epoch ms after which the rule no longer matches; null = never */
  readonly expiresAt: number | null;
  /** allowed requests after which the rule no longer matches; null = no count */
  readonly maxUses: number | null;
  /** the key its use count is kept under: a grant's id, or the rule's id and a digest of its text */
  readonly usesKey: string;
  /** the grant this rule came from (an approval); null for a policy rule */
  readonly grant: string | null;
  /** issue 22: a wildcard rule judges the labels it matched for encoded data; null = not judged */
  readonly labels: LabelCheck | null;
}

/** issue 17: a grant an approval wrote: one more rule for one tool, kept outside the policy files. */
export interface GrantDoc {
  /** short id; the rule's id is "<tool>.grant[<id>]" */
  id: string;
  tool: string;
  rule: RuleDoc;
}

/** Caps a rule declares for itself; a field it leaves out is not capped at the rule level. */
export interface RuleCaps {
  readonly max_connections_per_tool: number;
  readonly requests_per_minute: number;
}

/** What one tool may reach at one (host, port), as far as host and port decide it. */
export interface Route {
  /** null when the request host is not a valid host (the request is a bad_request) */
  readonly host: CanonicalHost | null;
  /** rules whose host pattern matches, file order */
  readonly byHost: readonly CompiledRule[];
  /** of those, the rules that allow the port */
  readonly byPort: readonly CompiledRule[];
  /** granted aliases whose secret hosts cover (host, port), in grant order */
  readonly secrets: readonly string[];
  /**
   * Some secret (granted to this tool or not) covers (host, port): a value may have been planted
   * there, so what comes back must be read to be scrubbed, whoever asks.
   */
  readonly secretHost: boolean;
  /** issue 22: rules of byPort that refuse this host's labels as encoded data, with what they found */
  readonly encoded: ReadonlyMap<CompiledRule, LabelFinding>;
}

const ROUTE_MEMO_SIZE = 4096;
const NO_RULES: readonly CompiledRule[] = Object.freeze([]);
const NO_SECRETS: readonly string[] = Object.freeze([]);
const NO_FINDINGS: ReadonlyMap<CompiledRule, LabelFinding> = new Map();
const INVALID_ROUTE: Route = Object.freeze({
  host: null,
  byHost: NO_RULES,
  byPort: NO_RULES,
  secrets: NO_SECRETS,
  secretHost: false,
  encoded: NO_FINDINGS,
});

export class CompiledTool {
  readonly name: string;
  readonly token_sha256: string | null;
  readonly token_env: string | null;
  readonly protected: boolean;
  /** aliases this tool may use, as declared */
  readonly secrets: readonly string[];
  readonly rules: readonly CompiledRule[];
  /** rule id → rule, for the steps that act on the rule a decision names (MCP inspection) */
  readonly byId: ReadonlyMap<string, CompiledRule>;
  /** policy, then tool limits: what applies when no rule does */
  readonly limits: Readonly<Limits>;
  /** issue 16: the tool's own on_violation (null: the policy's), and when its review ends (ms; null: never); issue 17: "ask" holds a refusal for a supervisor */
  readonly onViolation: 'block' | 'review' | 'ask' | null;
  readonly reviewUntil: number | null;
  /** issue 17: some rule has expires_at or max_uses: decide checks liveness (skipped otherwise, the hot path) */
  readonly bounded: boolean;

  readonly #exact = new Map<string, CompiledRule[]>();
  readonly #subdomains = new Map<string, CompiledRule[]>();
  readonly #any: CompiledRule[] = [];
  readonly #secretPatterns: ReadonlyArray<readonly [alias: string, hosts: readonly HostPattern[]]>;
  /** the hosts of every secret in the policy, granted or not */
  readonly #anySecretHosts: readonly HostPattern[];
  // Keyed on the host as the client wrote it, so a hit skips canonicalization too. Per tool, so
  // one tool churning hosts only evicts its own entries.
  readonly #routes = growingLru<string, Route>(ROUTE_MEMO_SIZE);

  constructor(
    name: string,
    doc: ToolDoc,
    policy: PolicyDoc,
    secretPatterns: ReadonlyMap<string, readonly HostPattern[]>,
    grants: readonly GrantDoc[] = [],
  ) {
    this.name = name;
    this.token_sha256 = doc.token_sha256 ?? null;
    this.token_env = doc.token_env ?? null;
    this.protected = doc.protected ?? false;
    this.secrets = Object.freeze([...doc.secrets]);
    this.limits = mergeLimits(policy.limits, doc.limits);
    this.onViolation = doc.on_violation ?? null;
    // An unreadable time (the loader refuses it) counts as already past: the review fails closed.
    this.reviewUntil = doc.review_until === undefined ? null : (parseReviewUntil(doc.review_until) ?? 0);
    this.#secretPatterns = doc.secrets.map((alias) => {
      const hosts = secretPatterns.get(alias);
      if (!hosts) throw new PolicyCompileError(`tools.${name}.secrets`, `secret "${alias}" is not defined under secrets`);
      return [alias, hosts] as const;
    });
    this.#anySecretHosts = [...secretPatterns.values()].flat();
    this.rules = Object.freeze([
      ...doc.allow.map((rule, index) => compileRule(name, index, rule, this.limits, policy)),
      ...grants.map((grant, i) => compileRule(name, doc.allow.length + i, grant.rule, this.limits, policy, grant.id)),
    ]);
    this.byId = new Map(this.rules.map((rule) => [rule.id, rule]));
    this.bounded = this.rules.some((rule) => rule.expiresAt !== null || rule.maxUses !== null);
    for (const rule of this.rules) {
      const { host } = rule;
      if (host.kind === 'any') this.#any.push(rule);
      else if (host.kind === 'exact') appendTo(this.#exact, host.host, rule);
      else appendTo(this.#subdomains, host.suffix, rule);
    }
  }

  /** Rules whose host pattern matches a canonical host, file order. */
  rulesForHost(host: CanonicalHost): readonly CompiledRule[] {
    const found: CompiledRule[] = [...(this.#exact.get(host.host) ?? []), ...this.#any];
    if (host.kind === 'name') {
      // Walk the parent suffixes: "a.b.example.com" looks up "b.example.com", "example.com", "com".
      for (let dot = host.host.indexOf('.'); dot !== -1; dot = host.host.indexOf('.', dot + 1)) {
        found.push(...(this.#subdomains.get(host.host.slice(dot + 1)) ?? []));
      }
    }
    return found.sort((a, b) => a.index - b.index);
  }

  /** Host and port facts for a raw request host (memoized); port must be a valid TCP port. */
  route(rawHost: string, port: number): Route {
    const key = `${port}|${rawHost}`;
    const known = this.#routes.get(key);
    if (known) return known;
    const route = this.#computeRoute(rawHost, port);
    this.#routes.set(key, route);
    return route;
  }

  #computeRoute(rawHost: string, port: number): Route {
    const host = canonicalHost(rawHost);
    if (!host) return INVALID_ROUTE;
    const byHost = Object.freeze(this.rulesForHost(host));
    const byPort = Object.freeze(byHost.filter((rule) => rule.ports.includes(port)));
    const secrets = Object.freeze(
      this.#secretPatterns.filter(([, hosts]) => hosts.some((pattern) => patternCovers(pattern, host, port))).map(([alias]) => alias),
    );
    const secretHost = this.#anySecretHosts.some((pattern) => patternCovers(pattern, host, port));
    // Judged once per (host, port) here, in the memo, not on every request.
    const encoded = new Map<CompiledRule, LabelFinding>();
    for (const rule of byPort) {
      const finding = labelFinding(rule, host);
      if (finding) encoded.set(rule, finding);
    }
    return Object.freeze({ host, byHost, byPort, secrets, secretHost, encoded: encoded.size === 0 ? NO_FINDINGS : encoded });
  }
}

export class CompiledPolicy {
  readonly doc: PolicyDoc;
  readonly sha256: string;
  readonly tools: ReadonlyMap<string, CompiledTool>;
  /** every defined secret, alias → declaration (values are resolved elsewhere) */
  readonly secrets: ReadonlyMap<string, SecretDoc>;
  /** policy-level limits with defaults */
  readonly limits: Readonly<Limits>;

  /** the digest of the grants compiled in (issue 17); null when none were given */
  readonly grantsSha256: string | null;

  constructor(doc: PolicyDoc, sha256: string, grants: { sha256: string; grants: readonly GrantDoc[] } | null = null) {
    this.grantsSha256 = grants?.sha256 ?? null;
    this.doc = doc;
    this.sha256 = sha256;
    this.limits = mergeLimits(doc.limits, undefined);
    this.secrets = new Map(Object.entries(doc.secrets));
    const secretPatterns = new Map<string, readonly HostPattern[]>();
    for (const [alias, secret] of this.secrets) {
      secretPatterns.set(
        alias,
        secret.hosts.map((text, i) => {
          const pattern = compileHostPattern(text);
          if (!pattern) throw new PolicyCompileError(`secrets.${alias}.hosts[${i}]`, `"${text}" is not a host pattern`);
          return pattern;
        }),
      );
    }
    // A grant for a tool the policy no longer has is never compiled: it cannot be used.
    const byTool = new Map<string, GrantDoc[]>();
    for (const grant of grants?.grants ?? []) appendTo(byTool, grant.tool, grant);
    this.tools = new Map(
      Object.entries(doc.tools).map(([name, tool]) => [name, new CompiledTool(name, tool, doc, secretPatterns, byTool.get(name))]),
    );
  }

  /**
   * Aliases granted to tool whose secret hosts cover (host, port); host as the client wrote it.
   * Empty for an unknown tool or an invalid host.
   */
  secretsFor(tool: string, host: string, port: number): readonly string[] {
    const compiled = this.tools.get(tool);
    if (!compiled || !isPort(port)) return NO_SECRETS;
    return compiled.route(host, port).secrets;
  }
}

export function compilePolicy(
  doc: PolicyDoc,
  sha256: string,
  grants: { sha256: string; grants: readonly GrantDoc[] } | null = null,
): CompiledPolicy {
  return new CompiledPolicy(doc, sha256, grants);
}

export function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

function compileRule(tool: string, index: number, doc: RuleDoc, toolLimits: Limits, policy: PolicyDoc, grant?: string): CompiledRule {
  const id = grant === undefined ? `${tool}.allow[${index}]` : `${tool}.grant[${grant}]`;
  const where = grant === undefined ? `tools.${tool}.allow[${index}]` : `grants.${grant}`;
  const host = compileHostPattern(doc.host);
  if (!host)
    throw new PolicyCompileError(
      `${where}.host`,
      `"${doc.host}" is not a host name, "*.domain", IP literal or "[IPv6]", with an optional ":port"`,
    );
  const ports = host.port !== null ? [host.port] : (doc.ports ?? policy.network.allow_ports);
  for (const port of ports) {
    if (!isPort(port)) throw new PolicyCompileError(`${where}.ports`, `${port} is not a TCP port`);
  }
  const paths =
    doc.paths?.map((pattern, i) => {
      try {
        return compilePathGlob(pattern);
      } catch (error) {
        throw new PolicyCompileError(`${where}.paths[${i}]`, (error as Error).message);
      }
    }) ?? null;
  const methods = doc.methods?.map((method) => method.toUpperCase()) ?? null;
  let git: CompiledGitRule | null = null;
  if (doc.git) {
    try {
      git = compileGitRule(doc.git);
    } catch (error) {
      throw new PolicyCompileError(`${where}.git.push.refs`, (error as Error).message);
    }
  }
  return Object.freeze({
    id,
    index,
    host,
    ports: Object.freeze([...ports]),
    methods: methods && Object.freeze(methods),
    paths: paths && Object.freeze(paths),
    sha256: doc.sha256 ?? null,
    limits: mergeLimits(toolLimits, doc.limits),
    // An MCP rule reads the JSON-RPC inside the requests, and a git rule reads pushes: both need the tunnel opened up.
    inspects: methods !== null || paths !== null || doc.sha256 !== undefined || git !== null || doc.mcp !== undefined,
    caps: ruleCaps(doc.limits),
    git,
    mcp: doc.mcp ? compileMcp(doc.mcp) : null,
    expiresAt: doc.expires_at === undefined ? null : Date.parse(doc.expires_at),
    maxUses: doc.max_uses ?? null,
    // A policy rule's count follows its text, not its place: an edit or a move starts a new count.
    usesKey:
      grant === undefined ? `rule:${tool}:${createHash('sha256').update(JSON.stringify(doc)).digest('hex').slice(0, 16)}` : `grant:${grant}`,
    grant: grant ?? null,
    labels: labelCheck(host, doc, policy),
  });
}

/** issue 22: a wildcard rule's label thresholds, on by default in strict mode; exact hosts are never judged. */
function labelCheck(host: HostPattern, doc: RuleDoc, policy: PolicyDoc): LabelCheck | null {
  if (host.kind === 'exact' || !(doc.hostname_labels?.check ?? policy.strict)) return null;
  const own = doc.hostname_labels ?? {};
  return Object.freeze({
    minLength: own.min_length ?? DEFAULT_LABEL_CHECK.minLength,
    minEntropy: own.min_entropy ?? DEFAULT_LABEL_CHECK.minEntropy,
    maxVowelShare: own.max_vowel_share ?? DEFAULT_LABEL_CHECK.maxVowelShare,
  });
}

/** What a rule's label check finds in a host it matched; IP literals have no labels to judge. */
export function labelFinding(rule: CompiledRule, host: CanonicalHost): LabelFinding | null {
  if (rule.labels === null || host.kind !== 'name') return null;
  return encodedLabel(host.host, rule.host.kind === 'subdomains' ? rule.host.suffix : null, rule.labels);
}

function ruleCaps(own: Partial<Limits> | undefined): RuleCaps | null {
  if (own?.max_connections_per_tool === undefined && own?.requests_per_minute === undefined) return null;
  return Object.freeze({
    max_connections_per_tool: own.max_connections_per_tool ?? Number.MAX_SAFE_INTEGER,
    requests_per_minute: own.requests_per_minute ?? 0,
  });
}

/** Later layers override earlier ones field by field; an absent field keeps the earlier value. */
function mergeLimits(base: Partial<Limits>, override: Partial<Limits> | undefined): Readonly<Limits> {
  const merged: Limits = { ...DEFAULT_LIMITS };
  for (const layer of [base, override ?? {}]) {
    for (const [key, value] of Object.entries(layer) as Array<[keyof Limits, number | undefined]>) {
      if (value !== undefined) merged[key] = value;
    }
  }
  return Object.freeze(merged);
}

function appendTo<T>(index: Map<string, T[]>, key: string, rule: T): void {
  const list = index.get(key);
  if (list) list.push(rule);
  else index.set(key, [rule]);
}
