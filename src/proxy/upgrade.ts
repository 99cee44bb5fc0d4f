// WebSocket (and any Upgrade) requests: decided like any request, then the handshake is written
// to the vetted address and frames flow untouched in both directions.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { dialTcp, dialTls } from '../net/dial.js';
import { admitRequest, servernameOf, type RequestScope } from './admit.js';
import { sendRawAnswer } from './answers.js';
import type { ProxyDeps } from './context.js';
import { endToEndHeaders, withVia } from './headers.js';
import { classifyUpstreamError } from './upstream-errors.js';

export async function forwardUpgrade(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy());
  const admission = await admitRequest(deps, scope, req);
  const ex = admission.ex;
  client.once('close', () => ex.report('net.req'));
  if (!admission.ok) return sendRawAnswer(client, admission.answer);
  const { target, decision, ip } = admission;

  const dialTarget = { ip, port: target.port, servername: servernameOf(target.host) };
  let upstream: Duplex;
  try {
    upstream =
      scope.scheme === 'https'
        ? await dialTls(dialTarget, { timeoutMs: decision.limits.connect_timeout_ms, ca: scope.runtime.upstreamCa })
        : await dialTcp(dialTarget, decision.limits.connect_timeout_ms);
  } catch (err) {
    const failure = classifyUpstreamError(err);
    const answer = ex.failure(failure.code, failure.detail);
    return sendRawAnswer(client, answer);
  }
  upstream.on('error', () => upstream.destroy());

  const headers = withVia(endToEndHeaders(req.rawHeaders, true).filter(([name]) => name.toLowerCase() !== 'host'));
  const lines = [`${req.method} ${admission.upstreamPath} HTTP/1.1`, `Host: ${target.authority}`, 'Connection: Upgrade'];
  for (const [name, value] of headers) lines.push(`${name}: ${value}`);
  upstream.write(lines.join('\r\n') + '\r\n\r\n');
  if (head.length > 0) upstream.write(head);

  ex.status = 101;
  upstream.once('data', (chunk: Buffer) => {
    const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
    if (statusLine) ex.status = Number(statusLine[1]);
  });
  upstream.on('data', (chunk: Buffer) => (ex.bytesDown += chunk.length));
  client.on('data', (chunk: Buffer) => (ex.bytesUp += chunk.length));
  const idle = decision.limits.idle_timeout_ms;
  for (const s of [client, upstream]) {
    if ('setTimeout' in s && typeof s.setTimeout === 'function') s.setTimeout(idle, () => s.destroy());
  }
  upstream.pipe(client);
  client.pipe(upstream);
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
}
