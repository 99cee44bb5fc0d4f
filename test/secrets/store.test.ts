import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import type { SecretDoc } from '../../src/config/types.js';
import { SecretLoadError, SecretStore } from '../../src/secrets/store.js';

const V1 = 'fake-file-value-one';
const V2 = 'fake-file-value-two';

const fromEnv = (name: string): SecretDoc => ({
  from: { env: name },
  hosts: ['h.example'],
  require: false,
  placeholder: '__sluice_secret_gh__',
  swap_in: ['header:Authorization'],
  allow_plaintext: false,
});
const fromFile = (file: string): SecretDoc => ({
  from: { file },
  hosts: ['h.example'],
  require: false,
  placeholder: '__p__',
  swap_in: ['header:Authorization'],
  allow_plaintext: false,
});

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Replaces a file the way editors and secret managers do: write aside, rename over. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

async function waitFor(check: () => boolean, ms = 3000): Promise<boolean> {
  for (const start = Date.now(); Date.now() - start < ms; await sleep(20)) if (check()) return true;
  return check();
}

async function loadError(promise: Promise<unknown>): Promise<SecretLoadError | null> {
  try {
    await promise;
    return null;
  } catch (error) {
    return error instanceof SecretLoadError ? error : null;
  }
}

t.test('env: value, placeholder, known values', async (t) => {
  const store = await SecretStore.open({ gh: fromEnv('GH_TOKEN'), unused: fromEnv('UNSET') }, ['gh'], { GH_TOKEN: V1 });
  t.teardown(() => store.close());
  t.ok(store.get('gh') === V1);
  t.equal(store.get('unused'), null, 'not granted to any tool, not loaded');
  t.equal(store.get('nope'), null);
  t.ok(JSON.stringify(store.knownValues()) === JSON.stringify([{ alias: 'gh', value: V1, placeholder: '__sluice_secret_gh__' }]));
});

t.test('env: unset or empty is an error naming the alias and the variable', async (t) => {
  const unset = await loadError(SecretStore.open({ gh: fromEnv('GH_TOKEN') }, ['gh'], {}));
  t.equal(unset?.alias, 'gh');
  t.equal(unset?.source, 'env:GH_TOKEN');
  t.match(unset?.message, /"gh".*env:GH_TOKEN.*not set/);
  const empty = await loadError(SecretStore.open({ gh: fromEnv('GH_TOKEN') }, ['gh'], { GH_TOKEN: '' }));
  t.match(empty?.message, /empty/);
  const unknown = await loadError(SecretStore.open({}, ['ghost'], {}));
  t.equal(unknown?.source, 'policy');
});

t.test('file: one trailing newline (LF or CRLF) is trimmed', async (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, string]> = [
    ['lf', `${V1}\n`],
    ['crlf', `${V1}\r\n`],
    ['none', V1],
  ];
  for (const [name, text] of cases) writeFileSync(join(dir, name), text);
  const secrets = Object.fromEntries(cases.map(([name]) => [name, fromFile(join(dir, name))]));
  const store = await SecretStore.open(secrets, Object.keys(secrets), {});
  t.teardown(() => store.close());
  for (const [name] of cases) t.ok(store.get(name) === V1, name);
});

t.test('file: missing or empty is an error naming the alias and the path, never a value', async (t) => {
  const dir = tempDir(t);
  const missing = await loadError(SecretStore.open({ a: fromFile(join(dir, 'absent')) }, ['a'], {}));
  t.equal(missing?.source, `file:${join(dir, 'absent')}`);
  t.match(missing?.message, /ENOENT/);
  writeFileSync(join(dir, 'empty'), '\n');
  const empty = await loadError(SecretStore.open({ a: fromFile(join(dir, 'empty')) }, ['a'], {}));
  t.match(empty?.message, /"a".*empty/);
  writeFileSync(join(dir, 'ok'), V1);
  const partly = await loadError(SecretStore.open({ ok: fromFile(join(dir, 'ok')), a: fromFile(join(dir, 'absent')) }, ['ok', 'a'], {}));
  t.ok(partly && !partly.message.includes(V1), 'the error of one alias carries no value of another');
});

t.test('file: a rotated value is picked up by the watcher', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'token');
  writeFileSync(path, `${V1}\n`);
  // stat fallback effectively off: only the watcher can see the change
  const store = await SecretStore.open({ a: fromFile(path) }, ['a'], {}, { statIntervalMs: 1e12 });
  t.teardown(() => store.close());
  replaceFile(path, `${V2}\n`);
  t.ok(await waitFor(() => store.get('a') === V2), 'new value applies');
  rmSync(path);
  t.ok(await waitFor(() => store.get('a') === null), 'a removed file makes the secret unavailable');
  replaceFile(path, V1);
  t.ok(await waitFor(() => store.get('a') === V1), 'and it comes back');
});

t.test('file: a Kubernetes-style symlink swap is picked up', async (t) => {
  const dir = tempDir(t);
  for (const [version, value] of [
    ['..v1', V1],
    ['..v2', V2],
  ] as const) {
    mkdirSync(join(dir, version));
    writeFileSync(join(dir, version, 'token'), value);
  }
  symlinkSync('..v1', join(dir, '..data'));
  symlinkSync(join('..data', 'token'), join(dir, 'token'));
  const store = await SecretStore.open({ a: fromFile(join(dir, 'token')) }, ['a'], {}, { statIntervalMs: 1e12 });
  t.teardown(() => store.close());
  t.ok(store.get('a') === V1);
  symlinkSync('..v2', join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  t.ok(await waitFor(() => store.get('a') === V2), 'the swapped target is read');
});

t.test('file: the stat check in get() works without the watcher, at most once per interval', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'token');
  writeFileSync(path, V1);
  let clock = 1_000_000;
  const store = await SecretStore.open({ a: fromFile(path) }, ['a'], {}, { now: () => clock });
  store.close(); // no watcher from here on
  replaceFile(path, `${V2}-longer`);
  await sleep(100); // a late watcher event, if close() did not stop it, would land here
  t.ok(store.get('a') === V1, 'within the interval: not checked, and close() stopped watching');
  clock += 1000;
  t.ok(store.get('a') === `${V2}-longer`, 'after the interval: re-read');
  rmSync(path);
  clock += 1000;
  t.equal(store.get('a'), null, 'removed');
});

t.test('a replaced value stays known for the grace period', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'token');
  writeFileSync(path, V1);
  let clock = 1_000_000;
  const store = await SecretStore.open({ a: fromFile(path) }, ['a'], {}, { now: () => clock, graceMs: 60_000 });
  store.close();
  replaceFile(path, `${V2}-longer`);
  clock += 1000;
  const known = (): string[] => store.knownValues().map((k) => k.value);
  t.ok(JSON.stringify(known()) === JSON.stringify([`${V2}-longer`, V1]), 'current and previous');
  t.ok(store.knownValues().every((k) => k.alias === 'a' && k.placeholder === '__p__'));
  clock += 59_000;
  t.ok(known().includes(V1), 'still inside the grace period');
  clock += 1001;
  t.ok(JSON.stringify(known()) === JSON.stringify([`${V2}-longer`]), 'gone after it');
  rmSync(path);
  clock += 1000;
  t.ok(JSON.stringify(known()) === JSON.stringify([`${V2}-longer`]), 'a removed file: no current value, the last one in grace');
});
