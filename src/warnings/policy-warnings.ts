// The warning tier of `sluice check` (issues 15 and 16): things a valid policy does that an operator
// most likely did not mean. A warning is printed, never fails the check, and has a stable code
// (README.md, "Policy warnings"). Pure: the policy document, the exfiltration list and the time of
// the check in, warnings with field paths out; the command turns the paths into file:line.
import type { FieldPath } from '../config/errors.js';
import { parseReviewUntil } from '../config/review.js';
import type { PolicyDoc, RuleDoc } from '../config/types.js';
import { exfilHits, type ExfilHit, type ExfilList } from '../exfil/surface.js';
import { compileHostPattern, type HostPattern } from '../match/host-match.js';

export const WARNING_CODES = [
  // a rule allows writing to a host on the exfiltration list (issue 16)
  'exfil_surface',
  // a broader rule earlier in the list decides every request a later rule would (issue 15)
  'moot_rule',
  // a tool's review_until has passed: it blocks again (issue 16)
  'review_ended',
] as const;
export type WarningCode = (typeof WARNING_CODES)[number];

export interface PolicyWarning {
  code: WarningCode;
  path: FieldPath;
  message: string;
}

/** Every warning for a loaded policy, tool by tool in file order. now: ms since the epoch. */
export function policyWarnings(doc: PolicyDoc, exfil: ExfilList, now: number): PolicyWarning[] {
  const warnings: PolicyWarning[] = [];
  for (const [name, tool] of Object.entries(doc.tools)) {
    if (tool.on_violation === 'review' && tool.review_until !== undefined) {
      const until = parseReviewUntil(tool.review_until);
      if (until !== null && until <= now) {
        warnings.push({
          code: 'review_ended',
          path: ['tools', name, 'review_until'],
          message: `the review ended at ${tool.review_until}: tool ${name} blocks every request no rule allows; write its rules (sluice policy suggest) and remove on_violation and review_until`,
        });
      }
    }
    tool.allow.forEach((rule, i) => {
      const at = ['tools', name, 'allow', i];
      const moot = mootBy(doc, tool.allow, i);
      if (moot !== null) {
        warnings.push({
          code: 'moot_rule',
          path: at,
          message: `never decides a request: rule [${moot}] (host "${tool.allow[moot]!.host}") comes first and allows everything this one allows (the first rule that matches wins); move this rule above it, narrow rule [${moot}], or drop this one`,
        });
      }
      warnings.push(...exfilWarnings(exfil, rule).map((message) => ({ code: 'exfil_surface' as const, path: at, message })));
    });
  }
  return warnings;
}

/** The exfil_surface sentences for one rule (none when it says exfil_ok); one per category. */
export function exfilWarnings(exfil: ExfilList, rule: RuleDoc): string[] {
  if (rule.exfil_ok !== undefined) return [];
  const byCategory = new Map<string, ExfilHit[]>();
  for (const hit of exfilHits(exfil, rule)) {
    const list = byCategory.get(hit.entry.category) ?? [];
    list.push(hit);
    byCategory.set(hit.entry.category, list);
  }
  return [...byCategory].map(([category, hits]) => exfilSentence(exfil, rule, category, hits));
}

function exfilSentence(exfil: ExfilList, rule: RuleDoc, category: string, hits: ExfilHit[]): string {
  const hosts = hits.map((h) => h.entry.host);
  const what = exfil.categories.get(category) ?? category;
  const how =
    rule.methods === undefined ? 'with no method restriction' : `with ${[...new Set(hits.flatMap((h) => h.writeMethods ?? []))].join(', ')}`;
  const anyRequest = hits.some((h) => h.entry.methods === 'any');
  const narrowing: string[] = [];
  if (anyRequest) narrowing.push('remove the rule unless the tool needs this service');
  else {
    narrowing.push('allow only reading methods (methods: [GET, HEAD])');
    const paths = [...new Set(hits.flatMap((h) => h.entry.paths ?? []))];
    if (paths.length > 0) narrowing.push(`or paths outside ${paths.join(', ')}`);
  }
  const pattern = compileHostPattern(rule.host);
  if (pattern && pattern.kind !== 'exact') narrowing.push(`and name exact hosts instead of "${rule.host}"`);
  return (
    `allows writing to ${hosts.join(', ')} (${category}: ${what}) ${how}; narrow it: ${narrowing.join(' ')}; ` +
    `or, if the tool must write there, add exfil_ok: "why" to the rule`
  );
}

/** Index of an earlier rule of the list that covers rule i entirely, else null. */
function mootBy(doc: PolicyDoc, rules: readonly RuleDoc[], i: number): number | null {
  const later = shapeOf(doc, rules[i]!);
  if (!later) return null;
  for (let j = 0; j < i; j++) {
    const earlier = shapeOf(doc, rules[j]!);
    if (earlier && covers(earlier, later)) return j;
  }
  return null;
}

interface Shape {
  host: HostPattern;
  ports: readonly number[];
  methods: readonly string[] | null;
  paths: readonly string[] | null;
}

function shapeOf(doc: PolicyDoc, rule: RuleDoc): Shape | null {
  const host = compileHostPattern(rule.host);
  if (!host) return null;
  const ports = host.port !== null ? [host.port] : (rule.ports ?? doc.network.allow_ports);
  return { host, ports, methods: rule.methods?.map((m) => m.toUpperCase()) ?? null, paths: rule.paths ?? null };
}

/** Whether every request b allows is allowed by a too (host, port, method and path). */
function covers(a: Shape, b: Shape): boolean {
  if (!hostCovers(a.host, b.host)) return false;
  if (!b.ports.every((p) => a.ports.includes(p))) return false;
  if (a.methods !== null && (b.methods === null || !b.methods.every((m) => a.methods!.includes(m)))) return false;
  if (a.paths === null) return true;
  if (b.paths === null) return false;
  return b.paths.every((p) => a.paths!.some((q) => pathGlobCovers(q, p)));
}

function hostCovers(a: HostPattern, b: HostPattern): boolean {
  if (a.kind === 'any') return true;
  if (b.kind === 'any') return false;
  if (a.kind === 'exact') return b.kind === 'exact' && a.host === b.host;
  if (b.kind === 'exact') return b.host.endsWith(`.${a.suffix}`);
  return b.suffix === a.suffix || b.suffix.endsWith(`.${a.suffix}`);
}

/** Provable cover only: the same glob, "/**", or "/literal/prefix/**" over a glob that starts with that prefix. */
function pathGlobCovers(a: string, b: string): boolean {
  if (a === b || a === '/**') return true;
  if (!a.endsWith('/**')) return false;
  const prefix = a.slice(0, -3);
  if (prefix.includes('*')) return false;
  return b === prefix || b.startsWith(`${prefix}/`);
}
