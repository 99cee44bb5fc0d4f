// A bounded LRU cache whose storage grows with its entries. lru-cache given `max` allocates its
// key, value and link arrays for all `max` entries at construction: sluice's nine caches (hosts,
// DNS answers, literals, each tool's route memo, leaves, pools) held about 1 MiB of empty slots in
// an idle process (issue 20, a heap profile of an idle start). Counting every entry as size 1
// against `maxSize` keeps the same bound and eviction order, with arrays that grow as needed.
import { LRUCache } from 'lru-cache';

/** what lru-cache takes as a key or value: anything but null and undefined */
type Present = NonNullable<unknown>;
type Options<K extends Present, V extends Present> = Omit<LRUCache.Options<K, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation'>;

const ONE = (): number => 1;

/** An LRU cache of at most `max` entries that allocates only for the entries it holds. */
export function growingLru<K extends Present, V extends Present>(max: number, opts: Options<K, V> = {}): LRUCache<K, V> {
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`cache size must be a positive integer, not ${max}`);
  return new LRUCache<K, V>({ ...opts, maxSize: max, sizeCalculation: ONE });
}
