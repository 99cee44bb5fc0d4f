// TLS interception: a CONNECT whose rules need to see inside is terminated here with a leaf
// certificate for the CONNECT host, and its requests are served by one internal http.Server
// (not a server per host), each decided on its own exactly like plain HTTP.
import http from 'node:http';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { canonicalHost } from '../net/host.js';
import type { LeafCertificates } from '../tls/leaf.js';
import type { RequestScope } from './admit.js';
import type { ProxyDeps } from './context.js';
import { forwardRequest } from './forward.js';
import { answerClientError, DEFAULT_SERVER_OPTIONS, serverOptions, type ProxyServerOptions } from './server.js';
import type { Interceptor } from './tunnel.js';
import { forwardUpgrade } from './upgrade.js';

export function createInterceptor(deps: ProxyDeps, leaves: LeafCertificates, opts: ProxyServerOptions = DEFAULT_SERVER_OPTIONS): Interceptor {
  const scopes = new WeakMap<Socket, RequestScope>();
  const inner = http.createServer(serverOptions(opts));
  inner.on('request', (req, res) => {
    const scope = scopes.get(req.socket);
    if (scope) void forwardRequest(deps, scope, req, res);
    else res.destroy();
  });
  inner.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    const scope = scopes.get(socket);
    if (scope) void forwardUpgrade(deps, scope, req, socket, head);
    else socket.destroy();
  });
  inner.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(deps, err, socket));

  return (client, head, tunnel) => {
    const host = tunnel.target.host.host;
    leaves.secureContextFor(host).then(
      (context) => {
        if (client.destroyed) return;
        if (head.length > 0) client.unshift(head);
        const tlsSocket = new tls.TLSSocket(client, {
          isServer: true,
          secureContext: context,
          ALPNProtocols: ['http/1.1'],
          SNICallback: (servername, cb) => {
            const sni = canonicalHost(servername);
            if (sni && sni.host === host) return cb(null, context);
            const detail = `the TLS ClientHello names ${servername.slice(0, 100)} but the tunnel was allowed for ${host}`;
            tunnel.ex.deny('sni_mismatch', detail, 200);
            cb(new Error(detail));
          },
        });
        tlsSocket.on('error', () => {
          tlsSocket.destroy();
          client.destroy();
        });
        scopes.set(tlsSocket, {
          runtime: tunnel.runtime,
          scheme: 'https',
          tunnel: { tool: tunnel.tool, target: tunnel.target },
        });
        inner.emit('connection', tlsSocket);
      },
      () => client.destroy(),
    );
  };
}
