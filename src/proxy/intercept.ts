// TLS interception: a CONNECT whose rules need to see inside is terminated here with a leaf
// certificate for the CONNECT host, and its requests are served by one internal http.Server
// (not a server per host), each decided on its own exactly like plain HTTP.
import http from 'node:http';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { canonicalHost } from '../net/host.js';
import { readClientHello, type ClientHelloResult } from '../tls/client-hello.js';
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
    void peekClientHello(client, head).then((hello) => {
      if (hello === null) return;
      if (hello.state === 'not_tls') {
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
      // Checked here rather than in an SNICallback: answering that callback makes OpenSSL switch
      // the handshake to the "new" context, which costs more than reading the hello ourselves.
      const sni = hello.state === 'tls' ? hello.sni : null;
      if (sni !== null && canonicalHost(sni)?.host !== host) {
        tunnel.ex.deny('sni_mismatch', `the TLS ClientHello names ${sni.slice(0, 100)} but the tunnel was allowed for ${host}`, 200);
        client.destroy();
        return;
      }
      terminateTls(client, host, scope('https'));
    });
  };

  function terminateTls(client: Socket, host: string, tlsScope: RequestScope): void {
    leaves.secureContextFor(host).then(
      (context) => {
        if (client.destroyed) return;
        const tlsSocket = new tls.TLSSocket(client, {
          isServer: true,
          secureContext: context,
          ALPNProtocols: ['http/1.1'],
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

/** A ClientHello larger than this is not one sluice waits for: the handshake decides. */
const MAX_HELLO_BYTES = 16 * 1024;

/**
 * Reads the tunnel's first bytes until the ClientHello is complete (or clearly not TLS), then puts
 * them back for whoever takes the socket next; null if the client closed first.
 */
function peekClientHello(client: Socket, head: Buffer): Promise<ClientHelloResult | null> {
  const settle = (bytes: Buffer): ClientHelloResult | null => {
    const hello = readClientHello(bytes);
    return hello.state === 'need_more' && bytes.length < MAX_HELLO_BYTES ? null : hello;
  };
  const early = head.length > 0 ? settle(head) : null;
  if (early) {
    client.unshift(head);
    return Promise.resolve(early);
  }
  return new Promise((resolve) => {
    let bytes = head;
    const onData = (chunk: Buffer): void => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const hello = settle(bytes);
      if (!hello) return;
      client.off('data', onData);
      client.off('close', onClose);
      client.pause();
      client.unshift(bytes);
      resolve(hello);
    };
    const onClose = (): void => {
      client.off('data', onData);
      resolve(null);
    };
    client.on('data', onData);
    client.once('close', onClose);
  });
}
