// What a new operator's clients show and how they authenticate (issue 15, items 4, 7, 8), with real
// clients: curl, git, Python requests and the JDK.
// - Every refusal names its reason in the status line (on CONNECT, inside an intercepted tunnel,
//   407 too), and the operator's --deny-message is appended to the detail the client reads.
// - libcurl's probe without credentials (curl --proxy-anyauth, git's default) answered by a retry
//   with Basic is an auth.challenge, counted apart, never a policy.violation.
// - A listener bound to one tool (--listen-tool) lets a client that sends no Basic on CONNECT (the
//   JDK's default) be that tool; other tools' credentials are refused there.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { basicAuth, cleanEnv, connectTunnel, curl, rawRequest, runProcess } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, sha256, startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const JDK_TOOL = 'jdk-tool';
const JDK_TOKEN = 'jdk-tool-token';
const NOTE = 'Ask #egress-requests for access.';
const auth = basicAuth(TOOL, TOKEN);
let upstream: Upstream;
let sluice: TestSluice;
let dns: DnsServer;
let testCa: string;
let sluiceCaFile: string;
let boundPort: number;

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns({
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'upstream.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [443, ${upstream.port}]
tls:
  upstream_ca: ${testCa}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: api.test
        paths: ["/ok/**"]
      - host: upstream.test
  ${JDK_TOOL}:
    token_sha256: "${sha256(JDK_TOKEN)}"
    allow:
      - host: api.test
        paths: ["/anything/jdk/**"]
`,
    denyMessage: NOTE,
    toolListeners: [{ tool: JDK_TOOL }],
  });
  boundPort = sluice.running.toolListeners[0]!.address.port;
  sluiceCaFile = path.join(sluice.caDir, 'ca.pem');
});
t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await dns.close();
});

const proxy = (tool = TOOL, token = TOKEN): string => `http://${tool}:${token}@127.0.0.1:${sluice.port}`;

t.test('item 4: the reason is in the status line of every refusal; the operator sentence is in every deny detail', async (t) => {
  // curl prints the status line with -v (its error line is "CONNECT tunnel failed, response 403").
  const refused = await curl(['-v', '-x', proxy(), `https://pypi.test:${upstream.port}/simple/`]);
  t.not(refused.code, 0);
  t.match(refused.stderr, /< HTTP\/1\.1 403 Forbidden \(sluice: no_rule pypi\.test\)/);

  const noCredentials = await curl(['-v', '-x', `http://127.0.0.1:${sluice.port}`, `https://api.test:${upstream.port}/ok/x`]);
  t.match(noCredentials.stderr, /< HTTP\/1\.1 407 Proxy Authentication Required \(sluice: unauthenticated\)/);

  // Inside an intercepted tunnel: the refusal comes inside TLS, with the same phrase and the sentence.
  const inside = await curl(['-v', '--cacert', sluiceCaFile, '-x', proxy(), `https://api.test:${upstream.port}/elsewhere`]);
  t.equal(inside.status, 403);
  t.match(inside.stderr, /< HTTP\/1\.1 403 Forbidden \(sluice: path_not_allowed api\.test\)/);
  const body = JSON.parse(inside.body) as { detail: string };
  t.ok(body.detail.endsWith(` ${NOTE}`), body.detail);

  // A 407 on a raw CONNECT and a 400 (malformed) carry the sentence too; the audit keeps sluice's own detail.
  const tunnel = await connectTunnel(sluice.port, `pypi.test:443`, basicAuth(TOOL, 'wrong'));
  tunnel.socket.destroy();
  t.ok((JSON.parse(tunnel.body) as { detail: string }).detail.endsWith(NOTE), '407 detail');
  const bad = await rawRequest(sluice.port, `GET http://api.test/ok/x HTTP/1.1\r\nHost: other.test\r\nProxy-Authorization: ${auth}\r\n\r\n`);
  t.equal(bad.status, 400);
  t.match(bad.raw, /^HTTP\/1\.1 400 Bad Request \(sluice: bad_request api\.test\)\r\n/);
  t.ok((JSON.parse(bad.body) as { detail: string }).detail.endsWith(NOTE), '400 detail');
  const rec = await waitForAudit(sluice, (r) => r.reason === 'path_not_allowed' && r.path === '/elsewhere');
  t.notMatch(rec.detail ?? '', NOTE, 'the audit keeps sluice detail only');
});

t.test('item 4: Python requests and git show the reason and host in their error', async (t) => {
  const script = `
import sys, requests
try:
    requests.get(sys.argv[1], proxies={"https": sys.argv[2]}, timeout=10)
except requests.exceptions.ProxyError as e:
    print(e)
`;
  const py = await runProcess('python3', ['-c', script, `https://pypi.test:${upstream.port}/simple/`, proxy()], {
    env: cleanEnv(),
    timeoutMs: 20_000,
  });
  t.match(py.stdout.toString(), /Tunnel connection failed: 403 Forbidden \(sluice: no_rule pypi\.test\)/, py.stderr);

  // git shows libcurl's "response 403" line; GIT_CURL_VERBOSE (the first thing to try) shows the phrase.
  const git = await runProcess(
    'git',
    ['-c', `http.proxy=${proxy()}`, '-c', 'http.proxyAuthMethod=basic', 'ls-remote', `https://pypi.test:${upstream.port}/repo.git`],
    {
      env: cleanEnv({ GIT_CURL_VERBOSE: '1', GIT_TERMINAL_PROMPT: '0', HOME: mkdtempSync(path.join(tmpdir(), 'git-home-')) }),
      timeoutMs: 20_000,
    },
  );
  t.not(git.code, 0);
  t.match(git.stderr, /403 Forbidden \(sluice: no_rule pypi\.test\)/);
  t.match(git.stderr, /CONNECT tunnel failed, response 403/);
});

t.test("item 8: libcurl's probe without credentials, answered by a retry, is an auth.challenge, not a violation", async (t) => {
  const before = await scrapeMetrics(sluice.adminPort);
  const mark = await auditMark(sluice);
  // --proxy-anyauth: curl first sends the CONNECT without Proxy-Authorization, then with Basic.
  const r = await curl(['--proxy-anyauth', '--cacert', testCa, '-x', proxy(), `https://upstream.test:${upstream.port}/anything`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 200);
  const records = await canonicalSince(sluice, mark, 2);
  t.same(
    records.map((e) => [e.type, e.reason, e.tool]),
    [
      ['auth.challenge', 'unauthenticated', null],
      ['net.tunnel', null, TOOL],
    ],
  );
  const after = await scrapeMetrics(sluice.adminPort);
  t.equal(total(after, 'sluice_auth_challenges_total') - total(before, 'sluice_auth_challenges_total'), 1, 'counted apart');
  t.equal(
    total(after, 'sluice_policy_violations_total', { reason: 'unauthenticated' }),
    total(before, 'sluice_policy_violations_total', { reason: 'unauthenticated' }),
    'the violation-burst alert does not see it',
  );

  // git's default (anyauth) probes the same way; with http.proxyAuthMethod=basic it does not.
  const gitRun = async (extra: string[]): Promise<void> => {
    await runProcess(
      'git',
      [
        '-c',
        `http.proxy=${proxy()}`,
        '-c',
        `http.sslCAInfo=${testCa}`,
        ...extra,
        'ls-remote',
        `https://upstream.test:${upstream.port}/repo.git`,
      ],
      { env: cleanEnv({ GIT_TERMINAL_PROMPT: '0', HOME: mkdtempSync(path.join(tmpdir(), 'git-home-')) }), timeoutMs: 20_000 },
    );
  };
  const challenges = async (): Promise<number> => total(await scrapeMetrics(sluice.adminPort), 'sluice_auth_challenges_total');
  const c0 = await challenges();
  const m1 = await auditMark(sluice);
  await gitRun(['-c', 'http.proxyAuthMethod=basic']);
  const basicRecords = await canonicalSince(sluice, m1, 1);
  t.ok(basicRecords.length >= 1 && basicRecords.every((e) => e.type !== 'auth.challenge' && e.tool === TOOL), 'no probe with basic');
  t.equal(await challenges(), c0);

  // A wrong token stays a violation.
  const wrong = await connectTunnel(sluice.port, 'upstream.test:443', basicAuth(TOOL, 'wrong'));
  wrong.socket.destroy();
  await waitForAudit(sluice, (e) => e.type === 'policy.violation' && e.reason === 'unauthenticated');
});

t.test('item 7: a listener bound to one tool: no Proxy-Authorization needed, through the same pipeline', async (t) => {
  const bound = `http://127.0.0.1:${boundPort}`;
  const ok = await curl(['--cacert', sluiceCaFile, '-x', bound, `https://api.test:${upstream.port}/anything/jdk/lib.jar`]);
  t.equal(ok.status, 200, ok.stderr);
  const rec = await waitForAudit(sluice, (r) => r.type === 'net.req' && r.path === '/anything/jdk/lib.jar');
  t.equal(rec.tool, JDK_TOOL, 'the request is the bound tool');

  // The bound tool's own rules decide: web-fetch's /ok/ paths are not jdk-tool's.
  const denied = await curl(['-v', '--cacert', sluiceCaFile, '-x', bound, `https://api.test:${upstream.port}/ok/x`]);
  t.equal(denied.status, 403);
  t.match(denied.stderr, /403 Forbidden \(sluice: path_not_allowed api\.test\)/);

  // Another tool's credentials on the bound port are refused, and say why.
  const other = await curl(['-x', `http://${TOOL}:${TOKEN}@127.0.0.1:${boundPort}`, `http://api.test:${upstream.port}/ok/x`]);
  t.equal(other.status, 407);
  t.match((JSON.parse(other.body) as { detail: string }).detail, /bound to tool jdk-tool; credentials of tool web-fetch are refused/);

  // On the ordinary port the same request without credentials is still 407.
  const plain = await curl(['-x', `http://127.0.0.1:${sluice.port}`, `http://api.test:${upstream.port}/anything/jdk/lib.jar`]);
  t.equal(plain.status, 407);
});

t.test('item 7: the JDK (HttpClient, Basic disabled for tunnels by default) through the bound listener', async (t) => {
  const java = await runProcess('java', ['-version'], { env: cleanEnv(), timeoutMs: 20_000 }).catch(() => null);
  if (!java || java.code !== 0) {
    t.comment('no JDK on this machine: skipped');
    return;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-jdk-'));
  const source = path.join(dir, 'Fetch.java');
  writeFileSync(
    source,
    `import java.net.*; import java.net.http.*;
public class Fetch {
  public static void main(String[] a) throws Exception {
    HttpClient c = HttpClient.newBuilder().proxy(ProxySelector.of(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[1])))).build();
    HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(a[0])).build(), HttpResponse.BodyHandlers.ofString());
    System.out.println("status " + r.statusCode());
  }
}
`,
  );
  // The JDK trusts sluice's CA through a PKCS#12 trust store made by keytool.
  const store = path.join(dir, 'trust.p12');
  const keytool = await runProcess(
    'keytool',
    [
      '-importcert',
      '-noprompt',
      '-alias',
      'sluice',
      '-file',
      sluiceCaFile,
      '-keystore',
      store,
      '-storepass',
      'changeit',
      '-storetype',
      'PKCS12',
    ],
    { env: cleanEnv(), timeoutMs: 30_000 },
  );
  t.equal(keytool.code, 0, keytool.stderr);
  const run = await runProcess(
    'java',
    [
      `-Djavax.net.ssl.trustStore=${store}`,
      '-Djavax.net.ssl.trustStorePassword=changeit',
      source,
      `https://api.test:${upstream.port}/anything/jdk/Fetch`,
      String(boundPort),
    ],
    { env: cleanEnv(), timeoutMs: 60_000 },
  );
  t.equal(run.stdout.toString().trim(), 'status 200', run.stderr);
  const rec = await waitForAudit(sluice, (r) => r.type === 'net.req' && r.path === '/anything/jdk/Fetch');
  t.equal(rec.tool, JDK_TOOL);
  t.ok(readFileSync(sluiceCaFile, 'utf8').includes('BEGIN CERTIFICATE'));
});
