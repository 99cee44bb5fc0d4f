// Header names that are not a framing or hop-by-hop header but would be read as one downstream.
// Node's parser already refuses header names with bytes outside tchar, but `_` is a tchar: a
// request with `Transfer_Encoding: chunked` passes as an ordinary header and would go upstream
// beside sluice's own Content-Length. CGI-style servers (and frameworks built on WSGI/Rack-like
// environments) fold `-` and `_` together (both become HTTP_TRANSFER_ENCODING), so the upstream
// reads a Transfer-Encoding sluice never saw: request smuggling. Same for a look-alike Host (a
// second authority), Content-Length, Connection, Upgrade and Proxy-* (httpoxy, credentials).
//
// A name is a look-alike when, lower-cased, with `_` read as `-`, spaces, tabs and control bytes
// removed, and runs of `-` collapsed and trimmed at both ends, it is one of FRAMING_HEADER_NAMES or
// `proxy` / `proxy-*`, while the name as sent is not exactly (case aside) that name. So
// `Transfer_Encoding`, `Transfer-Encoding_`, `_Content-Length`, `Proxy_Authorization` and
// `Connection\x01` are look-alikes; `Transfer-Encoding`, `X-Transfer-Encoding-Hint` and `X_Custom`
// are not. (`TransferEncoding` is not one: no server folds a missing separator back.)
// Pure: the caller (the admission pipeline) decides to refuse, and audits.

/** Framing and hop-by-hop header names (lower case), besides the `proxy-*` family. */
export const FRAMING_HEADER_NAMES: readonly string[] = Object.freeze([
  'transfer-encoding',
  'content-length',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'host',
]);

const FRAMING = new Set(FRAMING_HEADER_NAMES);

/** True for the names whose look-alikes are refused: the list above, and `proxy` or `proxy-*`. */
export function isFramingHeaderName(lowerCaseName: string): boolean {
  return FRAMING.has(lowerCaseName) || lowerCaseName === 'proxy' || lowerCaseName.startsWith('proxy-');
}

/**
 * The first header in `rawHeaders` (Node's alternating name, value list) whose name is a
 * look-alike of a framing or hop-by-hop header, with the name it looks like; null when none is.
 * The name is returned as sent, so the caller must bound and escape it before printing.
 */
export function lookalikeHeader(rawHeaders: readonly string[]): { name: string; looksLike: string } | null {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // Fast path: a name made of letters, digits and single inner dashes is its own normal form.
    if (/^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$/.test(name)) continue;
    const looksLike = normalise(name);
    if (isFramingHeaderName(looksLike) && name.toLowerCase() !== looksLike) return { name, looksLike };
  }
  return null;
}

/** What a folding server makes of a header name (see the file comment). */
function normalise(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/_/g, '-')
      // eslint-disable-next-line no-control-regex -- control bytes are what is removed here
      .replace(/[\x00-\x20\x7f]/g, '')
      .replace(/-{2,}/g, '-')
      .replace(/^-|-$/g, '')
  );
}
