// Request side, pure: find placeholders, refuse the ones a tool may not use here (not granted, out
// of scope, outside the secret's swap_in, over plain HTTP), catch real credentials leaving (also
// split across headers), and swap in-scope placeholders for values in headers and the target.
import type { SecretDoc } from '../config/types.js';
import { requestCodings } from './codings.js';
import { percentDecode, rawOrPercentEncoded, valueForms } from './forms.js';
import { findLeakIn, LEAK_PATTERNS, type LeakPattern } from './leak-patterns.js';
import { insecureDetail, mayGoIn, misplacedDetail, placesOf } from './placement.js';
import { describeFinding, DecodeBudget, DecodeBudgetExceeded, detectLeak } from '../leak/detect.js';
import { leakDetectorMode } from '../leak/mode.js';
import type { SecretRefusal } from './violation.js';

/** The prefix of every default placeholder: `__sluice_secret_<alias>__`. */
export const PLACEHOLDER_PREFIX = '__sluice_secret_';

export function defaultPlaceholder(alias: string): string {
  return `${PLACEHOLDER_PREFIX}${alias}__`;
}

export interface PlaceholderIndex {
  readonly entries: ReadonlyArray<{ alias: string; placeholder: string; pattern: RegExp }>;
  /** a default-form placeholder, matched on percent-decoded text */
  readonly anyDefault: RegExp;
}

const indexes = new WeakMap<Record<string, SecretDoc>, PlaceholderIndex>();

/** The placeholders of a policy's secrets, built once per secrets object. */
export function placeholderIndex(secrets: Record<string, SecretDoc>): PlaceholderIndex {
  let index = indexes.get(secrets);
  if (!index) {
    const entries = Object.entries(secrets)
      .map(([alias, doc]) => ({ alias, placeholder: doc.placeholder }))
      // longest first, so a placeholder that contains another is removed whole
      .sort((a, b) => b.placeholder.length - a.placeholder.length)
      .map((entry) => ({ ...entry, pattern: rawOrPercentEncoded(entry.placeholder) }));
    index = { entries, anyDefault: /__sluice_secret_[A-Za-z0-9_.-]{1,64}__/ };
    indexes.set(secrets, index);
  }
  return index;
}

function occurs(pattern: RegExp, text: string): boolean {
  pattern.lastIndex = 0;
  const found = pattern.test(text);
  pattern.lastIndex = 0;
  return found;
}

/** Aliases whose placeholder occurs in `text`, raw or percent-encoded (hex in any case). */
export function findPlaceholders(text: string, index: PlaceholderIndex): string[] {
  return index.entries.filter((entry) => occurs(entry.pattern, text)).map((entry) => entry.alias);
}

/** Whether `text` holds a default-form placeholder for an alias the policy does not define. */
export function hasUnknownPlaceholder(text: string, index: PlaceholderIndex): boolean {
  let rest = text;
  for (const entry of index.entries) rest = rest.replace(entry.pattern, ' ');
  return index.anyDefault.test(percentDecode(rest));
}

export interface SecretUse {
  alias: string;
  /** 'header:<Name>', 'query', 'path', 'body' or 'inject:<Name>' */
  where: string;
}

export interface RequestSecretsInput {
  tool: string;
  /** the tool's secrets (ToolDoc.secrets) */
  granted: readonly string[];
  /** granted aliases whose hosts include this host (Decision.secrets) */
  inScope: readonly string[];
  /** the tool's headers, Proxy-Authorization already removed */
  headers: ReadonlyArray<readonly [string, string]>;
  /** origin-form request target: path and query */
  target: string;
  secrets: Record<string, SecretDoc>;
  /** current value of an alias, null when it has none now */
  values: (alias: string) => string | null;
  /** values to treat as leaks; default: values() of every alias. Pass SecretStore.knownValues() to include rotated ones. */
  known?: ReadonlyArray<{ alias: string; value: string }>;
  /** plain shapes to scan the text as sent for, instead of the layered detector (src/leak/) */
  leakPatterns?: readonly LeakPattern[];
  /** the request limit: decoded bytes of the layered detector count against it (default 1 MiB) */
  maxDecodedBytes?: number;
  /**
   * The request goes upstream over TLS sluice verified (https). Without it no placeholder is swapped
   * and nothing injected for a secret that does not allow_plaintext: the value would cross in clear.
   */
  tls: boolean;
}

export type RequestSecretsPlan =
  | { ok: true; headers: Array<[string, string]>; target: string; uses: SecretUse[] }
  | { ok: false; reason: SecretRefusal; alias: string | null; detail: string }
  | { ok: false; reason: 'secret_unavailable'; alias: string; detail: string };

type Refusal = Extract<RequestSecretsPlan, { ok: false }>;

/** One place in the tool's request where a placeholder or a credential may sit. */
interface Surface {
  where: string;
  text: string;
}

const BASIC = /^(\s*Basic\s+)([A-Za-z0-9+/=_-]+)(\s*)$/i;

function decodeBasic(value: string): string | null {
  const match = BASIC.exec(value);
  return match ? Buffer.from(match[2]!, 'base64').toString('utf8') : null;
}

function splitTarget(target: string): { path: string; query: string | null } {
  const at = target.indexOf('?');
  return at === -1 ? { path: target, query: null } : { path: target.slice(0, at), query: target.slice(at + 1) };
}

function surfacesOf(headers: RequestSecretsInput['headers'], target: string): Surface[] {
  const surfaces: Surface[] = [];
  for (const [name, value] of headers) {
    surfaces.push({ where: `header:${name}`, text: value });
    if (name.toLowerCase() === 'authorization') {
      const decoded = decodeBasic(value);
      if (decoded !== null) surfaces.push({ where: `header:${name}`, text: decoded });
    }
  }
  const { path, query } = splitTarget(target);
  surfaces.push({ where: 'path', text: path });
  if (query !== null) surfaces.push({ where: 'query', text: query });
  return surfaces;
}

/**
 * Header values two by two, joined with nothing between, as an upstream's own code may put a split
 * credential together: each value with the next one sent (of one name or of two), and each with the
 * next repeat of its own name. One pair per line, so a shape's look-arounds see the pair's own
 * edges: a match inside one value is one the per-header pass finds too, and only a token that spans
 * the two halves is new. Pieces further apart (or in three parts) are out of a scanner's reach.
 */
function joinedHeaders(headers: RequestSecretsInput['headers']): Surface {
  const values = headers.map(([name, value]) => ({ name: name.toLowerCase(), value: value.trim() })).filter((h) => h.value !== '');
  const pairs: string[] = [];
  const lastOfName = new Map<string, number>();
  values.forEach((header, i) => {
    if (i > 0) pairs.push(values[i - 1]!.value + header.value);
    const previous = lastOfName.get(header.name);
    if (previous !== undefined && previous !== i - 1) pairs.push(values[previous]!.value + header.value);
    lastOfName.set(header.name, i);
  });
  return { where: 'the headers joined', text: pairs.join('\n') };
}

function findLeakedCredential(
  surfaces: Surface[],
  joined: Surface,
  known: ReadonlyArray<{ alias: string; value: string }>,
  patterns: readonly LeakPattern[],
): Refusal | null {
  const knownForms = known.filter((k) => k.value.length > 0).map((k) => ({ alias: k.alias, forms: valueForms(k.value) }));
  for (const surface of [...surfaces, joined]) {
    const decoded = percentDecode(surface.text);
    for (const { alias, forms } of knownForms) {
      if (forms.some((form) => surface.text.includes(form) || decoded.includes(form))) {
        return {
          ok: false,
          reason: 'secret_leak',
          alias,
          detail: `the request carries the real value of secret "${alias}" in ${surface.where}; send its placeholder instead`,
        };
      }
    }
    const shape = findLeakIn(surface.text, 0, true, patterns) ?? findLeakIn(decoded, 0, true, patterns);
    if (shape) {
      return {
        ok: false,
        reason: 'secret_leak',
        alias: null,
        detail: `the request carries what looks like a credential (${shape.name}) in ${surface.where}`,
      };
    }
  }
  return null;
}

/**
 * Every surface for the layered detector's one look, an empty line between them: a line of base64
 * followed by one that starts with its alphabet reads as a wrapped value, and the next surface (the
 * Host value, say) would then run on into the last group of a query value and cut its decoding short.
 */
function layeredAll(surfaces: Surface[], joined: Surface): string {
  return [...surfaces, joined].map((surface) => surface.text).join('\n\n');
}

/**
 * A credential shape on any surface of the head, under any chain of decodings (src/leak/detect.ts).
 * One pass over every surface joined settles most requests; a hit is then named by surface.
 */
function findLayeredLeak(surfaces: Surface[], joined: Surface, all: string, maxDecodedBytes: number): Refusal | null {
  const budget = new DecodeBudget(maxDecodedBytes);
  try {
    if (!detectLeak(all, { budget })) return null;
    for (const surface of [...surfaces, joined]) {
      const finding = detectLeak(surface.text, { budget: new DecodeBudget(maxDecodedBytes) });
      if (finding) return { ok: false, reason: 'secret_leak', alias: null, detail: describeFinding(finding, surface.where) };
    }
  } catch (error) {
    if (!(error instanceof DecodeBudgetExceeded)) throw error;
    return { ok: false, reason: 'bad_request', alias: null, detail: error.message };
  }
  // found only across two surfaces (the joined text's own neighbours): name them together
  return {
    ok: false,
    reason: 'secret_leak',
    alias: null,
    detail: 'the request carries what looks like a credential across its headers and target',
  };
}

/**
 * Whether `text` (every surface joined by newlines) might hold a known value or a credential shape.
 * It finds everything the per-surface pass finds: no value form or pattern spans a newline.
 */
function mayCarryCredential(text: string, known: ReadonlyArray<{ alias: string; value: string }>, patterns: readonly LeakPattern[]): boolean {
  const decoded = percentDecode(text);
  for (const { value } of known) {
    if (value.length > 0 && valueForms(value).some((form) => text.includes(form) || decoded.includes(form))) return true;
  }
  return matchesAnyPattern(text, patterns) || matchesAnyPattern(decoded, patterns);
}

const anyPatterns = new WeakMap<readonly LeakPattern[], RegExp | null>();

/** Whether any pattern of the table matches (verification is left to the full pass). */
function matchesAnyPattern(text: string, patterns: readonly LeakPattern[]): boolean {
  let combined = anyPatterns.get(patterns);
  if (combined === undefined) {
    // one alternation scans the text once; it needs every pattern to share the same flags
    const flags = new Set(patterns.map((pattern) => pattern.regex.flags));
    combined = flags.size === 1 ? new RegExp(patterns.map((pattern) => `(?:${pattern.regex.source})`).join('|'), [...flags][0]) : null;
    anyPatterns.set(patterns, combined);
  }
  return combined ? combined.test(text) : patterns.some((pattern) => pattern.regex.test(text));
}

function checkPlaceholders(surfaces: Surface[], input: RequestSecretsInput, index: PlaceholderIndex): Refusal | null {
  for (const surface of surfaces) {
    for (const alias of findPlaceholders(surface.text, index)) {
      if (!input.granted.includes(alias)) {
        return {
          ok: false,
          reason: 'secret_not_granted',
          alias,
          detail: `tool "${input.tool}" is not granted secret "${alias}" (placeholder in ${surface.where})`,
        };
      }
      if (!input.inScope.includes(alias)) {
        return {
          ok: false,
          reason: 'secret_out_of_scope',
          alias,
          detail: `secret "${alias}" may only be sent to its own hosts, and this host is not one of them (placeholder in ${surface.where})`,
        };
      }
      const secret = input.secrets[alias]!;
      if (!mayGoIn(placesOf(secret), surface.where)) {
        return { ok: false, reason: 'secret_misplaced', alias, detail: misplacedDetail(alias, secret, surface.where) };
      }
      if (!input.tls && !secret.allow_plaintext) {
        return { ok: false, reason: 'secret_insecure', alias, detail: insecureDetail(alias, `its placeholder in ${surface.where}`) };
      }
    }
    if (hasUnknownPlaceholder(surface.text, index)) {
      return {
        ok: false,
        reason: 'secret_not_granted',
        alias: null,
        detail: `the request carries a placeholder for a secret the policy does not define (in ${surface.where})`,
      };
    }
  }
  return null;
}

/** Replaces a placeholder: a raw occurrence by `raw`, a percent-encoded one by `encoded`. */
function swap(text: string, pattern: RegExp, placeholder: string, raw: string, encoded: string): string {
  pattern.lastIndex = 0;
  // a replacer function, so `$` in a value is never read as a replacement pattern
  return text.replace(pattern, (match) => (match === placeholder ? raw : encoded));
}

/** An injection over plain HTTP would put the value on the wire in clear. */
function insecureInjection(input: RequestSecretsInput): Refusal | null {
  if (input.tls) return null;
  for (const alias of input.inScope) {
    const secret = input.secrets[alias];
    if (secret?.inject && !secret.allow_plaintext) {
      return { ok: false, reason: 'secret_insecure', alias, detail: insecureDetail(alias, `injecting it into ${secret.inject.header}`) };
    }
  }
  return null;
}

const AUTH_SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) +(\S+)$/;
/** A Basic user name is not a credential, but a long one may be (some APIs take the key as the user). */
const MAX_BASIC_USER = 64;

/**
 * Whether a header value carries the placeholder and no other credential: the placeholder alone,
 * after an auth scheme ("Bearer <placeholder>"), or in Basic auth as the password (the user name
 * free, up to 64 characters) or as the user name with an empty password.
 */
function carriesOnly(value: string, placeholder: string): boolean {
  const text = value.trim();
  if (text === placeholder) return true;
  const scheme = AUTH_SCHEME.exec(text);
  if (!scheme) return false;
  if (scheme[2] === placeholder) return true;
  if (scheme[1]!.toLowerCase() !== 'basic') return false;
  const decoded = Buffer.from(scheme[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  if (password === placeholder) return user.length <= MAX_BASIC_USER && !user.includes(placeholder);
  return user === placeholder && password === '';
}

/**
 * require: the secret's header (a header: entry of swap_in) carries its placeholder, and every
 * copy of that header carries it and nothing else; an injected secret satisfies it by itself.
 */
function requireProblem(input: RequestSecretsInput, alias: string): Refusal | null {
  const secret = input.secrets[alias];
  if (!secret?.require || secret.inject) return null;
  const places = placesOf(secret);
  const declared = input.headers.filter(([name]) => places.headers.has(name.toLowerCase()));
  // the loader refuses a require with no header to check (require_needs_header)
  const where = secret.swap_in.filter((place) => place.startsWith('header:')).join(' or ');
  if (!declared.some(([, value]) => findPlaceholderIn(value, secret.placeholder))) {
    return {
      ok: false,
      reason: 'secret_required',
      alias,
      detail: `requests to this host must carry the placeholder of secret "${alias}" in ${where}`,
    };
  }
  const other = declared.find(([, value]) => !carriesOnly(value, secret.placeholder));
  if (other) {
    return {
      ok: false,
      reason: 'secret_required',
      alias,
      detail: `header ${other[0]} must carry the placeholder of secret "${alias}" and no other credential (in every copy of the header)`,
    };
  }
  return null;
}

/** The placeholder in a header value, raw or inside Basic credentials. */
function findPlaceholderIn(value: string, placeholder: string): boolean {
  if (value.includes(placeholder)) return true;
  const basic = decodeBasic(value);
  return basic !== null && basic.includes(placeholder);
}

const RANGE_HEADERS = new Set(['range', 'if-range']);
/** The pattern table when the layered detector runs instead: one constant, so its cache entry is found again. */
const NO_PATTERNS: readonly LeakPattern[] = Object.freeze([]);

/**
 * Decides what a request carries toward this host and rewrites it: placeholders swapped for values,
 * injected headers set, Range and If-Range dropped toward a host a secret may be swapped into the
 * body of (so a stored value cannot be read back in pieces). Never returns a value in `detail`.
 */
export function planRequestSecrets(input: RequestSecretsInput): RequestSecretsPlan {
  const index = placeholderIndex(input.secrets);
  const surfaces = surfacesOf(input.headers, input.target);
  const known =
    input.known ??
    Object.keys(input.secrets).flatMap((alias) => {
      const value = input.values(alias);
      return value ? [{ alias, value }] : [];
    });

  const coded = requestCodings(input.headers);
  if (!coded.ok) return { ok: false, reason: 'bad_request', alias: null, detail: coded.detail };

  // The layered detector replaces the plain shape scan unless the caller (or the bench switch) asks for it.
  const layered = input.leakPatterns === undefined && leakDetectorMode() === 'layered';
  const patterns = layered ? NO_PATTERNS : (input.leakPatterns ?? LEAK_PATTERNS);
  // Most requests carry neither a credential nor a placeholder: one look at all surfaces together
  // settles that, and only a hit pays for the per-surface pass that names where it is.
  const joined = joinedHeaders(input.headers);
  const all = surfaces.map((surface) => surface.text).join('\n');
  const mayLeak = mayCarryCredential(`${all}\n${joined.text}`, known, patterns);
  const mayHavePlaceholder = index.entries.some((entry) => occurs(entry.pattern, all)) || hasUnknownPlaceholder(all, index);
  const refusal =
    (mayLeak ? findLeakedCredential(surfaces, joined, known, patterns) : null) ??
    (layered ? findLayeredLeak(surfaces, joined, layeredAll(surfaces, joined), input.maxDecodedBytes ?? 1024 * 1024) : null) ??
    (mayHavePlaceholder ? checkPlaceholders(surfaces, input, index) : null) ??
    insecureInjection(input);
  if (refusal) return refusal;
  const stripRanges = input.inScope.some((alias) => {
    const secret = input.secrets[alias];
    return secret !== undefined && placesOf(secret).body;
  });
  const kept = stripRanges ? input.headers.filter(([name]) => !RANGE_HEADERS.has(name.toLowerCase())) : input.headers;
  const needsNothing = !mayHavePlaceholder && input.inScope.every((alias) => !input.secrets[alias]?.inject && !input.secrets[alias]?.require);
  if (needsNothing) return { ok: true, headers: kept.map(([name, value]) => [name, value]), target: input.target, uses: [] };

  // in-scope secrets to fill now: those written somewhere, and those injected
  // No placeholder anywhere (the common case with inject): nothing to look for, only injections to make.
  const present = mayHavePlaceholder ? new Set(surfaces.flatMap((surface) => findPlaceholders(surface.text, index))) : new Set<string>();
  const active = index.entries.filter(
    (entry) => input.inScope.includes(entry.alias) && (present.has(entry.alias) || input.secrets[entry.alias]?.inject),
  );
  for (const alias of input.inScope) {
    const problem = requireProblem(input, alias);
    if (problem) return problem;
  }
  const values = new Map<string, string>();
  for (const { alias } of active) {
    const value = input.values(alias);
    if (!value) {
      return {
        ok: false,
        reason: 'secret_unavailable',
        alias,
        detail: `secret "${alias}" has no value right now (its source is missing or empty)`,
      };
    }
    values.set(alias, value);
  }

  const uses: SecretUse[] = [];
  const used = (alias: string, where: string): void => {
    if (!uses.some((u) => u.alias === alias && u.where === where)) uses.push({ alias, where });
  };
  // Every placeholder present passed checkPlaceholders: it sits where its swap_in allows.
  // Only placeholders present are swapped: an injected secret's placeholder that no surface holds changes nothing.
  const swapping = active.filter((entry) => present.has(entry.alias));
  const swapAll = (text: string, where: string, encodeRaw: boolean): string => {
    if (swapping.length === 0) return text;
    let out = text;
    for (const { alias, placeholder, pattern } of swapping) {
      const value = values.get(alias)!;
      const encoded = encodeURIComponent(value);
      const swapped = swap(out, pattern, placeholder, encodeRaw ? encoded : value, encoded);
      if (swapped !== out) used(alias, where);
      out = swapped;
    }
    return out;
  };

  const injects = input.inScope.flatMap((alias) => {
    const inject = input.secrets[alias]?.inject;
    return inject ? [{ alias, header: inject.header, value: inject.format.split('{value}').join(values.get(alias)) }] : [];
  });
  const injected = new Set(injects.map((i) => i.header.toLowerCase()));

  const headers: Array<[string, string]> = [];
  for (const [name, value] of kept) {
    if (injected.has(name.toLowerCase())) continue;
    const where = `header:${name}`;
    const basic = name.toLowerCase() === 'authorization' ? BASIC.exec(value) : null;
    if (basic) {
      const credentials = Buffer.from(basic[2]!, 'base64').toString('utf8');
      const swapped = swapAll(credentials, where, false);
      if (swapped !== credentials) {
        headers.push([name, `${basic[1]}${Buffer.from(swapped, 'utf8').toString('base64')}${basic[3]}`]);
        continue;
      }
    }
    headers.push([name, swapAll(value, where, false)]);
  }
  for (const inject of injects) {
    headers.push([inject.header, inject.value]);
    used(inject.alias, `inject:${inject.header}`);
  }

  const { path, query } = splitTarget(input.target);
  const target = swapAll(path, 'path', true) + (query === null ? '' : `?${swapAll(query, 'query', true)}`);
  return { ok: true, headers, target, uses };
}
