// What a new operator's clients show (issue 15): a refusal's reason phrase names sluice's reason
// and the host, because curl, git, pip, requests and the JDK print a refused CONNECT's status line
// but never its body; and an intercepted request keeps the client's Host byte for byte (signed
// requests such as AWS SigV4 cover it), instead of sluice's "host:443".
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { basicAuth, connectTunnel, curl, exchangeRaw, rawRequest, tlsTunnel } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, TOKEN, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startRawUpstream, startUpstream, type RawUpstream, type Upstream } from '../helpers/upstream.js';

const auth = basicAuth(TOOL, TOKEN);
let tlsUpstream: Upstream;
let sluice: TestSluice;
let dns: DnsServer;
let sluiceCa: string;
let bulk: RawUpstream;
const MiB = 1024 * 1024;

t.before(async () => {
  const pki = await makeTestPki();
  tlsUpstream = await startUpstream({ host: '127.0.0.2', tls: pki.server });
  dns = await startDns({
    'api.test': [{ type: 'A', address: '127.0.0.2' }],
    'bulk.test': [{ type: 'A', address: '127.0.0.2' }],
    'capped.test': [{ type: 'A', address: '127.0.0.2' }],
  });
  // A server-first protocol that sends 12 MiB at once: more than the default max_response_bytes.
  bulk = await startRawUpstream((socket) => socket.end(Buffer.alloc(12 * MiB, 0x61)), { host: '127.0.0.2' });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [443, ${tlsUpstream.port}, ${bulk.port}]
tls:
  upstream_ca: ${await testCaFile()}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: api.test
        paths: ["/**"]
      - host: bulk.test
      - host: capped.test
        limits: { max_tunnel_bytes: ${MiB} }
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await tlsUpstream.close();
  await bulk.close();
  await dns.close();
});

t.test('every refusal names its reason and host in the status line, on CONNECT and in absolute form', async (t) => {
  const tunnel = await connectTunnel(sluice.port, 'pypi.test:443', auth);
  tunnel.socket.destroy();
  t.equal(tunnel.status, 403);
  t.match(tunnel.statusLine, /^HTTP\/1\.1 403 Forbidden \(sluice: no_rule pypi\.test\)$/);

  const unauthenticated = await connectTunnel(sluice.port, 'api.test:443', basicAuth(TOOL, 'wrong'));
  unauthenticated.socket.destroy();
  t.match(unauthenticated.statusLine, /^HTTP\/1\.1 407 Proxy Authentication Required \(sluice: unauthenticated\)$/);

  const plain = await rawRequest(
    sluice.port,
    `GET http://pypi.test/simple/ HTTP/1.1\r\nHost: pypi.test\r\nProxy-Authorization: ${auth}\r\n\r\n`,
  );
  t.match(plain.raw, /^HTTP\/1\.1 403 Forbidden \(sluice: no_rule pypi\.test\)\r\n/);
  t.equal(plain.headers['x-sluice-deny'], 'no_rule', 'the header and the JSON body stay');
  t.equal((JSON.parse(plain.body) as { reason: string }).reason, 'no_rule');

  // curl -v (and git with GIT_CURL_VERBOSE, pip -v, the JDK's exception text) shows the status
  // line of a refused CONNECT: the reason reaches the person running it.
  const r = await curl(['-v', '-x', sluice.proxyUrl(), 'https://pypi.test/simple/']);
  t.not(r.code, 0);
  t.match(r.stderr, /sluice: no_rule pypi\.test/, `curl says why: ${r.stderr.trim()}`);
});

t.test('an intercepted request keeps the Host header as the client wrote it', async (t) => {
  for (const host of ['api.test', `API.test:${tlsUpstream.port}`]) {
    const socket = await tlsTunnel(sluice.port, `api.test:${tlsUpstream.port}`, auth, { ca: sluiceCa });
    const before = tlsUpstream.requests.length;
    const r = await exchangeRaw(socket, `GET /anything/host HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    socket.destroy();
    if (host === 'api.test') {
      // Without a port the Host names port 443, not the tunnel's: refused, as before.
      t.equal(r.status, 400, 'a Host naming another port is refused');
      continue;
    }
    t.equal(r.status, 200);
    const seen = tlsUpstream.requests.slice(before).find((q) => q.url === '/anything/host');
    t.equal(seen?.headers.host, host, 'the upstream got the Host byte for byte');
  }
});

/** Reads a passthrough tunnel to the end; what it received and whether sluice closed it. */
async function drain(target: string): Promise<number> {
  const tunnel = await connectTunnel(sluice.port, target, auth);
  let received = 0;
  tunnel.socket.on('data', (chunk: Buffer) => (received += chunk.length));
  tunnel.socket.on('error', () => undefined);
  tunnel.socket.resume();
  await new Promise<void>((resolve) => tunnel.socket.once('close', () => resolve()));
  return received;
}

t.test('a passthrough tunnel is not capped by max_response_bytes; max_tunnel_bytes caps it when set', async (t) => {
  t.equal(await drain(`bulk.test:${bulk.port}`), 12 * MiB, 'a 12 MiB tunnel passes the 10 MiB response cap untouched');
  const whole = await waitForAudit(sluice, (a) => a.type === 'net.tunnel' && a.host === 'bulk.test');
  t.equal(whole.bytes_down, 12 * MiB);
  t.equal(whole.reason, null);

  const capped = await drain(`capped.test:${bulk.port}`);
  t.ok(capped < 12 * MiB, `the capped tunnel was closed (${capped} bytes)`);
  const cut = await waitForAudit(sluice, (a) => a.host === 'capped.test' && a.method === 'CONNECT');
  t.match(cut, { type: 'limit.exceeded', reason: 'tunnel_too_large', decision: 'deny' });
  t.match(cut.detail, /max_tunnel_bytes \(1048576 bytes/);
});

t.test("explain: a GET https:// URL gets the CONNECT's TLS verdict, and the limits in force", async (t) => {
  const run = promisify(execFile);
  const cli = path.resolve('dist/cli.js');
  const { stdout } = await run(process.execPath, [cli, 'explain', '--policy', sluice.policyFile, '--tool', TOOL, 'GET', 'https://api.test/x']);
  t.match(stdout, /^tls: intercepted/m, 'a host with path rules is intercepted for GET as for CONNECT');
  t.match(stdout, /^limits: .*max_response_bytes 10485760, max_tunnel_bytes off/m);
  const tunnel = await run(process.execPath, [
    cli,
    'explain',
    '--policy',
    sluice.policyFile,
    '--tool',
    TOOL,
    'GET',
    `https://capped.test:${bulk.port}/`,
  ]);
  t.match(tunnel.stdout, /^tls: tunnelled untouched/m);
  t.match(tunnel.stdout, /max_tunnel_bytes 1048576/);
});
