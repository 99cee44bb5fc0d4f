// Upgrade (WebSocket) requests are requests with a response. Admitted by the one pipeline, with the
// credentials step on the handshake, then sent to the vetted address by Node's HTTP client over the
// connection sluice dialled. Only a genuine 101 that echoes the requested protocol starts the relay
// (with the client's bytes after the handshake, never before); any other answer goes back through
// the ordinary response path (scrubbed, audited) and the connection closes. The 101 head is
// scrubbed like any response head. An upgraded connection holds the tool's slot while it is open.
import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { dialTcp, dialTls } from '../net/dial.js';
import { relaySocket } from '../net/socket-relay.js';
import { admit, headOf, servernameOf, type RequestScope } from './admit.js';
import { sendRawAnswer, statusLine } from './answers.js';
import type { ProxyDeps } from './context.js';
import { awaitTurn } from './framing.js';
import { clientHost, endToEndHeaders, flatten, withVia } from './headers.js';
import { inspectHead, inspectorFor, upgradeRefusal } from './inspect.js';
import { ConnectionLife } from './lifecycle.js';
import { knownValues, scrubHead, scrubResponse, scrubStatusText, secretsForHead } from './secrets-step.js';
import { ScrubFailure, scrubPlan } from '../secrets/scrub.js';
import { WsFrameScrubber } from '../secrets/ws-scrub.js';
import { agreedExtensions, readableOffer, WsProtocolError } from '../ws/frames.js';
import { classifyUpstreamError } from './upstream-errors.js';
import { leakCloseFrame, WsLeakGate } from '../leak/ws-outbound.js';
import { leakDetectorMode } from '../leak/mode.js';
import { SecretViolation } from '../secrets/violation.js';

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
  // While the store knows a value, what comes back must be read to be scrubbed: sluice reads
  // WebSocket frames, and no other protocol an Upgrade can switch to.
  const scrubbing = knownValues(runtime) !== null;
  if (scrubbing && requested !== 'websocket') {
    const detail = `an Upgrade to ${JSON.stringify(requested.slice(0, 40))} is not relayed while sluice holds secret values: it reads WebSocket frames only, and cannot scrub another protocol`;
    return sendRawAnswer(client, ex.answer('bad_request', detail));
  }

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

  let handshakeHeaders = credentials.headers;
  // What the client sends after a WebSocket upgrade is read for leaks, whatever the host: only
  // extensions sluice can read are offered, as for scrubbing.
  const readingFrames = requested === 'websocket' && leakDetectorMode() === 'layered';
  if (scrubbing || readingFrames) {
    // Only extensions sluice can read are offered: their frames must be scrubbed on the way back.
    const offer = readableOffer(req.headers['sec-websocket-extensions']);
    handshakeHeaders = handshakeHeaders.filter(([n]) => n.toLowerCase() !== 'sec-websocket-extensions');
    if (offer !== null) handshakeHeaders.push(['Sec-WebSocket-Extensions', offer]);
  }
  const headers: Array<[string, string]> = [
    ['Host', clientHost(req.rawHeaders) ?? target.authority],
    ['Connection', 'Upgrade'],
    ...handshakeHeaders,
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
    const statusText = scrubStatusText(runtime, res.statusMessage ?? '', 'latin1');
    let down = 0;
    const writeHead = (kept: Array<[string, string]>, length: number | null): void => {
      const lines = [statusLine(ex.status!, statusText)];
      for (const [name, value] of withVia(kept)) lines.push(`${name}: ${value}`);
      if (length !== null) lines.push(`Content-Length: ${length}`);
      lines.push('Connection: close', '', '');
      client.write(lines.join('\r\n'));
    };
    const forward = (chunk: Buffer): boolean => {
      down += chunk.length;
      ex.bytesDown = down;
      if (down > limits.max_response_bytes) {
        life.end('response_too_large', `the response crossed the limit of ${limits.max_response_bytes} bytes for tool ${tool}; it was cut`);
        return false;
      }
      return client.write(chunk);
    };
    const headersOut = endToEndHeaders(res.rawHeaders).filter(([n]) => n.toLowerCase() !== 'transfer-encoding');
    let headSent = false;
    const scrub = scrubResponse(
      runtime,
      headersOut,
      ex.method !== 'HEAD' && ex.status !== 204 && ex.status !== 304,
      {
        head: (length) => {
          headSent = true;
          writeHead(scrubbedHead, length);
        },
        data: forward,
        end: () => client.end(),
        fail: (error) => {
          const outcome = error instanceof ScrubFailure ? error.code : 'upstream_protocol';
          if (headSent) life.end(outcome, error.message);
          else {
            sendRawAnswer(client, ex.answer(outcome, error.message));
            upstream.destroy();
          }
        },
      },
      limits.max_response_bytes,
    );
    if (scrub === 'undecodable') return refuseAnswer('the response uses a content coding sluice cannot decode to scrub secret values');
    // Close-delimited: the length is sent only when the scrub knows it.
    const scrubbedHead = scrub.headers.filter(([n]) => n.toLowerCase() !== 'content-length');
    const body = scrub.body;
    if (!body) {
      writeHead(scrubbedHead, null);
      res.on('data', (chunk: Buffer) => {
        if (!forward(chunk)) res.pause();
      });
      client.on('drain', () => res.resume());
      res.on('end', () => client.end());
    } else {
      body.onWritable = () => res.resume();
      res.on('data', (chunk: Buffer) => {
        if (!body.write(chunk)) res.pause();
      });
      client.on('drain', () => body.resume());
      res.on('end', () => body.end());
      client.once('close', () => body.destroy());
    }
    res.on('error', () => client.destroy());
  });

  outgoing.on('upgrade', (res: IncomingMessage, socket: Duplex, upstreamHead: Buffer) => {
    clearTimeout(headerTimer);
    const protocol = (res.headers.upgrade ?? '').trim().toLowerCase();
    if (protocol !== requested) {
      return refuseAnswer(
        // scrubbed before it is cut: a cut could leave part of a value that the scrub no longer sees
        `the upstream switched to ${JSON.stringify(scrubStatusText(runtime, protocol, 'latin1').slice(0, 40))}, not the requested ${JSON.stringify(requested.slice(0, 40))}`,
      );
    }
    let frames: WsFrameScrubber | null = null;
    let outbound: WsLeakGate | null = null;
    if (scrubbing || readingFrames) {
      const offered = res.headers['sec-websocket-extensions'];
      // scrubbed first: the refusal names (a cut of) what the upstream agreed to
      const agreed = agreedExtensions(offered === undefined ? undefined : scrubStatusText(runtime, offered, 'latin1'));
      if (typeof agreed === 'string') return refuseAnswer(agreed);
      if (scrubbing) {
        frames = new WsFrameScrubber(scrubPlan(knownValues(runtime) ?? []), {
          deflate: agreed.deflate,
          maxMessageBytes: limits.max_response_bytes,
        });
      }
      if (readingFrames) outbound = new WsLeakGate({ deflate: agreed.deflate, maxMessageBytes: limits.max_request_bytes });
    }
    ex.status = 101;
    const kept = scrubHead(runtime, endToEndHeaders(res.rawHeaders, true));
    const lines = [statusLine(101, scrubStatusText(runtime, res.statusMessage ?? 'Switching Protocols', 'latin1')), 'Connection: Upgrade'];
    for (const [name, value] of withVia(kept)) lines.push(`${name}: ${value}`);
    lines.push('', '');
    client.write(lines.join('\r\n'));
    /** A frame step failed: whatever went wrong reading a frame, nothing unread is passed on. */
    const failFrames = (error: unknown, from: 'upstream' | 'client'): void => {
      if (error instanceof SecretViolation && error.reason === 'secret_leak') {
        // the client is told why in a close frame; nothing more of the message goes upstream
        ex.settle('secret_leak', error.message);
        socket.destroy();
        client.end(leakCloseFrame(error.message));
        return;
      }
      if (error instanceof SecretViolation)
        return life.end(error.reason === 'request_too_large' ? 'request_too_large' : 'bad_request', error.message);
      if (error instanceof WsProtocolError) return life.end(error.code, error.message);
      life.end(
        from === 'upstream' ? 'upstream_protocol' : 'bad_request',
        `sluice could not read a WebSocket frame from the ${from === 'upstream' ? 'upstream' : 'client'}`,
      );
    };
    // The size limits hold for an upgraded connection's bytes as for a request's and a response's.
    const admitDown = (bytes: number): boolean => {
      ex.bytesDown += bytes;
      if (ex.bytesDown <= limits.max_response_bytes) return true;
      life.end('response_too_large', `the upgraded connection carried more than ${limits.max_response_bytes} bytes downstream; it was closed`);
      return false;
    };
    relaySocket(socket, client, admitDown, {
      first: upstreamHead,
      ...(frames ? { through: { push: (chunk: Buffer) => frames.push(chunk), fail: (error: unknown) => failFrames(error, 'upstream') } } : {}),
    });
    const admitUp = (bytes: number): boolean => {
      ex.bytesUp += bytes;
      if (ex.bytesUp <= limits.max_request_bytes) return true;
      life.end('request_too_large', `the upgraded connection carried more than ${limits.max_request_bytes} bytes upstream; it was closed`);
      return false;
    };
    relaySocket(client, socket, admitUp, {
      first: head,
      ...(outbound ? { through: { push: (chunk: Buffer) => outbound.push(chunk), fail: (error: unknown) => failFrames(error, 'client') } } : {}),
    });
    life.idle(limits.idle_timeout_ms);
    client.resume();
  });
  outgoing.end();
}
