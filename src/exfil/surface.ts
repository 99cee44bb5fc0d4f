// The exfiltration surface (issue 16): hosts where a tool can write content that others can read
// (code hosts, paste sites, object stores, registries' publish endpoints, chat webhooks,
// tunnelling and request-capture services, model hubs), listed in data/exfil-hosts.json, and the
// pure question "does this rule let a tool write to one of them?". An allowlist that names such a
// host opens a way out for data even when every request is allowed on purpose, so `sluice check`,
// `explain` and `policy suggest` say so; the rule's exfil_ok silences it.
import { readFileSync } from 'node:fs';
import { compileHostPattern, type HostPattern } from '../match/host-match.js';

export interface ExfilEntry {
  /** as written in the list: a rule host form ("pastebin.com", "*.ngrok.io") */
  readonly host: string;
  readonly pattern: HostPattern;
  readonly category: string;
  /** the methods that write; 'any' = every request writes, even a GET (capture services) */
  readonly methods: readonly string[] | 'any';
  /** path globs where the writes happen; null = anywhere */
  readonly paths: readonly string[] | null;
}

export interface ExfilList {
  /** category → what writing there means, in words */
  readonly categories: ReadonlyMap<string, string>;
  readonly entries: readonly ExfilEntry[];
}

/** What a rule may write, and where. */
export interface RuleShape {
  host: string;
  methods?: readonly string[] | undefined;
  paths?: readonly string[] | undefined;
}

/** One listed host a rule can write to, with the methods of the rule that write there. */
export interface ExfilHit {
  readonly entry: ExfilEntry;
  /** null: the rule has no method restriction */
  readonly writeMethods: readonly string[] | null;
}

const LIST_FILE = new URL('../../data/exfil-hosts.json', import.meta.url);
let cached: ExfilList | null = null;

/** The list shipped in data/exfil-hosts.json, read and checked once. */
export function loadExfilList(): ExfilList {
  cached ??= parseExfilList(JSON.parse(readFileSync(LIST_FILE, 'utf8')));
  return cached;
}

/** Checks the list's shape; throws naming the entry that is wrong (a broken list is a bug in the repo). */
export function parseExfilList(value: unknown): ExfilList {
  const doc = value as { categories?: Record<string, string>; hosts?: unknown[] };
  if (typeof doc !== 'object' || doc === null || typeof doc.categories !== 'object' || !Array.isArray(doc.hosts)) {
    throw new Error('exfil list: needs "categories" (a mapping) and "hosts" (a list)');
  }
  const categories = new Map(Object.entries(doc.categories));
  const entries = doc.hosts.map((raw, i): ExfilEntry => {
    const item = raw as { host?: unknown; category?: unknown; methods?: unknown; paths?: unknown };
    const where = `exfil list: hosts[${i}]`;
    if (typeof item.host !== 'string') throw new Error(`${where}: host must be text`);
    const pattern = compileHostPattern(item.host);
    if (!pattern || pattern.kind === 'any') throw new Error(`${where}: "${item.host}" is not a host or "*.domain"`);
    if (typeof item.category !== 'string' || !categories.has(item.category)) throw new Error(`${where}: unknown category`);
    if (!Array.isArray(item.methods) || item.methods.length === 0 || !item.methods.every((m) => typeof m === 'string')) {
      throw new Error(`${where}: methods must be a non-empty list`);
    }
    const methods = item.methods.includes('*') ? 'any' : Object.freeze(item.methods.map((m) => m.toUpperCase()));
    if (item.paths !== undefined && (!Array.isArray(item.paths) || !item.paths.every((p) => typeof p === 'string' && p.startsWith('/')))) {
      throw new Error(`${where}: paths must be a list of globs starting with "/"`);
    }
    const paths = item.paths === undefined ? null : Object.freeze([...(item.paths as string[])]);
    return Object.freeze({ host: item.host, pattern, category: item.category, methods, paths });
  });
  return Object.freeze({ categories, entries: Object.freeze(entries) });
}

/** The listed hosts a rule can write to, in list order. A rule host that does not compile has none. */
export function exfilHits(list: ExfilList, rule: RuleShape): ExfilHit[] {
  const pattern = compileHostPattern(rule.host);
  if (!pattern) return [];
  const ruleMethods = rule.methods ? rule.methods.map((m) => m.toUpperCase()) : null;
  const hits: ExfilHit[] = [];
  for (const entry of list.entries) {
    if (!hostsOverlap(pattern, entry.pattern)) continue;
    let writeMethods: readonly string[] | null;
    if (ruleMethods === null) writeMethods = null;
    else if (entry.methods === 'any') writeMethods = ruleMethods;
    else {
      const listed = entry.methods;
      writeMethods = ruleMethods.filter((m) => listed.includes(m));
      if (writeMethods.length === 0) continue;
    }
    if (entry.paths && rule.paths && !rule.paths.some((a) => entry.paths!.some((b) => globsMayOverlap(a, b)))) continue;
    hits.push({ entry, writeMethods });
  }
  return hits;
}

/** Whether some host matches both patterns (ports aside). */
export function hostsOverlap(a: HostPattern, b: HostPattern): boolean {
  if (a.kind === 'any' || b.kind === 'any') return true;
  if (a.kind === 'exact' && b.kind === 'exact') return a.host === b.host;
  if (a.kind === 'exact' && b.kind === 'subdomains') return a.host.endsWith(`.${b.suffix}`);
  if (a.kind === 'subdomains' && b.kind === 'exact') return b.host.endsWith(`.${a.suffix}`);
  const [x, y] = [(a as { suffix: string }).suffix, (b as { suffix: string }).suffix];
  return x === y || x.endsWith(`.${y}`) || y.endsWith(`.${x}`);
}

/**
 * Whether two path globs may match one path. Conservative: only literal segments that differ, or
 * different segment counts without "**", prove them apart; anything else may overlap.
 */
export function globsMayOverlap(a: string, b: string): boolean {
  const left = a.slice(1).split('/');
  const right = b.slice(1).split('/');
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i];
    const y = right[i];
    if (x === '**' || y === '**') return true;
    if (x === undefined || y === undefined) return false;
    if (x.includes('*') || y.includes('*')) {
      if (!segmentsMayOverlap(x, y)) return false;
      continue;
    }
    if (x !== y) return false;
  }
  return true;
}

/** One segment with "*" against another: their literal heads and tails must agree as far as both go. */
function segmentsMayOverlap(x: string, y: string): boolean {
  const headX = x.split('*')[0]!;
  const headY = y.split('*')[0]!;
  const tailX = x.slice(x.lastIndexOf('*') + 1);
  const tailY = y.slice(y.lastIndexOf('*') + 1);
  const agree = (p: string, q: string, fromEnd: boolean): boolean =>
    fromEnd ? p.endsWith(q) || q.endsWith(p) : p.startsWith(q) || q.startsWith(p);
  const xFull = !x.includes('*');
  const yFull = !y.includes('*');
  return agree(xFull ? x : headX, yFull ? y : headY, false) && agree(xFull ? x : tailX, yFull ? y : tailY, true);
}
