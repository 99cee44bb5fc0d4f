// Governance end to end: a real audit file and `sluice audit verify`, the admin endpoints, hot
// reload (file change in-process, SIGHUP on the spawned CLI), pinned-policy drift halting under
// traffic (in-process and the CLI's exit 3), an audit that cannot be written halting the proxy,
// and SIGTERM flushing the audit.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { basicAuth, cleanEnv, connectTunnel, curl } from '../helpers/clients.js';
import { exitWithin, serveCliProcess } from '../helpers/gate-cli.js';
import { sha256, startTestSluice, TOKEN, TOOL, waitForAudit } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const CLI = path.resolve('dist/cli.js');
let upstream: Upstream;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
});
t.teardown(() => upstream.close());

/** A policy letting TOOL reach the loopback upstream on `paths`. */
const policyFor = (paths: string[], tokenSha = '${TOKEN_SHA}') => `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "${tokenSha}"
    allow:
      - host: 127.0.0.2
        paths: ${JSON.stringify(paths)}
`;

const viaProxy = (port: number, url: string) => curl(['-x', `http://${TOOL}:${TOKEN}@127.0.0.1:${port}`, url]);
const admin = async (port: number, p: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, body: await res.text() };
};
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv() });

t.test('audit verify: a real audit file verifies; with one line deleted it fails naming the line', async (t) => {
  const sluice = await startTestSluice({ policy: policyFor(['/anything/**']) });
  for (const p of ['/anything/1', '/anything/2', '/denied', '/anything/3']) await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}${p}`);
  await waitForAudit(sluice, (r) => r.path === '/anything/3');
  await sluice.close();
  const lines = readFileSync(sluice.auditFile, 'utf8').split('\n').filter(Boolean);
  t.ok(lines.length >= 5, `policy.load and four requests (${lines.length} lines)`);

  const ok = cli(['audit', 'verify', sluice.auditFile]);
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, `ok: ${lines.length} records`);

  const tampered = path.join(sluice.dir, 'tampered.log');
  writeFileSync(tampered, `${lines.filter((_, i) => i !== 2).join('\n')}\n`);
  const bad = cli(['audit', 'verify', tampered]);
  t.equal(bad.status, 1);
  t.match(bad.stdout + bad.stderr, `${tampered}:3`, 'names the line after the gap');
});

t.test('admin endpoints: /healthz, /readyz, /policy, /ca.pem', async (t) => {
  const sluice = await startTestSluice({ policy: policyFor(['/anything/**']) });
  t.teardown(() => sluice.close());
  t.equal((await admin(sluice.adminPort, '/healthz')).status, 200);
  t.equal((await admin(sluice.adminPort, '/readyz')).status, 200);
  const policy = JSON.parse((await admin(sluice.adminPort, '/policy')).body);
  t.equal(policy.sha256, sha256(readFileSync(sluice.policyFile, 'utf8')));
  t.same(policy.tools, [{ name: TOOL, rules: 1, secrets: [] }]);
  t.ok(Math.abs(Date.parse(policy.loaded_at) - Date.now()) < 60_000, 'loaded_at is a recent ISO time');
  const ca = await admin(sluice.adminPort, '/ca.pem');
  t.equal(ca.status, 200);
  t.equal(ca.body, readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8'));
});

t.test('hot reload on file change: new requests get the new policy, an in-flight one finishes under the old', async (t) => {
  const sluice = await startTestSluice({ policy: policyFor(['/anything/**', '/slow']), watchPolicy: true });
  t.teardown(() => sluice.close());
  const oldSha = sluice.running.current().loaded.digest;
  const inFlight = viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/slow?ms=600`);
  await waitFor(() => upstream.requests.some((r) => r.url.startsWith('/slow')), 'the slow request upstream');
  writeFileSync(sluice.policyFile, policyFor(['/other/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN)));
  await waitFor(() => sluice.running.current().loaded.digest !== oldSha, 'the reload', 3000);
  const denied = await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/anything/after`);
  t.equal(denied.status, 403);
  t.equal(denied.headers['x-sluice-deny'], 'path_not_allowed');
  const slow = await inFlight;
  t.equal(slow.status, 200, 'the request that started under the old policy finished');
  t.equal(slow.body, 'slow\n');
  const loads = (await sluice.audit()).filter((r) => r.type === 'policy.load');
  t.same(
    loads.map((r) => r.policy_sha256),
    [oldSha, sluice.running.current().loaded.digest],
  );
});

t.test('an invalid new policy is rejected: the old stays, policy.reload_failed audited and counted', async (t) => {
  const sluice = await startTestSluice({ policy: policyFor(['/anything/**']), watchPolicy: true });
  t.teardown(() => sluice.close());
  const sha = sluice.running.current().loaded.digest;
  writeFileSync(sluice.policyFile, 'version: 1\ntools:\n  x:\n    token_env: X\n    allow:\n      - host: "*"\n');
  const failed = await waitForAudit(sluice, (r) => r.type === 'policy.reload_failed');
  t.match(failed.detail, /policy\.yaml:6: .*allow-all/);
  t.equal(failed.policy_sha256, sha, 'recorded under the policy still in force');
  t.equal(sluice.running.current().loaded.digest, sha);
  const still = await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/anything/still`);
  t.equal(still.status, 200, 'the old policy still allows');
  const metrics = (await admin(sluice.adminPort, '/metrics')).body;
  t.match(metrics, /^sluice_policy_reload_failures_total 1$/m);
  t.equal((await admin(sluice.adminPort, '/readyz')).status, 200, 'still ready');
});

t.test('pinned policy edited under traffic: halts within a second', async (t) => {
  const policy = policyFor(['/anything/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN));
  let haltedWith: string | null = null;
  const sluice = await startTestSluice({ policy, policySha256: sha256(policy), watchPolicy: true, onHalt: (d) => (haltedWith = d) });
  t.teardown(() => sluice.close());
  const tunnel = await connectTunnel(sluice.port, `127.0.0.2:${upstream.port}`, basicAuth(TOOL, TOKEN));
  t.equal(tunnel.status, 200);
  const tunnelClosed = new Promise<number>((resolve) => tunnel.socket.once('close', () => resolve(Date.now())));
  tunnel.socket.resume();

  // Traffic flows: a request every few ms until one comes back 503.
  let firstHalted: { at: number; body: string; header: string | undefined } | null = null;
  let ok = 0;
  const traffic = (async () => {
    while (!firstHalted) {
      const r = await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/anything/t`);
      if (r.status === 200) ok++;
      else if (r.status === 503) firstHalted = { at: Date.now(), body: r.body, header: r.headers['x-sluice-deny'] };
    }
  })();
  await waitFor(() => ok >= 3, 'traffic before the edit');
  const editedAt = Date.now();
  const edited = `${policy}# edited\n`;
  writeFileSync(sluice.policyFile, edited);
  await Promise.race([traffic, new Promise((_, reject) => setTimeout(() => reject(new Error('no 503 within 3 s')), 3000))]);
  const latency = firstHalted!.at - editedAt;
  t.ok(latency < 1000, `first 503 ${latency} ms after the edit`);
  t.comment(`halt latency: ${latency} ms`);
  t.equal(firstHalted!.header, 'policy_halted');
  t.equal(JSON.parse(firstHalted!.body).reason, 'policy_halted');
  const closedAt = await Promise.race([tunnelClosed, new Promise<number>((r) => setTimeout(() => r(-1), 2000))]);
  t.ok(closedAt > 0, `the open tunnel was closed (${closedAt - editedAt} ms after the edit)`);
  t.match(haltedWith, /changed at run time/);
  t.equal((await admin(sluice.adminPort, '/readyz')).status, 503);
  const drift = await waitForAudit(sluice, (r) => r.type === 'policy.drift');
  t.equal(drift.expected_sha256, sha256(policy));
  t.match(drift.detail, sha256(edited), 'the event names the hash found too');
  t.equal(drift.reason, 'policy_halted');
});

t.test('an audit that cannot be written halts the proxy (invariant 4)', async (t) => {
  let haltedWith: string | null = null;
  const sluice = await startTestSluice({ policy: policyFor(['/anything/**']), audit: '/dev/full', onHalt: (d) => (haltedWith = d) });
  // The policy.load record already failed to land; at the latest the next request's does.
  await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/anything/unaudited`);
  await waitFor(() => haltedWith !== null, 'the halt');
  t.match(haltedWith, /audit could not be written/);
  const r = await viaProxy(sluice.port, `http://127.0.0.2:${upstream.port}/anything/after`);
  t.equal(r.status, 503);
  t.equal(r.headers['x-sluice-deny'], 'policy_halted');
  t.equal((await admin(sluice.adminPort, '/readyz')).status, 503);
  // close() still ends (the CLI exits 3 after it) and reports the failure.
  await t.rejects(sluice.close(), { code: 'AUDIT_WRITE_FAILED' });
});

// --- the spawned CLI -----------------------------------------------------------------------

// The CLI's own audit fsync mode (interval), as a user runs it.
const served = (policy: string, options: { watch?: boolean; extra?: string[] } = {}) =>
  serveCliProcess(policy, { ...options, auditFsync: 'interval' });

t.test('CLI: SIGHUP applies a new policy to new requests', async (t) => {
  const s = await served(policyFor(['/anything/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN)));
  t.teardown(() => void s.child.kill('SIGKILL'));
  t.equal((await viaProxy(s.port, `http://127.0.0.2:${upstream.port}/anything/before`)).status, 200);
  const next = policyFor(['/other/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN));
  writeFileSync(s.policyFile, next);
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await viaProxy(s.port, `http://127.0.0.2:${upstream.port}/anything/before`)).status, 200, '--no-watch: unchanged until SIGHUP');
  s.child.kill('SIGHUP');
  await waitFor(() => s.audit().filter((r) => r.type === 'policy.load').length === 2, 'the reload', 3000);
  const after = await viaProxy(s.port, `http://127.0.0.2:${upstream.port}/anything/after`);
  t.equal(after.status, 403);
  t.equal(JSON.parse((await admin(s.adminPort, '/policy')).body).sha256, sha256(next));
  s.child.kill('SIGTERM');
  t.equal(await exitWithin(s.exited, 5000), 0);
});

t.test('CLI: SIGTERM flushes the audit (the last request is on disk) and exits 0', async (t) => {
  const s = await served(policyFor(['/anything/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN)), { watch: true });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 5; i++) await viaProxy(s.port, `http://127.0.0.2:${upstream.port}/anything/n${i}`);
  s.child.kill('SIGTERM');
  t.equal(await exitWithin(s.exited, 5000), 0, s.stderr());
  const last = s.audit().at(-1)!;
  t.equal(last.path, '/anything/n4');
  t.equal(cli(['audit', 'verify', s.auditFile]).status, 0, 'the flushed file verifies');
});

t.test('CLI: a pinned policy edited at run time exits 3 after a drain, drift on disk', async (t) => {
  const policy = policyFor(['/anything/**']).replaceAll('${TOKEN_SHA}', sha256(TOKEN));
  const s = await served(policy, { watch: true, extra: ['--policy-sha256', sha256(policy)] });
  t.teardown(() => void s.child.kill('SIGKILL'));
  t.equal((await viaProxy(s.port, `http://127.0.0.2:${upstream.port}/anything/pre`)).status, 200);
  const editedAt = Date.now();
  writeFileSync(s.policyFile, `${policy}# drift\n`);
  const code = await exitWithin(s.exited, 5000);
  t.equal(code, 3, s.stderr());
  t.comment(`CLI exited ${Date.now() - editedAt} ms after the edit`);
  t.match(s.stderr(), /pinned policy drifted; halting/);
  const drift = s.audit().find((r) => r.type === 'policy.drift');
  t.ok(drift, 'policy.drift is on disk');
  t.equal(drift?.expected_sha256, sha256(policy));
  t.match(drift?.detail, sha256(`${policy}# drift\n`));
  t.equal(cli(['audit', 'verify', s.auditFile]).status, 0);
});
