// Hop-by-hop headers belong to one connection and never cross sluice (RFC 9110 §7.6.1); the
// credentials a tool presents to sluice (Proxy-Authorization) never go upstream.

const HOP_BY_HOP = new Set([
  // Not hop-by-hop by RFC, but sluice's own server already answered "100 Continue" to the
  // client, and undici refuses to send it upstream.
  'expect',
  'connection',
  'keep-alive',
  // httpoxy: CGI-style servers turn a "Proxy" request header into HTTP_PROXY for their own clients.
  'proxy',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export const VIA = '1.1 sluice';

/** Header pairs without hop-by-hop headers, including any named by Connection. */
export function endToEndHeaders(raw: readonly string[], keepUpgrade = false): Array<[string, string]> {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (keepUpgrade && lower === 'upgrade') {
      out.push([name, raw[i + 1]!]);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    out.push([name, raw[i + 1]!]);
  }
  return out;
}

/** Adds sluice to Via, keeping what earlier hops wrote. */
export function withVia(headers: Array<[string, string]>): Array<[string, string]> {
  const i = headers.findIndex(([name]) => name.toLowerCase() === 'via');
  if (i >= 0) headers[i] = [headers[i]![0], `${headers[i]![1]}, ${VIA}`];
  else headers.push(['Via', VIA]);
  return headers;
}

export function flatten(headers: ReadonlyArray<readonly [string, string]>): string[] {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  return flat;
}

export function withoutHeader(headers: Array<[string, string]>, name: string): Array<[string, string]> {
  const lower = name.toLowerCase();
  return headers.filter(([n]) => n.toLowerCase() !== lower);
}

/** The Host header's value exactly as the client sent it. */
export function clientHost(rawHeaders: readonly string[]): string | null {
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'host') return rawHeaders[i + 1]!;
  return null;
}
