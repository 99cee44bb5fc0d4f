// `sluice serve --workers 2` as a real process: requests succeed through the shared listen socket,
// each worker keeps its own verifiable audit chain, /metrics sums the workers, SIGHUP reloads every
// worker, SIGTERM stops them all with exit 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { verifyAuditFiles } from '../../src/observe/audit.js';
import { cleanEnv } from '../helpers/clients.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/cli.js');
const TOKEN = 'workers-test-token';
const REQUESTS = 60;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function policy(upstream: Upstream, extraTool: boolean, ask = false): string {
  const sha = createHash('sha256').update(TOKEN).digest('hex');
  return `
version: 1
network:
  allow_private_cidrs: ["127.0.0.1/32"]
  allow_ports: [${upstream.port}]
tools:
  fetcher:
    token_sha256: "${sha}"
    allow:
      - host: 127.0.0.1
${extraTool ? `  second:\n    token_sha256: "${sha}"\n    allow:\n      - host: example.test\n` : ''}${
    ask ? `  asker:\n    token_sha256: "${sha}"\n    on_violation: ask\n    allow: []\n` : ''
  }`;
}

/** `sluice serve --workers 2` on free ports, its CA and audit in `dir`; stderr piped. */
async function serveWorkers(
  dir: string,
  policyFile: string,
  audit: string,
): Promise<{ child: ChildProcess; listenPort: number; adminPort: number }> {
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--workers',
      '2',
      '--policy',
      policyFile,
      '--listen',
      `127.0.0.1:${listenPort}`,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--ca-dir',
      path.join(dir, 'certs'),
      '--audit',
      audit,
      '--no-watch',
    ],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { child, listenPort, adminPort };
}

/** GET through the proxy in absolute form, a new connection each time. */
function get(proxyPort: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxyPort,
      path: url,
      agent: false,
      headers: { Host: new URL(url).host, 'Proxy-Authorization': `Basic ${Buffer.from(`fetcher:${TOKEN}`).toString('base64')}` },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function adminText(port: number, pathname: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${pathname}`);
  return res.text();
}

function auditRecords(file: string): Array<{ type: string; tool: string | null }> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { type: string; tool: string | null });
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

t.test('two workers share the port, keep one audit chain each, and the admin port sums their metrics', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-workers-'));
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(policyFile, policy(upstream, false));
  const audit = path.join(dir, 'audit.log');
  const { child, listenPort, adminPort } = await serveWorkers(dir, policyFile, audit);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
  await waitFor(() => log.includes('"workers":2'), `the primary to report both workers serving (log: ${log})`, 15_000);

  const statuses = await Promise.all(Array.from({ length: REQUESTS }, () => get(listenPort, `${upstream.origin}/small`)));
  t.same(new Set(statuses), new Set([200]), 'every request through either worker succeeds');
  t.equal(upstream.requests.length, REQUESTS, 'each reached the upstream once');

  const metrics = await adminText(adminPort, '/metrics');
  const served = /^sluice_requests_total\{tool="fetcher",decision="allow",reason=""\} (\d+)$/m.exec(metrics);
  t.equal(Number(served?.[1]), REQUESTS, '/metrics sums the requests of both workers');
  t.match(metrics, /^sluice_policy_info\{sha256="[0-9a-f]{64}"\} 1$/m, 'the policy is reported once, not once per worker');
  t.equal(await adminText(adminPort, '/readyz'), 'ready\n');
  t.match(await adminText(adminPort, '/ca.pem'), /BEGIN CERTIFICATE/, 'the primary serves the CA the workers share');

  // SIGHUP reaches every worker: each chain records the new policy.
  writeFileSync(policyFile, policy(upstream, true));
  child.kill('SIGHUP');
  const files = [`${audit}.w1`, `${audit}.w2`];
  await waitFor(() => files.every((f) => auditRecords(f).filter((r) => r.type === 'policy.load').length === 2), 'both workers to reload');
  let shown = '';
  for (let tries = 0; tries < 40 && !shown.includes('"name": "second"'); tries++) {
    shown = await adminText(adminPort, '/policy');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.match(shown, /"name": "second"/, 'the admin port shows the reloaded policy');

  // A reload to a policy that asks a supervisor is refused by every worker: nobody could answer.
  writeFileSync(policyFile, policy(upstream, true, true));
  child.kill('SIGHUP');
  await waitFor(() => files.every((f) => auditRecords(f).some((r) => r.type === 'policy.reload_failed')), 'both workers to refuse the reload');
  for (const file of files) {
    const failed = readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"policy.reload_failed"'));
    t.match(failed[0], /tool asker has on_violation: ask, which needs --workers 1/, `${path.basename(file)}: refused, named`);
  }
  t.equal(await get(listenPort, `${upstream.origin}/small`), 200, 'the previous policy stays in force');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops the primary and its workers with exit 0');
  let requests = 0;
  for (const file of files) {
    const verified = verifyAuditFiles([file]);
    t.ok(verified.ok, `${path.basename(file)} is an intact chain of its own`);
    requests += auditRecords(file).filter((r) => r.type === 'net.req' && r.tool === 'fetcher').length;
  }
  t.equal(requests, REQUESTS + 1, 'every request has exactly one record across the two chains');
});

t.test('--workers 2 refuses to start a policy with on_violation: ask (exit 2, named)', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-workers-ask-'));
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(policyFile, policy(upstream, false, true));
  const { child } = await serveWorkers(dir, policyFile, path.join(dir, 'audit.log'));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.equal(code, 2);
  t.match(stderr, /tool asker has on_violation: ask, which needs --workers 1/);
});

t.test('--workers refuses the stdout audit and a count below 1', async (t) => {
  for (const [args, expected] of [
    [['--workers', '2', '--audit', '-'], /cannot be used with --workers/],
    [['--workers', '0'], /at least 1/],
  ] as const) {
    const child = spawn(process.execPath, [CLI, 'serve', '--policy', 'none.yaml', ...args], {
      env: cleanEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    t.not(code, 0, `${args.join(' ')} exits non-zero`);
    t.match(stderr, expected);
  }
});
