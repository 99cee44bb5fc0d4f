// Hostile request framing over raw sockets: every ambiguous form is a 400 bad_request with an
// audit record, the connection closes, and the echo upstream never receives a hidden request.
// What does go upstream is normalized: one framing, no hop-by-hop headers, Via added.
import t from 'tap';
import { basicAuth, rawRequest } from '../helpers/clients.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type EchoReply, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let sluice: TestSluice;
let authority = '';
const auth = `Proxy-Authorization: ${basicAuth(TOOL, TOKEN)}\r\n`;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
  authority = `127.0.0.2:${upstream.port}`;
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
});

const head = (path = '/anything/front', method = 'POST'): string =>
  `${method} http://${authority}${path} HTTP/1.1\r\nHost: ${authority}\r\n${auth}`;
const hidden = (): string => `GET http://${authority}/anything/hidden HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`;

interface Case {
  what: string;
  raw: () => string;
  /** who refuses it: Node's parser (llhttp) or sluice's own framing check */
  by: 'llhttp' | 'sluice';
}

const cases: Case[] = [
  {
    what: 'CL.TE: Content-Length then Transfer-Encoding',
    by: 'llhttp',
    raw: () => `${head()}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  {
    what: 'TE.CL: Transfer-Encoding then Content-Length',
    by: 'llhttp',
    raw: () => `${head()}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n${hidden()}`,
  },
  {
    what: 'duplicate Content-Length, same value',
    by: 'llhttp',
    raw: () => `${head()}Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd${hidden()}`,
  },
  {
    what: 'duplicate Content-Length, different values',
    by: 'llhttp',
    raw: () => `${head()}Content-Length: 0\r\nContent-Length: ${hidden().length}\r\n\r\n${hidden()}`,
  },
  { what: 'Content-Length list "4, 4"', by: 'llhttp', raw: () => `${head()}Content-Length: 4, 4\r\n\r\nabcd${hidden()}` },
  { what: 'Content-Length with a sign', by: 'llhttp', raw: () => `${head()}Content-Length: +4\r\n\r\nabcd${hidden()}` },
  {
    what: 'TE.TE: chunked then a second Transfer-encoding: x',
    by: 'llhttp',
    raw: () => `${head()}Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  {
    what: 'TE.TE: Transfer-encoding: x then chunked',
    by: 'sluice',
    raw: () => `${head()}Transfer-encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  {
    what: 'TE.TE: chunked twice',
    by: 'llhttp',
    raw: () => `${head()}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  {
    what: 'unknown coding before chunked (gzip, chunked)',
    by: 'sluice',
    raw: () => `${head()}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  { what: 'chunked, identity', by: 'llhttp', raw: () => `${head()}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${hidden()}` },
  { what: 'xchunked', by: 'llhttp', raw: () => `${head()}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${hidden()}` },
  { what: 'chunked with a trailing tab', by: 'llhttp', raw: () => `${head()}Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n${hidden()}` },
  { what: 'space before the colon', by: 'llhttp', raw: () => `${head()}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n${hidden()}` },
  { what: 'obs-folded Transfer-Encoding', by: 'llhttp', raw: () => `${head()}Transfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n${hidden()}` },
  { what: 'obs-folded ordinary header', by: 'llhttp', raw: () => `${head()}X-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n${hidden()}` },
  {
    what: 'Transfer-Encoding in HTTP/1.0',
    by: 'sluice',
    raw: () =>
      `POST http://${authority}/anything/front HTTP/1.0\r\nHost: ${authority}\r\n${auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden()}`,
  },
  { what: 'bare LF line ends', by: 'llhttp', raw: () => `GET http://${authority}/anything/front HTTP/1.1\nHost: ${authority}\n\n${hidden()}` },
  { what: 'bare LF inside the headers', by: 'llhttp', raw: () => `${head()}X-A: 1\nContent-Length: 0\r\n\r\n${hidden()}` },
  { what: 'NUL in a header value', by: 'llhttp', raw: () => `${head()}X-A: a\0b\r\nContent-Length: 0\r\n\r\n${hidden()}` },
  { what: 'CR in a header value', by: 'llhttp', raw: () => `${head()}X-A: a\rb\r\nContent-Length: 0\r\n\r\n${hidden()}` },
  {
    what: 'bare LF after a chunk extension',
    by: 'llhttp',
    raw: () => `${head()}Transfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n${hidden()}`,
  },
  { what: 'malformed chunk size', by: 'llhttp', raw: () => `${head()}Transfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n${hidden()}` },
  {
    what: 'absolute-form target with userinfo',
    by: 'sluice',
    raw: () => `GET http://user:pw@${authority}/anything/front HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n${hidden()}`,
  },
  {
    what: 'Host header naming another authority',
    by: 'sluice',
    raw: () => `GET http://${authority}/anything/front HTTP/1.1\r\nHost: 127.0.0.9\r\n${auth}\r\n${hidden()}`,
  },
];

t.test('each ambiguous or malformed request is 400 bad_request, audited, closed, and nothing reaches the upstream', async (t) => {
  for (const c of cases) {
    const before = upstream.requests.length;
    const r = await rawRequest(sluice.port, c.raw(), { until: 'close' });
    t.equal(r.status, 400, `${c.what}: status`);
    t.equal(r.headers['x-sluice-deny'], 'bad_request', `${c.what}: reason`);
    t.equal(r.responses.length, 1, `${c.what}: exactly one answer on the connection`);
    t.ok(r.closed, `${c.what}: connection closed`);
    const id = r.headers['x-request-id']!;
    const record = await waitForAudit(sluice, (a) => a.request_id === id);
    t.match(record, { type: 'policy.violation', reason: 'bad_request', status: 400 }, `${c.what}: audit`);
    t.equal(upstream.requests.length, before, `${c.what}: the upstream received nothing (${c.by} refused it)`);
  }
  t.notOk(
    upstream.requests.some((r) => r.url.includes('hidden')),
    'no hidden request ever reached the upstream',
  );
});

t.test('oversize request line and oversize headers are refused (431), audited, and closed', async (t) => {
  const before = upstream.requests.length;
  const forms = [
    { what: 'request line', raw: `GET http://${authority}/${'a'.repeat(40_000)} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n` },
    { what: 'headers', raw: `${head('/anything/front', 'GET')}X-Big: ${'a'.repeat(40_000)}\r\n\r\n` },
  ];
  for (const f of forms) {
    const r = await rawRequest(sluice.port, f.raw, { until: 'close' });
    t.equal(r.status, 431, f.what);
    t.match(r.raw, /^HTTP\/1\.1 431 Request Header Fields Too Large \(sluice: headers_too_large\)\r\n/, `${f.what}: status line`);
    t.equal(r.headers['x-sluice-error'], 'headers_too_large', f.what);
    t.ok(r.closed, `${f.what}: closed`);
    const id = r.headers['x-request-id']!;
    t.match(await waitForAudit(sluice, (a) => a.request_id === id), { type: 'net.req', reason: 'headers_too_large', status: 431 });
  }
  t.equal(upstream.requests.length, before);
});

t.test('a request pipelined after a refused one is never read', async (t) => {
  const before = upstream.requests.length;
  // The first request is refused (closing); the second is well formed and allowed on its own.
  const r = await rawRequest(
    sluice.port,
    `GET http://user:pw@${authority}/anything/front HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n${hidden()}`,
    { until: 'close' },
  );
  t.equal(r.responses.length, 1);
  t.equal(r.status, 400);
  t.equal(upstream.requests.length, before);
});

t.test('bytes after a Content-Length: 0 body are a request of their own, decided on their own', async (t) => {
  const before = upstream.requests.length;
  // The trailing request carries no proxy credentials: it must be refused, not ride on the first one's.
  const trailing = `GET http://${authority}/anything/second HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
  const r = await rawRequest(sluice.port, `${head()}Content-Length: 0\r\n\r\n${trailing}`, { until: 'close', timeoutMs: 2000 });
  t.same(
    r.responses.map((x) => x.status),
    [200, 407],
  );
  t.equal(upstream.requests.length, before + 1, 'only the first request went upstream');
  t.equal(upstream.requests.at(-1)!.url, '/anything/front');
  t.equal(upstream.requests.at(-1)!.bodyBytes, 0);
});

t.test('what goes upstream is normalized: one framing, hop-by-hop removed, Via added', async (t) => {
  const chunkedBody = '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
  const raw =
    `${head('/anything/normal')}Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret-hop\r\n` +
    `Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-End: kept\r\n\r\n${chunkedBody}`;
  const r = await rawRequest(sluice.port, raw);
  t.equal(r.status, 200);
  const echo = JSON.parse(r.body) as EchoReply;
  t.equal(echo.body, 'hello world');
  const names = echo.headers.map(([n]) => n.toLowerCase());
  for (const hop of ['x-hop', 'keep-alive', 'proxy-connection', 'te', 'proxy-authorization']) t.notOk(names.includes(hop), `${hop} removed`);
  t.equal(names.filter((n) => n === 'transfer-encoding' || n === 'content-length').length, 1, 'exactly one framing header');
  t.ok(
    echo.headers.some(([n, v]) => n.toLowerCase() === 'x-end' && v === 'kept'),
    'end-to-end header kept',
  );
  t.ok(
    echo.headers.some(([n, v]) => n.toLowerCase() === 'via' && v.endsWith('1.1 sluice')),
    'Via added',
  );
  t.equal(echo.headers.filter(([n]) => n.toLowerCase() === 'host').length, 1, 'one Host');
});

t.test('a redirect reaches the client as it is, and the next request is decided on its own', async (t) => {
  const before = upstream.requests.length;
  const r = await rawRequest(sluice.port, `${head('/redirect?to=http://127.0.0.9/elsewhere', 'GET')}\r\n`);
  t.equal(r.status, 302);
  t.equal(r.headers['location'], 'http://127.0.0.9/elsewhere');
  t.equal(upstream.requests.length, before + 1, 'sluice did not follow it');
  const next = await rawRequest(sluice.port, `GET http://127.0.0.9/elsewhere HTTP/1.1\r\nHost: 127.0.0.9\r\n${auth}\r\n`);
  t.equal(next.status, 403);
  t.equal(next.headers['x-sluice-deny'], 'no_rule');
});
