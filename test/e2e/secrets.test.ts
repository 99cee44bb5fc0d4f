// Credentials by alias through sluice: the upstream receives the real value, the tool only ever
// sees the placeholder; out-of-scope, not-granted, required-missing and leaks are refused.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import http from 'node:http';
import t from 'tap';
import { curl } from '../helpers/clients.js';
import { leakIn } from '../helpers/leaks.js';
import { startDns } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Obviously fake values; the test greps everything sluice wrote for them.
const GH_VALUE = 'gh-real-value-0123456789abcdef';
const FILE_VALUE = 'file-real-value-fedcba9876543210';
const INJECT_VALUE = 'inject-real-value-aaaabbbbcccc';

let upstream: Upstream;
let httpsUpstream: Upstream;
let otherHost: Upstream;
let reflector: http.Server;
let reflectorPort = 0;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
let secretDir: string;

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2' });
  httpsUpstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  otherHost = await startUpstream({ host: '127.0.0.2' });
  // An upstream that answers with the Authorization it got, gzip-encoded and in a header.
  reflector = http.createServer((req, res) => {
    const auth = req.headers.authorization ?? '';
    res.writeHead(200, { 'Content-Encoding': 'gzip', 'X-Echo-Auth': auth });
    res.end(gzipSync(`you sent: ${auth}; base64: ${Buffer.from(auth.replace(/^Bearer /, '')).toString('base64')}`));
  });
  await new Promise<void>((r) => reflector.listen(0, '127.0.0.2', r));
  reflectorPort = (reflector.address() as { port: number }).port;
  secretDir = mkdtempSync(path.join(tmpdir(), 'sluice-secret-'));
  writeFileSync(path.join(secretDir, 'file-secret'), FILE_VALUE + '\n');
  dns = await startDns({
    localhost: [{ type: 'A', address: '127.0.0.2' }],
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'other.test': [{ type: 'A', address: '127.0.0.2' }],
    'strict.test': [{ type: 'A', address: '127.0.0.2' }],
    'inject.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  sluice = await startTestSluice({
    env: { GH_TOKEN_FOR_TEST: GH_VALUE, INJECT_FOR_TEST: INJECT_VALUE },
    log,
    // Swapping over plain http:// is what most of these cases exercise: allow_plaintext (which strict
    // mode refuses) keeps that path covered; test/e2e/secrets-request.test.ts covers its refusal.
    policy: `
version: 1
strict: false
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}, ${httpsUpstream.port}, ${otherHost.port}, ${reflectorPort}]
tls:
  upstream_ca: ${testCa}
secrets:
  gh:
    from: { env: GH_TOKEN_FOR_TEST }
    hosts: ["localhost", "api.test"]
    swap_in: [header:Authorization, query, body]
    allow_plaintext: true
  filed:
    from: { file: ${path.join(secretDir, 'file-secret')} }
    hosts: ["localhost"]
    require: true
    swap_in: [header:X-Filed]
    allow_plaintext: true
  injected:
    from: { env: INJECT_FOR_TEST }
    hosts: ["inject.test"]
    inject: { header: Authorization, format: "Bearer {value}" }
    allow_plaintext: true
  ungranted:
    from: { env: NOT_SET_AND_NOT_GRANTED }
    hosts: ["localhost"]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [gh, filed, injected]
    allow:
      - host: localhost
      - host: api.test
      - host: other.test
      - host: inject.test
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await httpsUpstream.close();
  await otherHost.close();
  reflector.close();
  await dns.close();
  rmSync(secretDir, { recursive: true, force: true });
});

/** every block of headers and every body a client got, for the last test */
const clientBytes: Buffer[] = [];
const log: string[] = [];
const via = async (url: string, extra: string[] = []) => {
  const r = await curl(['-x', sluice.proxyUrl(), ...extra, url]);
  clientBytes.push(Buffer.from(JSON.stringify(r.blocks)), r.bodyBuffer, Buffer.from(r.stderr));
  return r;
};
const echoHeader = (body: string, name: string): string | undefined =>
  (JSON.parse(body).headers as Array<[string, string]>).find(([n]) => n.toLowerCase() === name)?.[1];

t.test('header placeholder: the upstream gets the value, the tool gets the placeholder back', async (t) => {
  const r = await via(`http://localhost:${upstream.port}/anything/h`, [
    '-H',
    'Authorization: Bearer __sluice_secret_gh__',
    '-H',
    'X-Filed: __sluice_secret_filed__',
  ]);
  t.equal(r.status, 200);
  const received = upstream.requests.at(-1)!;
  t.equal(received.headers.authorization, `Bearer ${GH_VALUE}`, 'upstream received the real value');
  t.equal(received.headers['x-filed'], FILE_VALUE, 'file secret, trailing newline trimmed');
  t.equal(echoHeader(r.body, 'authorization'), 'Bearer __sluice_secret_gh__', 'the echo came back scrubbed');
  t.notOk(r.body.includes(GH_VALUE));
  const use = await waitForAudit(sluice, (e) => e.type === 'secret.use' && e.secret === 'gh' && e.where === 'header:Authorization');
  t.equal(use.tool, TOOL);
  t.equal(use.host, 'localhost');
});

t.test('inside Basic auth, in the query (also percent-encoded) and in a chunked body', async (t) => {
  const basic = Buffer.from('user:__sluice_secret_gh__').toString('base64');
  const r = await via(`http://localhost:${upstream.port}/anything/q?token=__sluice_secret_gh__&enc=%5F%5Fsluice%5Fsecret%5Fgh%5F%5F`, [
    '-H',
    `Authorization: Basic ${basic}`,
    '-H',
    'X-Filed: __sluice_secret_filed__',
    '-H',
    'Transfer-Encoding: chunked',
    '--data-binary',
    'before __sluice_secret_gh__ after',
  ]);
  t.equal(r.status, 200, r.body);
  const got = upstream.requests.at(-1)!;
  t.equal(Buffer.from(got.headers.authorization!.slice(6), 'base64').toString(), `user:${GH_VALUE}`);
  t.match(got.url, `token=${GH_VALUE}`);
  t.match(got.url, `enc=${GH_VALUE}`);
  t.equal(got.body, `before ${GH_VALUE} after`);
  t.notOk(r.body.includes(GH_VALUE), 'echoed URL, headers and body are scrubbed');
  t.match(r.body, /__sluice_secret_gh__/);
});

t.test('intercepted HTTPS: swapped inside TLS, scrubbed on the way back', async (t) => {
  const r = await via(`https://api.test:${httpsUpstream.port}/anything/tls`, [
    '--cacert',
    path.join(sluice.caDir, 'ca.pem'),
    '-H',
    'Authorization: Bearer __sluice_secret_gh__',
  ]);
  t.equal(r.status, 200, r.stderr);
  t.equal(httpsUpstream.requests.at(-1)!.headers.authorization, `Bearer ${GH_VALUE}`);
  t.equal(echoHeader(r.body, 'authorization'), 'Bearer __sluice_secret_gh__');
});

t.test('a gzip response carrying the value (and its base64) is decoded and scrubbed', async (t) => {
  const res = await via(`http://localhost:${reflectorPort}/`, [
    '-H',
    'Authorization: Bearer __sluice_secret_gh__',
    '-H',
    'X-Filed: __sluice_secret_filed__',
  ]);
  t.equal(res.status, 200);
  t.equal(res.headers['x-echo-auth'], 'Bearer __sluice_secret_gh__');
  t.notOk(res.headers['content-encoding'], 'sent uncompressed');
  t.notOk(res.body.includes(GH_VALUE));
  t.notOk(res.body.includes(Buffer.from(GH_VALUE).toString('base64')));
  t.match(res.body, /you sent: Bearer __sluice_secret_gh__; base64: __sluice_secret_gh__/);
});

t.test('the same placeholder toward another allowed host: secret_out_of_scope, nothing sent', async (t) => {
  const before = otherHost.requests.length;
  const r = await via(`http://other.test:${otherHost.port}/anything`, ['-H', 'Authorization: Bearer __sluice_secret_gh__']);
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'secret_out_of_scope');
  t.equal(otherHost.requests.length, before, 'nothing reached other.test');
  const body = await via(`http://other.test:${otherHost.port}/anything`, ['--data-binary', 'x=__sluice_secret_gh__']);
  t.equal(body.headers['x-sluice-deny'], 'secret_out_of_scope');
  t.equal(otherHost.requests.filter((q) => q.body.includes('sluice_secret')).length, 0);
  const rec = await waitForAudit(sluice, (e) => e.reason === 'secret_out_of_scope');
  t.equal(rec.type, 'policy.violation');
});

t.test('a placeholder of a secret the tool is not granted: secret_not_granted', async (t) => {
  const r = await via(`http://localhost:${upstream.port}/anything`, [
    '-H',
    'X-Key: __sluice_secret_ungranted__',
    '-H',
    'X-Filed: __sluice_secret_filed__',
  ]);
  t.equal(r.headers['x-sluice-deny'], 'secret_not_granted');
});

t.test('require: a request to the secret host without the placeholder is refused', async (t) => {
  const r = await via(`http://localhost:${upstream.port}/anything`, ['-H', 'Authorization: Bearer my-own-token']);
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'secret_required');
  t.match(JSON.parse(r.body).detail, /filed/);
});

t.test('inject sets the header, replacing what the tool sent', async (t) => {
  const r = await via(`http://inject.test:${upstream.port}/anything/inj`, ['-H', 'Authorization: Bearer tool-chosen']);
  t.equal(r.status, 200);
  t.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${INJECT_VALUE}`);
  t.equal(echoHeader(r.body, 'authorization'), 'Bearer __sluice_secret_injected__');
  await waitForAudit(sluice, (e) => e.type === 'secret.use' && e.secret === 'injected');
});

t.test('leaks: a real value or a credential shape in a request is refused', async (t) => {
  const raw = await via(`http://other.test:${otherHost.port}/anything`, ['-H', `X-Stolen: ${GH_VALUE}`]);
  t.equal(raw.headers['x-sluice-deny'], 'secret_leak');
  t.notOk(raw.body.includes(GH_VALUE), 'the refusal does not echo the value');
  const aws = await via(`http://other.test:${otherHost.port}/anything?k=AKIAABCDEFGHIJKLMNOP`);
  t.equal(aws.headers['x-sluice-deny'], 'secret_leak');
  t.match(JSON.parse(aws.body).detail, /AWS/i);
});

t.test('a secret file that disappears: 502 secret_unavailable, the placeholder is not sent on', async (t) => {
  const file = path.join(secretDir, 'file-secret');
  rmSync(file);
  await new Promise((r) => setTimeout(r, 1200));
  const before = upstream.requests.length;
  const r = await via(`http://localhost:${upstream.port}/anything`, ['-H', 'X-Filed: __sluice_secret_filed__']);
  t.equal(r.status, 502);
  t.equal(r.headers['x-sluice-error'], 'secret_unavailable');
  t.equal(upstream.requests.length, before);
  writeFileSync(file, 'rotated-value-1234567890\n');
  await new Promise((r) => setTimeout(r, 1200));
  const after = await via(`http://localhost:${upstream.port}/anything`, ['-H', 'X-Filed: __sluice_secret_filed__']);
  t.equal(after.status, 200);
  t.equal(upstream.requests.at(-1)!.headers['x-filed'], 'rotated-value-1234567890', 'the rotated value applies without restart');
});

t.test('no secret value anywhere sluice wrote or sent: client bytes, audit, log, /metrics, /policy', async (t) => {
  await sluice.running.flushAudit();
  const audit = readFileSync(sluice.auditFile, 'utf8');
  t.ok(audit.length > 0);
  const admin = async (p: string): Promise<string> => (await fetch(`http://127.0.0.1:${sluice.adminPort}${p}`)).text();
  const outputs: Array<[string, Buffer | string]> = [
    ['audit file', audit],
    ['log', log.join('')],
    ['/metrics', await admin('/metrics')],
    ['/policy', await admin('/policy')],
    ...clientBytes.map((bytes, i) => [`client bytes #${i}`, bytes] as [string, Buffer]),
  ];
  t.ok(clientBytes.length > 20, 'every client exchange was kept');
  const values = [GH_VALUE, FILE_VALUE, INJECT_VALUE, 'rotated-value-1234567890'];
  // leakIn undoes JSON escapes, percent-encoding, wrapping, base64 and hex: it names the value, never prints it
  for (const [what, output] of outputs) t.equal(leakIn(output, values), null, `${what}: no value in any covered form`);
});
