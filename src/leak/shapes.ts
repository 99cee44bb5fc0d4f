// The credential shapes the leak detector looks for: sluice's own (src/secrets/leak-patterns.ts,
// checked first, with near-format variants for distinctive prefixes) on top of gitleaks' rule set,
// loaded as data (src/leak/gitleaks-rules.json, made by scripts/update-gitleaks-rules.mjs from
// vendor/gitleaks/gitleaks.toml). Every shape carries lower-case keywords: a text is lower-cased
// once, one regex finds which keywords it holds, and only the shapes of those keywords run.
import { LEAK_PATTERNS } from '../secrets/leak-patterns.js';
import { KeywordAutomaton } from './keywords.js';
import type { RunSurvey } from './runs.js';
import { compileRe2 } from './re2.js';
import rawRules from './gitleaks-rules.json' with { type: 'json' };

export interface Shape {
  /** stable, bounded name: a sluice pattern's name, or `gitleaks:<rule id>` */
  name: string;
  /** global, no other flags */
  regex: RegExp;
  /** lower-case; the shape runs only on text that holds one of them */
  keywords: readonly string[];
  /** the capture group that is the secret (0: the first that matched, or the whole match) */
  secretGroup: number;
  /** minimum Shannon entropy of the secret (bits per character), 0 for none */
  entropy: number;
  /** false when the match is allowed (an allowlist, a stopword, a failed check) */
  accept: (secret: string, match: string) => boolean;
  /** a literal every match of `regex` holds (case as it is): a window without it is not searched */
  needs?: string | undefined;
}

interface RawAllowlist {
  regexes?: string[];
  regexTarget?: string;
  stopwords?: string[];
  condition?: string;
  paths?: boolean;
}

interface RawRule {
  id: string;
  regex?: string;
  path?: string;
  secretGroup?: number;
  entropy?: number;
  keywords: string[];
  allowlists: RawAllowlist[];
}

interface RawRules {
  version: string;
  global: { regexes: string[]; stopwords: string[] };
  rules: RawRule[];
}

/**
 * gitleaks rules sluice does not load, and why. A rule here misfires on ordinary egress traffic
 * (an OAuth flow, an API call naming a "key" field), which the product must never refuse.
 */
export const EXCLUDED: Readonly<Record<string, string>> = {
  'generic-api-key': 'entropy over any "key"/"token"/"secret" field: fires on OAuth tokens, session ids and ordinary API parameters',
  'curl-auth-header': 'a curl command line with an Authorization header: the header itself is scanned directly',
  'curl-auth-user': 'a curl command line with -u user:password: fires on documentation and scripts sent as text',
  'pkcs12-file': 'matches file paths only',
};

/** Near-format forms of distinctive prefixes: a token a few characters off its documented length is still that token. */
const NEAR_FORMAT: ReadonlyArray<{ name: string; source: string; keywords: string[] }> = [
  {
    name: 'github_token_near',
    source: '(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{30,251}(?![A-Za-z0-9_])',
    keywords: ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_'],
  },
  {
    name: 'github_fine_grained_pat_near',
    source: '(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{40,200}(?![A-Za-z0-9_])',
    keywords: ['github_pat_'],
  },
  { name: 'slack_token_near', source: '(?<![A-Za-z0-9-])xox[bpa]-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9-])', keywords: ['xoxb-', 'xoxp-', 'xoxa-'] },
  { name: 'anthropic_api_key_near', source: '(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,250}(?![A-Za-z0-9_-])', keywords: ['sk-ant-'] },
  { name: 'aws_access_key_id_near', source: '(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{14,20}(?![A-Za-z0-9])', keywords: ['akia', 'asia'] },
  // SendGrid: SG.<22>.<43>, and npm, PyPI and Docker Hub tokens, which gitleaks also has; here without its context rules
  { name: 'sendgrid_api_key', source: '(?<![A-Za-z0-9_-])SG\\.[A-Za-z0-9_-]{16,32}\\.[A-Za-z0-9_-]{30,50}(?![A-Za-z0-9_-])', keywords: ['sg.'] },
  { name: 'npm_token', source: '(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{34,40}(?![A-Za-z0-9_])', keywords: ['npm_'] },
  { name: 'pypi_token', source: '(?<![A-Za-z0-9_-])pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}', keywords: ['pypi-ageichlwas5vcmc'] },
  { name: 'docker_hub_pat', source: '(?<![A-Za-z0-9_-])dckr_pat_[A-Za-z0-9_-]{24,40}(?![A-Za-z0-9_-])', keywords: ['dckr_pat_'] },
];

/**
 * Literals every match of a gitleaks rule's regex holds, by rule id, where its keyword is so short
 * that its hits make windows over most of a body (the "ey" of jwt is in every "key", the "sk" of
 * twilio-api-key in "task", "risk" and random base64). jwt's regex is `\b(ey[a-zA-Z0-9]{17,}\.ey...`:
 * case-sensitive, and every match has ".ey"; twilio-api-key's is `SK[0-9a-fA-F]{32}`, every match
 * has "SK" (the test pins both sources, so a rule update is looked at again).
 */
export const NEEDS: Readonly<Record<string, string>> = { jwt: '.ey', 'twilio-api-key': 'SK' };

/** Keywords for sluice's own table (LEAK_PATTERNS), by name: the literal each shape starts with, lower-cased. */
const OWN_KEYWORDS: Readonly<Record<string, readonly string[]>> = {
  aws_access_key_id: ['akia', 'asia'],
  github_token: ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_'],
  github_fine_grained_pat: ['github_pat_'],
  anthropic_api_key: ['sk-ant-'],
  openai_api_key: ['t3blbkfj'],
  stripe_live_key: ['sk_live_', 'rk_live_'],
  slack_token: ['xox'],
  slack_app_token: ['xapp-'],
  slack_webhook: ['hooks.slack.com'],
  google_api_key: ['aiza'],
  private_key_pem: ['private key'],
  jwt: ['eyj'],
};

export function shannonEntropy(text: string): number {
  if (text.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const char of text) counts.set(char, (counts.get(char) ?? 0) + 1);
  let entropy = 0;
  for (const count of counts.values()) {
    const p = count / text.length;
    entropy -= p * Math.log2(p);
  }
  return entropy;
}

function must(regex: RegExp | Error, what: string): RegExp {
  if (regex instanceof Error) throw new Error(`${what}: ${regex.message}`);
  return regex;
}

function stickyless(regex: RegExp): RegExp {
  return new RegExp(regex.source, '');
}

/** gitleaks' allowlists of a rule as one check: true when the finding is allowed. */
function allowedBy(lists: RawAllowlist[], id: string): (secret: string, match: string) => boolean {
  const checks = lists.map((list, n) => {
    const regexes = (list.regexes ?? []).map((source) => stickyless(must(compileRe2(source), `gitleaks ${id} allowlist ${n}`)));
    const stopwords = (list.stopwords ?? []).map((word) => word.toLowerCase());
    const target = list.regexTarget ?? 'secret';
    const and = (list.condition ?? 'OR').toUpperCase() === 'AND';
    return (secret: string, match: string): boolean => {
      const subject = target === 'secret' ? secret : match;
      const results: boolean[] = [];
      if (regexes.length > 0) results.push(regexes.some((regex) => regex.test(subject)));
      if (stopwords.length > 0) {
        const lower = secret.toLowerCase();
        results.push(stopwords.some((word) => lower.includes(word)));
      }
      // a path criterion cannot hold for a request: under AND the list never allows
      if (list.paths) results.push(false);
      if (results.length === 0) return false;
      return and ? results.every(Boolean) : results.some(Boolean);
    };
  });
  return (secret, match) => checks.some((check) => check(secret, match));
}

function loadRaw(): RawRules {
  return rawRules;
}

/** The gitleaks rule set's version (its commit), for the README and diagnostics. */
export function gitleaksVersion(): string {
  return loadRaw().version;
}

function gitleaksShapes(): Shape[] {
  const raw = loadRaw();
  const globalRegexes = raw.global.regexes.map((source) => stickyless(must(compileRe2(source), 'gitleaks global allowlist')));
  const globalStopwords = raw.global.stopwords.map((word) => word.toLowerCase());
  const shapes: Shape[] = [];
  for (const rule of raw.rules) {
    if (rule.regex === undefined || rule.path !== undefined || rule.id in EXCLUDED) continue;
    const regex = must(compileRe2(rule.regex), `gitleaks ${rule.id}`);
    const allowed = allowedBy(rule.allowlists, rule.id);
    const generic = rule.id.startsWith('generic');
    shapes.push({
      name: `gitleaks:${rule.id}`,
      regex,
      keywords: rule.keywords,
      secretGroup: rule.secretGroup ?? 0,
      entropy: rule.entropy ?? 0,
      accept: (secret, match) => {
        if (generic && !/\d/.test(secret)) return false;
        if (globalRegexes.some((allow) => allow.test(secret))) return false;
        const lower = secret.toLowerCase();
        if (globalStopwords.some((word) => lower.includes(word))) return false;
        return !allowed(secret, match);
      },
      needs: NEEDS[rule.id],
    });
  }
  return shapes;
}

function ownShapes(): Shape[] {
  const own: Shape[] = LEAK_PATTERNS.map((pattern) => ({
    name: pattern.name,
    regex: new RegExp(pattern.regex.source, 'g'),
    keywords: OWN_KEYWORDS[pattern.name] ?? [],
    secretGroup: 0,
    entropy: 0,
    accept: (_secret, match) => !pattern.verify || pattern.verify(match),
    needs: undefined,
  }));
  const near: Shape[] = NEAR_FORMAT.map((shape) => ({
    name: shape.name,
    regex: new RegExp(shape.source, 'g'),
    keywords: shape.keywords,
    secretGroup: 0,
    entropy: 0,
    accept: () => true,
    needs: undefined,
  }));
  return [...own, ...near];
}

/** What a scan of a text by find() notes besides the shape: see find(). */
export interface ScanNotes {
  /** set when the text holds a keyword of forJoins() */
  joinKeyword: boolean;
  /** filled with the automaton's state after each character */
  states?: Uint32Array;
  /** a fresh survey, filled with the text's runs by the same read */
  survey?: RunSurvey;
  /** stop at the first non-ASCII character: then `stopped` is set and find() returns null */
  stopAtNonAscii?: boolean;
  stopped?: boolean;
}

/** Shapes, and the one keyword automaton that says which of them may match a text, and where. */
export class ShapeSet {
  readonly shapes: readonly Shape[];
  /** per keyword (automaton index): the shapes it stands for */
  readonly #shapesOf: number[][];
  readonly #keywords: KeywordAutomaton;
  /** per keyword (automaton index): 1 when a shape of forJoins() has it */
  readonly #joinKeyword: Uint8Array;

  #forJoins: ShapeSet | null = null;

  constructor(shapes: readonly Shape[]) {
    this.shapes = shapes;
    const byKeyword = new Map<string, number[]>();
    shapes.forEach((shape, n) => {
      if (shape.keywords.length === 0) throw new Error(`shape ${shape.name} has no keywords`);
      for (const keyword of shape.keywords) {
        const list = byKeyword.get(keyword) ?? [];
        list.push(n);
        byKeyword.set(keyword, list);
      }
    });
    this.#keywords = new KeywordAutomaton([...byKeyword.keys()]);
    this.#shapesOf = [...byKeyword.values()];
    this.#joinKeyword = Uint8Array.from(this.#shapesOf, (list) => (list.some((n) => joinable(shapes[n]!)) ? 1 : 0));
  }

  /** The keyword automaton, and which of its keywords are forJoins()' (for a seam check of two values without joining them). */
  get keywords(): KeywordAutomaton {
    return this.#keywords;
  }
  get joinKeywords(): Uint8Array {
    return this.#joinKeyword;
  }

  /**
   * The shapes to look for in two values joined: those whose every keyword is at least 4
   * characters. A short keyword ("sk" of `SK[0-9a-f]{32}`) is too likely to come about at the
   * seam between two random tokens.
   */
  forJoins(): ShapeSet {
    this.#forJoins ??= new ShapeSet(this.shapes.filter(joinable));
    return this.#forJoins;
  }

  /**
   * The first shape (in table order) with an accepted match in `text`, or null. A shape's regex
   * runs only on windows around its keywords' hits (WINDOW_BEFORE before, WINDOW_AFTER after): a
   * backtracking engine would otherwise try a context rule's lazy prefix at every position of a
   * large body, and no shape's match reaches further from its keyword than that. `seen.joinKeyword`
   * is set when the text holds a keyword of forJoins() (whatever the result): without one, two
   * values of it joined can hold one only across their seam; `seen.states` gets the automaton's
   * state after each character of the text.
   */
  find(text: string, seen?: ScanNotes): { shape: Shape } | null {
    let hits: Map<number, number[]> | null = null;
    const joinKeyword = this.#joinKeyword;
    const complete = this.#keywords.scan(
      text,
      (keyword, start) => {
        if (seen && joinKeyword[keyword] === 1) seen.joinKeyword = true;
        for (const n of this.#shapesOf[keyword]!) {
          hits ??= new Map();
          const list = hits.get(n);
          if (list) list.push(start);
          else hits.set(n, [start]);
        }
      },
      seen?.states,
      seen?.stopAtNonAscii ?? false,
      seen?.survey,
    );
    if (!complete) {
      seen!.stopped = true;
      return null;
    }
    if (hits === null) return null;
    const found: Map<number, number[]> = hits;
    for (const n of [...found.keys()].sort((a, b) => a - b)) {
      const shape = this.shapes[n]!;
      // hits come in order of their ends; windows want starts in order
      if (
        matchesNear(
          shape,
          text,
          found.get(n)!.sort((a, b) => a - b),
        )
      )
        return { shape };
    }
    return null;
  }
}

/** A shape looked for in two values joined: every keyword at least 4 characters (see forJoins). */
function joinable(shape: Shape): boolean {
  return shape.keywords.every((keyword) => keyword.length >= 4);
}

export const WINDOW_BEFORE = 128;
export const WINDOW_AFTER = 2048;

function matchesNear(shape: Shape, text: string, positions: number[]): boolean {
  let start = -1;
  let end = -1;
  for (const at of positions) {
    const from = Math.max(0, at - WINDOW_BEFORE);
    const to = Math.min(text.length, at + WINDOW_AFTER);
    if (start >= 0 && from <= end) {
      end = to;
      continue;
    }
    if (start >= 0 && matches(shape, text, start, end)) return true;
    start = from;
    end = to;
  }
  return start >= 0 && matches(shape, text, start, end);
}

function matches(shape: Shape, text: string, start: number, end: number): boolean {
  // without the literal every match holds, the window has no match
  if (shape.needs !== undefined) {
    const at = text.indexOf(shape.needs, start);
    if (at === -1 || at + shape.needs.length > end) return false;
  }
  const window = start === 0 && end === text.length ? text : text.slice(start, end);
  const regex = shape.regex;
  regex.lastIndex = 0;
  try {
    for (let m = regex.exec(window); m; m = regex.exec(window)) {
      if (m[0].length === 0) regex.lastIndex++;
      // a match that runs into a cut window end may be part of something longer: not decided here
      if (end < text.length && m.index + m[0].length >= window.length) continue;
      const secret = (shape.secretGroup > 0 ? m[shape.secretGroup] : m.slice(1).find((g) => g !== undefined && g !== '')) ?? m[0];
      if ((shape.entropy === 0 || shannonEntropy(secret) > shape.entropy) && shape.accept(secret, m[0])) return true;
    }
    return false;
  } finally {
    regex.lastIndex = 0;
  }
}

let defaults: ShapeSet | null = null;
let names: ReadonlySet<string> | null = null;

/** Every shape name the default set can report: the bounded values of the shape metric label. */
export function shapeNames(): ReadonlySet<string> {
  names ??= new Set(defaultShapes().shapes.map((shape) => shape.name));
  return names;
}

/** sluice's own shapes first, then gitleaks' (built once). */
export function defaultShapes(): ShapeSet {
  defaults ??= new ShapeSet([...ownShapes(), ...gitleaksShapes()]);
  return defaults;
}
