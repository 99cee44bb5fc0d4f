// Issue 13, contract item 9: a header whose name differs from a framing or hop-by-hop header
// (Transfer-Encoding, Content-Length, Connection, Upgrade, TE, Trailer, Keep-Alive, Host, Proxy-*)
// only by `_`, case, spaces or control bytes is refused: 400 bad_request, nothing sent upstream,
// audit policy.violation bad_request. A server that folds `_` into `-` (CGI-style) would otherwise
// read `Transfer_Encoding` as Transfer-Encoding beside sluice's own framing. The same table runs
// in absolute form, inside an intercepted tunnel, and on an Upgrade over HTTP and inside TLS.
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { basicAuth, exchangeRaw, openSocket, tlsTunnel } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditWithin, startTestSluice, TOKEN, TOOL, type TestSluice } from '../helpers/sluice.js';
import { upgradeRequest } from '../helpers/upgrade.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = basicAuth(TOOL, TOKEN);

/** Look-alikes sluice's own check must refuse: valid header tokens that Node's parser lets through. */
const UNDERSCORED = [
  'Transfer_Encoding: chunked',
  'transfer_encoding: chunked',
  'TRANSFER_ENCODING: chunked',
  'Transfer__Encoding: chunked',
  'Transfer-Encoding_: chunked',
  '_Transfer-Encoding: chunked',
  'Content_Length: 5',
  'Connection_: close',
  'Upgrade_: websocket',
  'Keep_Alive: timeout=5',
  'Trailer_: X-Checksum',
  'TE_: trailers',
  'Host_: elsewhere.test',
  'Proxy_Authorization: Basic Zm9vOmJhcg==',
  'Proxy_Connection: keep-alive',
];
/** Look-alikes with a space or control byte in the name: Node's parser already refuses these (guards). */
const UNPARSEABLE = ['Transfer Encoding: chunked', 'Content-Length\x0b: 5', 'Transfer-Encoding\x01: chunked'];
/** Not look-alikes of a framing header: must pass through untouched (control). */
const ORDINARY = 'X_Trace_Id: gate-lookalike';

let upstream: Upstream;
let tlsUpstream: Upstream;
let sluice: TestSluice;
let dns: DnsServer;
let sluiceCa: string;

t.before(async () => {
  const pki = await makeTestPki();
  upstream = await startUpstream({ host: '127.0.0.2' });
  tlsUpstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns({ 'api.test': [{ type: 'A', address: '127.0.0.2' }] });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}, ${tlsUpstream.port}]
tls:
  upstream_ca: ${await testCaFile()}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
      - host: api.test
        paths: ["/**"]
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await tlsUpstream.close();
  await dns.close();
});

interface Transport {
  name: string;
  upstream(): Upstream;
  /** the host the audit record names */
  host: string;
  open(): Promise<net.Socket>;
  /** the request bytes carrying `header` */
  request(header: string): string;
  /** what the upstream answers the control request with */
  allowedStatus: number;
}

const plainAuthority = (): string => `127.0.0.2:${upstream.port}`;
const tlsAuthority = (): string => `api.test:${tlsUpstream.port}`;

const transports: Transport[] = [
  {
    name: 'absolute-form',
    upstream: () => upstream,
    host: '127.0.0.2',
    open: () => openSocket(sluice.port),
    request: (header) =>
      `GET http://${plainAuthority()}/anything/lookalike HTTP/1.1\r\nHost: ${plainAuthority()}\r\nProxy-Authorization: ${auth}\r\n${header}\r\n\r\n`,
    allowedStatus: 200,
  },
  {
    name: 'intercepted',
    upstream: () => tlsUpstream,
    host: 'api.test',
    open: () => tlsTunnel(sluice.port, tlsAuthority(), auth, { ca: sluiceCa }),
    request: (header) => `GET /anything/lookalike HTTP/1.1\r\nHost: ${tlsAuthority()}\r\n${header}\r\n\r\n`,
    allowedStatus: 200,
  },
  {
    name: 'Upgrade over HTTP',
    upstream: () => upstream,
    host: '127.0.0.2',
    open: () => openSocket(sluice.port),
    request: (header) =>
      upgradeRequest({ target: `http://${plainAuthority()}/ws`, host: plainAuthority(), proxyAuthorization: auth, headers: [header] }),
    allowedStatus: 101,
  },
  {
    name: 'Upgrade inside intercepted TLS',
    upstream: () => tlsUpstream,
    host: 'api.test',
    open: () => tlsTunnel(sluice.port, tlsAuthority(), auth, { ca: sluiceCa }),
    request: (header) => upgradeRequest({ target: '/ws', host: tlsAuthority(), headers: [header] }),
    allowedStatus: 101,
  },
];

for (const tr of transports) {
  t.test(`${tr.name}: a look-alike of a framing header is 400 bad_request, audited, and never sent upstream`, async (t) => {
    for (const header of [...UNDERSCORED, ...UNPARSEABLE]) {
      const label = JSON.stringify(header.split(':')[0]);
      const up = tr.upstream();
      const before = up.requests.length;
      const r = await exchangeRaw(await tr.open(), tr.request(header), { timeoutMs: 5000 });
      t.equal(r.status, 400, `${label}: status`);
      t.equal(r.headers['x-sluice-deny'], 'bad_request', `${label}: reason`);
      t.equal(up.requests.length, before, `${label}: nothing reached the upstream`);
      const id = r.headers['x-request-id'];
      const record = id === undefined ? undefined : await auditWithin(sluice, (a) => a.request_id === id);
      t.match(record, { type: 'policy.violation', decision: 'deny', reason: 'bad_request', status: 400 }, `${label}: audit`);
    }
  });

  t.test(`${tr.name}: an ordinary header with underscores goes through (control)`, async (t) => {
    const up = tr.upstream();
    const before = up.requests.length;
    const socket = await tr.open();
    const r = await exchangeRaw(socket, tr.request(ORDINARY), { timeoutMs: 5000 });
    t.equal(r.status, tr.allowedStatus, 'answered by the upstream');
    t.equal(up.requests.length, before + 1, 'the request reached the upstream');
    t.equal(up.requests.at(-1)?.headers['x_trace_id'], 'gate-lookalike', 'with the header as sent');
  });
}
