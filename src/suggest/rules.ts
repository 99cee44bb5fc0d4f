// From observations to rules (issue 16), pure and deterministic: the same observations, in any
// order, give the same rules in the same order.
// - Hosts stay exact, except that WILDCARD_MIN or more distinct subdomains of one registrable
//   domain (tldts, private suffixes such as github.io counted as public) become one "*.parent"
//   rule, parent being their longest common parent (never above the registrable domain), unless
//   strict mode would refuse it (a public suffix under it, as "s3.amazonaws.com" under
//   "amazonaws.com"): then they stay exact. The apex keeps its own exact rule.
// - One rule per host and port, or per method set on it: methods and paths as seen (paths through
//   the generaliser, ./paths.ts). A host:port that was tunnelled untouched (passthrough) gets no
//   methods or paths: sluice never saw them, and listing them would make it intercept TLS.
// - Rules equal but for the port are merged.
import { getDomain } from 'tldts';
import { isIP } from 'node:net';
import { publicSuffixReached } from '../config/public-suffix.js';
import { compilePathGlob } from '../match/path.js';
import type { Observation } from './observations.js';
import { generalisePaths } from './paths.js';

/** Distinct subdomains of one registrable domain from which they share a "*.domain" rule. */
export const WILDCARD_MIN = 3;

export interface SuggestedRule {
  /** a rule host: exact, "*.parent", or a bracketed IPv6 literal */
  host: string;
  ports: number[];
  /** null: any method (a passthrough tunnel, whose methods sluice never saw) */
  methods: string[] | null;
  paths: string[] | null;
  /** how the requests were seen: passthrough (tunnelled untouched), intercept (TLS opened up), http (plain) */
  seen: 'passthrough' | 'intercept' | 'http';
  count: number;
  first: string;
  last: string;
  /** for a wildcard: the hosts it was written from */
  from: string[];
}

/** The rules covering every observation (of one tool). */
export function suggestRules(observations: readonly Observation[]): SuggestedRule[] {
  const ruleHost = wildcards([...new Set(observations.map((o) => o.host))]);
  const groups = new Map<string, Observation[]>();
  for (const o of observations) {
    const key = `${ruleHost.get(o.host)!}\u0000${o.port}`;
    const list = groups.get(key) ?? [];
    list.push(o);
    groups.set(key, list);
  }
  const rules: SuggestedRule[] = [];
  for (const [key, group] of groups) {
    const [host, port] = key.split('\u0000') as [string, string];
    rules.push(...rulesFor(host, Number(port), group));
  }
  return mergePorts(rules).sort(byOrder);
}

function rulesFor(host: string, port: number, group: Observation[]): SuggestedRule[] {
  const from = host.startsWith('*.') ? [...new Set(group.map((o) => o.host))].sort() : [];
  const requests = group.filter((o) => o.method !== 'CONNECT');
  // A tunnel relayed untouched carried requests sluice never saw; a tunnel sluice opened up shows its requests.
  // (An https request is always one read inside an intercepted tunnel, also in an audit older than `via`.)
  const opened = group.some((o) => o.method !== 'CONNECT' && (o.via === 'intercept' || (o.via === null && o.scheme === 'https')));
  const passthrough = !opened && group.some((o) => o.method === 'CONNECT' && o.via !== 'intercept');
  if (passthrough || requests.length === 0) {
    return [
      { host, ports: [port], methods: null, paths: null, seen: 'passthrough', count: group.length, first: min(group), last: max(group), from },
    ];
  }
  const seen = requests.some((o) => o.scheme === 'https') ? 'intercept' : 'http';
  const patterns = generalisePaths(requests.map((o) => o.path!));
  const globs = patterns.map((p) => ({ pattern: p, regex: compilePathGlob(p).regex }));
  // Each request goes to the first pattern that covers it; each pattern collects its methods.
  const byPattern = new Map<string, { methods: Set<string>; seen: Observation[] }>();
  for (const o of requests) {
    const glob = globs.find((g) => g.regex.test(o.path!))!;
    const entry = byPattern.get(glob.pattern) ?? { methods: new Set(), seen: [] };
    entry.methods.add(o.method);
    entry.seen.push(o);
    byPattern.set(glob.pattern, entry);
  }
  // Patterns used with the same methods share a rule; a pattern never gains a method it was not seen with.
  const byMethods = new Map<string, { methods: string[]; paths: string[]; seen: Observation[] }>();
  for (const [pattern, entry] of byPattern) {
    const methods = [...entry.methods].sort();
    const key = methods.join(',');
    const rule = byMethods.get(key) ?? { methods, paths: [], seen: [] };
    rule.paths.push(pattern);
    rule.seen.push(...entry.seen);
    byMethods.set(key, rule);
  }
  // CONNECTs of an intercepted tunnel are allowed by any of these rules (a CONNECT is decided on host and port).
  const connects = group.filter((o) => o.method === 'CONNECT');
  return [...byMethods.values()].map((r, i) => {
    const counted = i === 0 ? [...r.seen, ...connects] : r.seen;
    return {
      host,
      ports: [port],
      methods: r.methods,
      paths: r.paths.sort(),
      seen,
      count: counted.length,
      first: min(counted),
      last: max(counted),
      from,
    };
  });
}

/** host → the rule host it goes under: itself (IPv6 bracketed), or a shared "*.parent". */
function wildcards(hosts: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const byDomain = new Map<string, string[]>();
  for (const host of hosts.sort()) {
    const ip = isIP(host);
    out.set(host, ip === 6 ? `[${host}]` : host);
    if (ip !== 0) continue;
    const domain = getDomain(host, { allowPrivateDomains: true });
    if (!domain || domain === host) continue;
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), host]);
  }
  for (const [domain, subdomains] of byDomain) {
    if (subdomains.length < WILDCARD_MIN) continue;
    const parent = commonParent(subdomains, domain);
    // Strict mode refuses a wildcard over (or above) a public suffix: "*.amazonaws.com" reaches "s3.amazonaws.com".
    if (publicSuffixReached(parent, true)) continue;
    for (const host of subdomains) out.set(host, `*.${parent}`);
  }
  return out;
}

/** The longest name every host is strictly below, at least domain. */
function commonParent(hosts: string[], domain: string): string {
  const labels = hosts.map((h) => h.split('.').reverse());
  const shortest = Math.min(...labels.map((l) => l.length)) - 1;
  const common: string[] = [];
  for (let i = 0; i < shortest; i++) {
    const label = labels[0]![i]!;
    if (!labels.every((l) => l[i] === label)) break;
    common.push(label);
  }
  const parent = common.reverse().join('.');
  return parent.length >= domain.length ? parent : domain;
}

function mergePorts(rules: SuggestedRule[]): SuggestedRule[] {
  const merged = new Map<string, SuggestedRule>();
  for (const rule of rules) {
    const key = JSON.stringify([rule.host, rule.methods, rule.paths, rule.seen]);
    const known = merged.get(key);
    if (!known) {
      merged.set(key, { ...rule, ports: [...rule.ports] });
      continue;
    }
    known.ports = [...new Set([...known.ports, ...rule.ports])].sort((a, b) => a - b);
    known.count += rule.count;
    known.first = rule.first < known.first ? rule.first : known.first;
    known.last = rule.last > known.last ? rule.last : known.last;
    known.from = [...new Set([...known.from, ...rule.from])].sort();
  }
  return [...merged.values()];
}

function byOrder(a: SuggestedRule, b: SuggestedRule): number {
  return (
    compare(a.host.replace(/^\*\./, '~'), b.host.replace(/^\*\./, '~')) ||
    a.ports[0]! - b.ports[0]! ||
    compare((a.methods ?? []).join(','), (b.methods ?? []).join(',')) ||
    compare((a.paths ?? []).join(','), (b.paths ?? []).join(','))
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function min(list: Observation[]): string {
  return list.reduce((m, o) => (o.ts < m ? o.ts : m), list[0]!.ts);
}

function max(list: Observation[]): string {
  return list.reduce((m, o) => (o.ts > m ? o.ts : m), list[0]!.ts);
}
