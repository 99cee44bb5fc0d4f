// Request framing sluice accepts beyond what Node's parser already refuses. llhttp rejects duplicate
// or conflicting Content-Length, Content-Length with Transfer-Encoding and a final coding other
// than chunked, but lets through codings stacked before chunked (`gzip, chunked`, or two header
// lines `x` then `chunked`) and chunked in HTTP/1.0. Sluice would drop such a coding when it
// re-frames the body upstream, so the upstream would read different bytes than the client meant.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

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

/** The response of the latest request read on each client connection, settled when it closes. */
const latestOnConnection = new WeakMap<Duplex, Promise<void>>();

/**
 * Waits until the requests pipelined before this one on the same connection are answered; false
 * when one of them closed the connection, so this request must never be acted on. Node's parser
 * emits every pipelined request at once, even after an answer that closes the connection.
 */
export async function awaitTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const connection = req.socket;
  const previous = latestOnConnection.get(connection);
  latestOnConnection.set(connection, new Promise<void>((resolve) => res.once('close', () => resolve())));
  if (previous) await previous;
  // An answer with Connection: close ends the socket's writable side as it finishes.
  return !connection.destroyed && !connection.writableEnded;
}
