// Request framing sluice accepts beyond what Node's parser already refuses. llhttp rejects duplicate
// or conflicting Content-Length, Content-Length with Transfer-Encoding and a final coding other
// than chunked, but lets through codings stacked before chunked (`gzip, chunked`, or two header
// lines `x` then `chunked`) and chunked in HTTP/1.0. Sluice would drop such a coding when it
// re-frames the body upstream, so the upstream would read different bytes than the client meant.

/** Null when the request's framing is unambiguous; else why it is refused. */
export function framingProblem(httpVersion: string, rawHeaders: readonly string[]): string | null {
  const codings: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'transfer-encoding') continue;
    for (const token of rawHeaders[i + 1]!.split(',')) codings.push(token.trim().toLowerCase());
  }
  if (codings.length === 0) return null;
  if (httpVersion === '1.0') return 'Transfer-Encoding in an HTTP/1.0 request is not valid framing';
  if (codings.length !== 1 || codings[0] !== 'chunked') {
    return `the request's Transfer-Encoding (${codings.join(', ').slice(0, 100)}) is not exactly "chunked"`;
  }
  return null;
}
