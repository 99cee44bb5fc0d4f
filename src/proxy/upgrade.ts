// Upgrade (WebSocket) requests are requests with a response. Admitted by the one pipeline, with the
// credentials step on the handshake, then sent to the vetted address by Node's HTTP client over the
// connection sluice dialled. Only a genuine 101 that echoes the requested protocol starts the relay
// (with the client's bytes after the handshake, never before); any other answer goes back through
// the ordinary response path (scrubbed, audited) and the connection closes. The 101 head is
// scrubbed like any response head. An upgraded connection holds the tool's slot while it is open.
import http, { type IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { dialTcp, dialTls } from '../net/dial.js';
import { relaySocket } from '../net/socket-relay.js';
import { admit, headOf, servernameOf, type RequestScope } from './admit.js';
import { sendRawAnswer, statusLine } from './answers.js';
import type { ProxyDeps } from './context.js';
import { awaitTurn } from './framing.js';
import { clientHost, endToEndHeaders, flatten, withVia } from './headers.js';
import { inspectHead, inspectorFor, upgradeRefusal } from './inspect.js';
import { ConnectionLife } from './lifecycle.js';
import { responseScrubber, scrubStatusText, secretsForHead } from './secrets-step.js';
import { classifyUpstreamError } from './upstream-errors.js';

export async function forwardUpgrade(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  // Nothing the client sends after the handshake is read until the upstream said 101.
  client.pause();
  client.on('error', () => client.destroy());
  let answered!: () => void;
  const done = new Promise<void>((resolve) => (answered = resolve));
  client.once('close', answered);
  if (!(await awaitTurn(client, done))) {
    client.destroy();
    return;
  }
  const admission = await admit(deps, scope, headOf('upgrade', req));
  const ex = admission.ex;
  const life = new ConnectionLife(deps.open, client, ex, 'net.req');
  if (!admission.ok) return sendRawAnswer(client, admission.answer);
  life.hold(admission.release);
  if (client.destroyed) return;
  const { tool, target, decision, ip, runtime } = admission;
  const limits = decision.limits;
  if (decision.sha256 !== null) {
    return sendRawAnswer(
      client,
      ex.answer('bad_request', `rule ${decision.rule} pins a sha256 digest, which an upgraded connection cannot be checked against`),
    );
  }
  // The content seam: an upgraded connection's bytes are never read, so a request an inspector
  // would read (or refuse) is refused here rather than passed unchecked.
  const inspector = inspectorFor(runtime, tool, decision);
  if (inspector) {
    const refusal = upgradeRefusal(inspector, inspectHead(req, decision, admission.upstreamPath));
    if (refusal) return sendRawAnswer(client, ex.answer(refusal.reason, refusal.detail));
  }

  const handshake = withVia(endToEndHeaders(req.rawHeaders, true).filter(([name]) => name.toLowerCase() !== 'host'));
  const credentials = secretsForHead(deps.observer, runtime, ex, tool, decision, handshake, admission.upstreamPath);
  if (!credentials.ok) return sendRawAnswer(client, credentials.answer);
  const requested = (req.headers.upgrade ?? '').trim().toLowerCase();

  const dialTarget = { ip, port: target.port, servername: servernameOf(target.host) };
  let upstream: Duplex;
  try {
    upstream =
      scope.scheme === 'https'
        ? await dialTls(dialTarget, { timeoutMs: limits.connect_timeout_ms, ca: runtime.upstreamCa })
        : await dialTcp(dialTarget, limits.connect_timeout_ms);
  } catch (err) {
    const failure = classifyUpstreamError(err, limits);
    return sendRawAnswer(client, ex.answer(failure.code, failure.detail));
  }
  life.link(upstream);
  if (client.destroyed) return;

  const headers: Array<[string, string]> = [
    ['Host', clientHost(req.rawHeaders) ?? target.authority],
    ['Connection', 'Upgrade'],
    ...credentials.headers,
  ];
  const outgoing = http.request({
    createConnection: () => upstream,
    method: req.method ?? 'GET',
    path: credentials.target,
    headers: flatten(headers),
    setHost: false,
  });
  outgoing.on('error', (err) => {
    const failure = classifyUpstreamError(err, limits);
    sendRawAnswer(client, ex.answer(failure.code, failure.detail));
  });
  const headerTimer = setTimeout(() => {
    const detail = `the upstream did not answer the Upgrade within header_timeout_ms (${limits.header_timeout_ms} ms)`;
    sendRawAnswer(client, ex.answer('upstream_timeout', detail));
    upstream.destroy();
  }, limits.header_timeout_ms);
  client.once('close', () => clearTimeout(headerTimer));
  const refuseAnswer = (detail: string): void => {
    clearTimeout(headerTimer);
    sendRawAnswer(client, ex.answer('upstream_protocol', detail));
    upstream.destroy();
  };
  // A 101 without an Upgrade header is not an upgrade to Node's parser: it arrives as a 1xx.
  outgoing.on('information', (info) => {
    if (info.statusCode === 101) refuseAnswer('the upstream answered 101 without naming the protocol it switched to');
  });

  outgoing.on('response', (res: IncomingMessage) => {
    // Not upgraded: an ordinary response, scrubbed like any other; then the connection closes.
    clearTimeout(headerTimer);
    // Node hands a 101 without an Upgrade header here, as a final response: it upgrades to nothing.
    if (res.statusCode === 101) return refuseAnswer('the upstream answered 101 without naming the protocol it switched to');
    ex.status = res.statusCode ?? 502;
    const scrub = responseScrubber(runtime, decision, endToEndHeaders(res.rawHeaders));
    if (scrub === 'undecodable') return refuseAnswer('the response uses a content coding sluice cannot decode to scrub secret values');
    const kept = (scrub ? scrub.headers : endToEndHeaders(res.rawHeaders)).filter(
      ([n]) => !['content-length', 'transfer-encoding'].includes(n.toLowerCase()),
    );
    const lines = [statusLine(ex.status, scrubStatusText(runtime, res.statusMessage ?? ''))];
    for (const [name, value] of withVia(kept)) lines.push(`${name}: ${value}`);
    lines.push('Connection: close', '', '');
    client.write(lines.join('\r\n'));
    const body: Readable = scrub ? scrub.body : res;
    if (scrub) res.pipe(scrub.body);
    let down = 0;
    body.on('data', (chunk: Buffer) => {
      down += chunk.length;
      ex.bytesDown = down;
      if (down > limits.max_response_bytes) {
        life.end('response_too_large', `the response crossed the limit of ${limits.max_response_bytes} bytes for tool ${tool}; it was cut`);
        return;
      }
      if (!client.write(chunk)) body.pause();
    });
    client.on('drain', () => body.resume());
    body.on('end', () => client.end());
    body.on('error', () => client.destroy());
  });

  outgoing.on('upgrade', (res: IncomingMessage, socket: Duplex, upstreamHead: Buffer) => {
    clearTimeout(headerTimer);
    const protocol = (res.headers.upgrade ?? '').trim().toLowerCase();
    if (protocol !== requested) {
      return refuseAnswer(
        `the upstream switched to ${JSON.stringify(protocol.slice(0, 40))}, not the requested ${JSON.stringify(requested.slice(0, 40))}`,
      );
    }
    ex.status = 101;
    const scrub = responseScrubber(runtime, decision, endToEndHeaders(res.rawHeaders, true));
    const kept = scrub && scrub !== 'undecodable' ? scrub.headers : endToEndHeaders(res.rawHeaders, true);
    const lines = [statusLine(101, scrubStatusText(runtime, res.statusMessage ?? 'Switching Protocols')), 'Connection: Upgrade'];
    for (const [name, value] of withVia(kept)) lines.push(`${name}: ${value}`);
    lines.push('', '');
    client.write(lines.join('\r\n'));
    if (upstreamHead.length > 0) {
      ex.bytesDown += upstreamHead.length;
      client.write(upstreamHead);
    }
    if (head.length > 0) {
      ex.bytesUp += head.length;
      socket.write(head);
    }
    // The size limits hold for an upgraded connection's bytes as for a request's and a response's.
    relaySocket(socket, client, (bytes) => {
      ex.bytesDown += bytes;
      if (ex.bytesDown <= limits.max_response_bytes) return true;
      life.end('response_too_large', `the upgraded connection carried more than ${limits.max_response_bytes} bytes downstream; it was closed`);
      return false;
    });
    relaySocket(client, socket, (bytes) => {
      ex.bytesUp += bytes;
      if (ex.bytesUp <= limits.max_request_bytes) return true;
      life.end('request_too_large', `the upgraded connection carried more than ${limits.max_request_bytes} bytes upstream; it was closed`);
      return false;
    });
    life.idle(limits.idle_timeout_ms);
    client.resume();
  });
  outgoing.end();
}
