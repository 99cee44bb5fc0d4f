// Host patterns of the policy file ("api.github.com", "*.example.com", "example.com:8443",
// "1.2.3.4", "[2001:db8::1]:443", and "*" when strict is off), compiled once to canonical form
// so that matching a request is a string comparison, never a re-parse. Pure, and shared by the
// policy checks in src/config/ and the decisions in src/policy/, so it belongs to neither.
import { isIP } from 'node:net';
import { canonicalHost, splitHostPort, type CanonicalHost } from '../net/host.js';

export type HostPattern =
  /** bare "*": every host, names and IP literals alike (the loader refuses it when strict) */
  | { kind: 'any'; text: string; port: null }
  /** one canonical name or IP literal; an IP pattern never matches a name that resolves to it */
  | { kind: 'exact'; text: string; host: string; port: number | null }
  /** "*.suffix": names strictly below suffix, at any depth, never suffix itself */
  | { kind: 'subdomains'; text: string; suffix: string; port: number | null };

/** Compiles a policy host pattern; null when it is not one (the caller reports where). */
export function compileHostPattern(text: string): HostPattern | null {
  if (text === '*') return { kind: 'any', text, port: null };
  // A bare IPv6 literal has colons that would read as a port; brackets are the documented form.
  const split = isIP(text) === 6 ? { host: text, port: null } : splitHostPort(text);
  if (!split) return null;
  if (text.startsWith('[') && isIP(split.host) !== 6) return null;
  if (split.host.startsWith('*.')) {
    const suffix = canonicalHost(split.host.slice(2));
    if (!suffix || suffix.kind !== 'name') return null;
    return { kind: 'subdomains', text, suffix: suffix.host, port: split.port };
  }
  const exact = canonicalHost(split.host);
  if (!exact) return null;
  return { kind: 'exact', text, host: exact.host, port: split.port };
}

/** Whether a compiled pattern covers a canonical host, ignoring ports (see patternAllowsPort). */
export function patternMatchesHost(pattern: HostPattern, host: CanonicalHost): boolean {
  switch (pattern.kind) {
    case 'any':
      return true;
    case 'exact':
      return pattern.host === host.host;
    case 'subdomains':
      // The dot keeps "evil-example.com" out of "*.example.com"; endsWith keeps the apex out.
      return host.kind === 'name' && host.host.endsWith(`.${pattern.suffix}`);
  }
}

/** Whether a pattern covers host on port: a pattern naming a port covers only that port. */
export function patternCovers(pattern: HostPattern, host: CanonicalHost, port: number | undefined): boolean {
  if (pattern.port !== null && pattern.port !== port) return false;
  return patternMatchesHost(pattern, host);
}

/**
 * Convenience form on raw strings: the host is canonicalized first (case, trailing dot, IDN,
 * odd IPv4 spellings, IPv6 brackets). A pattern that names a port needs the matching port.
 * Invalid patterns and hosts match nothing.
 */
export function hostMatches(pattern: string, host: string, port?: number): boolean {
  const compiled = compileHostPattern(pattern);
  const canonical = canonicalHost(host);
  return compiled !== null && canonical !== null && patternCovers(compiled, canonical, port);
}
