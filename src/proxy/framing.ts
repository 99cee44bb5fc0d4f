// Request framing sluice accepts beyond what Node's parser already refuses: what the next hop could
// read differently from sluice is refused before anything else looks at the request.
// - llhttp rejects duplicate or conflicting Content-Length, Content-Length with Transfer-Encoding
//   and a final coding other than chunked, but lets through codings stacked before chunked
//   (`gzip, chunked`, or two header lines `x` then `chunked`) and chunked in HTTP/1.0. Sluice would
//   drop such a coding when it re-frames the body upstream, so the upstream would read other bytes.
// - A header whose name is a framing or hop-by-hop header spelled with `_` (`Transfer_Encoding`)
//   passes Node as an ordinary header, and CGI-style servers fold `_` into `-`.
// - An Upgrade to h2c would turn the connection into HTTP/2 that sluice does not read.
import type { Duplex } from 'node:stream';
import { lookalikeHeader } from '../http/lookalike.js';

export interface FramedHead {
  kind: 'request' | 'connect' | 'upgrade';
  httpVersion: string;
  rawHeaders: readonly string[];
}

/** Null when the request's framing is unambiguous; else why it is refused. */
export function framingProblem(head: FramedHead): string | null {
  const { httpVersion, rawHeaders } = head;
  const lookalike = lookalikeHeader(rawHeaders);
  if (lookalike) {
    return `the header ${JSON.stringify(lookalike.name.slice(0, 60))} looks like ${lookalike.looksLike} but is not it (request smuggling is refused)`;
  }
  const codings: string[] = [];
  const upgrades: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'transfer-encoding') for (const token of rawHeaders[i + 1]!.split(',')) codings.push(token.trim().toLowerCase());
    if (name === 'upgrade') for (const token of rawHeaders[i + 1]!.split(',')) upgrades.push(token.trim().toLowerCase());
  }
  if (head.kind === 'upgrade') {
    if (upgrades.some((u) => u.startsWith('h2c') || u.startsWith('http/2')))
      return 'an Upgrade to HTTP/2 (h2c) is not relayed: sluice reads HTTP/1.1 only';
    if (upgrades.length !== 1) return 'an Upgrade request must name exactly one protocol';
  }
  if (codings.length === 0) return null;
  if (httpVersion === '1.0') return 'Transfer-Encoding in an HTTP/1.0 request is not valid framing';
  if (codings.length !== 1 || codings[0] !== 'chunked') {
    return `the request's Transfer-Encoding (${codings.join(', ').slice(0, 100)}) is not exactly "chunked"`;
  }
  return null;
}

/** The answer of the latest request read on each client connection, settled when it closes. */
const latestOnConnection = new WeakMap<Duplex, Promise<void>>();

/**
 * Waits until the requests pipelined before this one on the same connection are answered; false
 * when one of them closed the connection, so this request (or Upgrade) must never be acted on.
 * Node's parser emits every pipelined request at once, even after an answer that closes the
 * connection. `answered` settles when this request's own answer is done.
 */
export async function awaitTurn(connection: Duplex, answered: Promise<void>): Promise<boolean> {
  const previous = latestOnConnection.get(connection);
  latestOnConnection.set(connection, answered);
  if (previous) await previous;
  // An answer with Connection: close ends the socket's writable side as it finishes.
  return !connection.destroyed && !connection.writableEnded;
}
