// knownValues() is cached (one frozen list until a value, a stat check or a grace period changes
// it) and scrub needle sets are cached by that list's identity: neither cache may ever hide a
// rotated value from scrubbing.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { SecretDoc } from '../../src/config/types.js';
import { scrubText, type ScrubEntry } from '../../src/secrets/scrub.js';
import { SecretStore } from '../../src/secrets/store.js';

const V1 = 'fake-rotating-value-one';
const V2 = 'fake-rotating-value-two';
const fromFile = (file: string): SecretDoc => ({
  from: { file },
  hosts: ['h.example'],
  require: false,
  placeholder: '__p__',
  swap_in: ['header:Authorization'],
  allow_plaintext: false,
});

t.test('the same frozen list until the file changes, then a new one that scrubs the new value', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-known-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'token');
  writeFileSync(path, V1);
  let clock = 1_000_000;
  const store = await SecretStore.open({ a: fromFile(path) }, ['a'], {}, { now: () => clock, statIntervalMs: 1000, graceMs: 60_000 });
  store.close(); // stat checks only, driven by the clock

  const first = store.knownValues();
  t.ok(Object.isFrozen(first), 'the list is frozen');
  t.equal(store.knownValues(), first, 'same list while nothing can have changed');
  t.equal(scrubText(`x ${V1} y`, first), 'x __p__ y');

  writeFileSync(`${path}.tmp`, V2);
  renameSync(`${path}.tmp`, path);
  clock += 999;
  t.equal(store.knownValues(), first, 'not re-checked before the stat interval');
  clock += 1;
  const second = store.knownValues();
  t.not(second, first, 'a new list once the stat check is due and the value changed');
  t.same(
    second.map((k) => k.value),
    [V2, V1],
    'the new value, and the old one for its grace period',
  );
  t.equal(scrubText(`${V2}|${V1}`, second), '__p__|__p__', 'both are scrubbed with the new list');

  clock += 1000;
  t.equal(store.knownValues(), second, 'an unchanged file keeps the list');
  clock += 60_000;
  const third = store.knownValues();
  t.same(
    third.map((k) => k.value),
    [V2],
    'the old value leaves after its grace period',
  );
});

t.test('a list that is not frozen is never cached by identity', async (t) => {
  const values: ScrubEntry[] = [{ value: V1, placeholder: '__one__' }];
  t.equal(scrubText(V1, values), '__one__');
  values.push({ value: V2, placeholder: '__two__' });
  t.equal(scrubText(`${V1} ${V2}`, values), '__one__ __two__', 'a value added to the same array is scrubbed');
});
