// Request targets as the client wrote them: absolute-form for plain HTTP, authority-form for
// CONNECT. Anything ambiguous is refused rather than interpreted.
import { canonicalHost, splitHostPort, type CanonicalHost } from '../net/host.js';

export interface Target {
  /** canonical host */
  host: CanonicalHost;
  port: number;
  /** authority as it must appear in the Host header upstream */
  authority: string;
  /** origin-form path with query, as written */
  path: string;
}

export type TargetResult = { ok: true; target: Target } | { ok: false; why: string };

const ABSOLUTE_HTTP = /^http:\/\/([^/?#]*)([^#]*)$/i;

export function parseAbsoluteTarget(url: string): TargetResult {
  if (/^https:\/\//i.test(url)) return { ok: false, why: 'https URLs must go through CONNECT, not as an absolute-form request' };
  const m = ABSOLUTE_HTTP.exec(url);
  if (!m) {
    return url.startsWith('/')
      ? { ok: false, why: 'sluice is a forward proxy: send the absolute URL (http://host/path) or use CONNECT' }
      : { ok: false, why: 'the request target is not an absolute http:// URL' };
  }
  const authority = m[1]!;
  if (authority.includes('@')) return { ok: false, why: 'credentials in the request URL (user@host) are not accepted' };
  const hp = parseAuthority(authority, 80);
  if (!hp.ok) return hp;
  const rest = m[2]!;
  const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
  return { ok: true, target: { ...hp.target, path } };
}

export function parseConnectTarget(authority: string): TargetResult {
  const split = splitHostPort(authority);
  if (!split || split.port === null) return { ok: false, why: 'a CONNECT target must be host:port' };
  return parseAuthority(authority, split.port);
}

function parseAuthority(authority: string, defaultPort: number): TargetResult {
  const split = splitHostPort(authority);
  if (!split) return { ok: false, why: `"${authority.slice(0, 100)}" is not a valid host[:port]` };
  const host = canonicalHost(split.host);
  if (!host) return { ok: false, why: `"${split.host.slice(0, 100)}" is not a valid host name or address` };
  const port = split.port ?? defaultPort;
  return { ok: true, target: { host, port, authority, path: '/' } };
}

/** Whether a Host header names the same authority as the request target (default port implied). */
export function sameAuthority(hostHeader: string, target: Target, defaultPort: number): boolean {
  const split = splitHostPort(hostHeader.trim());
  if (!split) return false;
  const host = canonicalHost(split.host);
  return host !== null && host.host === target.host.host && (split.port ?? defaultPort) === target.port;
}
