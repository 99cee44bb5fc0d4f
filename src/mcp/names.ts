// The names of an MCP rule (issue 18), compiled once per policy load: tool, resource and prompt
// names or globs, and the extra JSON-RPC methods a rule lets through. A glob's "*" matches any run
// of characters (a resource URI's "/" too), "?" one character; everything else is literal, so a
// name such as "search.v2" or "repo/read" needs no escaping. Pure: no I/O.
import type { McpRuleDoc } from '../config/types.js';

/** A list of names or globs; matches() is what every check calls. */
export interface NameSet {
  /** as written in the policy */
  readonly patterns: readonly string[];
  /** the entries without a wildcard: the only values a metric label may take */
  readonly exact: ReadonlySet<string>;
  matches(name: string): boolean;
}

export interface CompiledMcp {
  readonly tools: NameSet;
  /** null = resources/read is not checked by name */
  readonly resources: NameSet | null;
  /** null = prompts/get is not checked by name */
  readonly prompts: NameSet | null;
  /** further methods let through (may be empty) */
  readonly methods: NameSet;
}

/** Whether a pattern has a wildcard (a literal name is also a metric label). */
export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

function globRegex(pattern: string): RegExp {
  let source = '';
  for (const ch of pattern) {
    if (ch === '*') source += '[\\s\\S]*';
    else if (ch === '?') source += '[\\s\\S]';
    else source += ch.replace(/[\\^$.|+()[\]{}-]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 'u');
}

export function compileNames(patterns: readonly string[]): NameSet {
  const exact = new Set(patterns.filter((p) => !isGlob(p)));
  const globs = patterns.filter(isGlob).map(globRegex);
  return Object.freeze({
    patterns: Object.freeze([...patterns]),
    exact,
    matches: (name: string) => exact.has(name) || globs.some((re) => re.test(name)),
  });
}

export function compileMcp(doc: McpRuleDoc): CompiledMcp {
  return Object.freeze({
    tools: compileNames(doc.tools),
    resources: doc.resources ? compileNames(doc.resources) : null,
    prompts: doc.prompts ? compileNames(doc.prompts) : null,
    methods: compileNames(doc.methods ?? []),
  });
}

/**
 * Methods the policy decides on its own: listing one under mcp.methods would either do nothing or
 * let a checked call through unchecked, so the loader refuses that.
 */
export const CHECKED_METHODS: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get']);
