// Signed audit end to end with the built CLI (issue 19): `sluice audit keygen`, `serve --audit-key`
// writing checkpoints (every N records, every T seconds, at rotation, at SIGTERM), the admin's
// /audit/head and sluice_audit_last_seq, a kill -9 leaving an unsealed tail, and restarts: a sealed
// file is continued, a cut or unsealed one is set aside and the new file opens with a break
// checkpoint. Exit codes of `audit verify`: 0 intact and sealed, 1 broken, 3 unsealed tail.
import { spawnSync } from 'node:child_process';
import { createPublicKey, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, curl } from '../helpers/clients.js';
import { freeLoopbackPort, serveCliProcess, type ServedCli } from '../helpers/gate-cli.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { sha256, TOKEN, TOOL } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const CLI = path.resolve('dist/cli.js');
const root = mkdtempSync(path.join(tmpdir(), 'sluice-audit-sign-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let upstream: Upstream;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
});
t.teardown(() => upstream.close());

const policy = (): string => `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  ${TOOL}:
    token_sha256: "${sha256(TOKEN)}"
    allow:
      - host: 127.0.0.2
        paths: ["/anything/**"]
`;

interface Line {
  seq: number;
  type: string;
  instance: string;
  checkpoint?: string;
  detail?: string;
  key_id?: string;
  signature?: string;
  prev: string;
  hash: string;
}

const cli = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv(env), timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr };
};
const records = (file: string): Line[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
const get = (s: ServedCli, p: string) => curl(['-x', `http://${TOOL}:${TOKEN}@127.0.0.1:${s.port}`, `http://127.0.0.2:${upstream.port}${p}`]);
const auditFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.startsWith('audit.log'))
    .map((f) => path.join(dir, f));

// One key pair for the whole file, made by the command under test.
const keyDir = path.join(root, 'keys');
const keygen = cli(['audit', 'keygen', '--dir', keyDir]);
const privateKey = path.join(keyDir, 'audit-key.pem');
const publicKey = path.join(keyDir, 'audit-key.pub.pem');
const signed = (extra: string[] = []) => ['--audit-key', privateKey, ...extra];

t.test('audit keygen writes an Ed25519 pair, the private key 0600, and never overwrites one', async (t) => {
  t.equal(keygen.code, 0, keygen.out);
  t.match(keygen.stdout, /key id [0-9a-f]{16}/);
  t.equal(statSync(privateKey).mode & 0o777, 0o600, 'private key readable by the owner only');
  t.equal(createPrivateKey(readFileSync(privateKey)).asymmetricKeyType, 'ed25519');
  t.equal(createPublicKey(readFileSync(publicKey)).asymmetricKeyType, 'ed25519');
  t.match(readFileSync(publicKey, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
  const before = readFileSync(privateKey, 'utf8');
  const again = cli(['audit', 'keygen', '--dir', keyDir]);
  t.equal(again.code, 1, again.out);
  t.match(again.out, /exists/);
  t.equal(readFileSync(privateKey, 'utf8'), before, 'the key is unchanged');
});

t.test('serve --audit-key: checkpoints every N records, /audit/head and the gauge, sealed by SIGTERM', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed(['--audit-checkpoint-records', '5']) });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 12; i++) t.equal((await get(s, `/anything/${i}`)).status, 200);
  await waitFor(() => s.audit().filter((r) => r.path === '/anything/11').length === 1, 'the last request on disk');
  const lines = records(s.auditFile);
  const checkpoints = lines.filter((r) => r.type === 'audit.checkpoint');
  t.equal(lines[0]!.checkpoint, 'start', 'seq 1 is the start checkpoint');
  t.ok(checkpoints.filter((r) => r.checkpoint === 'periodic').length >= 2, 'a periodic checkpoint every 5 records');
  const instance = lines[0]!.instance;
  t.match(instance, /^\S+$/);
  t.ok(
    lines.every((r) => r.instance === instance),
    'every record carries the instance id',
  );

  const head = (await (await fetch(`http://127.0.0.1:${s.adminPort}/audit/head`)).json()) as Record<string, unknown>;
  const last = checkpoints.at(-1)!;
  t.match(head, { seq: last.seq, hash: last.hash, signature: last.signature, key_id: last.key_id, instance });
  const samples = await scrapeMetrics(s.adminPort);
  t.equal(total(samples, 'sluice_audit_last_seq'), lines.at(-1)!.seq, 'the gauge is the last seq written');
  t.equal(total(samples, 'sluice_requests_total'), 12, 'checkpoints are not requests');

  t.equal(await s.stop(), 0, s.stderr());
  const closed = records(s.auditFile);
  t.equal(closed.at(-1)!.checkpoint, 'shutdown', 'SIGTERM seals the trail');
  const ok = cli(['audit', 'verify', '--key', publicKey, s.auditFile]);
  t.equal(ok.code, 0, ok.out);
  t.match(ok.stdout, /sealed/);
  t.equal(cli(['audit', 'verify', '--key', publicKey, '--expect-seq', String(closed.at(-1)!.seq), s.auditFile]).code, 0);
  const beyond = cli(['audit', 'verify', '--key', publicKey, '--expect-seq', String(closed.at(-1)!.seq + 1), s.auditFile]);
  t.equal(beyond.code, 1, beyond.out);
  const otherDir = path.join(root, 'other-keys');
  t.equal(cli(['audit', 'keygen', '--dir', otherDir]).code, 0);
  const foreign = cli(['audit', 'verify', '--key', path.join(otherDir, 'audit-key.pub.pem'), s.auditFile]);
  t.equal(foreign.code, 1, foreign.out);
  t.match(foreign.out, /another key/);
});

t.test('rotation: every new file opens with a rotate checkpoint; a deleted one is caught', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed(['--audit-max-bytes', '4096']) });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 30; i++) t.equal((await get(s, `/anything/r${i}`)).status, 200);
  t.equal(await s.stop(), 0, s.stderr());
  const files = auditFiles(s.dir);
  t.ok(files.length >= 4, `rotated into ${files.length} files`);
  for (const file of files.filter((f) => f !== s.auditFile && !f.endsWith(`.${files.length - 1}`))) {
    t.equal(records(file)[0]!.checkpoint, 'rotate', `${path.basename(file)} opens with a rotate checkpoint`);
  }
  t.equal(records(s.auditFile)[0]!.checkpoint, 'rotate');
  const ok = cli(['audit', 'verify', '--key', publicKey, ...[...files].reverse()]);
  t.equal(ok.code, 0, ok.out);
  const middle = files.find((f) => f.endsWith('.2'))!;
  const missing = cli(['audit', 'verify', '--key', publicKey, ...files.filter((f) => f !== middle)]);
  t.equal(missing.code, 1, missing.out);
  t.match(missing.out, /missing/);
});

t.test('kill -9 leaves an unsealed tail (exit 3); the restart sets it aside and opens with a break', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed() });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 3; i++) t.equal((await get(s, `/anything/k${i}`)).status, 200);
  await waitFor(() => s.audit().filter((r) => r.type === 'net.req').length === 3, 'three requests on disk');
  s.child.kill('SIGKILL');
  await once(s.child, 'exit');
  const crashed = records(s.auditFile);
  t.not(crashed.at(-1)!.checkpoint, 'shutdown');
  const unsealed = cli(['audit', 'verify', '--key', publicKey, s.auditFile]);
  t.equal(unsealed.code, 3, unsealed.out);
  t.match(unsealed.out, /unsealed/);

  const again = await serveCliProcess(policy(), { dir: s.dir, extra: signed() });
  t.teardown(() => void again.child.kill('SIGKILL'));
  await waitFor(() => /break/.test(again.stderr()), 'the log to say so');
  const setAside = `${s.auditFile}.1`;
  t.same(records(setAside), crashed, 'the crashed file is kept, unchanged, as audit.log.1');
  const opened = records(again.auditFile)[0]!;
  t.equal(opened.checkpoint, 'break');
  t.match(opened.detail, /no shutdown checkpoint/);
  t.equal(opened.seq, crashed.at(-1)!.seq + 1);
  t.equal(opened.prev, crashed.at(-1)!.hash);
  t.not(opened.instance, crashed[0]!.instance, 'a new process, a new instance id');
  t.equal((await get(again, '/anything/after')).status, 200);
  t.equal(await again.stop(), 0, again.stderr());

  const alone = cli(['audit', 'verify', '--key', publicKey, again.auditFile]);
  t.equal(alone.code, 0, alone.out);
  t.match(alone.out, /break/);
  const both = cli(['audit', 'verify', '--key', publicKey, again.auditFile, setAside]);
  t.equal(both.code, 3, both.out);
});

t.test('a restart after truncation starts a new, verifiable file and records the break', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed() });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 8; i++) t.equal((await get(s, `/anything/t${i}`)).status, 200);
  t.equal(await s.stop(), 0, s.stderr());
  const sealed = readFileSync(s.auditFile, 'utf8').split('\n').filter(Boolean);
  const lastSeq = (JSON.parse(sealed.at(-1)!) as Line).seq;
  writeFileSync(
    s.auditFile,
    sealed
      .slice(0, -5)
      .map((l) => `${l}\n`)
      .join(''),
  );
  t.equal(cli(['audit', 'verify', '--key', publicKey, s.auditFile]).code, 3, 'the cut file is unsealed');

  const again = await serveCliProcess(policy(), { dir: s.dir, extra: signed() });
  t.teardown(() => void again.child.kill('SIGKILL'));
  t.equal((await get(again, '/anything/after')).status, 200);
  t.equal(await again.stop(), 0, again.stderr());
  const opened = records(again.auditFile)[0]!;
  t.equal(opened.checkpoint, 'break', 'the new file opens with a break checkpoint');
  t.equal(opened.seq, lastSeq - 5 + 1, 'it continues from the last record it found');
  const fresh = cli(['audit', 'verify', '--key', publicKey, again.auditFile]);
  t.equal(fresh.code, 0, fresh.out);
  const anchored = cli(['audit', 'verify', '--key', publicKey, '--expect-seq', String(lastSeq), `${s.auditFile}.1`]);
  t.equal(anchored.code, 1, anchored.out);
});

t.test('a clean restart continues the sealed file with a start checkpoint', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed() });
  t.teardown(() => void s.child.kill('SIGKILL'));
  t.equal((await get(s, '/anything/one')).status, 200);
  t.equal(await s.stop(), 0, s.stderr());
  const again = await serveCliProcess(policy(), { dir: s.dir, extra: signed() });
  t.teardown(() => void again.child.kill('SIGKILL'));
  t.equal((await get(again, '/anything/two')).status, 200);
  t.equal(await again.stop(), 0, again.stderr());
  t.notOk(existsSync(`${s.auditFile}.1`), 'no file set aside');
  const kinds = records(s.auditFile)
    .filter((r) => r.type === 'audit.checkpoint')
    .map((r) => r.checkpoint);
  t.same(kinds, ['start', 'shutdown', 'start', 'shutdown']);
  const ok = cli(['audit', 'verify', '--key', publicKey, s.auditFile]);
  t.equal(ok.code, 0, ok.out);
});

t.test('a checkpoint every T seconds; the flags as environment variables', async (t) => {
  const s = await serveCliProcess(policy(), {
    env: { SLUICE_AUDIT_KEY: privateKey, SLUICE_AUDIT_CHECKPOINT_SECONDS: '1', SLUICE_AUDIT_INSTANCE: 'edge-1' },
  });
  t.teardown(() => void s.child.kill('SIGKILL'));
  t.equal((await get(s, '/anything/timed')).status, 200);
  await waitFor(() => s.audit().some((r) => (r as unknown as Line).checkpoint === 'periodic'), 'a timed checkpoint', 10_000);
  t.ok(
    records(s.auditFile).every((r) => r.instance === 'edge-1'),
    '--audit-instance from SLUICE_AUDIT_INSTANCE',
  );
  t.equal(await s.stop(), 0, s.stderr());
  t.equal(cli(['audit', 'verify', '--key', publicKey, s.auditFile]).code, 0);
});

t.test('serve refuses a missing key and a key that is not Ed25519', async (t) => {
  const policyFile = path.join(root, 'policy.yaml');
  writeFileSync(policyFile, policy());
  const listen = `127.0.0.1:${await freeLoopbackPort()}`;
  const base = ['serve', '--policy', policyFile, '--admin', 'off', '--listen', listen, '--ca-dir', path.join(root, 'certs')];
  const audit = ['--audit', path.join(root, 'refused.log')];
  const missing = cli([...base, ...audit, '--audit-key', path.join(root, 'nope.pem')]);
  t.equal(missing.code, 2, missing.out);
  t.match(missing.stderr, /refusing to start: .*audit key/);
  t.equal(cli(['ca', 'init', '--dir', path.join(root, 'certs')]).code, 0);
  const notEd = cli([...base, ...audit, '--audit-key', path.join(root, 'certs', 'ca-key.pem')]);
  t.equal(notEd.code, 2, notEd.out);
  t.match(notEd.stderr, /Ed25519/);
  // (With no --audit the trail goes to stdout, which a key signs like a file: issue 15.)
  const zero = cli([...base, ...audit, ...signed(['--audit-checkpoint-records', '0'])]);
  t.equal(zero.code, 2, 'N must be at least 1');
  t.match(zero.stderr, /--audit-checkpoint-records/);
});

t.test('--workers 2: one signed trail per worker, /audit/head lists both, verify takes them together', async (t) => {
  const s = await serveCliProcess(policy(), { extra: signed(['--workers', '2', '--audit-instance', 'edge']) });
  t.teardown(() => void s.child.kill('SIGKILL'));
  for (let i = 0; i < 6; i++) t.equal((await get(s, `/anything/w${i}`)).status, 200);
  // Workers report their status to the primary about once a second: poll, bounded.
  let heads: Array<{ worker: number; instance: string; checkpoint: string }> = [];
  for (let tries = 0; heads.length < 2 && tries < 50; tries++) {
    const res = await fetch(`http://127.0.0.1:${s.adminPort}/audit/head`);
    if (res.status === 200) heads = ((await res.json()) as { workers: typeof heads }).workers;
    if (heads.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  t.match(heads, [
    { worker: 1, instance: 'edge.w1', checkpoint: 'start' },
    { worker: 2, instance: 'edge.w2', checkpoint: 'start' },
  ]);
  t.equal(await s.stop(), 0, s.stderr());
  const files = auditFiles(s.dir);
  t.same(files.map((f) => path.basename(f)).sort(), ['audit.log.w1', 'audit.log.w2']);
  const together = cli(['audit', 'verify', '--key', publicKey, ...files]);
  t.equal(together.code, 0, together.out);
  t.match(together.stdout, /instance edge\.w1/);
  t.match(together.stdout, /instance edge\.w2/);
});
