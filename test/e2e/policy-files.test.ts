// What a policy was read from, end to end: the watcher reacts to an edit of the base file, of any
// fragment (in any directory) and of the target of a symlinked file (Kubernetes' `..data` swap
// included); with a pin such an edit halts. And one digest names the policy everywhere: what
// `sluice check` prints is what --policy-sha256 accepts, what every audit event carries as
// policy_sha256, the sha256 label of sluice_policy_info and the sha256 of admin /policy.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, curl } from '../helpers/clients.js';
import { sha256, startTestSluice, TOKEN, TOOL, waitForAudit, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const CLI = path.resolve('dist/cli.js');
let upstream: Upstream;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
});
t.teardown(() => upstream.close());

/** A base policy: TOOL may reach `paths` on the loopback upstream; `include` names fragments. */
const base = (paths: string[], include: string[] = []): string => `
version: 1
${include.length > 0 ? `include: ${JSON.stringify(include)}` : ''}
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
        paths: ${JSON.stringify(paths)}
`;
/** A fragment adding tool `name` (same token as TOOL) that may reach `paths`. */
const fragment = (name: string, paths: string[]): string =>
  `tools:\n  ${name}:\n    token_sha256: "${sha256(TOKEN)}"\n    allow:\n      - host: 127.0.0.2\n        paths: ${JSON.stringify(paths)}\n`;
const filled = (text: string): string => text.replaceAll('${TOKEN_SHA}', sha256(TOKEN));

const get = (s: TestSluice, tool: string, p: string) => curl(['-x', s.proxyUrl(tool), `http://127.0.0.2:${upstream.port}${p}`]);
const admin = async (s: TestSluice, p: string): Promise<string> => (await fetch(`http://127.0.0.1:${s.adminPort}${p}`)).text();
const loads = async (s: TestSluice): Promise<AuditRecord[]> => (await s.audit()).filter((r) => r.type === 'policy.load');

/** Waits (bounded) until the audit holds `n` policy.load events: the start and n-1 reloads. */
async function reloaded(s: TestSluice, n: number): Promise<AuditRecord[]> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = await loads(s);
    if (found.length >= n) return found;
    if (Date.now() > deadline) throw new Error(`${found.length} policy.load events, waited for ${n}: the watcher did not reload`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The digest `sluice check` prints for a policy file (the built CLI). */
function checkDigest(file: string): string {
  const r = spawnSync(process.execPath, [CLI, 'check', file], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
  if (r.status !== 0) throw new Error(`sluice check failed: ${r.stderr}`);
  const digest = /^sha256 ([0-9a-f]{64})/m.exec(r.stdout)?.[1];
  if (!digest) throw new Error(`no sha256 line in: ${r.stdout}`);
  return digest;
}

const policyInfo = async (s: TestSluice): Promise<string[]> =>
  [...(await admin(s, '/metrics')).matchAll(/^sluice_policy_info\{sha256="([0-9a-f]{64})"\} 1$/gm)].map((m) => m[1]!);

t.test('the watcher picks up an edit of any fragment, in whichever directory, without a reload call', async (t) => {
  const sluice = await startTestSluice({
    policyFile: 'etc/policy.yaml',
    policy: base(['/anything/base/**'], ['policy.d/*.yaml', 'teams/*/*.yaml']),
    files: {
      'etc/policy.d/near.yaml': fragment('near', ['/anything/near/**']),
      'etc/teams/far/far.yaml': fragment('far', ['/anything/far/**']),
    },
    watchPolicy: true,
  });
  t.teardown(() => sluice.close());
  t.equal((await get(sluice, 'near', '/anything/near2/x')).headers['x-sluice-deny'], 'path_not_allowed');

  writeFileSync(path.join(sluice.dir, 'etc/policy.d/near.yaml'), fragment('near', ['/anything/near2/**']));
  await reloaded(sluice, 2);
  t.equal((await get(sluice, 'near', '/anything/near2/x')).status, 200, 'the edited fragment in policy.d is in force');

  writeFileSync(path.join(sluice.dir, 'etc/teams/far/far.yaml'), fragment('far', ['/anything/far2/**']));
  await reloaded(sluice, 3);
  t.equal((await get(sluice, 'far', '/anything/far2/x')).status, 200, 'the edited fragment in teams/far is in force');
  t.equal((await get(sluice, 'far', '/anything/far/x')).headers['x-sluice-deny'], 'path_not_allowed');
});

t.test("a symlinked fragment: an edit of its target outside the policy's directory reloads", async (t) => {
  const sluice = await startTestSluice({
    policyFile: 'etc/policy.yaml',
    policy: base(['/anything/base/**'], ['policy.d/*.yaml']),
    files: { 'store/linked.yaml': fragment('linked', ['/anything/one/**']) },
    setup: (dir) => {
      mkdirSync(path.join(dir, 'etc/policy.d'));
      symlinkSync('../../store/linked.yaml', path.join(dir, 'etc/policy.d/linked.yaml'));
    },
    watchPolicy: true,
  });
  t.teardown(() => sluice.close());
  writeFileSync(path.join(sluice.dir, 'store/linked.yaml'), fragment('linked', ['/anything/two/**']));
  await reloaded(sluice, 2);
  t.equal((await get(sluice, 'linked', '/anything/two/x')).status, 200);
  t.equal((await get(sluice, 'linked', '/anything/one/x')).headers['x-sluice-deny'], 'path_not_allowed');
});

/** etc/policy.yaml is a symlink to configs/policy.yaml, the file the test edits. */
const linkedPolicy = {
  policyFile: 'configs/policy.yaml',
  serve: 'etc/policy.yaml',
  setup: (dir: string) => {
    mkdirSync(path.join(dir, 'etc'));
    symlinkSync('../configs/policy.yaml', path.join(dir, 'etc/policy.yaml'));
  },
};

t.test('a pinned policy that is a symlink into another directory halts when the target is edited', async (t) => {
  const policy = base(['/anything/**']);
  let halted: string | null = null;
  const sluice = await startTestSluice({
    ...linkedPolicy,
    policy,
    policySha256: sha256(filled(policy)),
    watchPolicy: true,
    onHalt: (d) => (halted = d),
  });
  t.teardown(() => sluice.close());
  t.equal((await get(sluice, TOOL, '/anything/before')).status, 200);
  const edited = `${filled(policy)}# edited\n`;
  writeFileSync(sluice.policyFile, edited);
  await waitFor(() => halted !== null, 'the halt', 3000);
  t.match(halted, /changed at run time/);
  const after = await get(sluice, TOOL, '/anything/after');
  t.equal(after.status, 503);
  t.equal(after.headers['x-sluice-deny'], 'policy_halted');
  const drift = await waitForAudit(sluice, (r) => r.type === 'policy.drift');
  t.equal(drift.expected_sha256, sha256(filled(policy)));
  t.match(drift.detail, sha256(edited), 'the event names the digest found');
});

t.test("without a pin, an edit of a symlinked policy's target reloads", async (t) => {
  const sluice = await startTestSluice({ ...linkedPolicy, policy: base(['/anything/one/**']), watchPolicy: true });
  t.teardown(() => sluice.close());
  writeFileSync(sluice.policyFile, filled(base(['/anything/two/**'])));
  await reloaded(sluice, 2);
  t.equal((await get(sluice, TOOL, '/anything/two/x')).status, 200);
  t.equal(sluice.running.halted(), null);
});

/** A ConfigMap volume: etc/policy.yaml -> ..data/policy.yaml, ..data -> ..v1 (kubelet swaps ..data). */
const configMap = (policy: string) => ({
  policyFile: 'etc/..v1/policy.yaml',
  policy,
  serve: 'etc/policy.yaml',
  setup: (dir: string) => {
    symlinkSync('..v1', path.join(dir, 'etc/..data'));
    symlinkSync('..data/policy.yaml', path.join(dir, 'etc/policy.yaml'));
  },
});
function swapConfigMap(dir: string, from: string, to: string, text: string): void {
  mkdirSync(path.join(dir, 'etc', to));
  writeFileSync(path.join(dir, 'etc', to, 'policy.yaml'), filled(text));
  symlinkSync(to, path.join(dir, 'etc/..data_tmp'));
  renameSync(path.join(dir, 'etc/..data_tmp'), path.join(dir, 'etc/..data'));
  rmSync(path.join(dir, 'etc', from), { recursive: true });
}

t.test('a Kubernetes ConfigMap swap reloads, and the new target is watched after it', async (t) => {
  const sluice = await startTestSluice({ ...configMap(base(['/anything/one/**'])), watchPolicy: true });
  t.teardown(() => sluice.close());
  swapConfigMap(sluice.dir, '..v1', '..v2', base(['/anything/two/**']));
  await reloaded(sluice, 2);
  t.equal((await get(sluice, TOOL, '/anything/two/x')).status, 200, 'the swapped-in policy is in force');
  // kubelet never edits in place, but this shows the resolved target was re-computed at the reload.
  writeFileSync(path.join(sluice.dir, 'etc/..v2/policy.yaml'), filled(base(['/anything/three/**'])));
  await reloaded(sluice, 3);
  t.equal((await get(sluice, TOOL, '/anything/three/x')).status, 200);
});

t.test('a pinned ConfigMap policy halts on a swap', async (t) => {
  const policy = base(['/anything/**']);
  let halted: string | null = null;
  const sluice = await startTestSluice({
    ...configMap(policy),
    policySha256: sha256(filled(policy)),
    watchPolicy: true,
    onHalt: (d) => (halted = d),
  });
  t.teardown(() => sluice.close());
  swapConfigMap(sluice.dir, '..v1', '..v2', `${policy}# swapped\n`);
  await waitFor(() => halted !== null, 'the halt', 3000);
  t.equal((await get(sluice, TOOL, '/anything/x')).headers['x-sluice-deny'], 'policy_halted');
});

t.test('one digest: sluice check, --policy-sha256, audit events, sluice_policy_info and /policy agree', async (t) => {
  const layout = (paths: string[]) => ({
    policy: base(['/anything/base/**'], ['policy.d/*.yaml']),
    files: { 'policy.d/extra.yaml': fragment('extra', paths) },
  });
  const one = await startTestSluice(layout(['/anything/one/**']));
  t.teardown(() => one.close());
  const digest = checkDigest(one.policyFile);
  t.not(digest, sha256(readFileSync(one.policyFile, 'utf8')), "with a fragment the digest is not the base file's hash");

  t.equal((await get(one, 'extra', '/anything/one/x')).status, 200);
  const request = await waitForAudit(one, (r) => r.type === 'net.req');
  t.equal(request.policy_sha256, digest, "a request's audit event");
  t.same(
    (await loads(one)).map((r) => r.policy_sha256),
    [digest],
    'the policy.load event',
  );
  t.same(await policyInfo(one), [digest], 'sluice_policy_info{sha256}');
  t.equal(JSON.parse(await admin(one, '/policy')).sha256, digest, 'admin /policy');

  const pinned = await startTestSluice({ ...layout(['/anything/one/**']), policySha256: digest });
  t.teardown(() => pinned.close());
  t.equal(JSON.parse(await admin(pinned, '/policy')).sha256, digest, 'the printed digest is what --policy-sha256 accepts');

  const other = await startTestSluice(layout(['/anything/other/**']));
  t.teardown(() => other.close());
  const otherDigest = checkDigest(other.policyFile);
  t.not(otherDigest, digest, 'policies that differ only in a fragment have different digests');
  t.equal(JSON.parse(await admin(other, '/policy')).sha256, otherDigest);
  t.same(await policyInfo(other), [otherDigest]);
  t.same(
    (await loads(other)).map((r) => r.policy_sha256),
    [otherDigest],
  );

  // A fragment edit: after the reload every place names the new digest, which check prints too.
  writeFileSync(path.join(one.dir, 'policy.d/extra.yaml'), fragment('extra', ['/anything/two/**']));
  t.ok(await one.running.reload());
  const next = checkDigest(one.policyFile);
  t.not(next, digest);
  t.same(
    (await loads(one)).map((r) => r.policy_sha256),
    [digest, next],
  );
  t.same(await policyInfo(one), [next]);
  t.equal(JSON.parse(await admin(one, '/policy')).sha256, next);
});
