// `sluice audit verify` (the built CLI) on trails the test writes in the documented format: what it
// accepts (an intact trail, its rotated files in any order, several workers' trails together) and
// what it must refuse with exit 1 (a cut head, a deleted rotated file, a forged or foreign
// checkpoint, a trail short of its anchor) or report as unsealed with exit 3 (a cut or still open
// tail). Every refusal here was answered "ok" (exit 0) by the hash-chain-only verifier.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { buildTrail, edit, rechain, resign, testKey, writeTrail } from '../helpers/audit-trail.js';
import { cleanEnv } from '../helpers/clients.js';

const CLI = path.resolve('dist/cli.js');
const key = testKey();
const otherKey = testKey();
const root = mkdtempSync(path.join(tmpdir(), 'sluice-audit-verify-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const keyFile = path.join(root, 'audit-key.pub.pem');
writeFileSync(keyFile, key.publicPem);
const otherKeyFile = path.join(root, 'other.pub.pem');
writeFileSync(otherKeyFile, otherKey.publicPem);

let dirs = 0;
const freshDir = (): string => mkdtempSync(path.join(root, `case-${++dirs}-`));

function verify(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'audit', 'verify', ...args], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** A sealed signed trail of 45 requests over 4 files (periodic checkpoints every 10). */
const sealedFiles = (): string[][] => buildTrail({ key, records: 45, perFile: 14 });

t.test('an intact signed trail verifies, its rotated files in any order', async (t) => {
  const files = writeTrail(freshDir(), sealedFiles());
  t.equal(files.length, 4, 'four files');
  const inOrder = verify(['--key', keyFile, ...files]);
  t.equal(inOrder.code, 0, inOrder.out);
  t.match(inOrder.out, /^ok: \d+ records, seq 1\.\.\d+ in 4 files; signed by key [0-9a-f]{16} \(\d+ checkpoints\), sealed/m);
  t.match(inOrder.out, key.keyId);
  const shuffled = verify(['--key', keyFile, files[2]!, files[0]!, files[3]!, files[1]!]);
  t.equal(shuffled.code, 0, shuffled.out);
});

t.test('first 5 lines dropped: exit 1, the first record is neither genesis nor a checkpoint-opened file', async (t) => {
  const dir = freshDir();
  const trail = sealedFiles();
  trail[0] = trail[0]!.slice(5);
  const files = writeTrail(dir, trail);
  const r = verify(['--key', keyFile, ...files]);
  t.equal(r.code, 1, r.out);
  t.match(r.out, `${files[0]}:1: `);
  t.match(r.out, /neither the genesis nor a checkpoint/);
  t.equal(verify(files).code, 1, 'without --key too: the cut shows in the structure');

  // The same cut of an unsigned trail (sluice without --audit-key) is refused too.
  const unsigned = buildTrail({ key: null, records: 20 });
  const plain = writeTrail(freshDir(), [unsigned[0]!.slice(5)]);
  const r2 = verify(plain);
  t.equal(r2.code, 1, r2.out);
  t.match(r2.out, /neither the genesis nor a checkpoint/);
});

t.test('last 5 lines dropped: exit 3 (unsealed tail), and exit 1 against the anchor', async (t) => {
  const dir = freshDir();
  const trail = sealedFiles();
  const last = trail.at(-1)!;
  const lastSeq = (JSON.parse(last.at(-1)!) as { seq: number }).seq;
  trail[trail.length - 1] = last.slice(0, -5);
  const files = writeTrail(dir, trail);
  const r = verify(['--key', keyFile, ...files]);
  t.equal(r.code, 3, r.out);
  t.match(r.out, /unsealed: .*no shutdown checkpoint/);
  t.equal(verify(files).code, 3, 'without --key too');
  const anchored = verify(['--key', keyFile, '--expect-seq', String(lastSeq), ...files]);
  t.equal(anchored.code, 1, anchored.out);
  t.match(anchored.out, new RegExp(`the anchor says seq ${lastSeq}`));
});

t.test('--expect-seq: at or below the last record passes, beyond it fails', async (t) => {
  const files = writeTrail(freshDir(), sealedFiles());
  const lastSeq = (JSON.parse(sealedFiles().at(-1)!.at(-1)!) as { seq: number }).seq;
  t.equal(verify(['--key', keyFile, '--expect-seq', String(lastSeq), ...files]).code, 0);
  t.equal(verify(['--key', keyFile, '--expect-seq', '1', ...files]).code, 0);
  const beyond = verify(['--key', keyFile, '--expect-seq', String(lastSeq + 1), ...files]);
  t.equal(beyond.code, 1, beyond.out);
  t.match(beyond.out, `seq ${lastSeq + 1}`);
});

t.test('a rotated file deleted: exit 1 naming the missing records, in any order', async (t) => {
  const files = writeTrail(freshDir(), sealedFiles());
  const withoutMiddle = [files[3]!, files[0]!, files[2]!];
  const r = verify(['--key', keyFile, ...withoutMiddle]);
  t.equal(r.code, 1, r.out);
  t.match(r.out, /seq \d+\.\.\d+ .*missing/);
  t.match(r.out, /rotated file/);

  // The newest file deleted: the rest ends in an unsealed tail.
  const withoutNewest = verify(['--key', keyFile, ...files.slice(0, 3)]);
  t.equal(withoutNewest.code, 3, withoutNewest.out);
  t.equal(verify(files.slice(0, 3)).code, 3, 'without --key too');
  t.equal(verify(withoutMiddle).code, 1, 'without --key too');

  // The oldest files pruned (rotation keeps N): what is left opens with a signed rotate checkpoint.
  const pruned = verify(['--key', keyFile, ...files.slice(2)]);
  t.equal(pruned.code, 0, pruned.out);
});

t.test('a checkpoint signed by another key: exit 1', async (t) => {
  const dir = freshDir();
  const trail = sealedFiles();
  // The forger's own key, and its own key id.
  const lines = trail[1]!;
  const index = lines.findIndex((l) => l.includes('"type":"audit.checkpoint"'));
  trail[1] = rechain([...lines.slice(0, index), resign(lines[index]!, otherKey), ...lines.slice(index + 1)]);
  for (let i = 2; i < trail.length; i++) {
    const prev = (JSON.parse(trail[i - 1]!.at(-1)!) as { hash: string }).hash;
    trail[i] = rechain(trail[i]!, prev);
  }
  const files = writeTrail(dir, trail);
  const r = verify(['--key', keyFile, ...files]);
  t.equal(r.code, 1, r.out);
  t.match(r.out, new RegExp(`another key.*${otherKey.keyId}`));

  // Signed by the forger while claiming the real key id: the signature does not verify.
  const claimed = sealedFiles();
  const cl = claimed[0]!;
  const at = cl.findIndex((l) => l.includes('"checkpoint":"periodic"'));
  claimed[0] = rechain([...cl.slice(0, at), resign(cl[at]!, otherKey, key.keyId), ...cl.slice(at + 1)]);
  for (let i = 1; i < claimed.length; i++) {
    const prev = (JSON.parse(claimed[i - 1]!.at(-1)!) as { hash: string }).hash;
    claimed[i] = rechain(claimed[i]!, prev);
  }
  const r2 = verify(['--key', keyFile, ...writeTrail(freshDir(), claimed)]);
  t.equal(r2.code, 1, r2.out);
  t.match(r2.out, /signature does not verify/);

  // The whole trail verified against a key that is not the one that signed it.
  const r3 = verify(['--key', otherKeyFile, ...writeTrail(freshDir(), sealedFiles())]);
  t.equal(r3.code, 1, r3.out);
  t.match(r3.out, /another key/);
});

t.test('a cut tail dressed up as sealed (a periodic checkpoint relabelled shutdown): exit 1', async (t) => {
  const trail = buildTrail({ key, records: 25 });
  const lines = trail[0]!;
  const periodic = lines.map((l, i) => [l, i] as const).filter(([l]) => l.includes('"checkpoint":"periodic"'));
  const [line, index] = periodic.at(-1)!;
  const forged = rechain([...lines.slice(0, index), edit(line, { checkpoint: 'shutdown' })]);
  const r = verify(['--key', keyFile, ...writeTrail(freshDir(), [forged])]);
  t.equal(r.code, 1, r.out);
  t.match(r.out, /signature does not verify/);
});

t.test('records appended after the shutdown checkpoint: exit 3 (not sealed)', async (t) => {
  const trail = buildTrail({ key, records: 12 });
  const extra = buildTrail({ key: null, records: 3 })[0]!;
  const last = (JSON.parse(trail[0]!.at(-1)!) as { hash: string; seq: number }).hash;
  const seqBase = (JSON.parse(trail[0]!.at(-1)!) as { seq: number }).seq;
  const appended = rechain(
    extra.map((l, i) => edit(l, { seq: seqBase + 1 + i, instance: 'test-instance' })),
    last,
  );
  const files = writeTrail(freshDir(), [[...trail[0]!, ...appended]]);
  const r = verify(['--key', keyFile, ...files]);
  t.equal(r.code, 3, r.out);
  t.match(r.out, /unsealed/);
  t.equal(verify(files).code, 3, 'without --key too');
});

t.test('an unsigned trail: ok without --key (said to be unsigned), exit 1 with --key', async (t) => {
  const files = writeTrail(freshDir(), buildTrail({ key: null, records: 8 }));
  const plain = verify(files);
  t.equal(plain.code, 0, plain.out);
  t.match(plain.out, /^ok: 8 records, seq 1\.\.8; unsigned/m);
  const keyed = verify(['--key', keyFile, ...files]);
  t.equal(keyed.code, 1, keyed.out);
  t.match(keyed.out, /not signed/);
});

t.test('several workers: each trail verifies on its own and all verify together', async (t) => {
  const dir = freshDir();
  const w1 = writeTrail(dir, buildTrail({ key, records: 30, perFile: 12, instance: 'w1-instance' }), 'audit.log.w1');
  const w2 = writeTrail(dir, buildTrail({ key, records: 20, perFile: 12, instance: 'w2-instance' }), 'audit.log.w2');
  for (const files of [w1, w2]) t.equal(verify(['--key', keyFile, ...files]).code, 0);
  const together = verify(['--key', keyFile, ...w2, ...w1]);
  t.equal(together.code, 0, together.out);
  t.match(together.out, /w1-instance/);
  t.match(together.out, /w2-instance/);
  // One worker's middle file missing is still found among the other's.
  const missing = verify(['--key', keyFile, ...w1.filter((_, i) => i !== 1), ...w2]);
  t.equal(missing.code, 1, missing.out);
  t.match(missing.out, /missing/);
  // An anchor needs one trail: with several, verify each worker's files with its own.
  t.equal(verify(['--key', keyFile, '--expect-seq', '5', ...w1, ...w2]).code, 2);
});

t.test('usage errors exit 2', async (t) => {
  t.equal(verify([]).code, 2);
  t.equal(verify(['--expect-seq', 'many', path.join(root, 'x')]).code, 2);
  t.equal(verify(['--key', path.join(root, 'no-such-key.pem'), path.join(root, 'x')]).code, 2);
});
