import fs from 'node:fs';
import path from 'node:path';
import { createHash, verify as cryptoVerify } from 'node:crypto';
import t from 'tap';
import fc from '../helpers/fc.js';
import { AuditSink, type AuditSinkOptions } from '../../src/observe/audit.js';
import { CHECKPOINT_SIGNING_PREFIX, GENESIS_HASH } from '../../src/observe/audit-chain.js';
import { generateAuditKeys, loadAuditSigner, loadAuditVerifyKey, type AuditSigner, type AuditVerifyKey } from '../../src/observe/audit-key.js';
import { AUDIT_FIELD_MAX, AUDIT_FIELDS, boundField, redactQuery } from '../../src/observe/audit-record.js';
import { formatVerifyReport, verifyAuditFiles, type VerifyReport } from '../../src/observe/audit-verify.js';
import type { AuditInput } from '../../src/observe/events.js';
import { waitFor } from '../helpers/wait.js';

const POLICY = 'a'.repeat(64);
const FIELD_ORDER = [...AUDIT_FIELDS];
/** What a verify report says, in short; intact() is that of one intact trail. */
const summary = (r: VerifyReport) => ({
  status: r.status,
  problems: r.problems,
  unsealed: r.unsealed,
  trails: r.trails.map(({ records, firstSeq, lastSeq, checkpoints }) => ({ records, firstSeq, lastSeq, checkpoints })),
});
const intact = (records: number, firstSeq: number, lastSeq: number, checkpoints = 0) => ({
  status: 'ok',
  problems: [],
  unsealed: [],
  trails: [{ records, firstSeq, lastSeq, checkpoints }],
});

function requestEvent(i: number): AuditInput {
  return {
    type: 'net.req',
    request_id: `req-${i}`,
    tool: 'web-fetch',
    decision: 'allow',
    method: 'GET',
    scheme: 'https',
    host: 'api.github.com',
    port: 443,
    path: `/repos/${i}`,
    ip: '140.82.112.5',
    status: 200,
    bytes_up: 10,
    bytes_down: 100 + i,
    duration_ms: 12,
    rule: 'web-fetch.allow[0]',
  };
}

async function writeEvents(opts: AuditSinkOptions, count: number, from = 0): Promise<void> {
  const sink = await AuditSink.open(opts);
  for (let i = from; i < from + count; i++) sink.write(requestEvent(i), POLICY);
  await sink.close();
}

function lines(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
}

function writeLines(file: string, content: string[]): void {
  fs.writeFileSync(file, content.map((l) => `${l}\n`).join(''));
}

t.test('redactQuery keeps keys and replaces values', async (t) => {
  const cases: Array<[string, string]> = [
    ['/a', '/a'],
    ['/a?q=x', '/a?q=REDACTED'],
    ['/a?q=x&token=secret', '/a?q=REDACTED&token=REDACTED'],
    ['/a?flag&k=', '/a?flag&k=REDACTED'],
    ['/a?k=v=w', '/a?k=REDACTED'],
    ['/?', '/?'],
    ['/a?x=1?y=2', '/a?x=REDACTED'],
  ];
  for (const [input, expected] of cases) t.equal(redactQuery(input), expected, input);
  fc.assert(
    fc.property(fc.string(), fc.string({ minLength: 1 }), (key, value) => {
      const safeKey = key.replace(/[&=?]/g, '');
      const out = redactQuery(`/p?${safeKey}=${value.replace(/&/g, '')}`);
      return out === `/p?${safeKey}=REDACTED`;
    }),
  );
});

t.test('100 chained events verify; fields complete and in order', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file }, 100);
  const all = lines(file);
  t.equal(all.length, 100);
  t.same(summary(verifyAuditFiles([file])), intact(100, 1, 100));
  t.match(formatVerifyReport(verifyAuditFiles([file]), { keysGiven: false }).stdout, /^ok: 100 records, seq 1\.\.100; unsigned/);

  const first = JSON.parse(all[0]!);
  t.same(Object.keys(first), [...FIELD_ORDER, 'prev', 'hash']);
  t.equal(first.seq, 1);
  t.match(first.instance, /^[0-9a-f]{12}$/, 'a random instance id by default');
  t.equal(first.prev, GENESIS_HASH);
  t.equal(first.secret, null, 'absent field is null');
  t.equal(first.reason, null);
  t.equal(first.policy_sha256, POLICY);
  t.match(first.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  // The documented canonical form, recomputed independently.
  const { hash, ...withoutHash } = first;
  t.equal(
    hash,
    createHash('sha256')
      .update(GENESIS_HASH + JSON.stringify(withoutHash))
      .digest('hex'),
  );
  const second = JSON.parse(all[1]!);
  t.equal(second.seq, 2);
  t.equal(second.prev, first.hash);
});

t.test('extras appear only when set, between policy_sha256 and prev', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const sink = await AuditSink.open({ file });
  sink.write({ type: 'secret.use', tool: 'web-fetch', secret: 'github', where: 'header:Authorization' }, POLICY);
  sink.write({ type: 'policy.reload_failed', detail: 'bad yaml at line 3', expected_sha256: 'b'.repeat(64) }, null);
  sink.write({ type: 'policy.load' }, POLICY);
  await sink.close();
  const [use, failed, load] = lines(file).map((l) => JSON.parse(l));
  t.same(Object.keys(use), [...FIELD_ORDER, 'where', 'prev', 'hash']);
  t.equal(use.where, 'header:Authorization');
  t.same(Object.keys(failed), [...FIELD_ORDER, 'detail', 'expected_sha256', 'prev', 'hash']);
  t.equal(failed.policy_sha256, null);
  t.same(Object.keys(load), [...FIELD_ORDER, 'prev', 'hash']);
  t.equal(load.tool, null);
  t.equal(verifyAuditFiles([file]).ok, true);
});

t.test('every record carries the instance: the one given, or a random one per sink', async (t) => {
  const dir = t.testdir();
  await writeEvents({ file: path.join(dir, 'a.log'), instance: 'edge-1' }, 3);
  t.same(
    lines(path.join(dir, 'a.log')).map((l) => JSON.parse(l).instance),
    ['edge-1', 'edge-1', 'edge-1'],
  );
  await writeEvents({ file: path.join(dir, 'b.log') }, 1);
  await writeEvents({ file: path.join(dir, 'c.log') }, 1);
  t.not(JSON.parse(lines(path.join(dir, 'b.log'))[0]!).instance, JSON.parse(lines(path.join(dir, 'c.log'))[0]!).instance);
});

t.test('tampering is reported at the exact line', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file }, 100);
  const original = lines(file);

  t.test('deleting line 37 fails at line 37 (where record 38 now sits)', async (t) => {
    const edited = path.join(dir, 'deleted.log');
    writeLines(
      edited,
      original.filter((_, i) => i !== 36),
    );
    const result = verifyAuditFiles([edited]);
    t.same(result.problems, [{ file: edited, line: 37, why: 'seq 38 follows seq 36 (a record is missing, added or out of order)' }]);
    t.equal(
      formatVerifyReport(result, { keysGiven: false }).stderr,
      `${edited}:37: seq 38 follows seq 36 (a record is missing, added or out of order)\n`,
    );
  });

  t.test('editing a field fails at that line', async (t) => {
    const edited = path.join(dir, 'edited.log');
    writeLines(
      edited,
      original.map((l, i) => (i === 49 ? l.replace('"status":200', '"status":403') : l)),
    );
    t.same(verifyAuditFiles([edited]).problems, [{ file: edited, line: 50, why: 'hash mismatch (record altered)' }]);
  });

  t.test('editing a record and re-hashing it breaks the next link', async (t) => {
    const edited = path.join(dir, 'rehashed.log');
    const record = JSON.parse(original[19]!);
    const { hash: _old, ...rest } = record;
    rest.host = 'evil.example';
    const canonical = JSON.stringify(rest);
    const hash = createHash('sha256')
      .update(rest.prev + canonical)
      .digest('hex');
    const forged = `${canonical.slice(0, -1)},"hash":"${hash}"}`;
    writeLines(
      edited,
      original.map((l, i) => (i === 19 ? forged : l)),
    );
    t.same(verifyAuditFiles([edited]).problems, [{ file: edited, line: 21, why: "prev does not match the previous record's hash" }]);
  });

  t.test('swapping two lines fails at the first of them', async (t) => {
    const edited = path.join(dir, 'swapped.log');
    const swapped = [...original];
    [swapped[9], swapped[10]] = [swapped[10]!, swapped[9]!];
    writeLines(edited, swapped);
    t.same(verifyAuditFiles([edited]).problems, [
      { file: edited, line: 10, why: 'seq 11 follows seq 9 (a record is missing, added or out of order)' },
    ]);
  });

  t.test('garbage, blank and torn lines', async (t) => {
    const garbage = path.join(dir, 'garbage.log');
    writeLines(garbage, [original[0]!, 'not json', original[2]!]);
    t.same(verifyAuditFiles([garbage]).problems, [{ file: garbage, line: 2, why: 'not JSON' }]);
    const blank = path.join(dir, 'blank.log');
    writeLines(blank, [original[0]!, '', original[1]!]);
    t.same(verifyAuditFiles([blank]).problems, [{ file: blank, line: 2, why: 'empty line' }]);
    const torn = path.join(dir, 'torn.log');
    fs.writeFileSync(torn, `${original[0]}\n${original[1]!.slice(0, 40)}`);
    t.same(verifyAuditFiles([torn]).problems, [{ file: torn, line: 2, why: 'incomplete last record (no newline)' }]);
    const noHash = path.join(dir, 'nohash.log');
    writeLines(noHash, [original[0]!.replace(/,"hash":"[0-9a-f]{64}"\}$/, '}')]);
    t.same(verifyAuditFiles([noHash]).problems, [{ file: noHash, line: 1, why: '"hash" is missing or not the last field' }]);
    const badStart = path.join(dir, 'badstart.log');
    const firstRecord = JSON.parse(original[0]!);
    writeLines(badStart, [original[0]!.replace(firstRecord.prev, 'f'.repeat(64))]);
    t.same(verifyAuditFiles([badStart]).problems, [{ file: badStart, line: 1, why: 'first record (seq 1) must have prev of 64 zeros' }]);
    t.same(verifyAuditFiles([path.join(dir, 'missing.log')]).problems, [
      { file: path.join(dir, 'missing.log'), line: 0, why: 'cannot read (ENOENT)' },
    ]);
    t.same(verifyAuditFiles([dir]).problems, [{ file: dir, line: 0, why: 'cannot read (not a regular file)' }]);
  });
});

t.test('reopening appends and continues seq and prev', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file }, 5);
  const sink = await AuditSink.open({ file });
  t.equal(sink.head.seq, 5);
  sink.write(requestEvent(5), POLICY);
  await sink.close();
  const all = lines(file).map((l) => JSON.parse(l));
  t.equal(all.length, 6);
  t.equal(all[5].seq, 6);
  t.equal(all[5].prev, all[4].hash);
  t.same(summary(verifyAuditFiles([file])), intact(6, 1, 6));
  t.throws(() => sink.write(requestEvent(6), POLICY), { code: 'AUDIT_CLOSED' });
});

t.test('open refuses a torn or foreign tail', async (t) => {
  const dir = t.testdir();
  const torn = path.join(dir, 'torn.log');
  fs.writeFileSync(torn, '{"seq":1,"hash":"ab');
  await t.rejects(AuditSink.open({ file: torn }), { code: 'AUDIT_TORN_TAIL' });
  const foreign = path.join(dir, 'foreign.log');
  fs.writeFileSync(foreign, 'hello\n');
  await t.rejects(AuditSink.open({ file: foreign }), { code: 'AUDIT_BAD_TAIL' });
  const noSeq = path.join(dir, 'noseq.log');
  fs.writeFileSync(noSeq, '{"hash":"x"}\n');
  await t.rejects(AuditSink.open({ file: noSeq }), { code: 'AUDIT_BAD_TAIL' });
});

t.test('a long last line is found by reading the tail backwards', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const sink = await AuditSink.open({ file });
  sink.write(requestEvent(0), POLICY);
  sink.write({ type: 'policy.reload_failed', detail: 'x'.repeat(200_000) }, POLICY);
  await sink.close();
  const again = await AuditSink.open({ file });
  t.equal(again.head.seq, 2);
  again.write(requestEvent(2), POLICY);
  await again.close();
  t.same(summary(verifyAuditFiles([file])), intact(3, 1, 3));
});

t.test('rotation keeps one chain across files', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file, maxBytes: 4096 }, 60);
  const rotated = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('audit.log.'))
    .sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
  t.ok(rotated.length >= 3, `several rotated files (${rotated.length})`);
  const ordered = [...rotated.map((f) => path.join(dir, f)), file];
  for (const f of ordered) t.ok(fs.statSync(f).size <= 4096, `${path.basename(f)} within maxBytes`);
  const total = ordered.reduce((n, f) => n + lines(f).length, 0);
  t.equal(total, 60);
  t.same(summary(verifyAuditFiles(ordered)), intact(60, 1, 60));

  const firstOfCurrent = JSON.parse(lines(file)[0]!);
  const lastOfPrevious = JSON.parse(lines(ordered[ordered.length - 2]!).pop()!);
  t.equal(firstOfCurrent.prev, lastOfPrevious.hash, 'fresh file chains onto the rotated one');

  t.same(summary(verifyAuditFiles([...ordered].reverse())), intact(60, 1, 60), 'in any order');
  const withoutMiddle = ordered.filter((_, i) => i !== 1);
  const result = verifyAuditFiles(withoutMiddle);
  t.equal(result.ok, false);
  t.equal(result.problems.length, 1);
  t.match(result.problems[0], {
    file: ordered[2],
    line: 1,
    why: /^seq \d+\.\.\d+ are missing between .* a rotated file was deleted or not given$/,
  });

  // Restart after rotation continues the same chain.
  await writeEvents({ file, maxBytes: 4096 }, 5, 60);
  const after = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('audit.log.'))
    .sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
  t.same(summary(verifyAuditFiles([...after.map((f) => path.join(dir, f)), file])), intact(65, 1, 65));
});

t.test('rotation keeps at most `keep` files; unsigned, a pruned chain cannot be told from a cut one', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file, maxBytes: 1024, keep: 2 }, 40);
  const names = fs.readdirSync(dir).sort();
  t.same(names, ['audit.log', 'audit.log.1', 'audit.log.2']);
  const result = verifyAuditFiles([path.join(dir, 'audit.log.2'), path.join(dir, 'audit.log.1'), file]);
  t.equal(result.ok, false);
  t.match(result.problems, [{ file: path.join(dir, 'audit.log.2'), line: 1, why: /neither the genesis nor a checkpoint/ }]);
});

t.test('an empty current file after rotation continues from audit.log.1', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file }, 3);
  fs.renameSync(file, `${file}.1`);
  fs.writeFileSync(file, '');
  await writeEvents({ file }, 2, 3);
  t.same(summary(verifyAuditFiles([`${file}.1`, file])), intact(5, 1, 5));
});

t.test('close() loses nothing written just before it', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  for (const fsync of ['never', 'always', 'interval'] as const) {
    const sink = await AuditSink.open({ file, fsync });
    for (let i = 0; i < 10_000; i++) sink.write(requestEvent(i), POLICY);
    await sink.close();
  }
  t.equal(lines(file).length, 30_000);
  t.same(summary(verifyAuditFiles([file])), intact(30_000, 1, 30_000));
});

t.test('flush() resolves with every record on disk', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const sink = await AuditSink.open({ file, maxBytes: 256 * 1024 });
  for (let i = 0; i < 2000; i++) sink.write(requestEvent(i), POLICY);
  await sink.flush();
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('audit.log'));
  t.ok(files.length > 1 && files.length <= 11, `rotated, none pruned (${files.length} files)`);
  const count = files.reduce((n, f) => n + lines(path.join(dir, f)).length, 0);
  t.equal(count, 2000);
  await sink.close();
});

t.test('scrub keeps secret values out of the file; query values redacted', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const secretValue = 'ghp_FAKE0123456789abcdef';
  const sink = await AuditSink.open({ file, scrub: (s) => s.split(secretValue).join('__sluice_secret_github__') });
  sink.write(
    {
      type: 'policy.violation',
      tool: 'web-fetch',
      decision: 'deny',
      reason: 'secret_leak',
      host: `${secretValue}.evil.example`,
      path: `/x/${secretValue}?token=${secretValue}&q=hello`,
      detail: `saw ${secretValue} in the body`,
    },
    POLICY,
  );
  await sink.close();
  const text = fs.readFileSync(file, 'utf8');
  t.notOk(text.includes(secretValue), 'secret value absent');
  t.notOk(text.includes('hello'), 'query value absent');
  const record = JSON.parse(text);
  t.equal(record.path, '/x/__sluice_secret_github__?token=REDACTED&q=REDACTED');
  t.equal(record.detail, 'saw __sluice_secret_github__ in the body');
  t.equal(record.host, '__sluice_secret_github__.evil.example');
  t.equal(verifyAuditFiles([file]).ok, true);
});

t.test('tool-chosen fields are cut at their bound with a marker and the original length; lifecycle details are whole', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const secretValue = 'ghp_FAKE0123456789abcdef';
  const sink = await AuditSink.open({ file, scrub: (s) => s.split(secretValue).join('__sluice_secret_github__') });
  const path30k = `/${'p'.repeat(30_000)}`;
  sink.write(
    {
      ...requestEvent(0),
      type: 'policy.violation',
      path: path30k,
      detail: `${'d'.repeat(5000)}${secretValue}`,
      where: `header:X-${'w'.repeat(1000)}`,
      host: 'h'.repeat(300),
      tool: 't'.repeat(300),
    },
    POLICY,
  );
  sink.write({ type: 'policy.reload_failed', detail: 'e'.repeat(5000) }, POLICY);
  await sink.close();
  const [first, second] = lines(file).map((l) => JSON.parse(l) as Record<string, string>);
  t.equal(first!.path, `${path30k.slice(0, AUDIT_FIELD_MAX.path)}…[cut, ${path30k.length} chars]`, 'path: 2048 characters and a marker');
  const scrubbedDetailLength = 5000 + '__sluice_secret_github__'.length;
  t.equal(first!.detail, `${'d'.repeat(AUDIT_FIELD_MAX.detail)}…[cut, ${scrubbedDetailLength} chars]`, 'detail: cut after the scrub');
  for (const key of ['where', 'host', 'tool']) {
    t.ok(first![key]!.length <= AUDIT_FIELD_MAX.other + 20, `${key} bounded`);
    t.match(first![key], /…\[cut, \d+ chars\]$/, `${key} marked`);
  }
  t.equal(second!.detail, 'e'.repeat(5000), 'a lifecycle detail is kept whole');
  t.ok(lines(file)[0]!.length < 5000, 'the record is small');
  t.equal(verifyAuditFiles([file]).ok, true, 'the chain verifies');
  t.equal(boundField('short', 10), 'short');
  t.equal(boundField(`${'a'.repeat(9)}\u{1F600}`, 10), `${'a'.repeat(9)}…[cut, 11 chars]`, 'a surrogate pair is never split');
});

t.test('a failing destination is reported once and later writes throw', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const errors: Error[] = [];
  const sink = await AuditSink.open({ file, maxBytes: 512, keep: 1, onError: (err) => errors.push(err) });
  sink.write(requestEvent(0), POLICY);
  // Rotation cannot rename the file onto a non-empty directory that is in the way.
  fs.mkdirSync(`${file}.1`);
  fs.writeFileSync(path.join(`${file}.1`, 'x'), 'x');
  sink.write(requestEvent(1), POLICY);
  t.equal(errors.length, 1);
  t.throws(() => sink.write(requestEvent(2), POLICY), { code: 'AUDIT_WRITE_FAILED' });
  await t.rejects(sink.close(), { code: 'AUDIT_WRITE_FAILED' });
  t.equal(lines(file).length, 2, 'the record written at the failed rotation still landed');
});

t.test('stdout destination writes the same chained records', async (t) => {
  const dir = t.testdir({
    'child.ts': `import { AuditSink } from ${JSON.stringify(path.resolve('src/observe/audit.js'))};
const sink = await AuditSink.open({ stdout: true });
for (let i = 0; i < 3; i++) sink.write({ type: 'net.req', tool: 'ci', path: '/p?k=v' }, null);
await sink.close();
`,
  });
  const { spawnSync } = await import('node:child_process');
  const child = spawnSync(process.execPath, [...process.execArgv, path.join(dir, 'child.ts')], { encoding: 'utf8' });
  t.equal(child.status, 0, child.stderr);
  const out = path.join(dir, 'stdout.log');
  fs.writeFileSync(out, child.stdout);
  t.same(summary(verifyAuditFiles([out])), intact(3, 1, 3));
  t.equal(JSON.parse(lines(out)[0]!).path, '/p?k=REDACTED');
});

// --- signed checkpoints (issue 19) ---------------------------------------------------------

function keys(dir: string): { signer: AuditSigner; key: AuditVerifyKey } {
  const { privateFile, publicFile } = generateAuditKeys(path.join(dir, 'keys'));
  return { signer: loadAuditSigner(privateFile), key: loadAuditVerifyKey(publicFile) };
}

const records = (file: string) => lines(file).map((l) => JSON.parse(l));
const kinds = (file: string) =>
  records(file)
    .filter((r) => r.type === 'audit.checkpoint')
    .map((r) => `${r.seq}:${r.checkpoint}`);

t.test('a signed sink: start, a checkpoint every N records, shutdown; each signed over its record', async (t) => {
  const dir = t.testdir();
  const { signer, key } = keys(dir);
  const file = path.join(dir, 'audit.log');
  const sink = await AuditSink.open({ file, signer, checkpointRecords: 3, instance: 'i-1' });
  t.same(sink.opening, { kind: 'fresh' });
  for (let i = 0; i < 7; i++) sink.write(requestEvent(i), POLICY);
  const head = sink.lastCheckpoint!;
  await sink.close();
  // seq 1 start; records 2-4, checkpoint 5; 6-8, checkpoint 9; 10, shutdown 11.
  t.same(kinds(file), ['1:start', '5:periodic', '9:periodic', '11:shutdown']);
  const all = records(file);
  const periodic = all[8];
  t.same(Object.keys(periodic), [...FIELD_ORDER, 'checkpoint', 'key_id', 'signature', 'prev', 'hash']);
  t.match(periodic, { type: 'audit.checkpoint', instance: 'i-1', key_id: signer.keyId, policy_sha256: POLICY, tool: null });
  t.match(head, { seq: 9, checkpoint: 'periodic', hash: periodic.hash, prev: periodic.prev, signature: periodic.signature, key_id: key.keyId });
  // The signature is over the documented message, checked here with node:crypto directly.
  const { hash: _hash, signature, ...unsigned } = periodic;
  t.ok(cryptoVerify(null, Buffer.from(CHECKPOINT_SIGNING_PREFIX + JSON.stringify(unsigned)), key.publicKey, Buffer.from(signature, 'base64')));
  t.same(summary(verifyAuditFiles([file], { keys: [key] })), intact(11, 1, 11, 4));
  t.match(verifyAuditFiles([file], { keys: [key] }).trails, [{ sealed: true, instances: ['i-1'], keyIds: [key.keyId] }]);
});

t.test('a signed sink checkpoints every T ms when records were written', async (t) => {
  const dir = t.testdir();
  const { signer } = keys(dir);
  const file = path.join(dir, 'audit.log');
  const sink = await AuditSink.open({ file, signer, checkpointIntervalMs: 20 });
  sink.write(requestEvent(0), POLICY);
  await waitFor(() => sink.lastCheckpoint?.checkpoint === 'periodic', 'a timed checkpoint');
  t.equal(sink.lastCheckpoint!.seq, 3);
  await sink.close();
  t.same(kinds(file), ['1:start', '3:periodic', '4:shutdown']);
});

t.test('signed rotation: every new file opens with a rotate checkpoint; verified in any order; pruned still ok', async (t) => {
  const dir = t.testdir();
  const { signer, key } = keys(dir);
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file, maxBytes: 2048, keep: 3, signer, checkpointRecords: 4 }, 40);
  const names = fs.readdirSync(dir).filter((f) => f.startsWith('audit.log'));
  t.same(names.sort(), ['audit.log', 'audit.log.1', 'audit.log.2', 'audit.log.3']);
  for (const name of names) t.equal(records(path.join(dir, name))[0].checkpoint, 'rotate', `${name} opens with a rotate checkpoint`);
  for (const name of names) t.ok(fs.statSync(path.join(dir, name)).size <= 2048, `${name} within maxBytes`);
  const report = verifyAuditFiles(
    names.map((n) => path.join(dir, n)),
    { keys: [key] },
  );
  t.equal(report.status, 'ok', JSON.stringify(report.problems));
  t.ok(report.trails[0]!.firstSeq > 1, 'the oldest files were pruned');
  const gap = verifyAuditFiles(
    ['audit.log.3', 'audit.log.1', 'audit.log'].map((n) => path.join(dir, n)),
    { keys: [key] },
  );
  t.match(gap.problems, [{ file: path.join(dir, 'audit.log.1'), line: 1, why: /are missing between/ }]);
});

t.test('open: a sealed tail is continued with a start checkpoint', async (t) => {
  const dir = t.testdir();
  const { signer, key } = keys(dir);
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file, signer }, 2);
  const sink = await AuditSink.open({ file, signer });
  t.same(sink.opening, { kind: 'continue' });
  sink.write(requestEvent(2), POLICY);
  await sink.close();
  t.same(kinds(file), ['1:start', '4:shutdown', '5:start', '7:shutdown']);
  t.notOk(fs.existsSync(`${file}.1`));
  t.equal(verifyAuditFiles([file], { keys: [key] }).status, 'ok');
});

t.test('open: a cut, torn, foreign-key or unsigned tail is set aside; the new file opens with a break', async (t) => {
  const cases: Array<[string, (file: string, dir: string) => Promise<void>, RegExp]> = [
    [
      'last lines cut',
      async (file) => {
        const { signer } = keys(path.dirname(file));
        await writeEvents({ file, signer }, 6);
        writeLines(file, lines(file).slice(0, -3));
      },
      /ends at seq 5 with no shutdown checkpoint/,
    ],
    [
      'torn last line',
      async (file) => {
        const { signer } = keys(path.dirname(file));
        await writeEvents({ file, signer }, 3);
        fs.appendFileSync(file, '{"ts":"2030');
      },
      /the last record is incomplete/,
    ],
    [
      'sealed by another key',
      async (file, dir) => {
        const { signer } = keys(path.join(dir, 'other'));
        await writeEvents({ file, signer }, 2);
      },
      /signed by another key/,
    ],
    ['unsigned', async (file) => writeEvents({ file }, 2), /with no shutdown checkpoint/],
  ];
  for (const [name, setup, why] of cases) {
    const dir = t.testdir();
    const file = path.join(dir, 'audit.log');
    await setup(file, dir);
    const before = fs.readFileSync(file, 'utf8');
    const { signer, key } = keys(path.join(dir, 'mine'));
    const sink = await AuditSink.open({ file, signer });
    t.match(sink.opening, { kind: 'break', detail: why }, name);
    sink.write(requestEvent(9), POLICY);
    await sink.close();
    t.equal(fs.readFileSync(`${file}.1`, 'utf8'), before, `${name}: the old file is kept, unchanged, as .1`);
    const opened = records(file)[0];
    t.match(opened, { type: 'audit.checkpoint', checkpoint: 'break', detail: why }, name);
    t.match(opened.detail, /it was set aside as .*audit\.log\.1$/);
    const alone = verifyAuditFiles([file], { keys: [key] });
    t.equal(alone.status, 'ok', `${name}: the new file verifies on its own`);
    t.match(alone.notes, [/opens with a break/]);
  }
});

t.test('open: an empty file after a sealed rotation opens with rotate, then start', async (t) => {
  const dir = t.testdir();
  const { signer, key } = keys(dir);
  const file = path.join(dir, 'audit.log');
  await writeEvents({ file, signer }, 2);
  fs.renameSync(file, `${file}.1`);
  fs.writeFileSync(file, '');
  await writeEvents({ file, signer }, 1);
  t.same(kinds(file), ['5:rotate', '6:start', '8:shutdown']);
  t.equal(verifyAuditFiles([file, `${file}.1`], { keys: [key] }).status, 'ok');
});

t.test('stdout: a signed trail starts at seq 1 with a start checkpoint', async (t) => {
  const dir = t.testdir();
  const { signer } = keys(dir);
  const sink = await AuditSink.open({ signer });
  t.equal(sink.lastCheckpoint?.checkpoint, 'start');
  t.equal(sink.head.seq, 1);
  await sink.close();
  t.equal(sink.lastCheckpoint?.checkpoint, 'shutdown');
});
