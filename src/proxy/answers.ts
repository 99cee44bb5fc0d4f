// Every answer sluice makes itself: status, header and body from the outcome table, one shape for
// all of them, written on an http.ServerResponse or on a raw socket.
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { OUTCOME, STATUS_TEXT, type Outcome } from '../policy/reasons.js';
import { VIA } from './headers.js';

export interface Answer {
  status: number;
  /**
   * The reason phrase: the status text and, because curl, git, pip, requests and the JDK print the
   * status line of a refused CONNECT but never its body, the code and host, e.g.
   * "Forbidden (sluice: no_rule pypi.org)".
   */
  phrase: string;
  headers: Record<string, string>;
  body: string;
}

export function outcomeAnswer(
  code: Outcome,
  detail: string,
  requestId: string,
  retryAfterSeconds?: number,
  host?: string | null,
  denyNote?: string | null,
): Answer {
  const entry = OUTCOME[code];
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    [entry.header]: code,
    'X-Request-Id': requestId,
    Via: VIA,
  };
  if (code === 'unauthenticated') headers['Proxy-Authenticate'] = 'Basic realm="sluice"';
  const retry = retryAfterSeconds ?? entry.retryAfterSeconds;
  if (retry !== null) headers['Retry-After'] = String(retry);
  // The operator's sentence (--deny-message) goes to the client with every refusal, not into the audit.
  const told = denyNote && entry.header === 'X-Sluice-Deny' ? `${detail} ${denyNote}` : detail;
  const body = JSON.stringify({ error: entry.body, reason: code, detail: told, request_id: requestId });
  const phrase = `${STATUS_TEXT[entry.status] ?? 'Error'} (sluice: ${code}${host ? ` ${phraseSafe(host)}` : ''})`;
  return { status: entry.status, phrase, headers, body };
}

/** A host in a reason phrase: visible ASCII only, bounded (a phrase may not carry CR, LF or controls). */
function phraseSafe(host: string): string {
  return host.replace(/[^\x21-\x7e]/g, '?').slice(0, 100);
}

/** Writes an answer on an http.ServerResponse; closes the connection when asked (ambiguous input). */
export function sendAnswer(res: ServerResponse, answer: Answer, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...answer.headers, 'Content-Length': String(Buffer.byteLength(answer.body)) };
  if (close) headers['Connection'] = 'close';
  res.shouldKeepAlive = res.shouldKeepAlive && !close;
  res.writeHead(answer.status, answer.phrase, headers);
  res.end(answer.body);
}

/** The status line sluice writes on a raw socket. */
export function statusLine(status: number, reason?: string): string {
  return `HTTP/1.1 ${status} ${reason ?? STATUS_TEXT[status] ?? 'Error'}`;
}

/** Writes an answer on a raw socket (CONNECT before the tunnel opens, upgrades) and closes it. */
export function sendRawAnswer(socket: Duplex, answer: Answer): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const lines = [statusLine(answer.status, answer.phrase)];
  for (const [name, value] of Object.entries(answer.headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${Buffer.byteLength(answer.body)}`, 'Connection: close', '', '');
  socket.end(lines.join('\r\n') + answer.body);
}
