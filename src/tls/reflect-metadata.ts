// @peculiar/x509 registers its algorithms through tsyringe, which refuses to load without the
// Reflect metadata API. The `reflect-metadata` package is not a dependency, so this module supplies
// the three calls tsyringe makes, and only when no polyfill is already there. Import it before
// '@peculiar/x509' (ES modules evaluate imports in order).
type MetadataStore = WeakMap<object, Map<unknown, unknown>>;

interface ReflectWithMetadata {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
}

const reflect = Reflect as typeof Reflect & ReflectWithMetadata;

if (typeof reflect.getMetadata !== 'function') {
  const store: MetadataStore = new WeakMap();
  const getOwn = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  reflect.getOwnMetadata = getOwn;
  reflect.getMetadata = (key, target) => {
    // Like reflect-metadata: look up the prototype chain.
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const value = getOwn(key, t);
      if (value !== undefined) return value;
    }
    return undefined;
  };
  reflect.defineMetadata = (key, value, target) => {
    let entries = store.get(target);
    if (!entries) store.set(target, (entries = new Map()));
    entries.set(key, value);
  };
}
