// The listening proxy: one http.Server whose events are the three ways a client talks to sluice
// (absolute-form request, CONNECT, Upgrade), plus malformed input answered and recorded.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Outcome } from '../policy/reasons.js';
import { identify, type RequestScope } from './admit.js';
import { sendRawAnswer } from './answers.js';
import type { ProxyDeps } from './context.js';
import { Exchange } from './exchange.js';
import { forwardRequest } from './forward.js';
import { handleConnect, type Interceptor } from './tunnel.js';
import { forwardUpgrade } from './upgrade.js';

export interface ProxyServerOptions {
  /** request line plus headers */
  maxHeaderBytes: number;
  headerTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** client connections open at once across all tools; 0 = no cap */
  maxConnections: number;
}

export const DEFAULT_SERVER_OPTIONS: ProxyServerOptions = {
  maxHeaderBytes: 32 * 1024,
  headerTimeoutMs: 10_000,
  keepAliveTimeoutMs: 60_000,
  maxConnections: 0,
};

/** http.Server options shared by the proxy port and the interceptor's inner server. */
export function serverOptions(opts: ProxyServerOptions): http.ServerOptions {
  return {
    maxHeaderSize: opts.maxHeaderBytes,
    headersTimeout: opts.headerTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
    // Node checks header deadlines on this interval (30 s by default), far coarser than the timeout.
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(opts.headerTimeoutMs / 4))),
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
  };
}

/**
 * The proxy port, or (with `boundTool`, --listen-tool) a port bound to one tool: every request on
 * it is that tool's without Proxy-Authorization, for clients that cannot send Basic on CONNECT.
 */
export function createProxyServer(deps: ProxyDeps, interceptor: Interceptor, opts = DEFAULT_SERVER_OPTIONS, boundTool?: string): http.Server {
  const DIRECT: RequestScope = Object.freeze({ scheme: 'http', tunnel: null, boundTool });
  const server = http.createServer(serverOptions(opts));
  if (opts.maxConnections > 0) {
    server.maxConnections = opts.maxConnections;
    // Node closes connections over the cap before any byte is read; the record says so, counted
    // like every other refusal (decision deny, reason rate_limited).
    server.on('drop', () => {
      const ex = new Exchange(deps.observer, 'http');
      ex.settle(
        'rate_limited',
        `a client connection was refused: sluice holds its cap of ${opts.maxConnections} connections (--max-connections)`,
      );
      ex.report('net.req');
    });
  }
  server.on('request', (req, res) => {
    void forwardRequest(deps, DIRECT, req, res);
  });
  server.on('connect', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    void handleConnect(deps, interceptor, req, socket, head, boundTool);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    void forwardUpgrade(deps, DIRECT, req, socket, head);
  });
  // One function for every socket, and on() rather than once() ('close' fires once anyway): once()
  // costs a bound wrapper and its state per socket, which 10,000 idle tunnels hold for their lifetime.
  const connectionClosed = (): void => deps.observer.connectionClosed();
  server.on('connection', (socket: Socket) => {
    socket.setNoDelay(true);
    deps.observer.connectionOpened();
    socket.on('close', connectionClosed);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(deps, err, socket, null));
  return server;
}

/** Malformed, oversized or too slow input from the client: an answer and a record, then the connection closes. */
export function answerClientError(deps: ProxyDeps, err: NodeJS.ErrnoException, socket: Duplex, scope: RequestScope | null): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const ex = new Exchange(deps.observer, scope?.scheme ?? 'http');
  ex.denyNote = deps.denyMessage ?? null;
  if (scope?.tunnel) {
    // Inside a tunnel the record names whose tunnel it is, as the policy in force knows it.
    const auth = identify(deps.current(), scope.tunnel.credentials, scope.tunnel.boundTool);
    if (auth.ok) ex.tool = auth.tool;
    ex.host = scope.tunnel.target.host.host;
    ex.port = scope.tunnel.target.port;
  }
  sendRawAnswer(socket, ex.answer(parseErrorOutcome(err), describeParseError(err)));
  ex.report('net.req');
}

function parseErrorOutcome(err: NodeJS.ErrnoException): Outcome {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 'headers_too_large';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADER_TIMEOUT':
      return 'client_timeout';
    default:
      return 'bad_request';
  }
}

function describeParseError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 'the request line or headers are larger than sluice accepts';
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return 'the request has more than one Content-Length (request smuggling is refused)';
    case 'HPE_INVALID_CONTENT_LENGTH':
      return 'the request has an invalid Content-Length, or Content-Length with Transfer-Encoding (request smuggling is refused)';
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return 'the request has an invalid or unknown Transfer-Encoding, or Transfer-Encoding with Content-Length (request smuggling is refused)';
    case 'HPE_INVALID_CHUNK_SIZE':
      return 'the request body has a malformed chunk size';
    case 'HPE_INVALID_HEADER_TOKEN':
      return 'a request header is malformed (obs-fold, control character or invalid name)';
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return 'the request uses bare LF or CR line ends';
    case 'HPE_INVALID_VERSION':
      return 'the request line is malformed (HTTP version, or a bare LF line end)';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADER_TIMEOUT':
      return 'the request headers did not arrive in time';
    default:
      return `the request could not be parsed (${err.code ?? 'parse error'})`;
  }
}
