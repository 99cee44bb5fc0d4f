// The client recipes of README.md, each run end to end through sluice to loopback upstreams:
// curl, wget, git, Node (undici EnvHttpProxyAgent, https.request with a CONNECT agent, http.request
// in absolute form) and Python (urllib, requests, httpx). Each client is configured the way the
// recipe says (mostly HTTPS_PROXY and a CA variable), and each test checks the response the client
// got and the audit event sluice wrote for it.
//   passthrough HTTPS: <client>.wild.test, tunnelled untouched; the client trusts the upstream's CA.
//   intercepted HTTPS: api.test (its rule has paths); the client trusts sluice's CA alone.
//   plain HTTP: upstream.test, forwarded in absolute form.
// A missing client fails its test (no skip): .ci/run installs them.
// Node 24's NODE_USE_ENV_PROXY has no test: only Node 20 is installed here (the recipe is documented).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { cleanEnv, curl } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { makeTestPki, testCaFile, writeTempFile } from '../helpers/pki.js';
import { startTestSluice, TOOL, waitForAudit, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type EchoReply, type Upstream } from '../helpers/upstream.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
// python3-requests and python3-httpx are Debian packages: they import in the system interpreter,
// not necessarily in a python3 earlier on PATH (pyenv).
const SYSTEM_PYTHON = '/usr/bin/python3';
const CLIENT_TIMEOUT_MS = 20_000;
const PASSTHROUGH_CLIENTS = ['curl', 'curl-env', 'wget', 'git', 'undici', 'https-agent', 'urllib', 'requests', 'httpx'];

let sluice: TestSluice;
let upstream: Upstream; // HTTPS, certificate from the test CA
let plain: Upstream; // HTTP
let gitServer: https.Server;
let dns: DnsServer;
let testCa: string; // the upstreams' CA: what a client needs for a tunnelled host
let sluiceCa: string; // sluice's interception CA: what a client needs for an intercepted host
let proxy: string;

/** A bare repository with one commit, prepared for the dumb HTTP protocol. */
async function makeBareRepository(root: string): Promise<string> {
  const work = path.join(root, 'work');
  mkdirSync(work);
  writeFileSync(path.join(work, 'README.md'), 'cloned through sluice\n');
  const git = (...args: string[]) => run('git', args, { cwd: work, env: gitEnv(root) });
  for (const args of [
    ['init', '-q', '-b', 'main'],
    ['add', 'README.md'],
    ['-c', 'user.name=t', '-c', 'user.email=t@example.test', 'commit', '-qm', 'first'],
  ]) {
    const r = await git(...args);
    if (r.code !== 0) throw new Error(`git ${args[0]} failed: ${r.stderr}`);
  }
  const bare = path.join(root, 'srv', 'repo.git');
  mkdirSync(path.dirname(bare));
  for (const args of [
    ['clone', '-q', '--bare', work, bare],
    ['-C', bare, 'update-server-info'],
  ]) {
    const r = await git(...args);
    if (r.code !== 0) throw new Error(`git ${args[0]} failed: ${r.stderr}`);
  }
  return path.join(root, 'srv');
}

/** git without the user's or the system's configuration. */
function gitEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', ...extra };
}

/** A static HTTPS file server: enough for git's dumb HTTP protocol. */
async function startStaticHttps(root: string, tlsPair: { certPem: string; keyPem: string }): Promise<https.Server> {
  const server = https.createServer({ cert: tlsPair.certPem, key: tlsPair.keyPem }, (req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'https://static.invalid').pathname);
    const file = path.join(root, path.normalize(pathname));
    try {
      if (!file.startsWith(root + path.sep)) throw new Error('outside the root');
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.2', port: 0 }, resolve));
  return server;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client with a proxy-free environment plus `env` (the recipe's variables). */
function run(command: string, args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: cleanEnv(options.env), cwd: options.cwd ?? REPO_ROOT, timeout: CLIENT_TIMEOUT_MS, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error(`${command} is required by the client recipe tests but is not installed (.ci/run installs it)`));
          return;
        }
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr });
      },
    );
  });
}

/** Parses a client's stdout as the upstream's /anything echo. */
function echoOf(r: Run): EchoReply {
  try {
    return JSON.parse(r.stdout) as EchoReply;
  } catch {
    throw new Error(`client printed no echo (exit ${r.code}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 500)}`);
  }
}

const proxyEnv = (caVariable: string, caFile: string): Record<string, string> => ({
  HTTPS_PROXY: proxy,
  HTTP_PROXY: proxy,
  https_proxy: proxy,
  http_proxy: proxy,
  NO_PROXY: 'localhost,127.0.0.1',
  no_proxy: 'localhost,127.0.0.1',
  [caVariable]: caFile,
});

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  upstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  plain = await startUpstream({ host: '127.0.0.2' });
  const scratch = mkdtempSync(path.join(tmpdir(), 'sluice-clients-'));
  gitServer = await startStaticHttps(await makeBareRepository(scratch), pki.server);
  const gitPort = (gitServer.address() as AddressInfo).port;
  const zone: Record<string, Array<{ type: 'A'; address: string }>> = {
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'upstream.test': [{ type: 'A', address: '127.0.0.2' }],
  };
  for (const client of PASSTHROUGH_CLIENTS) zone[`${client}.wild.test`] = [{ type: 'A', address: '127.0.0.2' }];
  dns = await startDns(zone);
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${upstream.port}, ${plain.port}, ${gitPort}]
tls:
  upstream_ca: ${testCa}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: "*.wild.test"
      - host: upstream.test
      - host: api.test
        methods: [GET, POST]
        paths: ["/anything/**", "/repo.git/**"]
`,
  });
  sluiceCa = path.join(sluice.caDir, 'ca.pem');
  proxy = sluice.proxyUrl();
});

t.teardown(async () => {
  await sluice.close();
  await upstream.close();
  await plain.close();
  await new Promise<void>((resolve) => gitServer.close(() => resolve()));
  await dns.close();
});

const passthroughUrl = (client: string, pathname = `/anything/${client}`) => `https://${client}.wild.test:${upstream.port}${pathname}`;
const interceptedUrl = (client: string) => `https://api.test:${upstream.port}/anything/intercepted/${client}`;
const plainUrl = (client: string) => `http://upstream.test:${plain.port}/anything/plain/${client}`;

/** The tunnel event of a passthrough client: tunnelled untouched, bytes both ways. */
async function tunnelAudit(client: string): Promise<AuditRecord> {
  return waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === `${client}.wild.test` && (e.bytes_down ?? 0) > 0);
}

/** The request event of an intercepted or plain request, found by its path. */
async function requestAudit(scheme: 'http' | 'https', pathname: string): Promise<AuditRecord> {
  return waitForAudit(sluice, (e) => e.type === 'net.req' && e.scheme === scheme && e.path === pathname);
}

function assertForwarded(t: Test, echo: EchoReply, pathname: string): void {
  t.equal(echo.url, pathname, 'the upstream got the path');
  t.notOk(
    echo.headers.some(([name]) => name.toLowerCase() === 'proxy-authorization'),
    'the proxy credentials stop at sluice',
  );
}

async function assertTunnel(t: Test, client: string): Promise<void> {
  const event = await tunnelAudit(client);
  t.equal(event.decision, 'allow');
  t.equal(event.tool, TOOL);
  t.equal(event.method, 'CONNECT');
  t.equal(event.port, upstream.port);
  t.equal(event.ip, '127.0.0.2');
}

async function assertRequest(t: Test, scheme: 'http' | 'https', pathname: string): Promise<void> {
  const event = await requestAudit(scheme, pathname);
  t.equal(event.decision, 'allow');
  t.equal(event.tool, TOOL);
  t.equal(event.method, 'GET');
  t.equal(event.status, 200);
  t.equal(event.ip, '127.0.0.2');
}

// ---- curl ----

t.test('curl: plain http with -x', async (t) => {
  const r = await curl(['-x', proxy, plainUrl('curl')]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 200);
  assertForwarded(t, JSON.parse(r.body) as EchoReply, '/anything/plain/curl');
  await assertRequest(t, 'http', '/anything/plain/curl');
});

t.test('curl: passthrough https via CONNECT, trusting the upstream CA', async (t) => {
  const r = await curl(['-x', proxy, '--cacert', testCa, passthroughUrl('curl')]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.blocks[0]?.status, 200, 'CONNECT answered 200');
  t.equal(r.status, 200);
  assertForwarded(t, JSON.parse(r.body) as EchoReply, '/anything/curl');
  await assertTunnel(t, 'curl');
});

t.test('curl: HTTPS_PROXY and CURL_CA_BUNDLE from the environment', async (t) => {
  // The helper's --noproxy '' only clears NO_PROXY; the proxy itself comes from HTTPS_PROXY here.
  const r = await curl([passthroughUrl('curl-env')], { env: proxyEnv('CURL_CA_BUNDLE', testCa) });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 200);
  assertForwarded(t, JSON.parse(r.body) as EchoReply, '/anything/curl-env');
  await assertTunnel(t, 'curl-env');
});

t.test('curl: intercepted https, trusting only the sluice CA (--cacert certs/ca.pem)', async (t) => {
  const r = await curl(['-x', proxy, '--cacert', sluiceCa, interceptedUrl('curl')]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 200);
  assertForwarded(t, JSON.parse(r.body) as EchoReply, '/anything/intercepted/curl');
  await assertRequest(t, 'https', '/anything/intercepted/curl');
});

t.test('curl: an intercepted path outside the rule is a readable 403 inside TLS', async (t) => {
  const r = await curl(['-x', proxy, '--cacert', sluiceCa, `https://api.test:${upstream.port}/private`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'path_not_allowed');
  const event = await waitForAudit(sluice, (e) => e.type === 'policy.violation' && e.path === '/private');
  t.equal(event.decision, 'deny');
  t.equal(event.reason, 'path_not_allowed');
});

// ---- wget ----

const wgetArgs = (caFile: string, url: string) => [
  '--no-config',
  '-q',
  '-O',
  '-',
  '-e',
  'use_proxy=yes',
  '-e',
  `https_proxy=${proxy}`,
  '-e',
  `http_proxy=${proxy}`,
  `--ca-certificate=${caFile}`,
  url,
];

t.test('wget: passthrough https', async (t) => {
  const r = await run('wget', wgetArgs(testCa, passthroughUrl('wget')));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/wget');
  await assertTunnel(t, 'wget');
});

t.test('wget: intercepted https with --ca-certificate=certs/ca.pem', async (t) => {
  const r = await run('wget', wgetArgs(sluiceCa, interceptedUrl('wget')));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/intercepted/wget');
  await assertRequest(t, 'https', '/anything/intercepted/wget');
});

t.test('wget: plain http', async (t) => {
  const r = await run('wget', wgetArgs(testCa, plainUrl('wget')));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/plain/wget');
  await assertRequest(t, 'http', '/anything/plain/wget');
});

// ---- git (dumb HTTP over a static HTTPS server) ----

async function gitClone(t: Test, url: string, env: Record<string, string>, configArgs: string[] = []): Promise<void> {
  const home = mkdtempSync(path.join(tmpdir(), 'sluice-git-home-'));
  const target = path.join(home, 'clone');
  const r = await run('git', [...configArgs, 'clone', '-q', url, target], { env: gitEnv(home, env), cwd: home });
  t.equal(r.code, 0, r.stderr);
  t.equal(readFileSync(path.join(target, 'README.md'), 'utf8'), 'cloned through sluice\n', 'the working tree arrived');
}

t.test('git clone: passthrough https with -c http.proxy and GIT_SSL_CAINFO', async (t) => {
  const port = (gitServer.address() as AddressInfo).port;
  await gitClone(t, `https://git.wild.test:${port}/repo.git`, { GIT_SSL_CAINFO: testCa }, ['-c', `http.proxy=${proxy}`]);
  const event = await waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === 'git.wild.test' && (e.bytes_down ?? 0) > 0);
  t.equal(event.decision, 'allow');
  t.equal(event.port, port);
});

t.test('git clone: intercepted https with https_proxy and GIT_SSL_CAINFO=certs/ca.pem', async (t) => {
  const port = (gitServer.address() as AddressInfo).port;
  await gitClone(t, `https://api.test:${port}/repo.git`, proxyEnv('GIT_SSL_CAINFO', sluiceCa));
  // Query values are redacted in the audit: /repo.git/info/refs?service=REDACTED
  const refs = await waitForAudit(sluice, (e) => e.type === 'net.req' && (e.path ?? '').startsWith('/repo.git/info/refs?'));
  t.equal(refs.decision, 'allow');
  t.equal(refs.port, port);
  const objects = (await sluice.audit()).filter((e) => e.type === 'net.req' && e.path?.startsWith('/repo.git/objects/'));
  t.ok(objects.length > 0, 'object fetches went through sluice as requests');
  t.ok(objects.every((e) => e.decision === 'allow' && e.status === 200));
});

// ---- Node ----

const NODE_UNDICI_ENV = `
import { EnvHttpProxyAgent, fetch, setGlobalDispatcher } from 'undici';
setGlobalDispatcher(new EnvHttpProxyAgent());
const response = await fetch(process.env.TARGET_URL);
process.stdout.write(await response.text());
`;

// Node 20 has no proxy support in https.request: this agent opens each connection as a CONNECT
// tunnel through the proxy in HTTPS_PROXY, then speaks TLS inside it (trust from NODE_EXTRA_CA_CERTS).
const NODE_HTTPS_AGENT = `
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
const proxy = new URL(process.env.HTTPS_PROXY);
const proxyAuthorization = 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');
class ConnectTunnelAgent extends https.Agent {
  createConnection(options, callback) {
    const target = options.host + ':' + options.port;
    http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target,
                   headers: { host: target, 'proxy-authorization': proxyAuthorization } })
      .once('connect', (response, socket) => {
        if (response.statusCode !== 200) {
          socket.destroy();
          return callback(new Error('proxy refused CONNECT: ' + response.statusCode + ' ' + (response.headers['x-sluice-deny'] ?? '')));
        }
        callback(null, tls.connect({ ...options, socket }));
      })
      .once('error', callback)
      .end();
  }
}
https.get(process.env.TARGET_URL, { agent: new ConnectTunnelAgent() }, (response) => {
  response.setEncoding('utf8');
  let body = '';
  response.on('data', (chunk) => (body += chunk));
  response.on('end', () => process.stdout.write(body));
}).on('error', (error) => { console.error(error.message); process.exitCode = 1; });
`;

// Plain http through a proxy needs no agent: the request line carries the absolute URL.
const NODE_HTTP_ABSOLUTE = `
import http from 'node:http';
const proxy = new URL(process.env.HTTP_PROXY);
const target = new URL(process.env.TARGET_URL);
const proxyAuthorization = 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');
http.get({ host: proxy.hostname, port: proxy.port, path: target.href, headers: { host: target.host, 'proxy-authorization': proxyAuthorization } }, (response) => {
  response.setEncoding('utf8');
  let body = '';
  response.on('data', (chunk) => (body += chunk));
  response.on('end', () => process.stdout.write(body));
}).on('error', (error) => { console.error(error.message); process.exitCode = 1; });
`;

const node = (script: string, url: string, env: Record<string, string>) =>
  run(process.execPath, ['--input-type=module', '-e', script], { env: { ...env, TARGET_URL: url } });

t.test('Node undici EnvHttpProxyAgent: passthrough https (NODE_EXTRA_CA_CERTS)', async (t) => {
  const r = await node(NODE_UNDICI_ENV, passthroughUrl('undici'), proxyEnv('NODE_EXTRA_CA_CERTS', testCa));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/undici');
  await assertTunnel(t, 'undici');
});

t.test('Node undici EnvHttpProxyAgent: intercepted https (NODE_EXTRA_CA_CERTS=certs/ca.pem)', async (t) => {
  const r = await node(NODE_UNDICI_ENV, interceptedUrl('undici'), proxyEnv('NODE_EXTRA_CA_CERTS', sluiceCa));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/intercepted/undici');
  await assertRequest(t, 'https', '/anything/intercepted/undici');
});

t.test('Node undici EnvHttpProxyAgent({ proxyTunnel: false }): plain http in absolute form', async (t) => {
  const r = await node(
    NODE_UNDICI_ENV.replace('new EnvHttpProxyAgent()', 'new EnvHttpProxyAgent({ proxyTunnel: false })'),
    plainUrl('undici'),
    proxyEnv('NODE_EXTRA_CA_CERTS', testCa),
  );
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/plain/undici');
  await assertRequest(t, 'http', '/anything/plain/undici');
});

t.test('Node undici EnvHttpProxyAgent default: plain http goes through a CONNECT tunnel', async (t) => {
  // undici 7's ProxyAgent tunnels http:// too (proxyTunnel defaults to true): sluice reads the
  // plain HTTP in the tunnel and decides each request like one sent in absolute form.
  const r = await node(
    NODE_UNDICI_ENV,
    `http://undici.wild.test:${plain.port}/anything/plain/undici-tunnel`,
    proxyEnv('NODE_EXTRA_CA_CERTS', testCa),
  );
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/plain/undici-tunnel');
  const tunnel = await waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === 'undici.wild.test' && e.port === plain.port);
  t.equal(tunnel.decision, 'allow');
  t.equal(tunnel.method, 'CONNECT');
  const request = await waitForAudit(
    sluice,
    (e) => e.type === 'net.req' && e.host === 'undici.wild.test' && e.path === '/anything/plain/undici-tunnel',
  );
  t.equal(request.scheme, 'http');
  t.equal(request.decision, 'allow');
  t.ok((request.bytes_down ?? 0) > 0, 'the request inside the tunnel carries the bytes');
});

t.test('Node https.request with a CONNECT agent: passthrough https', async (t) => {
  const r = await node(NODE_HTTPS_AGENT, passthroughUrl('https-agent'), proxyEnv('NODE_EXTRA_CA_CERTS', testCa));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/https-agent');
  await assertTunnel(t, 'https-agent');
});

t.test('Node https.request with a CONNECT agent: intercepted https', async (t) => {
  const r = await node(NODE_HTTPS_AGENT, interceptedUrl('https-agent'), proxyEnv('NODE_EXTRA_CA_CERTS', sluiceCa));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/intercepted/https-agent');
  await assertRequest(t, 'https', '/anything/intercepted/https-agent');
});

t.test('Node https.request with a CONNECT agent: a denied host fails with the deny reason', async (t) => {
  const r = await node(NODE_HTTPS_AGENT, `https://denied.test:${upstream.port}/`, proxyEnv('NODE_EXTRA_CA_CERTS', testCa));
  t.equal(r.code, 1);
  t.match(r.stderr, /proxy refused CONNECT: 403 no_rule/);
  const event = await waitForAudit(sluice, (e) => e.type === 'policy.violation' && e.host === 'denied.test');
  t.equal(event.decision, 'deny');
  t.equal(event.reason, 'no_rule');
});

t.test('Node http.request in absolute form: plain http', async (t) => {
  const r = await node(NODE_HTTP_ABSOLUTE, plainUrl('http-absolute'), proxyEnv('NODE_EXTRA_CA_CERTS', testCa));
  t.equal(r.code, 0, r.stderr);
  assertForwarded(t, echoOf(r), '/anything/plain/http-absolute');
  await assertRequest(t, 'http', '/anything/plain/http-absolute');
});

// ---- Python ----

const PYTHON_URLLIB = `
import os, sys, urllib.request
with urllib.request.urlopen(os.environ['TARGET_URL'], timeout=20) as response:
    sys.stdout.write(response.read().decode())
`;
const PYTHON_REQUESTS = `
import os, sys, requests
response = requests.get(os.environ['TARGET_URL'], timeout=20)
response.raise_for_status()
sys.stdout.write(response.text)
`;
const PYTHON_HTTPX = `
import os, sys, httpx
response = httpx.get(os.environ['TARGET_URL'], timeout=20)
response.raise_for_status()
sys.stdout.write(response.text)
`;

interface PythonRecipe {
  client: 'urllib' | 'requests' | 'httpx';
  interpreter: string;
  script: string;
  /** The variable the recipe uses to trust a CA file. */
  caVariable: string;
}

const PYTHON_RECIPES: PythonRecipe[] = [
  { client: 'urllib', interpreter: 'python3', script: PYTHON_URLLIB, caVariable: 'SSL_CERT_FILE' },
  { client: 'requests', interpreter: SYSTEM_PYTHON, script: PYTHON_REQUESTS, caVariable: 'REQUESTS_CA_BUNDLE' },
  { client: 'httpx', interpreter: SYSTEM_PYTHON, script: PYTHON_HTTPX, caVariable: 'SSL_CERT_FILE' },
];

for (const recipe of PYTHON_RECIPES) {
  const python = (url: string, caFile: string) =>
    run(recipe.interpreter, ['-c', recipe.script], { env: { ...proxyEnv(recipe.caVariable, caFile), TARGET_URL: url } });

  t.test(`Python ${recipe.client}: passthrough https (${recipe.caVariable})`, async (t) => {
    const r = await python(passthroughUrl(recipe.client), testCa);
    t.equal(r.code, 0, r.stderr);
    assertForwarded(t, echoOf(r), `/anything/${recipe.client}`);
    await assertTunnel(t, recipe.client);
  });

  t.test(`Python ${recipe.client}: intercepted https (${recipe.caVariable}=certs/ca.pem)`, async (t) => {
    const r = await python(interceptedUrl(recipe.client), sluiceCa);
    t.equal(r.code, 0, r.stderr);
    assertForwarded(t, echoOf(r), `/anything/intercepted/${recipe.client}`);
    await assertRequest(t, 'https', `/anything/intercepted/${recipe.client}`);
  });

  t.test(`Python ${recipe.client}: plain http`, async (t) => {
    const r = await python(plainUrl(recipe.client), testCa);
    t.equal(r.code, 0, r.stderr);
    assertForwarded(t, echoOf(r), `/anything/plain/${recipe.client}`);
    await assertRequest(t, 'http', `/anything/plain/${recipe.client}`);
  });
}

t.test('one bundle for both kinds of host: public roots plus the sluice CA', async (t) => {
  // What deploy/compose/publish-ca.mjs hands tools (here the "public root" is the test CA).
  const bundle = writeTempFile('client-bundle.pem', `${readFileSync(testCa, 'utf8')}\n${readFileSync(sluiceCa, 'utf8')}`);
  const passthrough = await curl(['-x', proxy, '--cacert', bundle, passthroughUrl('curl', '/anything/bundle')]);
  t.equal(passthrough.status, 200, passthrough.stderr);
  const intercepted = await curl(['-x', proxy, '--cacert', bundle, `https://api.test:${upstream.port}/anything/bundle`]);
  t.equal(intercepted.status, 200, intercepted.stderr);
  // Without the sluice CA the intercepted host fails verification: it really is sluice's certificate.
  const untrusted = await curl(['-x', proxy, '--cacert', testCa, `https://api.test:${upstream.port}/anything/bundle`]);
  t.equal(untrusted.code, 60, 'curl: peer certificate cannot be authenticated');
});
