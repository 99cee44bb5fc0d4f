// What sluice reads inside a tunnel: TLS it terminates with a leaf certificate for the CONNECT host,
// or plain HTTP. Either way the requests are served by one internal http.Server (not a server per
// host), and each goes through the admission pipeline on its own, against the policy and the
// identity in force when it arrives.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { LeafCertificates } from '../tls/leaf.js';
import type { RequestScope, TunnelScope } from './admit.js';
import type { Life, ProxyDeps } from './context.js';
import { forwardRequest } from './forward.js';
import { answerClientError, DEFAULT_SERVER_OPTIONS, serverOptions, type ProxyServerOptions } from './server.js';
import type { Interceptor } from './tunnel.js';
import { forwardUpgrade } from './upgrade.js';

export function createInterceptor(deps: ProxyDeps, leaves: LeafCertificates, opts: ProxyServerOptions = DEFAULT_SERVER_OPTIONS): Interceptor {
  const scopes = new WeakMap<Duplex, RequestScope>();
  const inner = http.createServer(serverOptions(opts));
  // Node runs its header and request timeouts (and the idle check between kept-alive requests)
  // only for a server that listens: the check is started by the server's own 'listening' handler.
  // This server is fed sockets by hand, so it starts that check itself; no port is opened.
  inner.emit('listening');
  inner.on('request', (req, res) => {
    const scope = scopes.get(req.socket);
    if (scope) void forwardRequest(deps, scope, req, res);
    else res.destroy();
  });
  inner.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const scope = scopes.get(socket);
    if (scope) void forwardUpgrade(deps, scope, req, socket, head);
    else socket.destroy();
  });
  inner.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(deps, err, socket, scopes.get(socket) ?? null));

  const serve = (socket: Duplex, scope: RequestScope): void => {
    scopes.set(socket, scope);
    inner.emit('connection', socket);
  };

  return {
    closeIdle: () => inner.closeIdleConnections(),
    http(life, bytes, tunnel) {
      const client = life.client as Socket;
      client.unshift(bytes);
      serve(client, { scheme: 'http', tunnel });
      client.resume();
    },
    tls(life, bytes, tunnel) {
      const client = life.client as Socket;
      client.unshift(bytes);
      terminateTls(life, client, tunnel);
    },
  };

  function terminateTls(life: Life, client: Socket, tunnel: TunnelScope): void {
    const host = tunnel.target.host.host;
    leaves.secureContextFor(host).then(
      (context) => {
        if (client.destroyed) return;
        const tlsSocket = new tls.TLSSocket(client, {
          isServer: true,
          secureContext: context,
          ALPNProtocols: ['http/1.1'],
        });
        tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
          // A failed handshake or a refused renegotiation ends the tunnel; the record says why.
          if (!life.ex.settled && !tlsSocket.writableEnded) life.ex.note(`the TLS session with the client failed (${err.code ?? 'error'})`);
          tlsSocket.destroy();
          client.destroy();
        });
        serve(tlsSocket, { scheme: 'https', tunnel });
      },
      () => life.end('upstream_tls', `sluice could not issue a certificate for ${host}`),
    );
  }
}
