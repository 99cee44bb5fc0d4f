// The pip and npm recipes of the README, run through sluice for real (issue 15): pip against a
// PEP 503 simple index and npm against a registry, each served over HTTPS on loopback and reached
// through a passthrough CONNECT tunnel, with the proxy given as the README says. The package
// bytes arrive whole, and the audit records the tunnel for the tool.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, runProcess } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { startTestSluice, waitForAudit, TOOL, type TestSluice } from '../helpers/sluice.js';

// upstream.test is one of the names on the test server certificate (pki.ts).
const HOST = 'upstream.test';
let sluice: TestSluice;
let dns: DnsServer;
let server: https.Server;
let port: number;
let testCa: string;
const work = mkdtempSync(path.join(tmpdir(), 'sluice-recipes-'));
const files = new Map<string, { type: string; body: Buffer }>();

/**
 * The client's environment as a fresh machine has it: no pip or npm settings, no CA variables
 * (this machine sets PIP_CERT, PIP_FIND_LINKS, REQUESTS_CA_BUNDLE, …), a HOME of its own.
 */
function freshEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = cleanEnv();
  for (const name of Object.keys(env)) {
    if (/^(pip_|npm_config_)/i.test(name) || /(_CA_|CA_BUNDLE|CA_CERTS|SSL_CERT|CAINFO)/i.test(name)) delete env[name];
  }
  return { ...env, HOME: home, ...extra };
}

/** A wheel of one module, built with Python's zipfile (pip reads its dist-info). */
async function buildWheel(): Promise<Buffer> {
  const out = path.join(work, 'demo_pkg-1.0-py3-none-any.whl');
  const script = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("demo_pkg/__init__.py", "VALUE = 42\\n")
    z.writestr("demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\\nName: demo-pkg\\nVersion: 1.0\\n")
    z.writestr("demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: sluice-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
    z.writestr("demo_pkg-1.0.dist-info/RECORD", "")
`;
  const r = await runProcess('python3', ['-c', script, out], { env: cleanEnv(), timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`building the wheel failed: ${r.stderr}`);
  return readFileSync(out);
}

/** An npm package tarball (package/package.json, package/index.js), built with tar. */
async function buildTarball(): Promise<Buffer> {
  const root = path.join(work, 'tarball');
  mkdirSync(path.join(root, 'package'), { recursive: true });
  writeFileSync(path.join(root, 'package', 'package.json'), JSON.stringify({ name: 'demo-pkg', version: '1.0.0', main: 'index.js' }));
  writeFileSync(path.join(root, 'package', 'index.js'), 'module.exports = 42;\n');
  const out = path.join(work, 'demo-pkg-1.0.0.tgz');
  const r = await runProcess('tar', ['-czf', out, '-C', root, 'package'], { env: cleanEnv(), timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`building the tarball failed: ${r.stderr}`);
  return readFileSync(out);
}

t.before(async () => {
  const pki = await makeTestPki();
  testCa = await testCaFile();
  const wheel = await buildWheel();
  const tarball = await buildTarball();
  server = https.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
    const file = files.get((req.url ?? '').split('?')[0]!);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': file.body.length }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  port = (server.address() as AddressInfo).port;
  const origin = `https://${HOST}:${port}`;
  const wheelSha = createHash('sha256').update(wheel).digest('hex');
  // PEP 503: /simple/ lists projects, /simple/<project>/ its files, with a sha256 fragment.
  files.set('/simple/', { type: 'text/html', body: Buffer.from('<!DOCTYPE html><html><body><a href="demo-pkg/">demo-pkg</a></body></html>') });
  files.set('/simple/demo-pkg/', {
    type: 'text/html',
    body: Buffer.from(
      `<!DOCTYPE html><html><body><a href="${origin}/files/demo_pkg-1.0-py3-none-any.whl#sha256=${wheelSha}">demo_pkg-1.0-py3-none-any.whl</a></body></html>`,
    ),
  });
  files.set('/files/demo_pkg-1.0-py3-none-any.whl', { type: 'application/octet-stream', body: wheel });
  // An npm registry: the packument, then the tarball it names, with its integrity.
  const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
  files.set('/demo-pkg', {
    type: 'application/json',
    body: Buffer.from(
      JSON.stringify({
        name: 'demo-pkg',
        'dist-tags': { latest: '1.0.0' },
        versions: {
          '1.0.0': { name: 'demo-pkg', version: '1.0.0', dist: { tarball: `${origin}/demo-pkg/-/demo-pkg-1.0.0.tgz`, integrity } },
        },
      }),
    ),
  });
  files.set('/demo-pkg/-/demo-pkg-1.0.0.tgz', { type: 'application/octet-stream', body: tarball });

  dns = await startDns({ [HOST]: [{ type: 'A', address: '127.0.0.2' }] });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [443, ${port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: ${HOST}
`,
  });
});
t.teardown(async () => {
  await sluice.close();
  await new Promise((resolve) => server.close(resolve));
  await dns.close();
});

t.test('pip: pip download from a PEP 503 index through sluice (--proxy, --cert)', async (t) => {
  const probe = await runProcess('python3', ['-m', 'pip', '--version'], { env: cleanEnv(), timeoutMs: 30_000 });
  t.equal(probe.code, 0, `pip is needed (Debian python3-pip): ${probe.stderr}`);
  const dest = mkdtempSync(path.join(tmpdir(), 'sluice-pip-'));
  const r = await runProcess(
    'python3',
    [
      '-m',
      'pip',
      'download',
      '--no-deps',
      '--disable-pip-version-check',
      '--no-cache-dir',
      '--index-url',
      `https://${HOST}:${port}/simple/`,
      '--proxy',
      sluice.proxyUrl(),
      '--cert',
      testCa,
      '--dest',
      dest,
      'demo-pkg',
    ],
    { env: freshEnv(mkdtempSync(path.join(tmpdir(), 'sluice-pip-home-')), { PIP_CONFIG_FILE: '/dev/null' }), timeoutMs: 90_000 },
  );
  t.equal(r.code, 0, `${r.stdout.toString()}\n${r.stderr}`);
  t.same(readdirSync(dest), ['demo_pkg-1.0-py3-none-any.whl']);
  t.same(readFileSync(path.join(dest, 'demo_pkg-1.0-py3-none-any.whl')), files.get('/files/demo_pkg-1.0-py3-none-any.whl')!.body);
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === HOST && (e.bytes_down ?? 0) > 0);
  t.equal(rec.tool, TOOL);
});

t.test('npm: npm install from a registry through sluice (--https-proxy, cafile)', async (t) => {
  const project = mkdtempSync(path.join(tmpdir(), 'sluice-npm-'));
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'recipe-test', version: '1.0.0', private: true }));
  const r = await runProcess(
    'npm',
    [
      'install',
      'demo-pkg',
      '--registry',
      `https://${HOST}:${port}/`,
      '--https-proxy',
      sluice.proxyUrl(),
      '--cafile',
      testCa,
      '--prefix',
      project,
      '--cache',
      path.join(project, '.npm-cache'),
      '--no-audit',
      '--no-fund',
      '--no-update-notifier',
    ],
    // cwd and --prefix: the project in a temp dir, never the checkout the test runs in.
    { env: freshEnv(project, { npm_config_userconfig: path.join(project, '.npmrc') }), timeoutMs: 120_000, cwd: project },
  );
  t.equal(r.code, 0, `${r.stdout.toString()}\n${r.stderr}`);
  const installed = path.join(project, 'node_modules', 'demo-pkg', 'index.js');
  t.ok(existsSync(installed), 'the package is installed');
  t.equal(readFileSync(installed, 'utf8'), 'module.exports = 42;\n');
  const rec = await waitForAudit(sluice, (e) => e.type === 'net.tunnel' && e.host === HOST && (e.bytes_down ?? 0) > 1000);
  t.equal(rec.tool, TOOL);
});
