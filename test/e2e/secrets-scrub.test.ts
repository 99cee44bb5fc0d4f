// Issue 14, the way back: a value planted upstream (here the upstream simply knows it) must never
// reach a tool, whichever tool asks, by whichever name of the server, in whichever part of the
// response and in every form the scrubber covers: status line, headers, body through stacked
// codings, a gzip payload sent without Content-Encoding, wrapped base64, hex and JSON escapes,
// 101 heads, non-101 upgrade answers and WebSocket frames (fragmented, compressed, close reasons).
// Audit fields a tool chooses are bounded. The last test greps everything sluice emitted.
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { brotliCompressSync, constants, deflateRawSync, gzipSync } from 'node:zlib';
import fc from '../helpers/fc.js';
import t, { type Test } from 'tap';
import { verifyAuditFiles } from '../../src/observe/audit.js';
import { basicAuth, exchangeRaw, openSocket, rawRequest, roundTrip, tlsTunnel, type RawResponse } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { CODINGS, cutAt, embedded, encoded, EOLS, FORMS as EMBED_FORMS, WIDTHS } from '../helpers/embed.js';
import { decodeBody, gunzipIfGzip, leakIn, wsMessages } from '../helpers/leaks.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { upgradeRequest, wsAccept } from '../helpers/upgrade.js';
import { startScriptedUpstream, type ScriptedUpstream, type UpstreamRequestHead } from '../helpers/upstream.js';

// Obviously fake values. Assertions never print them: leakIn() names the value and form, not the text.
const PLANTED = 'plant-real-value-7f3a9c1e5b2d4086aa';
const SPECIAL = 'sp/ec+ial&<v>"al\\ue-\u00e9-9f8e7d6c';
const VALUES = [PLANTED, SPECIAL];
const PLANTED_PLACEHOLDER = '__sluice_secret_planted__';
/** the secret's own host, and another name of the same server that no secret names */
const VAULT = 'vault.wild.test';
const ALIAS = 'alias.wild.test';
/** a tool granted no secret */
const READER = 'reader';
/** a tool whose rule checks paths, for a refusal whose detail repeats the path */
const NARROW = 'narrow';
/** the bounds the README documents for audit fields (characters, before the marker) */
const AUDIT_FIELD_MAX = { path: 2048, detail: 1024 };

let plainUp: ScriptedUpstream;
let tlsUp: ScriptedUpstream;
let sluice: TestSluice;
let dns: DnsServer;
let sluiceCa: string;
/** everything every client in this file received, for the last test */
const received: Buffer[] = [];
const log: string[] = [];

const b64 = (bytes: Buffer | string): string => Buffer.from(bytes).toString('base64');
const wrap = (text: string, width: number, eol: string): string => (text.match(new RegExp(`.{1,${width}}`, 'g')) ?? []).join(eol);
/** the value inside a larger blob, at an offset that is not a multiple of 3 */
const blob = (value: string): Buffer => Buffer.concat([Buffer.from('lead-'.repeat(8)), Buffer.from(value), Buffer.from('tail'.repeat(20))]);
/** JSON string body with every character as \u00XX (an encoder that escapes everything) */
const allEscaped = (value: string, upper = false): string =>
  Array.from({ length: value.length }, (_, i) => {
    const hex = value.charCodeAt(i).toString(16).padStart(4, '0');
    return `\\u${upper ? hex.toUpperCase() : hex}`;
  }).join('');

/** Bodies carrying a value in one covered form each, as an upstream's API would serve it. */
const FORMS: Record<string, { type: string; body: string | Buffer }> = {
  'b64-60-lf': { type: 'text/plain', body: wrap(b64(blob(PLANTED)), 60, '\n') },
  'b64-64-lf': { type: 'application/x-pem-file', body: wrap(b64(blob(PLANTED)), 64, '\n') },
  'b64-76-crlf': { type: 'message/rfc822', body: wrap(b64(blob(PLANTED)), 76, '\r\n') },
  'b64url-76-lf': { type: 'text/plain', body: wrap(blob(PLANTED).toString('base64url'), 76, '\n') },
  'b64-special-64-crlf': { type: 'text/plain', body: wrap(b64(blob(SPECIAL)), 64, '\r\n') },
  // GitHub's contents API: base64 wrapped at 60 columns, inside JSON (so the breaks are \n escapes)
  'github-contents': {
    type: 'application/json',
    body: JSON.stringify({ encoding: 'base64', content: `${wrap(b64(blob(PLANTED)), 60, '\n')}\n` }),
  },
  'hex-lower': { type: 'text/plain', body: blob(PLANTED).toString('hex') },
  'hex-upper': { type: 'text/plain', body: blob(SPECIAL).toString('hex').toUpperCase() },
  'json-slash': { type: 'application/json', body: JSON.stringify({ v: SPECIAL }).replaceAll('/', '\\/') },
  'json-all-escaped': { type: 'application/json', body: `{"v":"${allEscaped(PLANTED)}","w":"${allEscaped(SPECIAL, true)}"}` },
  'json-html': {
    type: 'application/json',
    body: JSON.stringify({ v: SPECIAL }).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
  },
  'json-ascii': {
    type: 'application/json',
    body: JSON.stringify({ v: SPECIAL }).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
  },
  'form-urlencoded': { type: 'application/x-www-form-urlencoded', body: new URLSearchParams({ a: SPECIAL, b: PLANTED }).toString() },
};

function answer(socket: net.Socket, status: string, headers: string[], body: string | Buffer = ''): void {
  const bytes = Buffer.from(body);
  socket.write(
    Buffer.concat([
      Buffer.from(`HTTP/1.1 ${status}\r\n${[...headers, `Content-Length: ${bytes.length}`].map((h) => `${h}\r\n`).join('')}\r\n`),
      bytes,
    ]),
  );
}

/** An unmasked server frame. */
function frame(opcode: number, payload: Buffer | string, fin = true, rsv1 = false): Buffer {
  const data = Buffer.from(payload);
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const head = data.length < 126 ? Buffer.from([b0, data.length]) : Buffer.from([b0, 126, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([head, data]);
}

/** A message compressed as a permessage-deflate sender does it: sync flush, the 00 00 ff ff tail cut. */
function deflated(text: string, window?: string): Buffer {
  const out = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH, ...(window ? { dictionary: Buffer.from(window) } : {}) });
  return out.subarray(0, out.length - 4);
}

/** The frames the upstream sends after its 101: each carries the value in a way a client would read it. */
function wsFrames(deflate: boolean): Buffer {
  const first = `first compressed message, ${PLANTED}, and some padding to share`;
  const second = `second message refers back: ${PLANTED}, and some padding to share`;
  const frames = [
    frame(0x1, `text frame: ${PLANTED}`),
    frame(0x2, Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(PLANTED), Buffer.from([0xff])])),
    // one message in three fragments, the value cut across them
    frame(0x1, `fragmented: ${PLANTED.slice(0, 10)}`, false),
    frame(0x9, `ping ${PLANTED}`),
    frame(0x0, PLANTED.slice(10, 20), false),
    frame(0x0, `${PLANTED.slice(20)} end`, true),
    frame(0x1, `base64 inside: ${b64(PLANTED)}`),
  ];
  if (deflate) {
    frames.push(frame(0x1, deflated(first), true, true));
    // context takeover: the second message's copy of the value is a back-reference into the first
    frames.push(frame(0x1, deflated(second, first), true, true));
  }
  const reason = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from(`bye ${PLANTED}`)]);
  frames.push(frame(0x8, reason));
  return Buffer.concat(frames);
}

/** The upstream picks its answer by the first path segment; the second names the case. */
function script(request: UpstreamRequestHead, socket: net.Socket): 'raw' | void {
  const [, kind = '', name = ''] = request.target.split('/');
  switch (kind) {
    case 'status':
      return answer(socket, `200 Here ${PLANTED}`, ['Content-Type: text/plain'], 'see the status line');
    case 'headers':
      return answer(
        socket,
        '200 OK',
        [
          `X-Echo: Bearer ${PLANTED}`,
          `X-B64: ${b64(PLANTED)}`,
          `Set-Cookie: t=${encodeURIComponent(PLANTED)}; Path=/`,
          `X-${PLANTED}: name`,
          // raw UTF-8 bytes of a value with a non-ASCII character
          `X-Special: ${SPECIAL}`,
        ],
        'see the headers',
      );
    case 'body':
      return answer(socket, '200 OK', ['Content-Type: application/json'], JSON.stringify({ token: PLANTED, other: SPECIAL, b: b64(PLANTED) }));
    case 'error':
      return answer(socket, `500 Failed for ${PLANTED}`, ['Content-Type: text/plain'], `internal error: token ${PLANTED} was rejected`);
    case 'form': {
      const form = FORMS[name]!;
      return answer(socket, '200 OK', [`Content-Type: ${form.type}`], form.body);
    }
    case 'ce': {
      const text = `coded: ${PLANTED} / ${b64(PLANTED)} / ${SPECIAL}`;
      if (name === 'identity-then-gzip')
        return answer(socket, '200 OK', ['Content-Encoding: identity', 'Content-Encoding: gzip'], gzipSync(text));
      if (name === 'gzip-then-br')
        return answer(socket, '200 OK', ['Content-Encoding: gzip', 'Content-Encoding: br'], brotliCompressSync(gzipSync(text)));
      if (name === 'list') return answer(socket, '200 OK', ['Content-Encoding: gzip, br'], brotliCompressSync(gzipSync(text)));
      return answer(socket, '200 OK', ['Content-Encoding: zstd'], text);
    }
    case 'gz':
      if (name === 'value') return answer(socket, '200 OK', ['Content-Type: application/gzip'], gzipSync(`a file that holds ${PLANTED}\n`));
      if (name === 'coded')
        return answer(
          socket,
          '200 OK',
          ['Content-Type: application/gzip', 'Content-Encoding: br'],
          brotliCompressSync(gzipSync(`inner ${PLANTED}`)),
        );
      return answer(socket, '200 OK', ['Content-Type: application/gzip'], CLEAN_GZIP);
    case 'prop': {
      // a body the property test registered, written in the pieces it chose
      const prop = PROP_BODIES.get(name)!;
      const pieces = [
        Buffer.from(`HTTP/1.1 200 OK\r\n${[...prop.headers, `Content-Length: ${prop.length}`].map((h) => `${h}\r\n`).join('')}\r\n`),
        ...prop.pieces,
      ];
      const next = (): void => {
        const piece = pieces.shift();
        if (piece === undefined) return;
        socket.write(piece);
        setTimeout(next, 1);
      };
      return next();
    }
    case 'ws': {
      const deflate = /permessage-deflate/i.test(request.headers['sec-websocket-extensions'] ?? '');
      const head = [
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Accept: ${wsAccept()}`,
        `X-Known: ${PLANTED}`,
        ...(deflate ? ['Sec-WebSocket-Extensions: permessage-deflate'] : []),
      ];
      socket.write(`HTTP/1.1 101 Switching ${PLANTED}\r\n${head.map((h) => `${h}\r\n`).join('')}\r\n`);
      socket.end(wsFrames(deflate));
      return 'raw';
    }
    case 'ws-no':
      return answer(socket, `403 No ${PLANTED}`, [`X-Known: ${PLANTED}`, 'Content-Type: text/plain'], `refused, I know ${PLANTED}`);
    case 'foo':
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n');
      socket.end(`foo protocol bytes ${PLANTED}`);
      return 'raw';
    default:
      return answer(socket, '404 Not Found', [], 'no such case');
  }
}

/** Bodies for the property case, by name: the Content-Encoding lines and the pieces to write. */
const PROP_BODIES = new Map<string, { headers: string[]; pieces: Buffer[]; length: number }>();

/** gzip data that carries no value: it must reach the client byte for byte. */
const CLEAN_GZIP = gzipSync(Buffer.from('a clean tarball, nothing secret in it\n'.repeat(50)));

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  plainUp = await startScriptedUpstream(script, { host: '127.0.0.2' });
  tlsUp = await startScriptedUpstream(script, { host: '127.0.0.2', tls: pki.server });
  dns = await startDns({ [VAULT]: [{ type: 'A', address: '127.0.0.2' }], [ALIAS]: [{ type: 'A', address: '127.0.0.2' }] });
  sluice = await startTestSluice({
    env: { SCRUB_PLANTED: PLANTED, SCRUB_SPECIAL: SPECIAL },
    log,
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${plainUp.port}, ${tlsUp.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  planted:
    from: { env: SCRUB_PLANTED }
    hosts: ["${VAULT}"]
  special:
    from: { env: SCRUB_SPECIAL }
    hosts: ["${VAULT}"]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [planted, special]
    allow:
      - host: ${VAULT}
      - host: ${ALIAS}
  ${READER}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: ${VAULT}
      - host: ${ALIAS}
  ${NARROW}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: ${ALIAS}
        paths: ["/allowed/**"]
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

interface Fetched extends RawResponse {
  /** the body as the client's library would hand it over: de-chunked, every coding undone */
  plain: Buffer;
}

/** One GET, read raw: plain HTTP (absolute-form) or inside an intercepted tunnel (https). */
async function fetchVia(scheme: 'http' | 'https', host: string, p: string, tool: string = TOOL, extra: string[] = []): Promise<Fetched> {
  let r: RawResponse;
  if (scheme === 'http') {
    const lines = [
      `GET http://${host}:${plainUp.port}${p} HTTP/1.1`,
      `Host: ${host}:${plainUp.port}`,
      `Proxy-Authorization: ${basicAuth(tool, TOKEN)}`,
    ];
    r = await rawRequest(sluice.port, `${[...lines, 'Connection: close', ...extra].join('\r\n')}\r\n\r\n`, { until: 'close', timeoutMs: 5000 });
  } else {
    // A client that trusts sluice's CA and the upstream's own: a tunnel relayed untouched would work too.
    const socket = await tlsTunnel(sluice.port, `${host}:${tlsUp.port}`, basicAuth(tool, TOKEN), { ca: `${sluiceCa}\n${await testCaPem()}` });
    r = await exchangeRaw(
      socket,
      `${[`GET ${p} HTTP/1.1`, `Host: ${host}:${tlsUp.port}`, 'Connection: close', ...extra].join('\r\n')}\r\n\r\n`,
      {
        until: 'close',
        timeoutMs: 5000,
      },
    );
  }
  received.push(Buffer.from(r.raw, 'latin1'));
  let plain = r.bodyBuffer;
  try {
    plain = decodeBody(r.bodyBuffer, r.headers['content-encoding']);
  } catch {
    // not decodable: what the client got is checked as it is
  }
  received.push(plain);
  return { ...r, plain };
}

let testCaText: string | null = null;
async function testCaPem(): Promise<string> {
  testCaText ??= readFileSync(await testCaFile(), 'utf8');
  return testCaText;
}

/** Fails naming the value and the form, never printing the value. */
function noLeak(t: Test, what: string, ...parts: Array<Buffer | string>): void {
  const found = parts.map((part) => leakIn(Buffer.isBuffer(part) ? gunzipIfGzip(part) : part, VALUES)).find((f) => f !== null) ?? null;
  t.equal(found, null, `${what}: no value in any covered form`);
}

t.test(
  'a tool granted no secret reads a value back from the secret host (intercepted now): status line, headers, body, error page',
  async (t) => {
    for (const p of ['/status/r', '/headers/r', '/body/r', '/error/r']) {
      const r = await fetchVia('https', VAULT, p, READER);
      t.ok(r.status === 200 || r.status === 500, `${p}: the upstream's answer (${r.status})`);
      noLeak(t, `${p} as ${READER} over https`, r.raw, r.plain);
    }
    const r = await fetchVia('https', VAULT, '/status/r2', READER);
    t.ok(r.statusLine.includes(`Here ${PLANTED_PLACEHOLDER}`), 'the reason phrase carries the placeholder');
    const h = await fetchVia('https', VAULT, '/headers/r2', READER);
    t.ok(h.headers['x-echo'] === `Bearer ${PLANTED_PLACEHOLDER}`, 'an echoed header carries the placeholder');
    t.ok(Object.keys(h.headers).includes(`x-${PLANTED_PLACEHOLDER}`), 'a header name too');
  },
);

t.test('the granted tool through another name of the same server (no secret names it): scrubbed all the same', async (t) => {
  for (const p of ['/status/a', '/headers/a', '/body/a', '/error/a']) {
    const r = await fetchVia('http', ALIAS, p);
    t.ok(r.status === 200 || r.status === 500, `${p}: the upstream's answer (${r.status})`);
    noLeak(t, `${p} via ${ALIAS}`, r.raw, r.plain);
  }
  const r = await fetchVia('http', ALIAS, '/body/a2', READER);
  t.ok(r.plain.toString().includes(`"token":"${PLANTED_PLACEHOLDER}"`), 'the value is the placeholder');
});

for (const name of Object.keys(FORMS)) {
  t.test(`the value ${name}: found and replaced, also from the secret's own host`, async (t) => {
    for (const [scheme, host, tool] of [
      ['https', VAULT, TOOL],
      ['http', ALIAS, READER],
    ] as const) {
      const r = await fetchVia(scheme, host, `/form/${name}`, tool);
      t.equal(r.status, 200, `${scheme} ${host}`);
      noLeak(t, `${name} via ${host}`, r.raw, r.plain);
      t.ok(r.plain.toString().includes('__sluice_secret_'), `${host}: a placeholder stands in for it`);
    }
  });
}

t.test('Content-Encoding: stacked lines and lists are all undone before the scrub; an unknown coding is refused', async (t) => {
  for (const name of ['identity-then-gzip', 'gzip-then-br', 'list']) {
    const r = await fetchVia('https', VAULT, `/ce/${name}`);
    t.equal(r.status, 200, `${name}: status`);
    t.notOk(r.headers['content-encoding'], `${name}: sent decoded`);
    noLeak(t, name, r.raw, r.plain);
    t.ok(r.plain.toString().startsWith(`coded: ${PLANTED_PLACEHOLDER} / ${PLANTED_PLACEHOLDER}`), `${name}: decoded and scrubbed`);
  }
  const z = await fetchVia('http', ALIAS, '/ce/zstd', READER);
  t.equal(z.status, 502);
  t.equal(z.headers['x-sluice-error'], 'upstream_protocol');
  noLeak(t, 'zstd', z.raw);
});

t.test('gzip data sent without Content-Encoding: held and checked; with a value it is refused, clean it goes on byte for byte', async (t) => {
  for (const [scheme, host] of [
    ['https', VAULT],
    ['http', ALIAS],
  ] as const) {
    const r = await fetchVia(scheme, host, '/gz/value', READER);
    t.equal(r.status, 502, `${host}: refused`);
    t.equal(r.headers['x-sluice-error'], 'upstream_protocol');
    t.match(JSON.parse(r.body).detail, /gzip data that carries a secret value/);
    noLeak(t, `gzip payload via ${host}`, r.raw, gunzipIfGzip(r.bodyBuffer));
  }
  const coded = await fetchVia('http', ALIAS, '/gz/coded', READER);
  t.equal(coded.status, 502, 'gzip data inside a Content-Encoding layer is checked too');
  const clean = await fetchVia('http', ALIAS, '/gz/clean', READER);
  t.equal(clean.status, 200);
  t.equal(createHash('sha256').update(clean.bodyBuffer).digest('hex'), createHash('sha256').update(CLEAN_GZIP).digest('hex'), 'unchanged');
  t.equal(clean.headers['content-length'], String(CLEAN_GZIP.length), 'with its length');
  const record = await waitForAudit(sluice, (e) => e.path === '/gz/value' && e.reason === 'upstream_protocol');
  t.equal(record.status, 502);
});

t.test('property, through sluice: random forms, codings and write boundaries, for both values and both tools', async (t) => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...VALUES),
      fc.record({
        form: fc.constantFrom(...EMBED_FORMS),
        lead: fc.nat({ max: 80 }),
        width: fc.constantFrom(...WIDTHS),
        eol: fc.constantFrom(...EOLS),
      }),
      fc.constantFrom(...CODINGS),
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.constantFrom([ALIAS, READER] as const, [ALIAS, TOOL] as const),
      async (value, e, coding, points, [host, tool]) => {
        const name = `case-${n++}`;
        const coded = encoded(Buffer.from(`before ${embedded(value, e)} after`), coding);
        PROP_BODIES.set(name, { headers: coded.headers, pieces: cutAt(coded.body, points), length: coded.body.length });
        const r = await fetchVia('http', host, `/prop/${name}`, tool);
        return r.status === 200 && leakIn(r.raw, VALUES) === null && leakIn(r.plain, VALUES) === null && r.plain.includes('__sluice_secret_');
      },
    ),
    { numRuns: 40 },
  );
  t.pass('no value through sluice');
});

interface WsRead {
  status: number;
  head: string;
  frames: Buffer;
}

/** An Upgrade through sluice (absolute-form, plain); what came back: the head and every byte after it. */
async function upgradeVia(host: string, p: string, tool: string, options: { upgrade?: string; headers?: string[] } = {}): Promise<WsRead> {
  const socket = await openSocket(sluice.port);
  const request = upgradeRequest({
    target: `http://${host}:${plainUp.port}${p}`,
    host: `${host}:${plainUp.port}`,
    proxyAuthorization: basicAuth(tool, TOKEN),
    ...(options.upgrade ? { upgrade: options.upgrade } : {}),
    headers: options.headers ?? [],
  });
  const r = await roundTrip(socket, request, { timeoutMs: 5000 });
  const rest: Buffer[] = [r.rest];
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 5000);
    socket.on('data', (chunk: Buffer) => rest.push(chunk));
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
  });
  socket.destroy();
  const head = [r.statusLine, ...r.rawHeaders.map(([n, v]) => `${n}: ${v}`)].join('\r\n');
  const frames = Buffer.concat(rest);
  received.push(Buffer.from(head, 'latin1'), Buffer.from(r.body), frames);
  return { status: r.status, head: `${head}\r\n\r\n${r.body}`, frames };
}

t.test('WebSocket: the 101 head and every frame after it are scrubbed (text, binary, fragmented, ping, close)', async (t) => {
  const r = await upgradeVia(ALIAS, '/ws/plain', TOOL);
  t.equal(r.status, 101);
  noLeak(t, '101 head', r.head);
  t.ok(r.head.includes(`X-Known: ${PLANTED_PLACEHOLDER}`), 'the header carries the placeholder');
  const messages = wsMessages(r.frames);
  t.ok(messages.length >= 6, `the messages came through (${messages.length})`);
  noLeak(t, 'frames as bytes', r.frames);
  for (const [i, message] of messages.entries()) noLeak(t, `message ${i}`, message);
  t.ok(
    messages.some((m) => m.toString('latin1').includes(`fragmented: ${PLANTED_PLACEHOLDER} end`)),
    'a value cut across fragments is replaced in the joined message',
  );
});

t.test('WebSocket with permessage-deflate: compressed messages (context takeover too) are inflated, scrubbed, sent on', async (t) => {
  const r = await upgradeVia(ALIAS, '/ws/deflate', READER, {
    headers: ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits'],
  });
  t.equal(r.status, 101);
  const messages = wsMessages(r.frames);
  t.ok(messages.length >= 8, `the messages came through (${messages.length})`);
  for (const [i, message] of messages.entries()) noLeak(t, `message ${i}`, message);
  t.ok(
    messages.some((m) => m.toString().startsWith(`second message refers back: ${PLANTED_PLACEHOLDER}`)),
    'the back-referencing message was read with the shared window',
  );
});

t.test('a non-101 answer to an Upgrade is scrubbed; an Upgrade to another protocol is refused while values are known', async (t) => {
  const no = await upgradeVia(ALIAS, '/ws-no/x', READER);
  t.equal(no.status, 403);
  noLeak(t, 'non-101 answer', no.head, no.frames);
  const foo = await upgradeVia(ALIAS, '/foo/x', READER, { upgrade: 'foo' });
  t.equal(foo.status, 400, 'refused');
  t.match(foo.head, /X-Sluice-Deny: bad_request/i);
  noLeak(t, 'foo upgrade', foo.head, foo.frames);
  t.notOk(
    plainUp.requests.some((q) => q.target === '/foo/x'),
    'never sent upstream',
  );
});

t.test('audit fields a tool chooses are bounded, with a marker and the original length; the chain holds', async (t) => {
  const long = `/allowed/${'a'.repeat(20_000)}`;
  const denied = `/denied/${'b'.repeat(20_000)}`;
  const ok = await fetchVia('http', ALIAS, long, NARROW);
  t.equal(ok.status, 404, 'the long path was allowed and answered');
  const no = await fetchVia('http', ALIAS, denied, NARROW);
  t.equal(no.headers['x-sluice-deny'], 'path_not_allowed');
  await sluice.running.flushAudit();
  const records = await sluice.audit();
  const allowed = records.find((r) => r.path?.startsWith('/allowed/aaaa'));
  const refused = records.find((r) => r.path?.startsWith('/denied/bbbb'));
  t.ok(allowed && refused, 'both exchanges were recorded');
  t.ok(allowed!.path!.length <= AUDIT_FIELD_MAX.path + 40, `path cut (${allowed!.path!.length})`);
  t.match(allowed!.path, new RegExp(`…\\[cut, ${long.length} chars\\]$`), 'marker with the original length');
  t.ok(refused!.path!.length <= AUDIT_FIELD_MAX.path + 40, `the refusal's path cut too (${refused!.path!.length})`);
  t.ok((refused!.detail ?? '').length <= AUDIT_FIELD_MAX.detail + 40, `and its detail bounded (${refused!.detail?.length})`);
  const lines = readFileSync(sluice.auditFile, 'utf8').split('\n');
  t.ok(
    lines.every((line) => Buffer.byteLength(line) < 8 * 1024),
    'no record is larger than 8 KiB',
  );
  t.same(verifyAuditFiles([sluice.auditFile]).ok, true, 'the hash chain verifies');
});

t.test('nothing sluice emitted carries a value: client bytes, audit, log, /metrics, /policy', async (t) => {
  // A reload of a changed policy writes to the log (and the audit) as well.
  appendFileSync(sluice.policyFile, '\n# touched by the test\n');
  t.equal(await sluice.running.reload(), true, 'reloaded');
  await sluice.running.flushAudit();
  const admin = async (p: string): Promise<string> => (await fetch(`http://127.0.0.1:${sluice.adminPort}${p}`)).text();
  const metrics = await admin('/metrics');
  const policy = await admin('/policy');
  t.match(metrics, /sluice_requests_total/, 'metrics were read');
  t.match(policy, /sha256/, 'the policy summary was read');
  t.ok(received.length > 40, `client bytes of every case (${received.length} pieces)`);
  t.ok(log.length > 0, `log lines (${log.length})`);
  noLeak(t, 'client bytes', ...received);
  noLeak(t, 'audit file', readFileSync(sluice.auditFile));
  noLeak(t, 'log', log.join(''));
  noLeak(t, '/metrics', metrics);
  noLeak(t, '/policy', policy);
});
