// Host names as the network sees them. The WHATWG URL host parser (built into Node) already does
// what an OS resolver would do with odd IPv4 spellings (2130706433, 0x7f.1, 0177.0.0.1, 127.1) and
// turns IDN into punycode, so every component asks this module rather than parsing hosts itself.
import { isIP } from 'node:net';
import { growingLru } from './lru.js';

export type CanonicalHost = { kind: 'ip'; host: string; family: 4 | 6 } | { kind: 'name'; host: string };

const INVALID = Symbol('invalid host');
/** Hosts repeat from request to request; the URL parser need not run for each. Results are frozen. */
const canonical = growingLru<string, CanonicalHost | typeof INVALID>(4096);

/**
 * Canonical form of a host as a client wrote it: lower case, punycode, no trailing dot,
 * IPv4 in dotted quad whatever the spelling, IPv6 compressed without brackets.
 * Returns null for anything that is not a valid host.
 */
export function canonicalHost(raw: string): CanonicalHost | null {
  const cached = canonical.get(raw);
  if (cached !== undefined) return cached === INVALID ? null : cached;
  const host = parseHost(raw);
  canonical.set(raw, host ?? INVALID);
  return host;
}

function parseHost(raw: string): CanonicalHost | null {
  if (raw.length === 0 || raw.length > 255) return null;
  // A bare IPv6 literal (from a CONNECT line or a policy) gets its brackets back for the URL parser.
  const bracketed = isIP(raw) === 6 ? `[${raw}]` : raw;
  if (/[/?#@\\\s%]/.test(bracketed)) return null;
  // A port is not part of a host: "a.com:8443" must be split by the caller, never silently dropped.
  if (bracketed.startsWith('[') ? !bracketed.endsWith(']') : bracketed.includes(':')) return null;
  let hostname: string;
  try {
    hostname = new URL(`http://${bracketed}/`).hostname;
  } catch {
    return null;
  }
  if (hostname.startsWith('[')) return Object.freeze({ kind: 'ip', host: hostname.slice(1, -1), family: 6 });
  if (isIP(hostname) === 4) return Object.freeze({ kind: 'ip', host: hostname, family: 4 });
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (name.length === 0 || name.split('.').some((label) => label.length === 0 || label.length > 63)) return null;
  if (!/^[a-z0-9_.-]+$/.test(name)) return null;
  return Object.freeze({ kind: 'name', host: name });
}

/** Splits "host:port" or "[v6]:port" (as in a CONNECT target or a policy host). Port is null when absent. */
export function splitHostPort(authority: string): { host: string; port: number | null } | null {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return null;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (m[2] === undefined) return { host, port: null };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

/** How a canonical host is written in a URL or Host header. */
export function hostForUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}
