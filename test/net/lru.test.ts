import t from 'tap';
import { growingLru } from '../../src/net/lru.js';

t.test('growingLru holds at most max entries and evicts the least recently used', async (t) => {
  const disposed: string[] = [];
  const cache = growingLru<string, number>(3, { dispose: (_v, k) => disposed.push(k) });
  cache.set('a', 1);
  cache.set('b', 2);
  cache.set('c', 3);
  t.equal(cache.get('a'), 1, 'a read makes "a" the most recent');
  cache.set('d', 4);
  t.equal(cache.size, 3, 'never more than max');
  t.equal(cache.has('b'), false, '"b", the least recently used, went first');
  t.same([...cache.keys()].sort(), ['a', 'c', 'd']);
  t.same(disposed, ['b'], 'an evicted entry is disposed');
  cache.set('a', 10);
  t.equal(cache.size, 3, 'replacing a key does not count twice');
  for (let i = 0; i < 100; i++) cache.set(`k${i}`, i);
  t.equal(cache.size, 3, 'still max after many more');
  t.same([...cache.keys()], ['k99', 'k98', 'k97'], 'the newest three, newest first');
});

t.test('growingLru allocates as it fills, not for max up front', async (t) => {
  // lru-cache given `max` sizes its arrays for every slot at construction; the size-1 entries do not.
  const big = growingLru<string, number>(1_000_000);
  big.set('one', 1);
  t.equal(big.get('one'), 1);
  t.equal(big.max, 0, 'no max: the bound is maxSize, counted one per entry');
  t.equal(big.maxSize, 1_000_000);
});

t.test('growingLru refuses a size that bounds nothing', async (t) => {
  for (const bad of [0, -1, 1.5, Number.NaN, Infinity]) t.throws(() => growingLru(bad), RangeError, String(bad));
});
