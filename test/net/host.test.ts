import t from 'tap';
import { canonicalHost } from '../../src/net/host.js';

t.test('canonicalHost answers the same the second time, for good and bad hosts alike', async (t) => {
  const cases: Array<[string, ReturnType<typeof canonicalHost>]> = [
    ['2130706434', { kind: 'ip', host: '127.0.0.2', family: 4 }],
    ['Example.COM.', { kind: 'name', host: 'example.com' }],
    ['[::ffff:127.0.0.2]', { kind: 'ip', host: '::ffff:7f00:2', family: 6 }],
    ['example.com:443', null],
    ['a b', null],
  ];
  for (let round = 0; round < 2; round++) {
    for (const [raw, want] of cases) t.same(canonicalHost(raw), want, `${raw} (round ${round + 1})`);
  }
  const shared = canonicalHost('example.org');
  t.ok(Object.isFrozen(shared), 'a remembered answer is shared, so it is frozen');
});
