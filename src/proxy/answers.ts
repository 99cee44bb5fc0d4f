// Every answer sluice makes itself: one shape per kind, reasons from the closed unions.
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { DENY_STATUS, UPSTREAM_ERROR_STATUS, type DenyReason, type UpstreamError } from '../policy/reasons.js';
import { VIA } from './headers.js';

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function denyAnswer(reason: DenyReason, detail: string, requestId: string): Answer {
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'X-Sluice-Deny': reason,
    'X-Request-Id': requestId,
    Via: VIA,
  };
  if (reason === 'unauthenticated') headers['Proxy-Authenticate'] = 'Basic realm="sluice"';
  if (reason === 'rate_limited') headers['Retry-After'] = '1';
  const body = JSON.stringify({ error: 'denied', reason, detail, request_id: requestId });
  return { status: DENY_STATUS[reason], headers, body };
}

export function upstreamErrorAnswer(code: UpstreamError, detail: string, requestId: string): Answer {
  return {
    status: UPSTREAM_ERROR_STATUS[code],
    headers: { 'Content-Type': 'application/json', 'X-Sluice-Error': code, 'X-Request-Id': requestId, Via: VIA },
    body: JSON.stringify({ error: 'upstream', reason: code, detail, request_id: requestId }),
  };
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
  res.writeHead(answer.status, headers);
  res.end(answer.body);
}

/** Writes an answer on a raw socket (CONNECT before the tunnel opens, upgrades) and closes it. */
export function sendRawAnswer(socket: Duplex, answer: Answer): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const lines = [`HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? 'Error'}`];
  for (const [name, value] of Object.entries(answer.headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${Buffer.byteLength(answer.body)}`, 'Connection: close', '', '');
  socket.end(lines.join('\r\n') + answer.body);
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
