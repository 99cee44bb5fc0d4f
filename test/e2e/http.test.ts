// Plain HTTP through sluice with real clients and real loopback upstreams: allowed traffic,
// every deny reason the foundation owns, identity, IP spellings, DNS vetting and rebinding.
import http from 'node:http';
import t from 'tap';
import { curl, rawRequest } from '../helpers/clients.js';
import { startDns } from '../helpers/dns.js';
import { inNetns, netnsSkip, PRIVATE_CANARY_IP, PUBLIC_UPSTREAM_IP, startCanary } from '../helpers/netns.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let other: Upstream;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
let rebindQueries = 0;
let closedPort = 0;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
  other = await startUpstream({ host: '127.0.0.3' });
  const closed = await startUpstream({ host: '127.0.0.2' });
  closedPort = closed.port;
  await closed.close();
  dns = await startDns({
    'allowed.test': [{ type: 'A', address: '127.0.0.2', ttl: 0 }],
    'internal.test': [{ type: 'A', address: '127.0.0.3' }],
    'mixed.test': [
      { type: 'A', address: '127.0.0.3' },
      { type: 'A', address: '127.0.0.2' },
    ],
    'rebind.test': (i) => {
      rebindQueries++;
      return [{ type: 'A', address: i === 0 ? '127.0.0.2' : PRIVATE_CANARY_IP, ttl: 0 }];
    },
    'xn--bcher-kva.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [80, 443, ${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
      - host: allowed.test
      - host: internal.test
      - host: mixed.test
      - host: rebind.test
      - host: xn--bcher-kva.test
      - host: "*.wild.test"
      - host: 127.0.0.3
      - host: "${PUBLIC_UPSTREAM_IP}"
      - host: "${PRIVATE_CANARY_IP}"
      - host: nxdomain.test
      - host: "127.0.0.2:${closedPort}"
  reader:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
        methods: [GET]
        paths: ["/anything/public/**"]
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await other.close();
  await dns.close();
});

const via = (url: string, extra: string[] = [], tool = TOOL, token = TOKEN) => curl(['-x', sluice.proxyUrl(tool, token), ...extra, url]);

t.test('allowed GET reaches the upstream without proxy credentials and comes back', async (t) => {
  const before = upstream.requests.length;
  const r = await via(`http://127.0.0.2:${upstream.port}/anything/hello?x=1`);
  t.equal(r.code, 0);
  t.equal(r.status, 200);
  const echo = JSON.parse(r.body);
  t.equal(echo.method, 'GET');
  t.equal(echo.url, '/anything/hello?x=1');
  const names = (echo.headers as Array<[string, string]>).map(([n]) => n.toLowerCase());
  t.notOk(names.includes('proxy-authorization'), 'Proxy-Authorization never goes upstream');
  t.notOk(names.includes('proxy-connection'));
  t.match(echo.headers.find(([n]: [string]) => n.toLowerCase() === 'via')?.[1], /1\.1 sluice/);
  t.equal(upstream.requests.length, before + 1);
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.req' && e.path === '/anything/hello?x=REDACTED');
  t.equal(rec.decision, 'allow');
  t.equal(rec.tool, TOOL);
  t.equal(rec.ip, '127.0.0.2');
  t.equal(rec.status, 200);
  t.equal(rec.rule, `${TOOL}.allow[0]`);
});

t.test('POST with a body streams upstream', async (t) => {
  const body = 'x'.repeat(100_000);
  const r = await via(`http://127.0.0.2:${upstream.port}/anything/post`, ['--data-binary', body, '-H', 'Content-Type: text/plain']);
  t.equal(r.status, 200);
  const echo = JSON.parse(r.body);
  t.equal(echo.method, 'POST');
  t.equal(echo.bodyBytes, 100_000);
});

t.test('Expect: 100-continue is answered by sluice and not sent upstream', async (t) => {
  const r = await via(`http://127.0.0.2:${upstream.port}/anything/expect`, ['--data-binary', 'y'.repeat(2048), '-H', 'Expect: 100-continue']);
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).bodyBytes, 2048);
  t.notOk(upstream.requests.at(-1)!.headers.expect);
});

t.test('keep-alive: many requests share one client and one upstream connection', async (t) => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const auth = 'Basic ' + Buffer.from(`${TOOL}:${TOKEN}`).toString('base64');
  const upstreamBefore = upstream.connections();
  const clientSockets = new Set<unknown>();
  for (let i = 0; i < 5; i++) {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: sluice.port,
          path: `http://127.0.0.2:${upstream.port}/small`,
          agent,
          headers: { 'Proxy-Authorization': auth, Host: `127.0.0.2:${upstream.port}` },
        },
        (res) => {
          clientSockets.add(req.socket);
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
    t.equal(status, 200);
  }
  agent.destroy();
  t.equal(clientSockets.size, 1, 'one client connection');
  t.ok(upstream.connections() - upstreamBefore <= 1, 'at most one new upstream connection');
});

t.test('407 without or with wrong credentials', async (t) => {
  const none = await curl(['-x', `http://127.0.0.1:${sluice.port}`, `http://127.0.0.2:${upstream.port}/`]);
  t.equal(none.status, 407);
  t.equal(none.headers['proxy-authenticate'], 'Basic realm="sluice"');
  t.equal(none.headers['x-sluice-deny'], 'unauthenticated');
  const wrong = await via(`http://127.0.0.2:${upstream.port}/`, [], TOOL, 'not-the-token');
  t.equal(wrong.status, 407);
  const unknown = await via(`http://127.0.0.2:${upstream.port}/`, [], 'nobody', TOKEN);
  t.equal(unknown.status, 407);
  const body = JSON.parse(wrong.body);
  t.equal(body.error, 'denied');
  t.equal(body.reason, 'unauthenticated');
  t.match(body.request_id, /^[0-9a-f-]{36}$/);
  await waitForAudit(sluice, (e) => e.type === 'policy.violation' && e.reason === 'unauthenticated');
});

const denyCases: Array<{ name: string; url: () => string; tool?: string; method?: string; reason: string; status: number; detail: RegExp }> = [
  {
    name: 'host not in the allowlist',
    url: () => `http://not-listed.test/`,
    reason: 'no_rule',
    status: 403,
    detail: /not-listed\.test is not in the allowlist of tool web-fetch/,
  },
  { name: 'wildcard never matches the apex', url: () => `http://wild.test/`, reason: 'no_rule', status: 403, detail: /wild\.test/ },
  { name: 'port not allowed', url: () => `http://127.0.0.2:8081/`, reason: 'port_not_allowed', status: 403, detail: /8081/ },
  {
    name: 'method not allowed',
    url: () => `http://127.0.0.2:${upstream.port}/anything/public/x`,
    tool: 'reader',
    method: 'DELETE',
    reason: 'method_not_allowed',
    status: 403,
    detail: /DELETE/,
  },
  {
    name: 'path not allowed',
    url: () => `http://127.0.0.2:${upstream.port}/anything/private`,
    tool: 'reader',
    reason: 'path_not_allowed',
    status: 403,
    detail: /\/anything\/private/,
  },
  {
    name: 'dot segments resolved before matching',
    url: () => `http://127.0.0.2:${upstream.port}/anything/public/%2e%2e/%2e%2e/private`,
    tool: 'reader',
    reason: 'path_not_allowed',
    status: 403,
    detail: /private/,
  },
  {
    name: 'encoded slash denied, not guessed',
    url: () => `http://127.0.0.2:${upstream.port}/anything/public%2F..%2Fprivate`,
    tool: 'reader',
    reason: 'path_not_allowed',
    status: 403,
    detail: /encoded/,
  },
  { name: 'loopback literal', url: () => `http://127.0.0.3:${upstream.port}/`, reason: 'private_ip', status: 403, detail: /127\.0\.0\.3/ },
  {
    name: 'name resolving to a private address',
    url: () => `http://internal.test:${upstream.port}/`,
    reason: 'private_ip',
    status: 403,
    detail: /internal\.test resolves to 127\.0\.0\.3/,
  },
  { name: 'name that does not resolve', url: () => `http://nxdomain.test/`, reason: 'dns_failure', status: 502, detail: /nxdomain\.test/ },
];

for (const c of denyCases) {
  t.test(`deny: ${c.name} → ${c.reason}`, async (t) => {
    const before = upstream.requests.length + other.requests.length;
    const r = await via(c.url(), c.method ? ['-X', c.method] : [], c.tool ?? TOOL);
    t.equal(r.status, c.status);
    t.equal(r.headers['x-sluice-deny'], c.reason);
    const body = JSON.parse(r.body);
    t.equal(body.reason, c.reason);
    t.match(body.detail, c.detail);
    t.equal(upstream.requests.length + other.requests.length, before, 'nothing reached an upstream');
    const rec = await waitForAudit(sluice, (e) => e.request_id === body.request_id);
    t.equal(rec.type, 'policy.violation');
    t.equal(rec.decision, 'deny');
    t.equal(rec.reason, c.reason);
  });
}

t.test('IP literal spellings are judged as the OS reads them', async (t) => {
  for (const spelling of ['2130706434', '0x7f.0.0.2', '0177.0.0.2', '127.0.2', '[::ffff:127.0.0.2]']) {
    const r = await via(`http://${spelling}:${upstream.port}/small`);
    // ::ffff:127.0.0.2 is the IPv4-mapped form of an excepted address: the exception covers it, but
    // the host never matches the IPv4 rule textually, so it is no_rule rather than allowed.
    if (spelling.startsWith('[')) {
      t.equal(r.headers['x-sluice-deny'], 'no_rule', spelling);
    } else {
      t.equal(r.status, 200, spelling);
    }
  }
  for (const spelling of ['2130706433', '0x7f.1', '0177.0.0.1', '127.1', '[::ffff:7f00:1]', '[::1]', '0']) {
    const r = await via(`http://${spelling}:${upstream.port}/`);
    t.ok(r.status === 403, spelling);
    t.ok(['no_rule', 'private_ip'].includes(r.headers['x-sluice-deny'] ?? ''), `${spelling}: ${r.headers['x-sluice-deny']}`);
  }
});

t.test('names are resolved by sluice and only vetted addresses are dialled', async (t) => {
  const r = await via(`http://allowed.test:${upstream.port}/anything/dns`);
  t.equal(r.status, 200);
  const idn = await via(`http://Bücher.test:${upstream.port}/anything/idn`);
  t.equal(idn.status, 200, 'IDN names match their punycode rule');
  const mixed = await via(`http://mixed.test:${upstream.port}/anything/mixed`);
  t.equal(mixed.status, 200, 'a private answer is skipped, the vetted public one used');
  t.equal(other.connections(), 0, 'the private address in a mixed answer was never dialled');
});

t.test('DNS rebinding: the second answer is vetted again and never dialled', { skip: netnsSkip() }, async (t) => {
  const canary = await startCanary(PRIVATE_CANARY_IP, upstream.port);
  t.teardown(() => canary.close());
  const first = await via(`http://rebind.test:${upstream.port}/anything/rebind`);
  t.equal(first.status, 200);
  const second = await via(`http://rebind.test:${upstream.port}/anything/rebind`);
  t.equal(second.status, 403);
  t.equal(second.headers['x-sluice-deny'], 'private_ip');
  const literal = await via(`http://${PRIVATE_CANARY_IP}:${upstream.port}/`);
  t.equal(literal.headers['x-sluice-deny'], 'private_ip');
  t.equal(canary.connections(), 0, 'the private canary was never dialled');
  t.ok(rebindQueries >= 2);
});

t.test('a public address is reached without any exception (network namespace only)', { skip: netnsSkip() }, async (t) => {
  t.ok(inNetns());
  const pub = await startUpstream({ host: PUBLIC_UPSTREAM_IP, port: upstream.port });
  t.teardown(() => pub.close());
  const r = await via(`http://${PUBLIC_UPSTREAM_IP}:${upstream.port}/anything/public`);
  t.equal(r.status, 200);
  t.equal(pub.requests.length, 1);
});

t.test('bad_request: ambiguous targets are refused and the connection closed', async (t) => {
  const auth = 'Basic ' + Buffer.from(`${TOOL}:${TOKEN}`).toString('base64');
  const cases = [
    {
      what: 'Host header disagrees with the target',
      raw: `GET http://127.0.0.2:${upstream.port}/ HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: ${auth}\r\n\r\n`,
    },
    {
      what: 'userinfo in the target',
      raw: `GET http://user:pw@127.0.0.2:${upstream.port}/ HTTP/1.1\r\nHost: 127.0.0.2:${upstream.port}\r\nProxy-Authorization: ${auth}\r\n\r\n`,
    },
    { what: 'origin-form to the proxy', raw: `GET / HTTP/1.1\r\nHost: 127.0.0.2\r\nProxy-Authorization: ${auth}\r\n\r\n` },
    { what: 'https in absolute form', raw: `GET https://127.0.0.2/ HTTP/1.1\r\nHost: 127.0.0.2\r\nProxy-Authorization: ${auth}\r\n\r\n` },
  ];
  const before = upstream.requests.length;
  for (const c of cases) {
    const r = await rawRequest(sluice.port, c.raw);
    t.equal(r.status, 400, c.what);
    t.equal(r.headers['x-sluice-deny'], 'bad_request', c.what);
  }
  t.equal(upstream.requests.length, before, 'nothing reached the upstream');
});

t.test('upstream unreachable is a 502 with X-Sluice-Error', async (t) => {
  const r = await via(`http://127.0.0.2:${closedPort}/`);
  t.equal(r.status, 502);
  t.equal(r.headers['x-sluice-error'], 'upstream_unreachable');
  t.equal(JSON.parse(r.body).reason, 'upstream_unreachable');
});
