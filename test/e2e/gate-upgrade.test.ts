// Issue 13, contract item 1: an Upgrade is a request with a response. The relay starts only after a
// genuine 101 that echoes the requested token; any other answer goes to the client like an ordinary
// response (scrubbed, Connection: close) and nothing the client sent after the handshake reaches the
// upstream; the 101 head is scrubbed too; h2c is refused; a pipelined Upgrade after a closing answer
// is never acted on. Each case runs over ws:// (absolute-form to the proxy) and wss:// (inside an
// intercepted tunnel), against a scripted upstream that records every byte it receives.
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { basicAuth, closedBy, exchangeRaw, openSocket, roundTrip, tlsTunnel } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { CANONICAL_TYPES, startTestSluice, TOKEN, TOOL, waitForAudit, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { echoFrames, maskedFrame, upgradeRequest, wsAccept } from '../helpers/upgrade.js';
import { startScriptedUpstream, type ScriptedUpstream, type UpstreamRequestHead } from '../helpers/upstream.js';
import { settles } from '../helpers/wait.js';

// Obviously fake values. Assertions on them are written as t.ok(!text.includes(VALUE)), never as
// t.equal(text, ...), so a failure can not print a value.
const SECRET = 'gate-upgrade-secret-value-4f1e9c2b7a';
const INJECTED = 'gate-upgrade-injected-value-8d3a6c1e';
const PLACEHOLDER = '__sluice_secret_ws__';
const INJECTED_PLACEHOLDER = '__sluice_secret_inj__';
/** What a hostile client pipelines after its handshake, hoping the upstream reads it as a request. */
const SMUGGLED = 'DELETE /admin';
const HOST = 'up.wild.test';
/** The size limits of the `capped` tool, for the bytes after a genuine 101. */
const CAPPED_BYTES = 4000;
const INJECT_HOST = 'inj.wild.test';

let plainUp: ScriptedUpstream;
let tlsUp: ScriptedUpstream;
let sluice: TestSluice;
let dns: DnsServer;
let sluiceCa: string;

function answer(socket: net.Socket, status: string, headers: string[], body?: string): void {
  const framing = body === undefined ? [] : [`Content-Length: ${Buffer.byteLength(body)}`];
  socket.write(`HTTP/1.1 ${status}\r\n${[...headers, ...framing].map((h) => `${h}\r\n`).join('')}\r\n${body ?? ''}`);
}

const websocket101 = (extra: string[] = [], token = 'websocket'): string[] => [
  `Upgrade: ${token}`,
  'Connection: Upgrade',
  `Sec-WebSocket-Accept: ${wsAccept()}`,
  ...extra,
];

/**
 * The upstream's behaviour is chosen by the first path segment; the rest of the path names the case,
 * so each exchange is unique in the upstream's record and in the audit. Non-101 answers keep the
 * connection open: a proxy that relays the client's later bytes would let them arrive.
 */
function script(request: UpstreamRequestHead, socket: net.Socket): 'raw' | void {
  const kind = request.target.split('/')[1];
  const echoRaw = (): 'raw' => {
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    return 'raw';
  };
  switch (kind) {
    case 'ok':
      answer(socket, '101 Switching Protocols', websocket101());
      echoFrames(socket);
      return 'raw';
    case 'case':
      answer(socket, '101 Switching Protocols', websocket101([], 'WebSocket'));
      echoFrames(socket);
      return 'raw';
    case 'no':
      return answer(socket, '403 Forbidden', ['Content-Type: text/plain', 'X-Upstream: said-no'], 'upstream says no');
    case 'fine':
      return answer(socket, '200 OK', ['Content-Type: text/plain'], 'upstream says fine');
    case 'echo-no':
      return answer(
        socket,
        '403 Forbidden',
        ['Content-Type: text/plain', `X-Echo: ${request.headers['x-ws-token'] ?? ''}`, `X-Known: ${SECRET}`],
        `you sent ${request.headers['x-ws-token'] ?? ''}; I know ${SECRET}`,
      );
    case 'wrong':
      answer(socket, '101 Switching Protocols', ['Upgrade: h2c', 'Connection: Upgrade']);
      return echoRaw();
    case 'bare':
      answer(socket, '101 Switching Protocols', ['Connection: Upgrade']);
      return echoRaw();
    case 'echo':
      answer(
        socket,
        '101 Switching Protocols',
        websocket101([
          `X-Echo: ${request.headers['x-ws-token'] ?? ''}`,
          `X-Echo-Key: ${request.headers['x-api-key'] ?? ''}`,
          `X-Known: ${SECRET}`,
        ]),
      );
      return echoRaw();
    case 'h2c':
      // What an h2c server does: switch. A proxy that forwarded the handshake would now carry HTTP/2.
      answer(socket, '101 Switching Protocols', ['Upgrade: h2c', 'Connection: Upgrade']);
      return 'raw';
    case 'plain':
      return answer(socket, '200 OK', ['Content-Type: text/plain'], 'ok');
    default:
      return answer(socket, '404 Not Found', [], 'no such case');
  }
}

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  plainUp = await startScriptedUpstream(script, { host: '127.0.0.2' });
  tlsUp = await startScriptedUpstream(script, { host: '127.0.0.2', tls: pki.server });
  dns = await startDns({
    [HOST]: [{ type: 'A', address: '127.0.0.2' }],
    [INJECT_HOST]: [{ type: 'A', address: '127.0.0.2' }],
  });
  sluice = await startTestSluice({
    env: { GATE_WS_SECRET: SECRET, GATE_WS_INJECTED: INJECTED },
    // ws:// cases swap over plain HTTP: allow_plaintext (refused in strict mode) keeps them covered.
    policy: `
version: 1
strict: false
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${plainUp.port}, ${tlsUp.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  ws:
    from: { env: GATE_WS_SECRET }
    hosts: ["${HOST}"]
    swap_in: [header:X-Ws-Token]
    allow_plaintext: true
  inj:
    from: { env: GATE_WS_INJECTED }
    hosts: ["${INJECT_HOST}"]
    inject: { header: X-Api-Key, format: "{value}" }
    allow_plaintext: true
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [ws, inj]
    allow:
      - host: ${HOST}
        paths: ["/**"]
      - host: ${INJECT_HOST}
        paths: ["/**"]
  capped:
    token_sha256: "\${TOKEN_SHA}"
    limits: { max_request_bytes: ${CAPPED_BYTES}, max_response_bytes: ${CAPPED_BYTES} }
    allow:
      - host: ${HOST}
        paths: ["/**"]
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await plainUp.close();
  await tlsUp.close();
  await dns.close();
});

interface Transport {
  name: 'ws' | 'wss';
  upstream(): ScriptedUpstream;
  /** A client connection on which requests for `host` are written: to the proxy, or TLS inside an intercepted tunnel. */
  open(host: string, tool?: string): Promise<net.Socket>;
  /** The request target and Host for `path` on `host`, in the form this transport uses. */
  target(host: string, path: string, tool?: string): { target: string; host: string; proxyAuthorization?: string };
}

const transports: Transport[] = [
  {
    name: 'ws',
    upstream: () => plainUp,
    open: () => openSocket(sluice.port),
    target: (host, p, tool = TOOL) => ({
      target: `http://${host}:${plainUp.port}${p}`,
      host: `${host}:${plainUp.port}`,
      proxyAuthorization: basicAuth(tool, TOKEN),
    }),
  },
  {
    name: 'wss',
    upstream: () => tlsUp,
    open: (host, tool = TOOL) => tlsTunnel(sluice.port, `${host}:${tlsUp.port}`, basicAuth(tool, TOKEN), { ca: sluiceCa }),
    target: (host, p) => ({ target: p, host: `${host}:${tlsUp.port}` }),
  },
];

/** An ordinary (non-upgrade) request in the transport's form. */
function plainRequest(tr: Transport, host: string, p: string, extra: string[] = [], hostHeader?: string): string {
  const where = tr.target(host, p);
  const lines = [`GET ${where.target} HTTP/1.1`, `Host: ${hostHeader ?? where.host}`];
  if (where.proxyAuthorization) lines.push(`Proxy-Authorization: ${where.proxyAuthorization}`);
  return `${[...lines, ...extra].join('\r\n')}\r\n\r\n`;
}

const upgrade = (tr: Transport, host: string, p: string, options: { upgrade?: string; connection?: string; headers?: string[] } = {}): string =>
  upgradeRequest({ ...tr.target(host, p), ...options });

/** The bytes a hostile client pipelines after its handshake, as the upstream would read a request. */
const smuggled = (tr: Transport, marker = SMUGGLED): string =>
  `${marker} HTTP/1.1\r\nHost: ${tr.target(HOST, '/').host}\r\nContent-Length: 0\r\n\r\n`;

/** The upstream connection that carried the request for `target` (by its path), or undefined if none did. */
function upstreamConnectionOf(up: ScriptedUpstream, target: string): number | undefined {
  return up.requests.find((r) => r.target === target)?.connection;
}

/** Waits (bounded) until the upstream connection that carried `target` has closed; true if it did. */
async function upstreamClosed(up: ScriptedUpstream, target: string): Promise<boolean> {
  return settles(() => {
    const id = upstreamConnectionOf(up, target);
    return id !== undefined && up.connectionLog()[id]!.closed;
  });
}

/** The canonical audit records for one path (each exchange here has its own). */
async function recordsFor(p: string): Promise<AuditRecord[]> {
  await waitForAudit(sluice, (r) => CANONICAL_TYPES.has(r.type) && r.path === p).catch(() => undefined);
  return (await sluice.audit()).filter((r) => CANONICAL_TYPES.has(r.type) && r.path === p);
}

for (const tr of transports) {
  t.test(
    `${tr.name}: a non-101 answer goes to the client as it is, with Connection: close; the bytes pipelined after the handshake never reach the upstream`,
    async (t) => {
      const p = `/no/pipelined-${tr.name}`;
      const up = tr.upstream();
      const socket = await tr.open(HOST);
      const r = await exchangeRaw(socket, upgrade(tr, HOST, p) + smuggled(tr), { until: 'close', timeoutMs: 3000 });
      t.equal(r.status, 403, "the upstream's status");
      t.equal(r.headers['x-upstream'], 'said-no', "the upstream's headers");
      t.equal(r.body, 'upstream says no', "the upstream's body");
      t.match(r.headers['connection'] ?? '', /^close$/i, 'Connection: close');
      t.equal(r.responses.length, 1, 'one answer on the connection');
      t.ok(r.closed, 'sluice closed the client connection');
      t.ok(await upstreamClosed(up, p), 'sluice closed the upstream connection');
      t.equal(up.requests.filter((q) => q.target === p).length, 1, 'the handshake reached the upstream once');
      t.notOk(up.received().includes(SMUGGLED), 'the pipelined request never reached the upstream');
      const records = await recordsFor(p);
      t.equal(records.length, 1, 'exactly one audit event');
      t.match(records[0], { type: 'net.req', status: 403, tool: TOOL, host: HOST });
    },
  );

  t.test(`${tr.name}: bytes the client sends after a non-101 answer arrived never reach the upstream`, async (t) => {
    const p = `/fine/late-${tr.name}`;
    const up = tr.upstream();
    const socket = await tr.open(HOST);
    socket.on('error', () => {});
    const r = await roundTrip(socket, upgrade(tr, HOST, p), { timeoutMs: 5000 });
    t.equal(r.status, 200);
    t.equal(r.body, 'upstream says fine');
    t.match(r.headers['connection'] ?? '', /^close$/i, 'Connection: close');
    if (socket.writable) socket.write(smuggled(tr, 'DELETE /late'));
    t.ok((await closedBy(socket)).closed, 'sluice closed the client connection');
    t.ok(await upstreamClosed(up, p), 'sluice closed the upstream connection');
    t.notOk(up.received().includes('DELETE /late'), 'the late bytes never reached the upstream');
    t.equal((await recordsFor(p)).length, 1, 'exactly one audit event');
  });

  t.test(`${tr.name}: a non-101 answer is scrubbed of secret values`, async (t) => {
    const p = `/echo-no/${tr.name}`;
    const up = tr.upstream();
    const socket = await tr.open(HOST);
    const r = await exchangeRaw(socket, upgrade(tr, HOST, p, { headers: [`X-Ws-Token: ${PLACEHOLDER}`] }), { until: 'close', timeoutMs: 3000 });
    t.ok(up.requests.find((q) => q.target === p)?.headers['x-ws-token'] === SECRET, 'the upstream received the real value');
    t.equal(r.status, 403);
    t.notOk(r.raw.includes(SECRET), 'no secret value in what the client got');
    t.ok(r.headers['x-echo'] === PLACEHOLDER, 'the echoed header carries the placeholder');
    t.ok(r.headers['x-known'] === PLACEHOLDER, 'a value the upstream sent unprompted is the placeholder too');
    t.ok(r.body.includes(`you sent ${PLACEHOLDER}; I know ${PLACEHOLDER}`), 'the body is scrubbed');
  });

  for (const [kind, what] of [
    ['wrong', 'a 101 naming another protocol (Upgrade: h2c)'],
    ['bare', 'a 101 without an Upgrade header'],
  ] as const) {
    t.test(`${tr.name}: ${what} is 502 upstream_protocol; both connections close and nothing more is relayed`, async (t) => {
      const p = `/${kind}/${tr.name}`;
      const up = tr.upstream();
      const socket = await tr.open(HOST);
      const r = await exchangeRaw(socket, upgrade(tr, HOST, p) + smuggled(tr), { until: 'close', timeoutMs: 3000 });
      t.equal(r.status, 502);
      t.equal(r.headers['x-sluice-error'], 'upstream_protocol');
      t.equal(JSON.parse(r.body || '{}').reason, 'upstream_protocol', 'the JSON body names the code');
      t.ok(r.closed, 'sluice closed the client connection');
      t.ok(await upstreamClosed(up, p), 'sluice closed the upstream connection');
      t.notOk(up.received().includes(SMUGGLED), 'the bytes after the handshake never reached the upstream');
      const records = await recordsFor(p);
      t.equal(records.length, 1, 'exactly one audit event');
      t.match(records[0], { reason: 'upstream_protocol', status: 502, tool: TOOL, host: HOST });
    });
  }

  for (const kind of ['ok', 'case'] as const) {
    t.test(`${tr.name}: a genuine 101 (${kind === 'ok' ? 'same token' : 'token in another case'}) opens the relay`, async (t) => {
      const p = `/${kind}/${tr.name}`;
      const socket = await tr.open(HOST);
      t.teardown(() => socket.destroy());
      const r = await roundTrip(socket, upgrade(tr, HOST, p), { timeoutMs: 5000 });
      t.equal(r.status, 101);
      const echoed = new Promise<string>((resolve) => {
        let got = Buffer.from(r.rest);
        const check = (): void => {
          if (got.includes('after-101')) resolve(got.toString('latin1'));
        };
        socket.on('data', (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          check();
        });
        check();
      });
      socket.resume();
      // The upstream echoes each message back as a server frame (sluice reads every frame, both ways).
      socket.write(maskedFrame('after-101', 0x1));
      t.match(await echoed, /after-101/, 'bytes after the 101 flow both ways');
    });
  }

  t.test(`${tr.name}: after a genuine 101 the size limits hold for the relayed bytes (as today)`, async (t) => {
    const p = `/ok/capped-${tr.name}`;
    const socket = await tr.open(HOST, 'capped');
    const r = await roundTrip(socket, upgradeRequest(tr.target(HOST, p, 'capped')), { timeoutMs: 5000 });
    t.equal(r.status, 101);
    socket.on('error', () => {});
    // The upstream echoes: each half of the cap fits, the second pushes both directions past it.
    const chunk = maskedFrame(Buffer.alloc(CAPPED_BYTES / 2 + 100, 0x61), 0x2);
    socket.write(chunk);
    socket.write(chunk);
    t.ok((await closedBy(socket, 5000)).closed, 'sluice cut the connection');
    const records = await recordsFor(p);
    t.equal(records.length, 1, 'exactly one audit event');
    t.match(records[0], { type: 'limit.exceeded', tool: 'capped', reason: /^(request|response)_too_large$/ });
  });

  t.test(`${tr.name}: the 101 head is scrubbed: a swapped or injected secret echoed in a header comes back as its placeholder`, async (t) => {
    const up = tr.upstream();
    const swapPath = `/echo/swap-${tr.name}`;
    const swapped = await tr.open(HOST);
    t.teardown(() => swapped.destroy());
    const r = await roundTrip(swapped, upgrade(tr, HOST, swapPath, { headers: [`X-Ws-Token: ${PLACEHOLDER}`] }), { timeoutMs: 5000 });
    t.equal(r.status, 101);
    t.ok(up.requests.find((q) => q.target === swapPath)?.headers['x-ws-token'] === SECRET, 'the upstream received the real value');
    t.notOk(r.statusLine.includes(SECRET) || r.rawHeaders.some(([, v]) => v.includes(SECRET)), 'no secret value in the 101 head');
    t.ok(r.headers['x-echo'] === PLACEHOLDER, 'the swapped value echoed back is the placeholder');
    t.ok(r.headers['x-known'] === PLACEHOLDER, 'a value the upstream sent unprompted is the placeholder');

    const injectPath = `/echo/inject-${tr.name}`;
    const injected = await tr.open(INJECT_HOST);
    t.teardown(() => injected.destroy());
    const i = await roundTrip(injected, upgrade(tr, INJECT_HOST, injectPath), { timeoutMs: 5000 });
    t.equal(i.status, 101);
    t.ok(up.requests.find((q) => q.target === injectPath)?.headers['x-api-key'] === INJECTED, 'the upstream received the injected value');
    t.notOk(
      i.rawHeaders.some(([, v]) => v.includes(INJECTED)),
      'no injected value in the 101 head',
    );
    t.ok(i.headers['x-echo-key'] === INJECTED_PLACEHOLDER, 'the injected value echoed back is its placeholder');
  });

  t.test(`${tr.name}: Upgrade: h2c (any case, alone or in a list) is 400 bad_request and never sent upstream`, async (t) => {
    const up = tr.upstream();
    for (const [i, token] of ['h2c', 'H2C', 'foo, h2c'].entries()) {
      const p = `/h2c/${tr.name}-${i}`;
      const socket = await tr.open(HOST);
      const r = await exchangeRaw(
        socket,
        upgrade(tr, HOST, p, { upgrade: token, connection: 'Upgrade, HTTP2-Settings', headers: ['HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'] }),
        { timeoutMs: 3000 },
      );
      t.equal(r.status, 400, `${token}: status`);
      t.equal(r.headers['x-sluice-deny'], 'bad_request', `${token}: reason`);
      t.equal(upstreamConnectionOf(up, p), undefined, `${token}: the upstream never saw it`);
      const id = r.headers['x-request-id'];
      const record = id === undefined ? undefined : await waitForAudit(sluice, (a) => a.request_id === id).catch(() => undefined);
      t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'bad_request', tool: TOOL, host: HOST }, `${token}: audit`);
    }
  });

  t.test(`${tr.name}: an Upgrade pipelined after a request answered with Connection: close is never acted on`, async (t) => {
    const up = tr.upstream();
    // When the client itself said Connection: close, Node's parser already answers the bytes after it
    // with a 400 (HPE_CLOSED_CONNECTION), so that first status is not pinned; sluice's own closing
    // refusal (a Host naming another authority) is the case that was acted on.
    const cases = [
      {
        what: 'the client asked to close',
        firstPath: `/plain/first-${tr.name}`,
        extra: ['Connection: close'],
        hostHeader: undefined,
        status: null,
      },
      {
        what: 'sluice refused the first request (closing)',
        firstPath: `/plain/refused-${tr.name}`,
        extra: [],
        hostHeader: 'elsewhere.wild.test',
        status: 400,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const p = `/ok/after-close-${tr.name}-${i}`;
      const socket = await tr.open(HOST);
      const first = plainRequest(tr, HOST, c.firstPath, c.extra, c.hostHeader);
      const r = await exchangeRaw(socket, first + upgrade(tr, HOST, p), { until: 'close', timeoutMs: 3000 });
      t.equal(r.responses.length, 1, `${c.what}: one answer, for the first request`);
      if (c.status !== null) t.equal(r.status, c.status, `${c.what}: its status`);
      t.notOk(
        r.responses.some((x) => x.status === 101),
        `${c.what}: no 101`,
      );
      t.ok(r.closed, `${c.what}: the connection closed`);
      // The first request's record is written when its exchange ends: by then an Upgrade acted on would have been sent.
      await waitForAudit(sluice, (a) => CANONICAL_TYPES.has(a.type) && a.path === c.firstPath).catch(() => undefined);
      t.equal(upstreamConnectionOf(up, p), undefined, `${c.what}: the upstream never saw the Upgrade`);
      t.equal((await sluice.audit()).filter((a) => a.path === p).length, 0, `${c.what}: no exchange was recorded for it`);
    }
  });
}
