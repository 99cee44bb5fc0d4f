// CONNECT: authenticate, decide on host and port, vet, dial the vetted address, then either hand
// the client to the interceptor (a rule needs to see inside) or relay bytes untouched after
// checking that the ClientHello names the host that was decided on.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { dialTcp } from '../net/dial.js';
import { ReadRelay } from '../net/read-relay.js';
import { canonicalHost } from '../net/host.js';
import { relaySocket } from '../net/socket-relay.js';
import { decide } from '../policy/decide.js';
import type { DenyReason } from '../policy/reasons.js';
import type { Limits } from '../config/types.js';
import { readClientHello } from '../tls/client-hello.js';
import { sendRawAnswer } from './answers.js';
import type { PolicyRuntime, ProxyDeps } from './context.js';
import { Exchange } from './exchange.js';
import { parseConnectTarget, type Target } from './target.js';
import { classifyUpstreamError } from './upstream-errors.js';
import { vetDestination } from './vet.js';

/** Takes over a client socket whose CONNECT needs interception (the 200 is already written). */
export type Interceptor = (client: Socket, head: Buffer, tunnel: { tool: string; target: Target; runtime: PolicyRuntime; ex: Exchange }) => void;

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\nVia: 1.1 sluice\r\n\r\n';
const NO_BYTES = Buffer.alloc(0);
/** A ClientHello larger than this is not one sluice will wait for. */
const MAX_HELLO_BYTES = 16 * 1024;

export async function handleConnect(
  deps: ProxyDeps,
  interceptor: Interceptor | null,
  req: IncomingMessage,
  client: Socket,
  head: Buffer,
): Promise<void> {
  const runtime = deps.current();
  const ex = new Exchange(deps.observer, 'https');
  ex.method = 'CONNECT';
  client.on('error', destroySocket);
  // on() rather than once() for 'close' (it fires once): every once() costs a wrapper that an idle tunnel keeps.
  client.on('close', () => ex.report('net.tunnel'));
  const refuse = (reason: DenyReason, detail: string): void => {
    const answer = ex.refusal(reason, detail);
    sendRawAnswer(client, answer);
  };

  const halted = deps.halted();
  if (halted) return refuse('policy_halted', halted);
  const auth = runtime.tokens.authenticate(req.headers['proxy-authorization']);
  if (!auth.ok) return refuse('unauthenticated', `proxy authentication failed: ${auth.why}`);
  const tool = auth.tool;
  ex.tool = tool;
  const parsed = parseConnectTarget(req.url ?? '');
  if (!parsed.ok) return refuse('bad_request', parsed.why);
  const target = parsed.target;
  ex.host = target.host.host;
  ex.port = target.port;

  const decision = decide(runtime.compiled, tool, {
    phase: 'connect',
    scheme: 'https',
    host: target.host.host,
    port: target.port,
    method: 'CONNECT',
  });
  ex.applyDecision(decision);
  if (decision.verdict === 'deny') return refuse(decision.reason ?? 'no_rule', decision.detail);

  if (decision.intercept) {
    if (!interceptor) return refuse('no_rule', `a rule for ${target.host.host} needs TLS interception, which is not enabled`);
    ex.status = 200;
    client.write(ESTABLISHED);
    interceptor(client, head, { tool, target, runtime, ex });
    return;
  }

  // A passthrough tunnel holds one of the tool's slots while it is open; requests inside an
  // intercepted tunnel take their own slots instead.
  if (!(await holdSlotWhileOpen(deps, runtime, tool, decision.limits, ex, client))) return;

  const vetted = await vetDestination(runtime, deps.self, target.host, target.port);
  if (!vetted.ok) return refuse(vetted.reason, vetted.detail);
  ex.ip = vetted.ip;

  const limits = decision.limits;
  let closeForSize: (detail: string) => void = () => undefined;
  const downstream = new ReadRelay(client, (bytes) => {
    ex.bytesDown += bytes;
    if (ex.bytesDown <= limits.max_response_bytes) return true;
    closeForSize(`the tunnel carried more than ${limits.max_response_bytes} bytes downstream; it was closed`);
    return false;
  });
  let upstream: Socket;
  try {
    upstream = await dialTcp({ ip: vetted.ip, port: target.port, servername: null }, limits.connect_timeout_ms, downstream.onread);
  } catch (err) {
    const failure = classifyUpstreamError(err);
    const answer = ex.failure(failure.code, failure.detail);
    return sendRawAnswer(client, answer);
  }
  if (client.destroyed) {
    upstream.destroy();
    return;
  }
  ex.status = 200;
  client.write(ESTABLISHED);
  closeForSize = relayAfterHello(client, upstream, head, target, limits, ex);
  downstream.attach(upstream);
}

/**
 * Takes one of the tool's slots for a raw connection (a tunnel, an upgraded request) and gives it
 * back when the connection closes. False when the connection is answered (429) or already gone.
 */
export async function holdSlotWhileOpen(
  deps: ProxyDeps,
  runtime: PolicyRuntime,
  tool: string,
  fallback: Limits,
  ex: Exchange,
  connection: Duplex,
): Promise<boolean> {
  const grant = await deps.limiter.acquire(tool, runtime.compiled.tools.get(tool)?.limits ?? fallback);
  if (!grant.ok) {
    sendRawAnswer(connection, ex.limitRefusal('rate_limited', grant.detail, grant.retryAfterSeconds));
    return false;
  }
  if (connection.destroyed) {
    grant.release();
    return false;
  }
  connection.on('close', grant.release);
  return true;
}

/**
 * Holds the client's first bytes until the ClientHello is complete, checks its SNI against the
 * CONNECT host, then relays the client's bytes upstream. Upstream bytes already flow to the client
 * through the ReadRelay (server-first protocols). Returns how to close the tunnel for its size cap.
 */
function relayAfterHello(
  client: Socket,
  upstream: Socket,
  head: Buffer,
  target: Target,
  limits: Limits,
  ex: Exchange,
): (detail: string) => void {
  upstream.on('error', destroySocket);
  let helloBuf = head;
  const close = (reason: DenyReason, detail: string): void => {
    if (reason === 'response_too_large') ex.limitExceeded(reason, detail);
    else ex.deny(reason, detail, ex.status ?? 200);
    client.destroy();
    upstream.destroy();
  };

  let helloTimer: NodeJS.Timeout | null = setTimeout(
    () => close('bad_request', `no TLS ClientHello within ${limits.header_timeout_ms} ms`),
    limits.header_timeout_ms,
  );
  const onFirstBytes = (chunk?: Buffer): void => {
    if (chunk) helloBuf = helloBuf.length === 0 ? chunk : Buffer.concat([helloBuf, chunk]);
    if (helloBuf.length === 0) return;
    const hello = readClientHello(helloBuf);
    if (hello.state === 'need_more' && helloBuf.length < MAX_HELLO_BYTES) return;
    client.off('data', onFirstBytes);
    clearHelloTimer();
    const problem = checkHello(hello, target);
    if (problem) return close(problem.reason, problem.detail);
    ex.bytesUp += helloBuf.length;
    upstream.write(helloBuf);
    // The closures below live as long as the tunnel: they must not keep the hello's bytes.
    helloBuf = NO_BYTES;
    startRelay();
  };

  // A cleared timer held by this closure scope would stay in memory as long as the tunnel.
  const clearHelloTimer = (): void => {
    if (helloTimer) clearTimeout(helloTimer);
    helloTimer = null;
  };
  const startRelay = (): void => {
    relaySocket(client, upstream, (bytes) => {
      ex.bytesUp += bytes;
      return true;
    });
  };

  // One idle timer per tunnel: every byte either way is a read or a write on the client socket,
  // and both restart its timer. The client's close ends the upstream.
  client.setTimeout(limits.idle_timeout_ms);
  client.on('timeout', destroySocket);
  client.on('close', () => {
    clearHelloTimer();
    upstream.destroy();
  });
  upstream.on('close', () => client.destroy());
  // A client that hangs up before its ClientHello would otherwise hold the half-open socket (and
  // the upstream) until the hello timer; once relaying, the relay carries the half-close instead.
  client.on('end', () => {
    if (client.listeners('data').includes(onFirstBytes)) client.destroy();
  });
  client.on('data', onFirstBytes);
  onFirstBytes();
  return (detail) => close('response_too_large', detail);
}

/** A listener shared by every socket ('error', 'timeout'): one function instead of a closure per socket. */
function destroySocket(this: Socket): void {
  this.destroy();
}

function checkHello(hello: ReturnType<typeof readClientHello>, target: Target): { reason: DenyReason; detail: string } | null {
  if (hello.state !== 'tls') {
    if (target.port === 443) return { reason: 'bad_request', detail: notTlsDetail(target) };
    return null;
  }
  if (hello.sni === null) {
    return target.host.kind === 'name'
      ? { reason: 'sni_mismatch', detail: `the TLS ClientHello names no server (SNI) but the tunnel is for ${target.host.host}` }
      : null;
  }
  const sni = canonicalHost(hello.sni);
  if (!sni || sni.host !== target.host.host) {
    return {
      reason: 'sni_mismatch',
      detail: `the TLS ClientHello names ${hello.sni.slice(0, 100)} but the tunnel was allowed for ${target.host.host}`,
    };
  }
  return null;
}

/** Port 443 carries TLS: a tunnel there that starts with anything else is refused (plain or intercepted). */
export function notTlsDetail(target: Target): string {
  return `the tunnel to ${target.authority} did not start with a TLS ClientHello`;
}
