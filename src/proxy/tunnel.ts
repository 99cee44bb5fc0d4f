// CONNECT: admitted by the one pipeline (authenticate, decide on host and port, slot and rate, vet),
// then the tunnel's first bytes go through the one ClientHello gate, whichever way the tunnel is
// served: TLS sluice terminates (a rule needs to see inside), TLS relayed untouched (after the SNI
// check), plain HTTP served request by request through the pipeline again, or another protocol
// relayed on a port other than 443. The tunnel's life (timers, slot, upstream, one audit event) is
// one ConnectionLife.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { dialTcp } from '../net/dial.js';
import { ReadRelay } from '../net/read-relay.js';
import { relaySocket } from '../net/socket-relay.js';
import { decide } from '../policy/decide.js';
import { gateTunnelStart, type GateResult } from '../tls/hello-gate.js';
import { admit, headOf, identify, type Admitted, type TunnelScope } from './admit.js';
import { sendRawAnswer } from './answers.js';
import type { Life, PolicyRuntime, ProxyDeps } from './context.js';
import { ConnectionLife } from './lifecycle.js';
import type { Target } from './target.js';
import { classifyUpstreamError } from './upstream-errors.js';

/** Serves what sluice reads inside a tunnel: TLS it terminates, or plain HTTP. */
export interface Interceptor {
  /** the client's first bytes are a ClientHello the gate passed; terminate TLS and serve requests */
  tls(life: Life, bytes: Buffer, tunnel: TunnelScope): void;
  /** the client's first bytes are plain HTTP; serve its requests (scheme http) */
  http(life: Life, bytes: Buffer, tunnel: TunnelScope): void;
  /** closes the tunnels that are between requests (shutdown drains them) */
  closeIdle(): void;
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\nVia: 1.1 sluice\r\n\r\n';

export async function handleConnect(
  deps: ProxyDeps,
  interceptor: Interceptor,
  req: IncomingMessage,
  client: Socket,
  head: Buffer,
  boundTool?: string,
): Promise<void> {
  const admission = await admit(deps, { scheme: 'https', tunnel: null, boundTool }, headOf('connect', req));
  const life = new ConnectionLife(deps.open, client, admission.ex, 'net.tunnel');
  if (!admission.ok) return sendRawAnswer(client, admission.answer);
  life.hold(admission.release);
  if (client.destroyed) return;
  const { ex, decision, target } = admission;
  const tunnel: TunnelScope = { credentials: req.headers['proxy-authorization'], target, boundTool };

  if (decision.intercept) {
    ex.status = 200;
    client.write(ESTABLISHED);
    const start = await readTunnelStart(life, head, target, decision.limits.header_timeout_ms);
    if (!start) return;
    life.untimed();
    if (start.result.kind === 'tls') return interceptor.tls(life, start.bytes, tunnel);
    if (start.result.kind === 'http') return interceptor.http(life, start.bytes, tunnel);
    return life.end(
      'bad_request',
      `the tunnel to ${target.authority} carries neither TLS nor HTTP, and rule ${decision.rule} needs sluice to read it`,
    );
  }
  return passthrough(deps, interceptor, life, admission, tunnel, head);
}

/** A tunnel relayed untouched once the gate passed its first bytes. */
async function passthrough(
  deps: ProxyDeps,
  interceptor: Interceptor,
  life: Life,
  admission: Admitted,
  tunnel: TunnelScope,
  head: Buffer,
): Promise<void> {
  const { ex, decision, target, ip } = admission;
  const client = life.client as Socket;
  const limits = decision.limits;
  // Upstream bytes flow to the client as soon as the upstream sends them (server-first protocols).
  // A passthrough tunnel carries many responses sluice cannot see (a git clone, a pip install):
  // its volume has its own limit, off unless set; max_response_bytes caps the responses sluice reads.
  const cap = limits.max_tunnel_bytes;
  const withinCap = (): boolean => {
    if (cap === 0 || ex.bytesUp + ex.bytesDown <= cap) return true;
    life.end('tunnel_too_large', `the tunnel carried more than max_tunnel_bytes (${cap} bytes, both directions); it was closed`);
    return false;
  };
  const downstream = new ReadRelay(client, (bytes) => {
    ex.bytesDown += bytes;
    return withinCap();
  });
  let upstream: Socket;
  try {
    upstream = await dialTcp({ ip, port: target.port, servername: null }, limits.connect_timeout_ms, downstream.onread);
  } catch (err) {
    const failure = classifyUpstreamError(err, limits);
    return sendRawAnswer(client, ex.answer(failure.code, failure.detail));
  }
  if (client.destroyed) {
    upstream.destroy();
    return;
  }
  ex.status = 200;
  client.write(ESTABLISHED);
  upstream.on('error', () => upstream.destroy());
  downstream.attach(upstream);
  const start = await readTunnelStart(life, head, target, limits.header_timeout_ms);
  if (!start) {
    upstream.destroy();
    return;
  }
  if (start.result.kind === 'http') {
    // Plain HTTP is served request by request through the pipeline, Host checked, never relayed raw.
    upstream.removeAllListeners('end');
    upstream.destroy();
    life.untimed();
    return interceptor.http(life, start.bytes, tunnel);
  }
  life.link(upstream);
  life.idle(limits.idle_timeout_ms);
  life.recheck = (runtime) => stillAllowed(deps, runtime, tunnel, admission.tool);
  ex.bytesUp += start.bytes.length;
  upstream.write(start.bytes);
  client.resume();
  relaySocket(client, upstream, (bytes) => {
    ex.bytesUp += bytes;
    return withinCap();
  });
}

/** Under a new policy: null while the same tool may still open this passthrough tunnel, else why not. */
function stillAllowed(deps: ProxyDeps, runtime: PolicyRuntime, tunnel: TunnelScope, tool: string): string | null {
  const auth = identify(runtime, tunnel.credentials, tunnel.boundTool);
  if (!auth.ok || auth.tool !== tool) return `tool ${tool} no longer authenticates`;
  // With the grants in force and the clock (issue 17); a use is not taken again for a tunnel already open.
  const decision = decide(deps.approvals ? deps.approvals.policyFor(runtime.compiled) : runtime.compiled, tool, {
    phase: 'connect',
    host: tunnel.target.host.host,
    port: tunnel.target.port,
    method: 'CONNECT',
    now: Date.now(),
  });
  if (decision.verdict === 'deny') return decision.detail;
  if (decision.intercept) return `a rule for ${tunnel.target.host.host} now needs sluice to read inside the tunnel`;
  return null;
}

/**
 * The I/O half of the ClientHello gate: holds the tunnel's first bytes until the gate can judge
 * them, under the tunnel's header_timeout_ms. Null when the tunnel ended first (the life records
 * how); otherwise the gate's verdict on them (not need_more, not refuse) and the bytes, with the
 * client socket paused.
 */
export function readTunnelStart(
  life: Life,
  head: Buffer,
  target: Target,
  timeoutMs: number,
): Promise<{ result: Exclude<GateResult, { kind: 'need_more' | 'refuse' }>; bytes: Buffer } | null> {
  const client = life.client;
  const facts = { host: target.host.host, hostIsName: target.host.kind === 'name', port: target.port };
  return new Promise((resolve) => {
    let bytes = head;
    const finish = (result: GateResult | null): void => {
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onClose);
      life.closeNote = null;
      if (result === null) return resolve(null);
      if (result.kind === 'refuse') {
        life.end(result.reason, result.detail);
        return resolve(null);
      }
      if (result.kind === 'need_more') return;
      client.pause();
      resolve({ result, bytes });
    };
    const judge = (): void => {
      if (bytes.length === 0) return;
      const result = gateTunnelStart(bytes, facts);
      if (result.kind !== 'need_more') finish(result);
    };
    const onData = (chunk: Buffer): void => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      judge();
    };
    // A half-close before the first bytes were judged: nothing more can come, so the tunnel ends now.
    const onEnd = (): void => {
      life.end(null, `the client closed the tunnel to ${target.authority} before its TLS ClientHello (or first request)`);
      finish(null);
    };
    // Closed (reset) before the first bytes were judged: the life reports it with this sentence.
    life.closeNote = `the tunnel to ${target.authority} closed before its TLS ClientHello (or first request)`;
    const onClose = (): void => finish(null);
    life.timer(timeoutMs, () => {
      life.end('client_timeout', `no TLS ClientHello (or first request) on the tunnel within header_timeout_ms (${timeoutMs} ms)`);
      finish(null);
    });
    client.on('data', onData);
    client.on('end', onEnd);
    client.on('close', onClose);
    // paused when admission held it for a supervisor (it read the socket meanwhile, see admit.ts)
    client.resume();
    judge();
  });
}
