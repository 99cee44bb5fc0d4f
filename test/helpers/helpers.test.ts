// Exercises every e2e helper for real on loopback, so the e2e tests can rely on them. Passes both in
// the private namespace of `npm test` and on the host (namespace-only parts skip there).
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { gunzipSync } from 'node:zlib';
import dnsPacket from 'dns-packet';
import t from 'tap';
import WebSocket from 'ws';
import { scanClientHello } from '../../src/tls/client-hello.js';
import {
  captureClientHello,
  duplicateSniClientHello,
  fragmentClientHello,
  garbageClientHello,
  handshakeBytes,
  padClientHello,
  retypedClientHello,
} from './client-hello.js';
import {
  basicAuth,
  closedBy,
  connectTunnel,
  curl,
  nodeFetchViaProxy,
  openSocket,
  proxyUrl,
  pythonUrllib,
  rawRequest,
  roundTrip,
} from './clients.js';
import { startDns } from './dns.js';
import {
  DOCUMENTATION_IPV6,
  hasNetnsIpv6,
  inNetns,
  interfaceNames,
  METADATA_CANARY_IP,
  netnsSkip,
  PRIVATE_CANARY_IP,
  PUBLIC_UPSTREAM_IP,
  startCanary,
} from './netns.js';
import { issueLeaf, makeSelfSigned, makeTestPki, testCaFile } from './pki.js';
import { patternBytes, startRawUpstream, startScriptedUpstream, startUpstream, type EchoReply } from './upstream.js';
import { waitFor } from './wait.js';

const TOOL = 'web-fetch';
const TOKEN = 'tok-123';

/**
 * A minimal forward proxy, only here to prove the clients speak proxy correctly: it demands
 * Basic TOOL:TOKEN, forwards absolute-form requests and opens CONNECT tunnels.
 */
async function startMiniProxy(): Promise<{
  port: number;
  seen: Array<{ method: string; target: string; auth: string | undefined }>;
  close(): Promise<void>;
}> {
  const seen: Array<{ method: string; target: string; auth: string | undefined }> = [];
  const sockets = new Set<net.Socket>();
  const expected = basicAuth(TOOL, TOKEN);
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', target: req.url ?? '', auth: req.headers['proxy-authorization'] });
    if (req.headers['proxy-authorization'] !== expected) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="mini"', 'content-length': 0 });
      return void res.end();
    }
    const target = new URL(req.url ?? '');
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: req.method, headers },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: 'CONNECT', target: req.url ?? '', auth: req.headers['proxy-authorization'] });
    client.on('error', () => {});
    if (req.headers['proxy-authorization'] !== expected) {
      return void client.end(
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="mini"\r\nContent-Length: 4\r\n\r\nnope',
      );
    }
    const [host = '', port = ''] = (req.url ?? '').split(/:(?=\d+$)/);
    const upstream = net.connect({ host, port: Number(port) }, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function tlsHandshake(port: number, options: tls.ConnectionOptions): Promise<{ authorized: boolean; error: string | null }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      resolve({ authorized: socket.authorized, error: null });
      socket.destroy();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ authorized: false, error: error.code ?? error.message }));
  });
}

t.test('upstream echoes what a client sent (curl, no proxy)', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const result = await curl(['-H', 'X-Test: one', '--data-binary', 'hello body', `${upstream.origin}/anything/path?q=1`]);
  t.equal(result.code, 0, result.stderr);
  t.equal(result.status, 200);
  t.equal(result.headers['content-type'], 'application/json');
  const echo = JSON.parse(result.body) as EchoReply;
  t.equal(echo.method, 'POST');
  t.equal(echo.url, '/anything/path?q=1');
  t.equal(echo.body, 'hello body');
  t.equal(echo.bodyBytes, 10);
  t.ok(
    echo.headers.some(([name, value]) => name === 'X-Test' && value === 'one'),
    'raw header pair echoed',
  );
  t.equal(upstream.requests.length, 1);
  t.match(upstream.requests[0], { method: 'POST', url: '/anything/path?q=1', body: 'hello body', bodyBytes: 10, complete: true });
  t.equal(upstream.requests[0]?.headers['x-test'], 'one');
  t.equal(upstream.connections(), 1);
});

t.test('upstream routes, framed as asked, read with rawRequest', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const get = (path: string, method = 'GET') => rawRequest(upstream.port, `${method} ${path} HTTP/1.1\r\nHost: upstream.test\r\n\r\n`);

  const small = await get('/small');
  t.equal(small.status, 200);
  t.equal(small.framing, 'content-length');
  t.same(small.bodyBuffer, patternBytes(1024));

  const head = await get('/small', 'HEAD');
  t.equal(head.headers['content-length'], '1024');
  t.equal(head.bodyBuffer.length, 0);

  const bulk = await get('/bulk?bytes=200000');
  t.equal(bulk.framing, 'content-length');
  t.equal(bulk.headers['content-length'], '200000');
  t.ok(bulk.bodyBuffer.equals(patternBytes(200_000)), 'bulk body is the pattern');

  const chunked = await get('/bulk?bytes=150000&chunked=1');
  t.equal(chunked.framing, 'chunked');
  t.equal(chunked.headers['transfer-encoding'], 'chunked');
  t.ok(chunked.bodyBuffer.equals(patternBytes(150_000)), 'chunked body is the pattern');

  const closeDelimited = await get('/bulk?bytes=70000&close=1');
  t.equal(closeDelimited.framing, 'close');
  t.equal(closeDelimited.closed, true);
  t.equal(closeDelimited.headers['content-length'], undefined);
  t.equal(closeDelimited.headers['transfer-encoding'], undefined);
  t.ok(closeDelimited.bodyBuffer.equals(patternBytes(70_000)), 'close-delimited body is the pattern');

  t.equal((await get('/status/418')).status, 418);
  const noContent = await get('/status/204');
  t.equal(noContent.status, 204);
  t.equal(noContent.body, '');
  t.equal((await get('/status/99')).status, 400);

  const redirect = await get('/redirect?to=http%3A%2F%2Fother.test%2Fx');
  t.equal(redirect.status, 302);
  t.equal(redirect.headers.location, 'http://other.test/x');

  const echoed = await get('/echo-header?name=X-Leak&value=s3cr3t-shaped');
  t.equal(echoed.headers['x-leak'], 's3cr3t-shaped');

  const started = Date.now();
  const slow = await get('/slow?ms=300');
  t.equal(slow.status, 200);
  t.ok(Date.now() - started >= 280, 'headers were delayed');

  const gzip = await get('/gzip?text=compressed%20words');
  t.equal(gzip.headers['content-encoding'], 'gzip');
  t.equal(gunzipSync(gzip.bodyBuffer).toString(), 'compressed words');

  t.equal((await get('/nowhere')).status, 404);
  t.equal(upstream.requests.length, 13);
});

t.test('upstream keeps connections alive and records pipelined requests', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const result = await rawRequest(
    upstream.port,
    'GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\nPOST /anything HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
    { until: 'close' },
  );
  t.equal(result.closed, true);
  t.same(
    result.responses.map((response) => response.status),
    [201, 200],
  );
  t.equal((JSON.parse(result.responses[1]!.body) as EchoReply).body, 'abc');
  t.same(
    upstream.requests.map((request) => request.url),
    ['/status/201', '/anything'],
  );
  t.equal(upstream.connections(), 1);
});

t.test('raw upstream: a malformed answer and the bytes that reached it', async (t) => {
  const raw = await startRawUpstream((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'));
  });
  t.teardown(() => raw.close());
  const result = await rawRequest(raw.port, 'GET /raw HTTP/1.1\r\nHost: r\r\n\r\n', { until: 'close' });
  t.equal(result.status, 0, 'no response parses');
  t.match(result.malformed, /bad content-length/);
  t.match(result.raw, /^HTTP\/1\.1 200 OK\r\n/);
  t.equal(raw.received(), 'GET /raw HTTP/1.1\r\nHost: r\r\n\r\n');
  t.equal(raw.connections(), 1);
});

t.test('websocket echo at /ws', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const ws = new WebSocket(`ws://127.0.0.1:${upstream.port}/ws`);
  await once(ws, 'open');
  ws.send('ping text');
  const [text, textIsBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  t.equal(text.toString(), 'ping text');
  t.equal(textIsBinary, false);
  ws.send(Buffer.from([0, 1, 2, 255]));
  const [binary, binaryIsBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  t.same([...binary], [0, 1, 2, 255]);
  t.equal(binaryIsBinary, true);
  ws.close();
  await once(ws, 'close');
  t.equal(upstream.requests[0]?.headers.upgrade, 'websocket');

  const elsewhere = new WebSocket(`ws://127.0.0.1:${upstream.port}/not-ws`);
  const [error] = (await once(elsewhere, 'error')) as [Error];
  t.match(error.message, /404/);
});

t.test('test PKI: server certificate verifies for its names, others fail', async (t) => {
  const pki = await makeTestPki();
  t.equal(await makeTestPki(), pki, 'cached per process');
  t.match(pki.caPem, /^-----BEGIN CERTIFICATE-----/);
  t.match(pki.caKeyPem, /^-----BEGIN PRIVATE KEY-----/);
  const upstream = await startUpstream({ tls: pki.server });
  t.teardown(() => upstream.close());

  for (const servername of ['localhost', 'upstream.test', 'api.test', 'other.test', 'x.wild.test']) {
    t.same(await tlsHandshake(upstream.port, { servername, ca: pki.caPem }), { authorized: true, error: null }, servername);
  }
  t.same(await tlsHandshake(upstream.port, { ca: pki.caPem }), { authorized: true, error: null }, 'IP SAN 127.0.0.1');
  t.same(await tlsHandshake(upstream.port, { servername: 'evil.test', ca: pki.caPem }), {
    authorized: false,
    error: 'ERR_TLS_CERT_ALTNAME_INVALID',
  });
  t.same(
    await tlsHandshake(upstream.port, { servername: 'api.test' }),
    { authorized: false, error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
    'not trusted without the test CA',
  );

  const caFile = await testCaFile();
  const viaCurl = await curl(['--cacert', caFile, `https://127.0.0.1:${upstream.port}/small`]);
  t.equal(viaCurl.status, 200, viaCurl.stderr);
  t.equal(viaCurl.body, patternBytes(1024).toString());
  const byName = await curl([
    '--cacert',
    caFile,
    '--resolve',
    `api.test:${upstream.port}:127.0.0.1`,
    `https://api.test:${upstream.port}/status/201`,
  ]);
  t.equal(byName.status, 201, byName.stderr);

  const selfSigned = await startUpstream({ tls: await makeSelfSigned(['untrusted.test']) });
  t.teardown(() => selfSigned.close());
  t.same(await tlsHandshake(selfSigned.port, { servername: 'untrusted.test', ca: pki.caPem }), {
    authorized: false,
    error: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  });
  const rejected = await curl(['--cacert', caFile, `https://127.0.0.1:${selfSigned.port}/small`]);
  t.equal(rejected.code, 60, 'curl: peer certificate cannot be authenticated');

  const expired = await startUpstream({
    tls: await issueLeaf(['expired.test'], { notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }),
  });
  t.teardown(() => expired.close());
  t.same(await tlsHandshake(expired.port, { servername: 'expired.test', ca: pki.caPem }), { authorized: false, error: 'CERT_HAS_EXPIRED' });
});

t.test('DNS server: answers, NXDOMAIN, NODATA, rebinding, TCP', async (t) => {
  let rebindQueries = 0;
  const dns = await startDns({
    'upstream.test': [
      { type: 'A', address: PUBLIC_UPSTREAM_IP, ttl: 0 },
      { type: 'AAAA', address: DOCUMENTATION_IPV6, ttl: 0 },
    ],
    'v4only.test.': [{ type: 'A', address: '198.51.100.7', ttl: 30 }],
    'rebind.test': (queryIndex) => {
      rebindQueries += 1;
      return [{ type: 'A', address: queryIndex === 0 ? PUBLIC_UPSTREAM_IP : PRIVATE_CANARY_IP, ttl: 0 }];
    },
  });
  t.teardown(() => dns.close());
  t.match(dns.address, /^127\.0\.0\.1:\d+$/);
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([dns.address]);

  t.same(await resolver.resolve4('upstream.test'), [PUBLIC_UPSTREAM_IP]);
  t.same(await resolver.resolve4('UPSTREAM.Test'), [PUBLIC_UPSTREAM_IP], 'names are case-insensitive');
  t.same(await resolver.resolve6('upstream.test'), [DOCUMENTATION_IPV6]);
  t.same(await resolver.resolve4('v4only.test', { ttl: true }), [{ address: '198.51.100.7', ttl: 30 }]);
  await t.rejects(resolver.resolve6('v4only.test'), { code: 'ENODATA' });
  await t.rejects(resolver.resolve4('missing.test'), { code: 'ENOTFOUND' });

  t.same(await resolver.resolve4('rebind.test', { ttl: true }), [{ address: PUBLIC_UPSTREAM_IP, ttl: 0 }]);
  t.same(await resolver.resolve4('rebind.test'), [PRIVATE_CANARY_IP], 'second answer rebinds');
  t.same(await resolver.resolve4('rebind.test'), [PRIVATE_CANARY_IP]);
  t.equal(rebindQueries, 3);
  t.equal(dns.queries('rebind.test'), 3);
  t.equal(dns.queries('upstream.test'), 3);
  t.equal(dns.queries(), 9);

  const socket = net.connect({ host: '127.0.0.1', port: dns.port });
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  socket.write(dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'upstream.test' }] }));
  const [framed] = (await once(socket, 'data')) as [Buffer];
  const reply = dnsPacket.streamDecode(framed);
  t.equal(reply.id, 7);
  t.same(
    reply.answers?.map((answer) => (answer as { data: string }).data),
    [PUBLIC_UPSTREAM_IP],
  );
  t.equal(dns.queries('upstream.test'), 4);
});

t.test('canary counts every connection', async (t) => {
  const canary = await startCanary('127.0.0.1');
  t.teardown(() => canary.close());
  t.equal(canary.connections(), 0);
  for (let i = 0; i < 2; i += 1) {
    const socket = net.connect({ host: '127.0.0.1', port: canary.port });
    socket.on('error', () => {});
    await once(socket, 'connect');
    await once(socket, 'close');
  }
  await waitFor(() => canary.connections() === 2, 'two canary connections');
  t.equal(canary.connections(), 2);
});

t.test('clients speak proxy: curl, python urllib, undici, raw CONNECT', async (t) => {
  const proxy = await startMiniProxy();
  const upstream = await startUpstream();
  const pki = await makeTestPki();
  const secure = await startUpstream({ tls: pki.server });
  t.teardown(() => Promise.all([proxy.close(), upstream.close(), secure.close()]));
  const withCredentials = proxyUrl(proxy.port, TOOL, TOKEN);
  const caFile = await testCaFile();
  const auth = basicAuth(TOOL, TOKEN);

  const forwarded = await curl(['-x', withCredentials, `${upstream.origin}/anything/curl`]);
  t.equal(forwarded.status, 200, forwarded.stderr);
  t.match(proxy.seen.at(-1), { method: 'GET', target: `${upstream.origin}/anything/curl`, auth });

  const proxyUser = await curl(['-x', proxyUrl(proxy.port), '--proxy-user', `${TOOL}:${TOKEN}`, `${upstream.origin}/small`]);
  t.equal(proxyUser.status, 200);
  t.equal(proxyUser.bodyBuffer.length, 1024);

  const refused = await curl(['-x', proxyUrl(proxy.port, TOOL, 'wrong'), `${upstream.origin}/small`]);
  t.equal(refused.status, 407);
  t.equal(refused.headers['proxy-authenticate'], 'Basic realm="mini"');

  const tunnelled = await curl(['-p', '-x', withCredentials, `${upstream.origin}/status/202`]);
  t.equal(tunnelled.status, 202);
  t.same(
    tunnelled.blocks.map((block) => block.status),
    [200, 202],
    'CONNECT answer then the response',
  );
  t.match(proxy.seen.at(-1), { method: 'CONNECT', target: `127.0.0.1:${upstream.port}`, auth });

  const overTls = await curl(['-x', withCredentials, '--cacert', caFile, `${secure.origin}/anything/tls`]);
  t.equal(overTls.status, 200, overTls.stderr);
  t.equal((JSON.parse(overTls.body) as EchoReply).url, '/anything/tls');

  const tunnelRefused = await curl(['-x', proxyUrl(proxy.port, TOOL, 'wrong'), '--cacert', caFile, `${secure.origin}/small`]);
  t.equal(tunnelRefused.status, 407);
  t.equal(tunnelRefused.code, 56, 'curl: CONNECT refused');

  const python = await pythonUrllib({
    proxy: withCredentials,
    url: `${upstream.origin}/anything/py`,
    method: 'PUT',
    headers: { 'X-Py': '1' },
    body: 'from python',
  });
  t.equal(python.status, 200, python.error ?? '');
  t.match(JSON.parse(python.body), { method: 'PUT', url: '/anything/py', body: 'from python' });
  t.match(proxy.seen.at(-1), { method: 'PUT', auth });
  const pythonTls = await pythonUrllib({ proxy: withCredentials, url: `${secure.origin}/status/203`, caFile });
  t.equal(pythonTls.status, 203, pythonTls.error ?? '');
  t.match(proxy.seen.at(-1), { method: 'CONNECT', auth });
  const pythonRedirect = await pythonUrllib({ url: `${upstream.origin}/redirect?to=/small` });
  t.equal(pythonRedirect.status, 302, 'redirects are not followed');
  t.equal(pythonRedirect.headers.location, '/small');
  const pythonRefused = await pythonUrllib({ proxy: proxyUrl(proxy.port, TOOL, 'wrong'), url: `${secure.origin}/small`, caFile });
  t.equal(pythonRefused.status, null);
  t.match(pythonRefused.error, /Tunnel connection failed: 407/);
  const pythonUntrusted = await pythonUrllib({ url: `${secure.origin}/small` });
  t.match(pythonUntrusted.error, /CERTIFICATE_VERIFY_FAILED/);

  const viaUndici = await nodeFetchViaProxy({ proxy: withCredentials, url: `${upstream.origin}/anything/undici`, method: 'POST', body: 'u' });
  t.equal(viaUndici.status, 200, viaUndici.error ?? '');
  t.match(proxy.seen.at(-1), { method: 'POST', target: `${upstream.origin}/anything/undici`, auth });
  const undiciTls = await nodeFetchViaProxy({ proxy: withCredentials, url: `${secure.origin}/small`, caPem: pki.caPem });
  t.equal(undiciTls.status, 200, undiciTls.error ?? '');
  t.equal(undiciTls.body, patternBytes(1024).toString());
  t.match(proxy.seen.at(-1), { method: 'CONNECT', target: `127.0.0.1:${secure.port}`, auth });
  const undiciRefused = await nodeFetchViaProxy({ proxy: proxyUrl(proxy.port, TOOL, 'wrong'), url: `${secure.origin}/small`, caPem: pki.caPem });
  t.equal(undiciRefused.status, null);
  t.match(undiciRefused.error, /407/);

  const open = await connectTunnel(proxy.port, `127.0.0.1:${secure.port}`, auth);
  t.equal(open.status, 200);
  const session = tls.connect({ socket: open.socket, servername: 'api.test', ca: pki.caPem });
  t.teardown(() => session.destroy());
  await once(session, 'secureConnect');
  session.write('GET /status/207 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n');
  const [answer] = (await once(session, 'data')) as [Buffer];
  t.match(answer.toString(), /^HTTP\/1\.1 207 /);

  const denied = await connectTunnel(proxy.port, `127.0.0.1:${secure.port}`);
  t.equal(denied.status, 407);
  t.equal(denied.body, 'nope');
  denied.socket.destroy();
});

t.test('inside the private network namespace', { skip: netnsSkip() }, async (t) => {
  t.same(interfaceNames(), ['lo'], 'only lo exists');
  t.equal(inNetns(), true);

  // With only lo there is no route out: an outside address fails at once (checked only after the
  // interface list proved we are in the namespace).
  const outside = net.connect({ host: '192.0.2.1', port: 80 });
  const [error] = (await once(outside, 'error')) as [NodeJS.ErrnoException];
  t.equal(error.code, 'ENETUNREACH');

  const pki = await makeTestPki();
  const plain = await startUpstream({ host: PUBLIC_UPSTREAM_IP, port: 80 });
  const secure = await startUpstream({ host: PUBLIC_UPSTREAM_IP, port: 443, tls: pki.server });
  const privateCanary = await startCanary(PRIVATE_CANARY_IP, 80);
  const metadataCanary = await startCanary(METADATA_CANARY_IP, 80);
  t.teardown(() => Promise.all([plain.close(), secure.close(), privateCanary.close(), metadataCanary.close()]));

  t.equal(plain.origin, `http://${PUBLIC_UPSTREAM_IP}:80`);
  const viaHttp = await curl([`http://${PUBLIC_UPSTREAM_IP}/small`]);
  t.equal(viaHttp.status, 200, viaHttp.stderr);
  const viaHttps = await curl(['--cacert', await testCaFile(), `https://${PUBLIC_UPSTREAM_IP}/status/204`]);
  t.equal(viaHttps.status, 204, viaHttps.stderr);

  for (const canary of [privateCanary, metadataCanary]) {
    const socket = net.connect({ host: canary.ip, port: canary.port });
    socket.on('error', () => {});
    await once(socket, 'connect');
    await waitFor(() => canary.connections() === 1, `a connection on ${canary.ip}`);
    t.equal(canary.connections(), 1, canary.ip);
  }
});

t.test('IPv6 documentation address in the namespace', { skip: hasNetnsIpv6() ? false : 'the namespace has no IPv6' }, async (t) => {
  const canary = await startCanary(DOCUMENTATION_IPV6);
  t.teardown(() => canary.close());
  const socket = net.connect({ host: DOCUMENTATION_IPV6, port: canary.port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  await waitFor(() => canary.connections() === 1, 'a connection on the IPv6 canary');
  t.equal(canary.connections(), 1);
});

/** What a real TLS server (OpenSSL) answers to `hello`: the first byte of its reply (22 = a handshake record, a ServerHello). */
async function serverAnswerTo(hello: Buffer): Promise<number | null> {
  const pki = await makeTestPki();
  const server = tls.createServer({ cert: pki.server.certPem, key: pki.server.keyPem });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(hello);
    const first = await Promise.race([
      once(socket, 'data').then(([chunk]) => (chunk as Buffer)[0] ?? null),
      once(socket, 'close').then(() => null),
    ]);
    socket.destroy();
    return first;
  } finally {
    server.close();
  }
}

t.test('client hellos: captured from Node, re-framed, and still accepted by a real TLS server', async (t) => {
  const hello = await captureClientHello('api.test');
  t.same(scanClientHello(hello), { state: 'tls', sni: 'api.test', alpn: [] }, 'one readable hello naming the server');
  const fragmented = fragmentClientHello(hello, 40);
  let records = 0;
  for (let offset = 0; offset < fragmented.length; offset += 5 + fragmented.readUInt16BE(offset + 3)) records += 1;
  t.equal(records, 40, 'split into 40 records');
  t.same(handshakeBytes(fragmented), handshakeBytes(hello), 'carrying the same handshake message');
  const padded = padClientHello(hello);
  t.ok(handshakeBytes(padded).length >= 17 * 1024, 'padded past 16 KiB');
  for (const [what, bytes] of [
    ['the captured hello', hello],
    ['the fragmented hello', fragmented],
    ['the padded hello', padded],
  ] as const) {
    t.equal(await serverAnswerTo(bytes), 22, `${what}: the server answers with a handshake record`);
  }
  t.not(await serverAnswerTo(retypedClientHello(hello)), 22, 'a retyped hello gets no ServerHello');
  t.not(await serverAnswerTo(garbageClientHello()), 22, 'a garbage hello gets no ServerHello');
  t.equal(scanClientHello(duplicateSniClientHello(hello, 'api.test')).state, 'malformed', 'two server_name extensions are unreadable');
});

t.test('scripted upstream: answers each head, records every byte per connection, then only records after raw', async (t) => {
  const up = await startScriptedUpstream((request, socket) => {
    if (request.target === '/switch') {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n');
      return 'raw';
    }
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${request.target.length}\r\n\r\n${request.target}`);
  });
  t.teardown(() => up.close());
  const socket = await openSocket(up.port);
  const first = await roundTrip(socket, 'POST /one HTTP/1.1\r\nHost: u\r\nContent-Length: 3\r\n\r\nabc');
  t.equal(first.body, '/one');
  const switched = await roundTrip(socket, 'GET /switch HTTP/1.1\r\nHost: u\r\n\r\n');
  t.equal(switched.status, 101);
  socket.write('GET /after HTTP/1.1\r\nHost: u\r\n\r\n');
  await waitFor(() => up.received().includes('/after'), 'the bytes after the switch');
  t.same(
    up.requests.map((r) => [r.method, r.target, r.connection]),
    [
      ['POST', '/one', 0],
      ['GET', '/switch', 0],
    ],
    'no head parsed after raw',
  );
  t.equal(up.requests[0]!.headers['content-length'], '3');
  t.equal(up.connectionLog()[0]!.closed, false);
  t.equal((await closedBy(socket, 100)).closed, false, 'closedBy: still open after the bounded wait');
  await waitFor(() => up.connectionLog()[0]!.closed, 'the upstream to see the close');
  t.equal(up.openConnections(), 0);
});
