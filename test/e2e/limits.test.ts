// Limits that must fail visibly: response and request size caps (plain and tunnelled), the total
// request deadline, idle and header (slowloris) timeouts, per-tool concurrency and rate, and a
// 1 GiB download capped at 10 MiB with bounded memory. Real sockets on loopback throughout.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import net from 'node:net';
import t from 'tap';
import { basicAuth, connectTunnel, curl, exchangeRaw, rawRequest } from '../helpers/clients.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const MiB = 1024 * 1024;
const HEADER_TIMEOUT_MS = 800;
const FLOOD_CAP = 5;

let upstream: Upstream;
let sluice: TestSluice;
let authority = '';

/** A 1 GiB chunked download that counts what it managed to write before the peer went away. */
const giant = { written: 0, closedEarly: false, server: null as http.Server | null, port: 0 };

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
  authority = `127.0.0.2:${upstream.port}`;
  giant.server = http.createServer((_req, res) => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const pump = (): void => {
      while (giant.written < 1024 * MiB) {
        giant.written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => (giant.closedEarly = giant.written < 1024 * MiB));
    pump();
  });
  await new Promise<void>((resolve) => giant.server!.listen(0, '127.0.0.2', resolve));
  giant.port = (giant.server.address() as AddressInfo).port;

  const tool = (name: string, limits: string): string => `
  ${name}:
    token_sha256: "\${TOKEN_SHA}"
    limits: {${limits}}
    allow:
      - host: 127.0.0.2`;
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}, ${giant.port}]
limits:
  max_response_bytes: ${10 * MiB}
  max_request_bytes: ${64 * 1024}
  header_timeout_ms: ${HEADER_TIMEOUT_MS}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
${tool('small', `max_response_bytes: ${MiB}`)}
${tool('deadline', 'request_timeout_ms: 300')}
${tool('idle', 'idle_timeout_ms: 300')}
${tool('flood', `max_connections_per_tool: ${FLOOD_CAP}, header_timeout_ms: 5000`)}
${tool('metered', 'requests_per_minute: 3')}
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  giant.server!.closeAllConnections();
  await new Promise<void>((resolve) => giant.server!.close(() => resolve()));
});

const authLine = (tool = TOOL): string => `Proxy-Authorization: ${basicAuth(tool, TOKEN)}\r\n`;
const get = (path: string, tool = TOOL, host = authority): string =>
  `GET http://${host}${path} HTTP/1.1\r\nHost: ${host}\r\n${authLine(tool)}\r\n`;

/** A request through sluice with Node's http client; status 0 when there was no response, error set when it broke. */
function viaProxy(
  path: string,
  tool: string,
  host = authority,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number; error: string | null }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: sluice.port,
        path: `http://${host}${path}`,
        agent: false,
        headers: { Host: host, 'Proxy-Authorization': basicAuth(tool, TOKEN) },
      },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, error: null }));
        res.on('error', (err) => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, error: err.message }));
      },
    );
    req.on('error', (err) => resolve({ status: 0, headers: {}, bytes: 0, error: err.message }));
    req.end();
  });
}

const lastDownloadFor = (tool: string) => (r: { type: string; tool: string | null }) => r.type === 'limit.exceeded' && r.tool === tool;

t.test('response size cap', async (t) => {
  t.test('Content-Length over the cap: 502 response_too_large before any body byte', async (t) => {
    const r = await rawRequest(sluice.port, get(`/bulk?bytes=${2 * MiB}`, 'small'));
    t.equal(r.status, 502);
    t.equal(r.headers['x-sluice-deny'], 'response_too_large');
    t.notOk(r.body.includes('abcdefghij'), 'no upstream body byte reached the client');
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { type: 'limit.exceeded', reason: 'response_too_large', status: 502 });
  });

  for (const framing of ['chunked', 'close'] as const) {
    t.test(`${framing}-delimited response crossing the cap is cut: no terminating chunk, connection reset`, async (t) => {
      const r = await rawRequest(sluice.port, get(`/bulk?bytes=${3 * MiB}&${framing}=1`, 'small'), { until: 'close' });
      t.equal(r.responses.length, 0, 'no complete response was delivered');
      t.match(r.raw, /^HTTP\/1\.1 200 /, 'the response had started');
      t.notOk(r.raw.endsWith('\r\n0\r\n\r\n'), 'no terminating chunk');
      t.ok(r.closed, 'connection closed');
      const record = await waitForAudit(sluice, (a) => lastDownloadFor('small')(a) && a.path === `/bulk?bytes=REDACTED&${framing}=REDACTED`);
      t.equal(record.reason, 'response_too_large');
      t.ok(record.bytes_down! > MiB && record.bytes_down! < 3 * MiB, `bytes seen recorded (${record.bytes_down})`);
    });
  }

  t.test('curl of a 50 MiB body through a 10 MiB cap exits non-zero and is audited', async (t) => {
    const r = await curl(['-x', sluice.proxyUrl(), '-o', '/dev/null', `http://${authority}/bulk?bytes=${50 * MiB}&chunked=1`]);
    t.not(r.code, 0, `curl failed (${r.code}): ${r.stderr.trim()}`);
    const record = await waitForAudit(sluice, (a) => lastDownloadFor(TOOL)(a) && a.path === '/bulk?bytes=REDACTED&chunked=REDACTED');
    t.equal(record.reason, 'response_too_large');
    t.ok(record.bytes_down! > 10 * MiB, `bytes_down ${record.bytes_down} past the cap`);
    t.ok(record.bytes_down! < 50 * MiB, 'the download was stopped');
  });

  t.test('plain HTTP in a passthrough tunnel: each response is capped like any other', async (t) => {
    const tunnel = await connectTunnel(sluice.port, authority, basicAuth('small', TOKEN));
    t.equal(tunnel.status, 200);
    tunnel.socket.on('error', () => undefined);
    // sluice reads plain HTTP in a tunnel request by request: the capped one is the GET, not the tunnel.
    tunnel.socket.resume();
    const r = await exchangeRaw(tunnel.socket, `GET /bulk?bytes=${3 * MiB} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    tunnel.socket.destroy();
    t.equal(r.status, 502);
    t.equal(r.headers['x-sluice-deny'], 'response_too_large');
    t.ok(r.raw.length < 3 * MiB, `the client got ${r.raw.length} bytes, not the whole 3 MiB`);
    const record = await waitForAudit(
      sluice,
      (a) => a.type === 'limit.exceeded' && a.tool === 'small' && a.method === 'GET' && a.scheme === 'http',
    );
    t.equal(record.reason, 'response_too_large');
  });

  t.test('1 GiB download capped at 10 MiB: upstream stopped, memory bounded', async (t) => {
    global.gc?.();
    const before = process.memoryUsage().rss;
    const r = await viaProxy('/giant', TOOL, `127.0.0.2:${giant.port}`);
    const after = process.memoryUsage().rss;
    t.equal(r.status, 200, 'the response started');
    t.ok(r.error !== null || r.bytes < 1024 * MiB, 'the client saw a broken response');
    t.ok(r.bytes <= 10 * MiB + 64 * 1024, `client received ${r.bytes} bytes`);
    t.ok(giant.closedEarly, 'the upstream connection was closed before the body ended');
    t.ok(giant.written < 64 * MiB, `the upstream wrote only ${(giant.written / MiB).toFixed(1)} MiB of 1024`);
    t.ok(after - before < 200 * MiB, `RSS grew by ${((after - before) / MiB).toFixed(1)} MiB`);
    t.comment(
      `RSS before ${(before / MiB).toFixed(1)} MiB, after ${(after / MiB).toFixed(1)} MiB; upstream wrote ${(giant.written / MiB).toFixed(1)} MiB`,
    );
  });
});

t.test('request size cap', async (t) => {
  t.test('Content-Length over the cap: 413 request_too_large, nothing sent upstream', async (t) => {
    const before = upstream.requests.length;
    const r = await rawRequest(
      sluice.port,
      `POST http://${authority}/anything/up HTTP/1.1\r\nHost: ${authority}\r\n${authLine()}Content-Length: ${128 * 1024}\r\n\r\n`,
      { until: 'close' },
    );
    t.equal(r.status, 413);
    t.equal(r.headers['x-sluice-deny'], 'request_too_large');
    t.ok(r.closed, 'connection closed: the body that follows is not read as requests');
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { type: 'limit.exceeded', reason: 'request_too_large', status: 413 });
    t.equal(upstream.requests.length, before);
  });

  t.test('a chunked upload streams upstream, and crossing the cap cuts it with a 413', async (t) => {
    const before = upstream.requests.length;
    const socket = net.connect(sluice.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST http://${authority}/anything/upload HTTP/1.1\r\nHost: ${authority}\r\n${authLine()}Transfer-Encoding: chunked\r\n\r\n`);
    const piece = Buffer.alloc(16 * 1024, 0x62);
    const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
    socket.write(chunk);
    // Streaming, not buffering: the upstream sees the first bytes while the client still holds the rest.
    const until = Date.now() + 3000;
    while ((upstream.requests.length === before || upstream.requests.at(-1)!.bodyBytes === 0) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 10));
    t.ok(upstream.requests.at(-1)!.bodyBytes > 0, 'the upstream received body bytes before the upload finished');
    const r = await exchangeRaw(socket, Buffer.concat(Array.from({ length: 5 }, () => chunk)), { until: 'close' });
    t.equal(r.status, 413);
    t.equal(r.headers['x-sluice-deny'], 'request_too_large');
    t.notOk(upstream.requests.at(-1)!.complete, 'the upstream never got a complete body');
    t.match(await waitForAudit(sluice, (a) => a.type === 'limit.exceeded' && a.path === '/anything/upload'), { reason: 'request_too_large' });
  });
});

t.test('timeouts', async (t) => {
  t.test('total request deadline: 504 upstream_timeout', async (t) => {
    const r = await rawRequest(sluice.port, get('/slow?ms=3000', 'deadline'));
    t.equal(r.status, 504);
    t.equal(r.headers['x-sluice-error'], 'upstream_timeout');
    t.match(r.body, /request_timeout_ms/);
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { type: 'net.req', reason: 'upstream_timeout', status: 504 });
  });

  t.test('idle upstream: 504 upstream_timeout', async (t) => {
    const r = await rawRequest(sluice.port, get('/slow?ms=3000', 'idle'));
    t.equal(r.status, 504);
    t.equal(r.headers['x-sluice-error'], 'upstream_timeout');
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { reason: 'upstream_timeout', status: 504 });
  });

  t.test('slowloris: one header byte every 200 ms gets 408 and the connection closes', async (t) => {
    const socket = net.connect(sluice.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const text = `${get('/anything/slow').slice(0, -2)}X-Pad: ${'p'.repeat(200)}\r\n\r\n`;
    let sent = 0;
    const drip = setInterval(() => {
      if (!socket.destroyed && sent < text.length) socket.write(text[sent++]!);
    }, 200);
    const r = await exchangeRaw(socket, '', { until: 'close', timeoutMs: HEADER_TIMEOUT_MS * 10 });
    clearInterval(drip);
    t.equal(r.status, 408);
    t.equal(r.headers['x-sluice-error'], 'client_timeout');
    t.ok(r.closed);
    t.ok(sent < text.length, `the request never completed (${sent} of ${text.length} bytes)`);
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { type: 'net.req', reason: 'client_timeout', status: 408 });
  });
});

t.test('concurrency: a flood from one tool is refused on its own cap while another tool goes through', async (t) => {
  const flood = Array.from({ length: 50 }, () => viaProxy('/slow?ms=1500', 'flood'));
  let floodSettled = false;
  void Promise.all(flood).then(() => (floodSettled = true));
  await new Promise((r) => setTimeout(r, 100));
  const other = await viaProxy('/anything/other', TOOL);
  t.equal(other.status, 200, 'the other tool was served');
  t.notOk(floodSettled, 'while the flood was still in flight');
  const results = await Promise.all(flood);
  const statuses = results.map((r) => r.status);
  t.equal(statuses.filter((s) => s === 200).length, FLOOD_CAP, 'exactly the cap succeeded');
  t.equal(statuses.filter((s) => s === 429).length, 50 - FLOOD_CAP, 'the rest were refused');
  const refused = results.find((r) => r.status === 429)!;
  t.equal(refused.headers['x-sluice-deny'], 'rate_limited');
  t.equal(refused.headers['retry-after'], '1');
  const record = await waitForAudit(sluice, (a) => a.tool === 'flood' && a.reason === 'rate_limited');
  t.match(record, { type: 'limit.exceeded', status: 429 });
  t.match(record.detail, /max_connections_per_tool/);
  // Slots come back: after the flood the tool is served again.
  t.equal((await viaProxy('/anything/after', 'flood')).status, 200);
});

t.test('requests_per_minute: the bucket empties, then 429 with Retry-After', async (t) => {
  const statuses: number[] = [];
  let retryAfter = '';
  for (let i = 0; i < 4; i++) {
    const r = await viaProxy('/anything/metered', 'metered');
    statuses.push(r.status);
    if (r.status === 429) retryAfter = String(r.headers['retry-after']);
  }
  t.same(statuses, [200, 200, 200, 429]);
  t.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 20, `Retry-After ${retryAfter}`);
  t.match(await waitForAudit(sluice, (a) => a.tool === 'metered' && a.reason === 'rate_limited'), { type: 'limit.exceeded', status: 429 });
});

t.test('a passthrough tunnel holds a slot of its tool until it closes', async (t) => {
  const tunnels: Socket[] = [];
  for (let i = 0; i < FLOOD_CAP; i++) {
    const tunnel = await connectTunnel(sluice.port, authority, basicAuth('flood', TOKEN));
    t.equal(tunnel.status, 200);
    // First bytes past the ClientHello check, so the tunnel stays open (keep-alive) rather than timing out.
    tunnel.socket.write(`GET /anything/t HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    tunnels.push(tunnel.socket);
  }
  const over = await connectTunnel(sluice.port, authority, basicAuth('flood', TOKEN));
  t.equal(over.status, 429);
  t.equal(over.headers['x-sluice-deny'], 'rate_limited');
  over.socket.destroy();
  tunnels.pop()!.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const again = await connectTunnel(sluice.port, authority, basicAuth('flood', TOKEN));
  t.equal(again.status, 200, 'a closed tunnel frees its slot');
  again.socket.destroy();
  for (const s of tunnels) s.destroy();
});
