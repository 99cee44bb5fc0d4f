// Secret values by alias, from env vars or files. Files are watched (Kubernetes swaps a symlink in
// the directory, so the directory is watched) and stat-checked on read as a fallback, so a rotated
// value applies on the next request and a removed file makes the secret unavailable.
import { readFileSync, statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { SecretDoc } from '../config/types.js';

/** A secret could not be loaded at start. Names the alias and the source, never a value. */
export class SecretLoadError extends Error {
  readonly code = 'SLUICE_SECRET_LOAD';
  constructor(
    readonly alias: string,
    /** `env:NAME`, `file:PATH` or `policy` */
    readonly source: string,
    why: string,
  ) {
    super(`secret "${alias}" (${source}): ${why}`);
    this.name = 'SecretLoadError';
  }
}

export interface KnownSecret {
  alias: string;
  value: string;
  placeholder: string;
}

export interface SecretStoreOptions {
  /** how long a replaced value is still scrubbed and flagged as a leak; default 10 minutes */
  graceMs?: number;
  /** least time between two stat checks of one file in get(); default 1 second */
  statIntervalMs?: number;
  /** clock, for tests */
  now?: () => number;
}

interface FileSecret {
  path: string;
  value: string | null;
  /** mtime, size and inode of what `value` was read from */
  signature: string | null;
  checkedAt: number;
}

interface Entry {
  alias: string;
  placeholder: string;
  file: FileSecret | null;
  /** the env value; for files, mirrors file.value */
  value: string | null;
  previous: Array<{ value: string; until: number }>;
}

function signatureOf(stats: Stats): string {
  return `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
}

/** One trailing line ending is not part of the value (`echo token > file`). */
function trimNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

function sameSecrets(a: readonly KnownSecret[], b: readonly KnownSecret[]): boolean {
  return a.length === b.length && a.every((k, i) => k.alias === b[i]!.alias && k.value === b[i]!.value && k.placeholder === b[i]!.placeholder);
}

export class SecretStore {
  readonly #entries = new Map<string, Entry>();
  readonly #watchers: FSWatcher[] = [];
  readonly #graceMs: number;
  readonly #statIntervalMs: number;
  readonly #now: () => number;
  /** knownValues() as last built, valid until a stat check or a grace period is due, or a value changes */
  #known: { list: readonly KnownSecret[]; until: number } | null = null;

  private constructor(options: SecretStoreOptions) {
    this.#graceMs = options.graceMs ?? 10 * 60 * 1000;
    this.#statIntervalMs = options.statIntervalMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Loads the aliases some tool is granted. Throws SecretLoadError for an alias the policy does
   * not define, an unset or empty env var, or a missing, unreadable or empty file.
   */
  static async open(
    secrets: Record<string, SecretDoc>,
    aliases: Iterable<string>,
    env: NodeJS.ProcessEnv = process.env,
    options: SecretStoreOptions = {},
  ): Promise<SecretStore> {
    const store = new SecretStore(options);
    try {
      for (const alias of new Set(aliases)) await store.#load(alias, secrets[alias], env);
      store.#watch();
    } catch (error) {
      store.close();
      throw error;
    }
    return store;
  }

  async #load(alias: string, doc: SecretDoc | undefined, env: NodeJS.ProcessEnv): Promise<void> {
    if (!doc) throw new SecretLoadError(alias, 'policy', 'no such secret in the policy');
    const placeholder = doc.placeholder;
    if ('env' in doc.from) {
      const source = `env:${doc.from.env}`;
      const value = env[doc.from.env];
      if (value === undefined) throw new SecretLoadError(alias, source, 'the variable is not set');
      if (value === '') throw new SecretLoadError(alias, source, 'the variable is empty');
      this.#entries.set(alias, { alias, placeholder, file: null, value, previous: [] });
      return;
    }
    const path = resolve(doc.from.file);
    const source = `file:${path}`;
    let text: string;
    let stats: Stats;
    try {
      stats = await stat(path);
      text = await readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new SecretLoadError(alias, source, `cannot read the file (${code})`);
    }
    const value = trimNewline(text);
    if (value === '') throw new SecretLoadError(alias, source, 'the file is empty');
    const file: FileSecret = { path, value, signature: signatureOf(stats), checkedAt: this.#now() };
    this.#entries.set(alias, { alias, placeholder, file, value, previous: [] });
  }

  #watch(): void {
    const byDirectory = new Map<string, Entry[]>();
    for (const entry of this.#entries.values()) {
      if (!entry.file) continue;
      const directory = dirname(entry.file.path);
      byDirectory.set(directory, [...(byDirectory.get(directory) ?? []), entry]);
    }
    for (const [directory, entries] of byDirectory) {
      try {
        // any event in the directory: the changed name may be a symlink (..data), not the file
        const watcher = watch(directory, { persistent: false }, () => {
          for (const entry of entries) this.#refresh(entry);
        });
        watcher.on('error', () => watcher.close()); // the stat check in get() still applies
        this.#watchers.push(watcher);
      } catch {
        // some filesystems cannot be watched; the stat check in get() still applies
      }
    }
  }

  /** Re-reads a file secret if its stat changed; a missing or empty file means no value. */
  #refresh(entry: Entry): void {
    const file = entry.file!;
    file.checkedAt = this.#now();
    let next: string | null = null;
    let signature: string | null = null;
    try {
      const stats = statSync(file.path);
      signature = signatureOf(stats);
      if (signature === file.signature) return;
      next = trimNewline(readFileSync(file.path, 'utf8')) || null;
    } catch {
      next = null;
    }
    file.signature = signature;
    if (next === file.value) return;
    this.#known = null;
    if (file.value !== null) entry.previous.push({ value: file.value, until: this.#now() + this.#graceMs });
    file.value = next;
    entry.value = next;
  }

  /** The current value of a loaded alias, or null (unknown alias, or its file is gone or empty). */
  get(alias: string): string | null {
    const entry = this.#entries.get(alias);
    if (!entry) return null;
    if (entry.file && this.#now() - entry.file.checkedAt >= this.#statIntervalMs) this.#refresh(entry);
    return entry.value;
  }

  /**
   * Current values, plus values replaced less than the grace period ago: for scrubbing and leak
   * checks. The same array comes back until something could have changed it, so callers may key
   * caches on it.
   */
  knownValues(): readonly KnownSecret[] {
    const now = this.#now();
    if (this.#known && now < this.#known.until) return this.#known.list;
    const known: KnownSecret[] = [];
    let until = Infinity;
    for (const entry of this.#entries.values()) {
      const value = this.get(entry.alias);
      if (value !== null) known.push({ alias: entry.alias, value, placeholder: entry.placeholder });
      if (entry.file) until = Math.min(until, entry.file.checkedAt + this.#statIntervalMs);
      entry.previous = entry.previous.filter((p) => p.until > now);
      for (const old of entry.previous) {
        until = Math.min(until, old.until);
        if (old.value !== value) known.push({ alias: entry.alias, value: old.value, placeholder: entry.placeholder });
      }
    }
    // Unchanged contents keep the old list, so caches keyed on it stay warm.
    const previous = this.#known?.list;
    const list = previous && sameSecrets(previous, known) ? previous : Object.freeze(known);
    this.#known = { list, until };
    return list;
  }

  /** Stops watching files. get() keeps answering from the stat check. */
  close(): void {
    for (const watcher of this.#watchers.splice(0)) watcher.close();
  }
}
