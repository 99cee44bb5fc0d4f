// WebSocket (and any Upgrade) requests: decided like any request, with the credentials step on
// the handshake and a per-tool slot; then the handshake is written to the vetted address and
// frames flow untouched in both directions, within the size limits.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { dialTcp, dialTls } from '../net/dial.js';
import { relaySocket } from '../net/socket-relay.js';
import { admitRequest, servernameOf, type RequestScope } from './admit.js';
import { sendRawAnswer } from './answers.js';
import type { ProxyDeps } from './context.js';
import { endToEndHeaders, withVia } from './headers.js';
import { secretsForHead } from './secrets-step.js';
import { holdSlotWhileOpen } from './tunnel.js';
import { classifyUpstreamError } from './upstream-errors.js';

export async function forwardUpgrade(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy());
  const admission = await admitRequest(deps, scope, req);
  const ex = admission.ex;
  client.once('close', () => ex.report('net.req'));
  if (!admission.ok) return sendRawAnswer(client, admission.answer);
  const { tool, target, decision, ip } = admission;
  const limits = decision.limits;

  // An upgraded connection holds one of the tool's slots while it is open, like a tunnel.
  if (!(await holdSlotWhileOpen(deps, scope.runtime, tool, limits, ex, client))) return;

  const handshake = withVia(endToEndHeaders(req.rawHeaders, true).filter(([name]) => name.toLowerCase() !== 'host'));
  const credentials = secretsForHead(deps.observer, scope.runtime, ex, tool, decision, handshake, admission.upstreamPath);
  if (!credentials.ok) return sendRawAnswer(client, credentials.answer);

  const dialTarget = { ip, port: target.port, servername: servernameOf(target.host) };
  let upstream: Duplex;
  try {
    upstream =
      scope.scheme === 'https'
        ? await dialTls(dialTarget, { timeoutMs: limits.connect_timeout_ms, ca: scope.runtime.upstreamCa })
        : await dialTcp(dialTarget, limits.connect_timeout_ms);
  } catch (err) {
    const failure = classifyUpstreamError(err);
    const answer = ex.failure(failure.code, failure.detail);
    return sendRawAnswer(client, answer);
  }
  upstream.on('error', () => upstream.destroy());

  const lines = [`${req.method} ${credentials.target} HTTP/1.1`, `Host: ${target.authority}`, 'Connection: Upgrade'];
  for (const [name, value] of credentials.headers) lines.push(`${name}: ${value}`);
  upstream.write(lines.join('\r\n') + '\r\n\r\n');
  if (head.length > 0) upstream.write(head);

  ex.status = 101;
  upstream.once('data', (chunk: Buffer) => {
    const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
    if (statusLine) ex.status = Number(statusLine[1]);
  });
  const cut = (reason: 'request_too_large' | 'response_too_large', detail: string): false => {
    ex.limitExceeded(reason, detail);
    client.destroy();
    upstream.destroy();
    return false;
  };
  // The size limits hold for an upgraded connection's bytes as for a request's and a response's.
  relaySocket(upstream, client, (bytes) => {
    ex.bytesDown += bytes;
    if (ex.bytesDown <= limits.max_response_bytes) return true;
    return cut('response_too_large', `the upgraded connection carried more than ${limits.max_response_bytes} bytes downstream; it was closed`);
  });
  relaySocket(client, upstream, (bytes) => {
    ex.bytesUp += bytes;
    if (ex.bytesUp <= limits.max_request_bytes) return true;
    return cut('request_too_large', `the upgraded connection carried more than ${limits.max_request_bytes} bytes upstream; it was closed`);
  });
  for (const s of [client, upstream]) {
    if ('setTimeout' in s && typeof s.setTimeout === 'function') s.setTimeout(limits.idle_timeout_ms, () => s.destroy());
  }
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
}
