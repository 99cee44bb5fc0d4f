// The verifier and the chain math as pure functions over lines, no files: trails built in the
// documented format (test/helpers/audit-trail.ts) and cut, reordered, forged or mixed, each asserted
// down to the file and line reported and whether it fails (exit 1) or is unsealed (exit 3).
import { createPublicKey } from 'node:crypto';
import t from 'tap';
import {
  chainLine,
  CHECKPOINT_SIGNING_PREFIX,
  GENESIS_HASH,
  hashMatches,
  signedPart,
  splitLine,
  withSignature,
} from '../../src/observe/audit-chain.js';
import { keyIdOf, type AuditVerifyKey } from '../../src/observe/audit-key.js';
import { AUDIT_EXTRAS, AUDIT_FIELDS, checkpointRecord, eventRecord } from '../../src/observe/audit-record.js';
import { formatVerifyReport, verifyTrail, type TrailFile, type VerifyReport } from '../../src/observe/audit-verify.js';
import { buildTrail, CHECKPOINT_SIGNING_PREFIX as DOCUMENTED_PREFIX, edit, rechain, resign, testKey } from '../helpers/audit-trail.js';

const key = testKey();
const other = testKey();
const verifyKey = (k: typeof key): AuditVerifyKey => ({ keyId: k.keyId, publicKey: createPublicKey(k.privateKey) });
const keys = [verifyKey(key)];

/** Files in memory, named like rotated files (oldest first: f3, f2, f1, f0). */
function trailFiles(files: string[][], prefix = 'f'): TrailFile[] {
  return files.map((lines, i) => ({
    name: `${prefix}${files.length - 1 - i}`,
    lines: () => lines.map((text) => ({ text, terminated: true })),
  }));
}
const lastOf = (lines: string[]) => JSON.parse(lines.at(-1)!) as { seq: number; hash: string };
const rechainFrom = (files: string[][], from: number): void => {
  for (let i = from; i < files.length; i++) files[i] = rechain(files[i]!, i === 0 ? undefined : lastOf(files[i - 1]!).hash);
};
const brief = (r: VerifyReport) => ({ status: r.status, problems: r.problems, unsealed: r.unsealed });

t.test('chain math: a line splits back into the canonical text; the signature is over the documented message', async (t) => {
  const record = { a: 1, prev: GENESIS_HASH };
  const { line, hash } = chainLine(record);
  t.equal(line, `{"a":1,"prev":"${GENESIS_HASH}","hash":"${hash}"}\n`);
  const parts = splitLine(line.slice(0, -1))!;
  t.same(parts, { canonical: JSON.stringify(record), hash });
  t.ok(hashMatches(GENESIS_HASH, parts.canonical, hash));
  t.notOk(hashMatches('1'.repeat(64), parts.canonical, hash));
  t.equal(splitLine('{"a":1}'), null);
  t.equal(CHECKPOINT_SIGNING_PREFIX, DOCUMENTED_PREFIX, 'the prefix the README documents');
  const sig = 'A'.repeat(86) + '==';
  const signed = withSignature({ x: 'y', prev: GENESIS_HASH }, sig);
  t.same(Object.keys(signed), ['x', 'signature', 'prev']);
  t.same(signedPart(JSON.stringify(signed)), {
    message: CHECKPOINT_SIGNING_PREFIX + JSON.stringify({ x: 'y', prev: GENESIS_HASH }),
    signature: sig,
  });
  t.equal(signedPart(JSON.stringify({ x: 'y', prev: GENESIS_HASH })), null, 'no signature');
  t.equal(signedPart(JSON.stringify({ signature: sig, x: 'y', prev: GENESIS_HASH })), null, 'not just before prev');
});

t.test('record layout: events and checkpoints in the one field order', async (t) => {
  const at = { seq: 7, prev: GENESIS_HASH, instance: 'i', policySha256: null };
  const event = eventRecord({ type: 'net.req', where: 'query', detail: 'd' }, at, (s) => s);
  t.same(Object.keys(event), [...AUDIT_FIELDS, 'where', 'detail', 'prev']);
  const checkpoint = checkpointRecord('break', key.keyId, at, 'why');
  t.same(Object.keys(withSignature(checkpoint, 'x')), [...AUDIT_FIELDS, 'detail', 'checkpoint', 'key_id', 'signature', 'prev']);
  t.same(AUDIT_EXTRAS, ['where', 'detail', 'expected_sha256', 'via', 'mcp_method', 'mcp_name', 'checkpoint', 'key_id', 'signature']);
  t.equal(keyIdOf(createPublicKey(key.privateKey)), key.keyId, 'key id: sha256 of the DER SubjectPublicKeyInfo, 16 hex digits');
});

t.test('an intact trail: ok, in any order, with a summary per trail', async (t) => {
  const files = trailFiles(buildTrail({ key, records: 25, perFile: 9 }));
  const report = verifyTrail([...files].reverse(), { keys });
  t.same(brief(report), { status: 'ok', problems: [], unsealed: [] });
  t.match(report.trails, [{ files: files.map((f) => f.name), firstSeq: 1, sealed: true, instances: ['test-instance'], keyIds: [key.keyId] }]);
  t.equal(report.trails.length, 1);
  t.match(
    formatVerifyReport(report, { keysGiven: true }).stdout,
    /^ok: \d+ records, seq 1\.\.\d+ in \d+ files; signed by key [0-9a-f]{16} \(\d+ checkpoints\), sealed; instance test-instance\n$/,
  );
  t.match(formatVerifyReport(verifyTrail(files), { keysGiven: false }).stdout, /sealed \(signatures not checked: no --key\)/);
});

t.test('a cut head fails at its first line; a pruned head (opened by rotate) does not', async (t) => {
  const files = buildTrail({ key, records: 25, perFile: 9 });
  files[0] = files[0]!.slice(5);
  const r = verifyTrail(trailFiles(files), { keys });
  t.equal(r.status, 'failed');
  t.match(r.problems, [
    { file: trailFiles(files)[0]!.name, line: 1, why: /^first record \(seq 6\) is neither the genesis nor a checkpoint that opens a file/ },
  ]);
  t.equal(r.problems.length, 1);
  const pruned = trailFiles(buildTrail({ key, records: 25, perFile: 9 })).slice(1);
  t.equal(verifyTrail(pruned, { keys }).status, 'ok');
  // Two runs in one file; cut up to the second run's start checkpoint: a start does not open a file.
  const first = buildTrail({ key, records: 3 })[0]!;
  const second = buildTrail({ key, records: 2, instance: 'second' })[0]!;
  const base = lastOf(first).seq;
  const joined = [
    ...first,
    ...rechain(
      second.map((l, i) => edit(l, { seq: base + 1 + i })),
      lastOf(first).hash,
      key,
    ),
  ];
  t.equal(verifyTrail(trailFiles([joined]), { keys }).status, 'ok', 'two sealed runs');
  const cut = verifyTrail(trailFiles([joined.slice(first.length)]), { keys });
  t.match(cut.problems, [{ line: 1, why: /neither the genesis nor a checkpoint that opens a file/ }]);
});

t.test('a cut tail is unsealed (its own status), and fails against an anchor', async (t) => {
  const files = buildTrail({ key, records: 25 });
  const lastSeq = lastOf(files[0]!).seq;
  files[0] = files[0]!.slice(0, -5);
  const r = verifyTrail(trailFiles(files), { keys });
  t.equal(r.status, 'unsealed');
  t.same(r.problems, []);
  t.match(r.unsealed, [
    { file: 'f0', line: files[0].length, why: /after the last checkpoint \(seq \d+, periodic, f0:\d+\) and no shutdown checkpoint/ },
  ]);
  t.match(formatVerifyReport(r, { keysGiven: true }).stderr, /^f0:\d+: unsealed: /);
  t.match(formatVerifyReport(r, { keysGiven: true }).stdout, /^unsealed: /);
  const anchored = verifyTrail(trailFiles(files), { keys, expectSeq: lastSeq });
  t.equal(anchored.status, 'failed');
  t.match(anchored.problems, [
    { file: 'f0', why: new RegExp(`anchor says seq ${lastSeq}: records ${lastSeq - 4}\\.\\.${lastSeq} are missing`) },
  ]);
  t.equal(verifyTrail(trailFiles(files), { keys, expectSeq: lastSeq - 5 }).status, 'unsealed', 'an anchor it reaches');
});

t.test('missing rotated files, copies and forks', async (t) => {
  const files = trailFiles(buildTrail({ key, records: 40, perFile: 9 }));
  const gap = verifyTrail([files[3]!, files[0]!, files[2]!], { keys });
  t.same(gap.problems, [
    {
      file: files[2]!.name,
      line: 1,
      why: `seq 10..18 are missing between ${files[0]!.name} and ${files[2]!.name} (instance test-instance): a rotated file was deleted or not given`,
    },
  ]);
  const copy = verifyTrail([...files, { ...files[1]!, name: 'copy' }], { keys });
  t.equal(copy.status, 'failed');
  t.match(copy.problems[0], { file: 'copy', why: `ends with the same record (seq 18) as ${files[1]!.name}: a copy` });
  // Unsigned: the same gap is named as missing, not as a cut head.
  const plain = trailFiles(buildTrail({ key: null, records: 30, perFile: 9 }));
  t.match(verifyTrail([plain[0]!, plain[2]!, plain[3]!]).problems, [{ file: plain[2]!.name, why: /are missing between/ }]);
});

t.test('forgeries: another key, a signature that does not verify, a relabelled checkpoint', async (t) => {
  const files = buildTrail({ key, records: 20 });
  const at = files[0]!.findIndex((l) => l.includes('"checkpoint":"periodic"'));
  // The forger re-signs one checkpoint; everything after it is re-chained (and signed) as sluice would.
  const forged = resign(files[0]![at]!, other);
  const foreign = [[...files[0]!.slice(0, at), forged, ...rechain(files[0]!.slice(at + 1), lastOf([forged]).hash, key)]];
  t.match(verifyTrail(trailFiles(foreign), { keys }).problems, [
    { file: 'f0', line: at + 1, why: `checkpoint signed by another key (key id ${other.keyId}; --key is ${key.keyId})` },
  ]);
  t.equal(verifyTrail(trailFiles(foreign), { keys: [...keys, verifyKey(other)] }).status, 'ok', 'both keys given: both accepted');
  const claimed = [[...files[0]!]];
  claimed[0]![at] = resign(claimed[0]![at]!, other, key.keyId);
  rechainFrom(claimed, 0);
  t.match(verifyTrail(trailFiles(claimed), { keys }).problems, [{ file: 'f0', line: at + 1, why: /signature does not verify/ }]);
  const relabelled = [rechain([...files[0]!.slice(0, at), edit(files[0]![at]!, { checkpoint: 'shutdown' })])];
  t.match(verifyTrail(trailFiles(relabelled), { keys }).problems, [{ line: at + 1, why: /signature does not verify/ }]);
  t.equal(verifyTrail(trailFiles(relabelled)).status, 'ok', 'without a key a relabelled checkpoint cannot be told');
  const noSignature = [rechain(files[0]!.map((l, i) => (i === at ? edit(l, { signature: 'short' }) : l)))];
  t.match(verifyTrail(trailFiles(noSignature)).problems, [{ line: at + 1, why: /"signature" is missing, malformed/ }]);
});

t.test('runs: instances must match within a run; a break in the middle marks the run before it unsealed', async (t) => {
  const [lines] = buildTrail({ key, records: 12, every: 5 });
  const mixed = [rechain(lines!.map((l, i) => (i === 3 ? edit(l, { instance: 'intruder' }) : l)))];
  t.match(verifyTrail(trailFiles(mixed)).problems, [
    { line: 4, why: 'instance intruder in the run of instance test-instance (records of two processes mixed)' },
  ]);

  // A crashed run (no shutdown) continued by a new file that opens with a break.
  const crashed = buildTrail({ key, records: 7, every: 5, sealed: false })[0]!;
  const next = buildTrail({ key, records: 2, instance: 'after' })[0]!;
  const base = lastOf(crashed).seq;
  const opened = [edit(next[0]!, { seq: base + 1, checkpoint: 'break', detail: 'f1 ends with no shutdown checkpoint' }), ...next.slice(1)];
  const files = [
    crashed,
    rechain(
      opened.map((l, i) => edit(l, { seq: base + 1 + i })),
      lastOf(crashed).hash,
      key,
    ),
  ];
  const together = verifyTrail(trailFiles(files), { keys });
  t.same(together.problems, []);
  t.equal(together.status, 'unsealed');
  t.match(together.unsealed, [
    {
      file: 'f1',
      line: crashed.length,
      why: /^the run ended with no shutdown checkpoint: 2 records after the last checkpoint .*; f0:1 records the break$/,
    },
  ]);
  const alone = verifyTrail(trailFiles([files[1]!]), { keys });
  t.equal(alone.status, 'ok');
  t.match(alone.notes, ['f0:1: opens with a break: f1 ends with no shutdown checkpoint']);
});

t.test('several trails verify together; an anchor needs exactly one', async (t) => {
  const w1 = trailFiles(buildTrail({ key, records: 20, perFile: 9, instance: 'w1' }), 'w1.');
  const w2 = trailFiles(buildTrail({ key, records: 10, perFile: 9, instance: 'w2' }), 'w2.');
  const both = verifyTrail([...w2, ...w1], { keys });
  t.equal(both.status, 'ok');
  t.same(
    both.trails.map((tr) => tr.instances),
    [['w2'], ['w1']],
  );
  t.match(verifyTrail([...w1, ...w2], { keys, expectSeq: 3 }).usage, /one trail/);
  t.equal(verifyTrail(w1, { keys, expectSeq: 3 }).status, 'ok');
});

t.test('unsigned trails; keys demand signatures; empty input', async (t) => {
  const plain = trailFiles(buildTrail({ key: null, records: 5 }));
  const r = verifyTrail(plain);
  t.same(brief(r), { status: 'ok', problems: [], unsealed: [] });
  t.match(
    formatVerifyReport(r, { keysGiven: false }).stdout,
    /^ok: 5 records, seq 1\.\.5; unsigned \(no checkpoints: written without --audit-key\), so a cut tail cannot be detected; instance test-instance\n$/,
  );
  t.match(verifyTrail(plain, { keys }).problems, [{ why: 'no checkpoint: this trail is not signed (written without --audit-key)' }]);
  const empty: TrailFile = { name: 'empty', lines: () => [] };
  t.same(brief(verifyTrail([empty])), { status: 'ok', problems: [], unsealed: [] });
  t.match(verifyTrail([empty]).notes, ['empty: empty']);
  t.match(verifyTrail([empty], { keys }).problems, [{ why: 'no records' }]);
});

t.test('structure: rotate and break checkpoints only open a file; a start needs a sealed run before it', async (t) => {
  const [lines] = buildTrail({ key, records: 6, every: 3 });
  const kind = (k: string) => (l: string) => l.includes(`"checkpoint":"${k}"`);
  const at = lines!.findIndex(kind('periodic'));
  const moved = [lines!.map((l, i) => (i === at ? resign(edit(l, { checkpoint: 'rotate' }), key) : l))];
  rechainFrom(moved, 0);
  // The re-chain breaks later signatures; only the first problem of the file is reported.
  t.match(verifyTrail(trailFiles(moved)).problems, [
    { line: at + 1, why: `a rotate checkpoint opens a file, but this one is at line ${at + 1}` },
  ]);
  const started = [lines!.map((l, i) => (i === at ? edit(l, { checkpoint: 'start' }) : l))];
  rechainFrom(started, 0);
  t.match(verifyTrail(trailFiles(started)).problems, [
    { line: at + 1, why: 'a start checkpoint continues a run that no shutdown checkpoint sealed' },
  ]);
});
