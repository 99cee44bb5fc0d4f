// The PolicyHolder on its own, with real files and a recording observer: what each kind of reload
// does (and tells subscribers), the pin at start and at run time, disposal, and which places on
// disk a policy file's watch covers (symlink chains included).
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { buildRuntime } from '../../src/app/runtime.js';
import { PolicyHolder, watchPoints, type PolicyHooks } from '../../src/app/policy-holder.js';
import { PolicyError, PolicyPinMismatch } from '../../src/config/errors.js';
import { loadPolicy } from '../../src/config/load.js';
import type { AuditInput } from '../../src/observe/events.js';
import { createLogger } from '../../src/observe/log.js';
import type { PolicyLabels } from '../../src/observe/observer.js';
import type { PolicyRuntime } from '../../src/proxy/context.js';

const logger = createLogger({ level: 'silent' });
const policy = (host: string, include?: string) =>
  `version: 1\n${include ? `include: ["${include}"]\n` : ''}tools:\n  web:\n    token_env: WEB_TOKEN\n    allow:\n      - host: ${host}\n`;
const fragment = (name: string, host: string) => `tools:\n  ${name}:\n    token_env: WEB_TOKEN\n    allow:\n      - host: ${host}\n`;
const env = { WEB_TOKEN: 'token' };

function recorder() {
  const events: AuditInput[] = [];
  const labels: PolicyLabels[] = [];
  const drifts: string[] = [];
  const hooks = (extra: Partial<PolicyHooks> = {}): PolicyHooks => ({
    observer: { setPolicy: (l) => labels.push(l), event: (e) => events.push(e) },
    watch: false,
    onDrift: (d) => drifts.push(d),
    ...extra,
  });
  return { events, labels, drifts, hooks, types: () => events.map((e) => e.type) };
}

/** Runtimes whose upstream pools were closed: disposed of. */
const disposed = new Set<PolicyRuntime>();
async function build(...args: Parameters<typeof buildRuntime>): Promise<PolicyRuntime> {
  const runtime = await buildRuntime(...args);
  const close = runtime.pools.close.bind(runtime.pools);
  runtime.pools.close = () => {
    disposed.add(runtime);
    return close();
  };
  return runtime;
}

async function open(t: Test, file: string, pin: string | null = null): Promise<PolicyHolder> {
  const holder = await PolicyHolder.open({ file, pin, env, logger, build });
  t.teardown(() => holder.close());
  return holder;
}

t.test('reloads: unchanged, reloaded (subscribers told, previous disposed), rejected (old stays)', async (t) => {
  const dir = t.testdir({ 'policy.yaml': policy('one.example') });
  const file = path.join(dir, 'policy.yaml');
  const holder = await open(t, file);
  const rec = recorder();
  holder.start(rec.hooks());
  t.same(rec.types(), ['policy.load']);
  t.same(
    rec.labels.map((l) => l.sha256),
    [loadPolicy(file).digest],
  );

  const seen: Array<[PolicyRuntime, PolicyRuntime]> = [];
  const unsubscribe = holder.onReload((next, previous) => seen.push([next, previous]));
  holder.onReload(() => {
    throw new Error('a failing subscriber does not stop the reload');
  });
  t.equal(await holder.reload(), 'unchanged');
  t.same(rec.types(), ['policy.load'], 'nothing announced when the digest is the same');

  const first = holder.current();
  writeFileSync(file, policy('two.example'));
  t.equal(await holder.reload(), 'reloaded');
  t.equal(holder.digest(), loadPolicy(file).digest);
  t.same(rec.types(), ['policy.load', 'policy.load']);
  t.equal(seen.length, 1);
  t.equal(seen[0]![0], holder.current());
  t.equal(seen[0]![1], first);
  t.ok(disposed.has(first), 'the replaced runtime is disposed of');
  t.notOk(disposed.has(holder.current()));

  writeFileSync(file, 'version: 1\ntools:\n  web:\n    token_env: WEB_TOKEN\n    allow:\n      - host: "*"\n');
  const before = holder.current();
  t.equal(await holder.reload(), 'rejected');
  t.equal(holder.current(), before, 'the old runtime stays');
  t.equal(rec.events.at(-1)!.type, 'policy.reload_failed');
  t.match(rec.events.at(-1)!.detail, /policy\.yaml:6: .*allow-all/);
  t.equal(seen.length, 1, 'subscribers hear only of successful reloads');

  unsubscribe();
  writeFileSync(file, policy('three.example'));
  t.equal(await holder.reload(), 'reloaded');
  t.equal(seen.length, 1, 'an unsubscribed listener is not called');
  const last = holder.current();
  await holder.close();
  t.ok(disposed.has(last), 'close() disposes of the runtime in force');
});

t.test('reloads run one at a time, in order', async (t) => {
  const dir = t.testdir({ 'policy.yaml': policy('one.example') });
  const file = path.join(dir, 'policy.yaml');
  const holder = await open(t, file);
  holder.start(recorder().hooks());
  writeFileSync(file, policy('two.example'));
  const results = await Promise.all([holder.reload(), holder.reload(), holder.reload()]);
  t.same(results, ['reloaded', 'unchanged', 'unchanged']);
});

t.test('the pin: a mismatch at start refuses; at run time any change of the digest halts, even to an invalid policy', async (t) => {
  const dir = t.testdir({ 'policy.yaml': policy('one.example', 'policy.d/*.yaml'), 'policy.d': { 'a.yaml': fragment('a', 'a.example') } });
  const file = path.join(dir, 'policy.yaml');
  const digest = loadPolicy(file).digest;
  await t.rejects(PolicyHolder.open({ file, pin: 'f'.repeat(64), env, logger }), { code: 'SLUICE_POLICY_PIN_MISMATCH' });
  const refused = await PolicyHolder.open({ file, pin: 'f'.repeat(64), env, logger }).catch((e: unknown) => e);
  t.ok(refused instanceof PolicyPinMismatch);
  t.match((refused as Error).message, `sha256 ${digest} does not match the pinned --policy-sha256 ${'f'.repeat(64)}`);

  const holder = await open(t, file, digest.toUpperCase());
  const rec = recorder();
  holder.start(rec.hooks());
  t.equal(await holder.reload(), 'unchanged', 'the pinned bytes: nothing to do');
  writeFileSync(path.join(dir, 'policy.d/a.yaml'), 'tools: [');
  t.equal(await holder.reload(), 'halted', 'a fragment edited into invalid YAML is drift, not a rejected reload');
  t.equal(rec.drifts.length, 1);
  t.match(rec.drifts[0], /changed at run time \(sha256 [0-9a-f]{64}, pinned/);
  t.same(rec.types(), ['policy.load', 'policy.drift']);
  t.equal(rec.events.at(-1)!.expected_sha256, digest);
  t.equal(holder.drifted(), rec.drifts[0]);
  writeFileSync(path.join(dir, 'policy.d/a.yaml'), fragment('a', 'a.example'));
  t.equal(await holder.reload(), 'halted', 'a halted holder reloads no more, even back to the pinned bytes');
  t.equal(rec.drifts.length, 1, 'onDrift is called once');
});

t.test('a pinned policy whose file disappears halts', async (t) => {
  const dir = t.testdir({ 'policy.yaml': policy('one.example') });
  const file = path.join(dir, 'policy.yaml');
  const holder = await open(t, file, loadPolicy(file).digest);
  const rec = recorder();
  holder.start(rec.hooks());
  rmSync(file);
  t.equal(await holder.reload(), 'halted');
  t.match(rec.drifts[0], /a file of it cannot be read/);
});

t.test('no reload while the proxy is halted for another reason, nor after close', async (t) => {
  const dir = t.testdir({ 'policy.yaml': policy('one.example') });
  const file = path.join(dir, 'policy.yaml');
  const holder = await PolicyHolder.open({ file, pin: null, env, logger });
  let halted: string | null = null;
  holder.start(recorder().hooks({ halted: () => halted }));
  writeFileSync(file, policy('two.example'));
  halted = 'the audit could not be written';
  t.equal(await holder.reload(), 'halted');
  halted = null;
  await holder.close();
  t.equal(await holder.reload(), 'halted');
});

t.test('an invalid policy at open throws PolicyError with its codes', async (t) => {
  const dir = t.testdir({ 'policy.yaml': 'version: 1\nstrict: true\nstrict: false\n' });
  const err = await PolicyHolder.open({ file: path.join(dir, 'policy.yaml'), pin: null, env, logger }).catch((e: unknown) => e);
  t.ok(err instanceof PolicyError);
  t.same((err as PolicyError).codes, ['duplicate_key']);
});

t.test('watchPoints: a plain file, a ConfigMap chain, an absolute link, a loop, a missing file', async (t) => {
  const dir = t.testdir({ plain: { 'policy.yaml': 'x' }, etc: { '..v1': { 'policy.yaml': 'x' } }, elsewhere: { 'p.yaml': 'x' } });
  t.same(watchPoints(path.join(dir, 'plain/policy.yaml')), [{ dir: path.join(dir, 'plain'), name: 'policy.yaml' }]);

  symlinkSync('..v1', path.join(dir, 'etc/..data'));
  symlinkSync('..data/policy.yaml', path.join(dir, 'etc/policy.yaml'));
  t.same(watchPoints(path.join(dir, 'etc/policy.yaml')), [
    { dir: path.join(dir, 'etc'), name: 'policy.yaml' },
    { dir: path.join(dir, 'etc'), name: '..data' },
    { dir: path.join(dir, 'etc/..v1'), name: 'policy.yaml' },
  ]);

  symlinkSync(path.join(dir, 'elsewhere/p.yaml'), path.join(dir, 'plain/abs.yaml'));
  t.same(watchPoints(path.join(dir, 'plain/abs.yaml')), [
    { dir: path.join(dir, 'plain'), name: 'abs.yaml' },
    { dir: path.join(dir, 'elsewhere'), name: 'p.yaml' },
  ]);

  symlinkSync('loop-b', path.join(dir, 'plain/loop-a'));
  symlinkSync('loop-a', path.join(dir, 'plain/loop-b'));
  t.ok(watchPoints(path.join(dir, 'plain/loop-a')).length <= 42, 'a loop ends');

  t.same(watchPoints(path.join(dir, 'plain/gone/policy.yaml')), [{ dir: path.join(dir, 'plain'), name: 'gone' }], 'watch for it to appear');
});

t.test('watched(): every file and link target, re-resolved after a reload that changes the includes', async (t) => {
  const dir = t.testdir({
    'policy.yaml': policy('one.example'),
    'policy.d': { 'a.yaml': fragment('a', 'a.example') },
    store: { 'b.yaml': fragment('b', 'b.example') },
  });
  mkdirSync(path.join(dir, 'teams'));
  symlinkSync('../store/b.yaml', path.join(dir, 'teams/b.yaml'));
  const file = path.join(dir, 'policy.yaml');
  const holder = await open(t, file);
  holder.start(recorder().hooks({ watch: true }));
  t.same(
    [...holder.watched()].map(([d, names]) => [d, [...names]]),
    [[dir, ['policy.yaml']]],
  );

  writeFileSync(file, policy('one.example', '{policy.d,teams}/*.yaml'));
  t.equal(await holder.reload(), 'reloaded');
  const watched = new Map([...holder.watched()].map(([d, names]) => [path.relative(dir, d), [...names].sort()]));
  t.same(Object.fromEntries(watched), { '': ['policy.yaml'], 'policy.d': ['a.yaml'], teams: ['b.yaml'], store: ['b.yaml'] });
});
