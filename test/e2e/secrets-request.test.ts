// Issue 14, the request side: where a real value may go at all. Each class runs as a table over the
// ways a request reaches sluice: absolute-form http, plain HTTP inside a CONNECT tunnel, intercepted
// https, and Upgrade (ws:// absolute-form, wss:// inside an intercepted tunnel), against real
// upstreams that record what reached them. The classes:
//   swap_in: a placeholder outside its secret's places is refused (secret_misplaced);
//   require: only the declared header counts, and it carries nothing but the placeholder;
//   TLS only: no swap and no injection over plain HTTP (secret_insecure) unless allow_plaintext;
//   Ranges: dropped toward a host a secret may be swapped into the body of;
//   wildcards: strict mode refuses a secret or rule wildcard with a public suffix under it;
//   leak scan: request bodies decoded by their Content-Encoding, header values joined.
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { basicAuth, connectTunnel, exchangeRaw, openSocket, tlsTunnel, type RawResponse } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { WS_KEY } from '../helpers/upgrade.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Obviously fake values. Assertions on them are t.ok(!text.includes(VALUE)), never t.equal, so a
// failure can not print a value.
const GH_VALUE = 'rq-gh-real-value-7c1d2e3f4a5b6c7d';
const REQ_VALUE = 'rq-required-value-0f9e8d7c6b5a';
const INJ_VALUE = 'rq-injected-value-1a2b3c4d5e6f';
const STORE_VALUE = 'rq-store-value-99887766554433';
const DEV_VALUE = 'rq-dev-plaintext-value-13579bdf';
const ALL_VALUES = [GH_VALUE, REQ_VALUE, INJ_VALUE, STORE_VALUE, DEV_VALUE];
const AWS_SHAPE = 'AKIA' + 'Q7'.repeat(8);

let plainUp: Upstream;
let tlsUp: Upstream;
let dns: DnsServer;
let testCa: string;
/** old fields only, strict: the classes that need no new policy field run on it */
let main: TestSluice;
/** strict: false, with swap_in and allow_plaintext; started by the first test that needs it */
let optStarted: Promise<TestSluice> | null = null;
let seq = 0;

const network = (): string => `
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${plainUp.port}, ${tlsUp.port}]
tls:
  upstream_ca: ${testCa}
`;

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  plainUp = await startUpstream({ host: '127.0.0.2' });
  tlsUp = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  const names = ['api.test', 'other.test', 'req.wild.test', 'inj.wild.test', 'store.wild.test', 'dev.wild.test'];
  dns = await startDns(Object.fromEntries(names.map((name) => [name, [{ type: 'A' as const, address: '127.0.0.2' }]])));
  main = await startTestSluice({
    env: { RQ_GH: GH_VALUE, RQ_REQ: REQ_VALUE, RQ_INJ: INJ_VALUE },
    policy: `
version: 1
${network()}
secrets:
  gh:
    from: { env: RQ_GH }
    hosts: ["api.test"]
  req:
    from: { env: RQ_REQ }
    hosts: ["req.wild.test"]
    require: true
  inj:
    from: { env: RQ_INJ }
    hosts: ["inj.wild.test"]
    inject: { header: X-Api-Key, format: "{value}" }
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [gh, req, inj]
    allow:
      - host: api.test
      - host: req.wild.test
      - host: inj.wild.test
      - host: other.test
        paths: ["/**"]
  capped:
    token_sha256: "\${TOKEN_SHA}"
    limits: { max_request_bytes: 4096 }
    allow:
      - host: other.test
        paths: ["/**"]
`,
  });
});
t.teardown(async () => {
  await main?.close();
  await optStarted?.then(
    (s) => s.close(),
    () => undefined,
  );
  await plainUp.close();
  await tlsUp.close();
  await dns.close();
});

/** The second sluice, whose policy uses swap_in and allow_plaintext. */
function optSluice(): Promise<TestSluice> {
  optStarted ??= startTestSluice({
    env: { RQ_STORE: STORE_VALUE, RQ_DEV: DEV_VALUE },
    policy: `
version: 1
strict: false
${network()}
secrets:
  store:
    from: { env: RQ_STORE }
    hosts: ["store.wild.test"]
    swap_in: [header:Authorization, body]
  dev:
    from: { env: RQ_DEV }
    hosts: ["dev.wild.test"]
    allow_plaintext: true
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [store, dev]
    allow:
      - host: store.wild.test
      - host: dev.wild.test
      - host: other.test
        paths: ["/**"]
`,
  });
  return optStarted;
}

/** How a request reaches sluice. */
interface Wire {
  name: 'http' | 'http in a tunnel' | 'https' | 'ws' | 'wss';
  /** the upstream sees it over TLS sluice verified */
  tls: boolean;
  upgrade: boolean;
}
const HTTP: Wire = { name: 'http', tls: false, upgrade: false };
const TUNNELLED_HTTP: Wire = { name: 'http in a tunnel', tls: false, upgrade: false };
const HTTPS: Wire = { name: 'https', tls: true, upgrade: false };
const WS: Wire = { name: 'ws', tls: false, upgrade: true };
const WSS: Wire = { name: 'wss', tls: true, upgrade: true };

const upstreamOf = (wire: Wire): Upstream => (wire.tls ? tlsUp : plainUp);

interface Sent {
  response: RawResponse;
  /** a marker in the request's query, unique per request, to find it in the upstream's record */
  marker: string;
  wire: Wire;
}

/**
 * One request through `s` on `wire`: exact header lines (repeats and order kept) and an optional
 * body. Upgrade wires ask for a WebSocket at /ws, which the upstream accepts (101).
 */
async function send(
  s: TestSluice,
  wire: Wire,
  host: string,
  options: { path?: string; headers?: string[]; body?: Buffer; method?: string; tool?: string } = {},
): Promise<Sent> {
  const marker = `m${++seq}`;
  const base = wire.upgrade ? '/ws' : (options.path ?? '/anything/rq');
  const target = `${base}${base.includes('?') ? '&' : '?'}case=${marker}`;
  const authority = `${host}:${upstreamOf(wire).port}`;
  const auth = basicAuth(options.tool ?? TOOL, TOKEN);
  const absolute = wire === HTTP || wire === WS;
  let socket: net.Socket;
  if (absolute) socket = await openSocket(s.port);
  else if (wire.tls) socket = await tlsTunnel(s.port, authority, auth, { ca: readFileSync(path.join(s.caDir, 'ca.pem'), 'utf8') });
  else {
    const tunnel = await connectTunnel(s.port, authority, auth);
    if (tunnel.status !== 200) throw new Error(`CONNECT ${authority} answered ${tunnel.status}`);
    socket = tunnel.socket;
    socket.resume();
  }
  const method = options.method ?? (options.body ? 'POST' : 'GET');
  const lines = [`${method} ${absolute ? `http://${authority}${target}` : target} HTTP/1.1`, `Host: ${authority}`];
  if (absolute) lines.push(`Proxy-Authorization: ${auth}`);
  if (wire.upgrade) lines.push('Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13');
  else lines.push('Connection: close');
  lines.push(...(options.headers ?? []));
  if (options.body) lines.push(`Content-Length: ${options.body.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  const response = await exchangeRaw(socket, options.body ? Buffer.concat([head, options.body]) : head, { timeoutMs: 10_000 });
  return { response, marker, wire };
}

/** What the upstream recorded for a request: any head, and whether a whole request arrived. */
function arrived(sent: Sent): { any: boolean; complete: boolean; headers: Record<string, string | string[] | undefined> | null } {
  const found = upstreamOf(sent.wire).requests.filter((r) => r.url.includes(`case=${sent.marker}`));
  return { any: found.length > 0, complete: found.some((r) => r.complete), headers: found[0]?.headers ?? null };
}

const denied = (sent: Sent): string | undefined => sent.response.headers['x-sluice-deny'];
const detailOf = (sent: Sent): string => {
  try {
    const detail = (JSON.parse(sent.response.body) as { detail?: unknown }).detail;
    return typeof detail === 'string' ? detail : '';
  } catch {
    return '';
  }
};
const allowedStatus = (wire: Wire): number => (wire.upgrade ? 101 : 200);

/** Sluice's answers and the upstream's record carry no value. */
function noValueIn(t: Test, sent: Sent): void {
  const text = sent.response.raw;
  t.ok(
    ALL_VALUES.every((value) => !text.includes(value)),
    'the answer carries no value',
  );
}

async function violations(s: TestSluice, reason: string): Promise<number> {
  return total(await scrapeMetrics(s.adminPort), 'sluice_policy_violations_total', { reason });
}

t.test('swap_in: a placeholder outside its secret places is refused with secret_misplaced', async (t) => {
  const before = await violations(main, 'secret_misplaced');
  let refused = 0;
  for (const wire of [HTTP, TUNNELLED_HTTP, HTTPS, WS, WSS]) {
    const cases: Array<{ name: string; headers?: string[]; path?: string; body?: Buffer; where: string }> = [
      { name: 'another header', headers: ['X-Pad: __sluice_secret_gh__'], where: 'header:X-Pad' },
      { name: 'the query', path: '/anything/q?t=__sluice_secret_gh__', where: 'query' },
      { name: 'the path', path: '/anything/__sluice_secret_gh__', where: 'path' },
      { name: 'the body', body: Buffer.from('{"gist":"__sluice_secret_gh__"}'), where: 'body' },
    ];
    for (const c of cases) {
      if (wire.upgrade && (c.path || c.body)) continue;
      const sent = await send(main, wire, 'api.test', c);
      t.equal(sent.response.status, 403, `${wire.name}, ${c.name}: refused`);
      t.equal(denied(sent), 'secret_misplaced', `${wire.name}, ${c.name}: secret_misplaced`);
      t.match(
        detailOf(sent),
        `only in header:Authorization; its placeholder was found in ${c.where}`,
        `${wire.name}, ${c.name}: the detail names the places`,
      );
      t.notOk(arrived(sent).complete, `${wire.name}, ${c.name}: no whole request reached the upstream`);
      noValueIn(t, sent);
      refused++;
    }
  }
  const record = await waitForAudit(main, (r) => r.reason === 'secret_misplaced');
  t.equal(record.type, 'policy.violation');
  t.equal(record.decision, 'deny');
  t.equal((await violations(main, 'secret_misplaced')) - before, refused, 'one violation counted per refusal');

  for (const wire of [HTTPS, WSS]) {
    const sent = await send(main, wire, 'api.test', { headers: ['Authorization: Bearer __sluice_secret_gh__'] });
    t.equal(sent.response.status, allowedStatus(wire), `${wire.name}: in Authorization (the default place) it is swapped`);
    t.ok(arrived(sent).headers?.authorization === `Bearer ${GH_VALUE}`, `${wire.name}: the upstream got the value`);
    noValueIn(t, sent);
  }
});

t.test('require: only the declared header counts, and it carries nothing but the placeholder', async (t) => {
  for (const wire of [HTTPS, WSS]) {
    const attacks: Array<{ name: string; headers: string[]; reason: string }> = [
      {
        name: 'the placeholder in another header, a foreign token in Authorization',
        headers: ['X-Pad: __sluice_secret_req__', 'Authorization: Bearer my-own-foreign-token'],
        reason: 'secret_misplaced',
      },
      {
        name: 'a foreign token beside the placeholder',
        headers: ['Authorization: Bearer my-own-foreign-token __sluice_secret_req__'],
        reason: 'secret_required',
      },
      {
        name: 'a second Authorization with a foreign token',
        headers: ['Authorization: Bearer __sluice_secret_req__', 'Authorization: Bearer my-own-foreign-token'],
        reason: 'secret_required',
      },
      { name: 'no placeholder at all', headers: ['Authorization: Bearer my-own-foreign-token'], reason: 'secret_required' },
    ];
    for (const attack of attacks) {
      const sent = await send(main, wire, 'req.wild.test', { headers: attack.headers });
      t.equal(sent.response.status, 403, `${wire.name}, ${attack.name}: refused`);
      t.equal(denied(sent), attack.reason, `${wire.name}, ${attack.name}: ${attack.reason}`);
      t.notOk(arrived(sent).any, `${wire.name}, ${attack.name}: nothing reached the upstream`);
      noValueIn(t, sent);
    }
    const ok = await send(main, wire, 'req.wild.test', { headers: ['Authorization: Bearer __sluice_secret_req__'] });
    t.equal(ok.response.status, allowedStatus(wire), `${wire.name}: the placeholder alone in Authorization satisfies require`);
    t.ok(arrived(ok).headers?.authorization === `Bearer ${REQ_VALUE}`, `${wire.name}: and is swapped`);
  }
  const record = await waitForAudit(main, (r) => r.reason === 'secret_required' && r.host === 'req.wild.test');
  t.equal(record.type, 'policy.violation');
});

t.test('TLS only: no swap and no injection over plain HTTP (secret_insecure)', async (t) => {
  const before = await violations(main, 'secret_insecure');
  let refused = 0;
  for (const wire of [HTTP, TUNNELLED_HTTP, WS]) {
    const swapped = await send(main, wire, 'api.test', { headers: ['Authorization: Bearer __sluice_secret_gh__'] });
    t.equal(swapped.response.status, 403, `${wire.name}: a placeholder is refused`);
    t.equal(denied(swapped), 'secret_insecure', `${wire.name}: secret_insecure`);
    t.match(detailOf(swapped), /plain http/, `${wire.name}: the detail says why`);
    t.notOk(arrived(swapped).any, `${wire.name}: nothing reached the upstream`);
    const injected = await send(main, wire, 'inj.wild.test');
    t.equal(denied(injected), 'secret_insecure', `${wire.name}: an injection is refused, with nothing written`);
    t.notOk(arrived(injected).any, `${wire.name}: nothing reached the upstream`);
    noValueIn(t, swapped);
    noValueIn(t, injected);
    refused += 2;
  }
  const opt = await optSluice();
  const body = await send(opt, HTTP, 'store.wild.test', { body: Buffer.from('{"v":"__sluice_secret_store__"}') });
  t.equal(denied(body), 'secret_insecure', 'a body placeholder over plain HTTP too');
  t.notOk(arrived(body).complete, 'no whole request reached the upstream');
  const record = await waitForAudit(main, (r) => r.reason === 'secret_insecure');
  t.equal(record.type, 'policy.violation');
  t.equal(record.scheme, 'http');
  t.equal((await violations(main, 'secret_insecure')) - before, refused, 'one violation counted per refusal');

  for (const wire of [HTTPS, WSS]) {
    const injected = await send(main, wire, 'inj.wild.test');
    t.equal(injected.response.status, allowedStatus(wire), `${wire.name}: injected over TLS`);
    t.ok(arrived(injected).headers?.['x-api-key'] === INJ_VALUE, `${wire.name}: the upstream got the injected value`);
  }
  for (const wire of [HTTP, WS]) {
    const dev = await send(opt, wire, 'dev.wild.test', { headers: ['Authorization: Bearer __sluice_secret_dev__'] });
    t.equal(dev.response.status, allowedStatus(wire), `${wire.name}: allow_plaintext swaps over plain HTTP`);
    t.ok(arrived(dev).headers?.authorization === `Bearer ${DEV_VALUE}`, `${wire.name}: the upstream got the value`);
  }
});

t.test('Ranges: stripped toward a host a secret may be swapped into the body of', async (t) => {
  const opt = await optSluice();
  const ranged = ['Range: bytes=0-3', 'If-Range: "some-etag"'];
  for (const wire of [HTTPS, WSS]) {
    const toStore = await send(opt, wire, 'store.wild.test', { headers: ranged });
    t.equal(toStore.response.status, allowedStatus(wire), `${wire.name}: the request goes on`);
    const seen = arrived(toStore).headers;
    t.equal(seen?.range, undefined, `${wire.name}: without Range`);
    t.equal(seen?.['if-range'], undefined, `${wire.name}: without If-Range`);
    const elsewhere = await send(opt, wire, 'other.test', { headers: ranged });
    t.equal(arrived(elsewhere).headers?.range, 'bytes=0-3', `${wire.name}: toward a host without a body secret, Range passes`);
  }
  const stored = await send(opt, HTTPS, 'store.wild.test', { body: Buffer.from('{"v":"__sluice_secret_store__"}') });
  t.equal(stored.response.status, 200, 'a body placeholder is swapped where swap_in has body');
  t.ok(
    upstreamOf(HTTPS).requests.find((r) => r.url.includes(`case=${stored.marker}`))?.body === `{"v":"${STORE_VALUE}"}`,
    'the upstream got the value',
  );
  noValueIn(t, stored);
});

t.test('wildcards: strict mode refuses a secret or rule wildcard with a public suffix under it', async (t) => {
  const cases: Array<{ name: string; yaml: string; field: string; suffix: string }> = [
    {
      name: 'secret host *.amazonaws.com',
      yaml: 'secrets:\n  aws:\n    from: { env: RQ_AWS }\n    hosts: ["*.amazonaws.com"]\n',
      field: 'secrets.aws.hosts[0]: "*.amazonaws.com" would send the secret to names under',
      suffix: 's3.amazonaws.com',
    },
    {
      name: 'secret host *.core.windows.net',
      yaml: 'secrets:\n  az:\n    from: { env: RQ_AZ }\n    hosts: ["*.core.windows.net"]\n',
      field: 'secrets.az.hosts[0]: "*.core.windows.net" would send the secret to names under',
      suffix: 'web.core.windows.net',
    },
    {
      name: 'rule host *.amazonaws.com',
      yaml: `tools:\n  ${TOOL}:\n    token_sha256: "\${TOKEN_SHA}"\n    allow:\n      - host: "*.amazonaws.com"\n`,
      field: `tools.${TOOL}.allow[0].host: "*.amazonaws.com" covers`,
      suffix: 's3.amazonaws.com',
    },
  ];
  for (const c of cases) {
    const started = startTestSluice({ env: { RQ_AWS: 'x', RQ_AZ: 'y' }, policy: `version: 1\n${c.yaml}` });
    const error = await started.then(
      async (s) => {
        await s.close();
        return null;
      },
      (e: unknown) => e as { message?: string },
    );
    t.ok(error, `${c.name}: sluice refuses to start`);
    t.match(error?.message ?? '', c.field, `${c.name}: the problem names the field`);
    t.match(error?.message ?? '', `public suffix "${c.suffix}"`, `${c.name}: the error names the suffix`);
  }
});

t.test('leak scan: request bodies are read decoded by their Content-Encoding', async (t) => {
  const leaks: Array<{ name: string; headers: string[]; body: Buffer; reason: string; status: number }> = [
    {
      name: 'a known value in gzip',
      headers: ['Content-Encoding: gzip'],
      body: gzipSync(`{"x":"${GH_VALUE}"}`),
      reason: 'secret_leak',
      status: 403,
    },
    {
      name: 'an AWS key shape in br',
      headers: ['Content-Encoding: br'],
      body: brotliCompressSync(`id=${AWS_SHAPE}`),
      reason: 'secret_leak',
      status: 403,
    },
    {
      name: 'a known value in deflate',
      headers: ['Content-Encoding: deflate'],
      body: deflateSync(GH_VALUE),
      reason: 'secret_leak',
      status: 403,
    },
    {
      name: 'a known value in gzip twice, on two Content-Encoding lines',
      headers: ['Content-Encoding: gzip', 'Content-Encoding: gzip'],
      body: gzipSync(gzipSync(GH_VALUE)),
      reason: 'secret_leak',
      status: 403,
    },
    {
      name: 'a coding sluice cannot decode',
      headers: ['Content-Encoding: zstd'],
      body: Buffer.from('opaque'),
      reason: 'bad_request',
      status: 400,
    },
    {
      name: 'an unknown coding stacked on gzip',
      headers: ['Content-Encoding: gzip, compress'],
      body: gzipSync('x'),
      reason: 'bad_request',
      status: 400,
    },
    {
      name: 'gzip that does not decode',
      headers: ['Content-Encoding: gzip'],
      body: Buffer.from('not gzip at all'),
      reason: 'bad_request',
      status: 400,
    },
  ];
  for (const wire of [HTTP, HTTPS]) {
    for (const leak of leaks) {
      const sent = await send(main, wire, 'other.test', { headers: leak.headers, body: leak.body });
      t.equal(sent.response.status, leak.status, `${wire.name}, ${leak.name}: ${leak.status}`);
      t.equal(denied(sent), leak.reason, `${wire.name}, ${leak.name}: ${leak.reason}`);
      t.notOk(arrived(sent).complete, `${wire.name}, ${leak.name}: no whole request reached the upstream`);
      noValueIn(t, sent);
    }
    const clean = gzipSync('{"note":"nothing to see here"}');
    const passed = await send(main, wire, 'other.test', { headers: ['Content-Encoding: gzip'], body: clean });
    t.equal(passed.response.status, 200, `${wire.name}: a clean gzip body goes on`);
    const got = upstreamOf(wire).requests.find((r) => r.url.includes(`case=${passed.marker}`));
    t.equal(got?.bodyBytes, clean.length, `${wire.name}: as sent, still compressed`);
    t.equal(got?.headers['content-encoding'], 'gzip');
    const bomb = await send(main, wire, 'other.test', {
      tool: 'capped',
      headers: ['Content-Encoding: gzip'],
      body: gzipSync(Buffer.alloc(100_000)),
    });
    t.equal(bomb.response.status, 413, `${wire.name}: decoded bytes count against max_request_bytes`);
    t.equal(denied(bomb), 'request_too_large');
  }
  const record = await waitForAudit(main, (r) => r.reason === 'bad_request' && r.host === 'other.test');
  t.equal(record.type, 'policy.violation');
});

t.test('leak scan: a token split across two headers is found', async (t) => {
  for (const wire of [HTTP, HTTPS, WS, WSS]) {
    const splits: Array<{ name: string; headers: string[] }> = [
      { name: 'two headers of one name', headers: [`X-Part: ${AWS_SHAPE.slice(0, 9)}`, `X-Part: ${AWS_SHAPE.slice(9)}`] },
      { name: 'two different headers', headers: [`X-Head: ${GH_VALUE.slice(0, 12)}`, `X-Tail: ${GH_VALUE.slice(12)}`] },
    ];
    for (const split of splits) {
      const host = wire.upgrade ? 'api.test' : 'other.test';
      const sent = await send(main, wire, host, { headers: split.headers });
      t.equal(sent.response.status, 403, `${wire.name}, ${split.name}: refused`);
      t.equal(denied(sent), 'secret_leak', `${wire.name}, ${split.name}: secret_leak`);
      t.match(detailOf(sent), /headers joined/, `${wire.name}, ${split.name}: found in the headers joined`);
      t.notOk(arrived(sent).any, `${wire.name}, ${split.name}: nothing reached the upstream`);
      noValueIn(t, sent);
    }
  }
});

t.test('no value in the audit of either sluice', async (t) => {
  for (const s of [main, await optSluice()]) {
    await s.running.flushAudit();
    const audit = readFileSync(s.auditFile, 'utf8');
    t.ok(audit.length > 0);
    t.ok(
      ALL_VALUES.every((value) => !audit.includes(value)),
      'no value in the audit',
    );
  }
});
