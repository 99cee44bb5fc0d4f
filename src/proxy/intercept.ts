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
import { notTlsDetail, type Interceptor } from './tunnel.js';
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
    const scope = (scheme: 'http' | 'https'): RequestScope => ({
      runtime: tunnel.runtime,
      scheme,
      tunnel: { tool: tunnel.tool, target: tunnel.target },
    });
    void firstByte(client, head).then((byte) => {
      if (byte === null) return;
      if (byte !== TLS_HANDSHAKE_RECORD) {
        if (tunnel.target.port === 443) {
          tunnel.ex.deny('bad_request', notTlsDetail(tunnel.target), 200);
          client.destroy();
          return;
        }
        // Plain HTTP inside the tunnel (undici tunnels http:// URLs by default): each request is
        // decided exactly like one sent in absolute form.
        scopes.set(client, scope('http'));
        inner.emit('connection', client);
        client.resume();
        return;
      }
      terminateTls(client, host, tunnel, scope('https'));
    });
  };

  function terminateTls(client: Socket, host: string, tunnel: Parameters<Interceptor>[2], tlsScope: RequestScope): void {
    leaves.secureContextFor(host).then(
      (context) => {
        if (client.destroyed) return;
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
        scopes.set(tlsSocket, tlsScope);
        inner.emit('connection', tlsSocket);
      },
      () => client.destroy(),
    );
  }
}

/** The first byte of a TLS connection: a handshake record (ClientHello). */
const TLS_HANDSHAKE_RECORD = 0x16;

/** The tunnel's first byte, left unread for whoever takes the socket next; null if it closed first. */
function firstByte(client: Socket, head: Buffer): Promise<number | null> {
  if (head.length > 0) {
    client.unshift(head);
    return Promise.resolve(head[0]!);
  }
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      client.off('close', onClose);
      client.pause();
      client.unshift(chunk);
      resolve(chunk[0] ?? null);
    };
    const onClose = (): void => {
      client.off('data', onData);
      resolve(null);
    };
    client.once('data', onData);
    client.once('close', onClose);
  });
}
