// The one holder of the policy in force. Loading, validating, compiling and digesting happen in
// config/load.ts and runtime.ts; this module decides what is in force: the pin check (refuse at
// start, halt at run time), building the runtime, watching every file the policy was read from and
// every symlink on the way to it, reloading (a rejected reload keeps the old runtime), announcing
// each policy to audit and metrics, telling subscribers, and disposing of a replaced runtime.
// serve.ts wires it up; the data path only calls current().
import { lstatSync, readlinkSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { PolicyError, PolicyPinMismatch } from '../config/errors.js';
import { loadPolicy } from '../config/load.js';
import type { LoadedPolicy } from '../config/types.js';
import type { AuditInput } from '../observe/events.js';
import type { Logger } from '../observe/log.js';
import type { PolicyLabels } from '../observe/observer.js';
import type { PolicyRuntime } from '../proxy/context.js';
import { buildRuntime } from './runtime.js';

export interface PolicyHolderOptions {
  /** the policy file as the operator named it (a symlink is followed, and watched as one) */
  file: string;
  /** --policy-sha256: a different digest at start refuses, at run time halts; null = not pinned */
  pin: string | null;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** builds the runtime of a loaded policy (default buildRuntime) */
  build?: (loaded: LoadedPolicy, env: NodeJS.ProcessEnv) => Promise<PolicyRuntime>;
}

/** Where policy events go: AuditingObserver fits. */
export interface PolicyObserver {
  /** the labels of the policy now in force, before its policy.load event */
  setPolicy(labels: PolicyLabels): void;
  event(e: AuditInput): void;
}

export interface PolicyHooks {
  observer: PolicyObserver;
  /** reload when a file the policy was read from changes; reload() (SIGHUP) works either way */
  watch: boolean;
  /** quiet time after the last file event before reloading (editors write in steps); default 50 ms */
  debounceMs?: number;
  /** a sentence while the proxy is halted for any reason; no reload runs then */
  halted?: () => string | null;
  /** the pinned policy drifted: called once, after the policy.drift event; the holder reloads no more */
  onDrift: (detail: string) => void;
}

/**
 * What a reload did. `unchanged`: the files hash to the digest in force (nothing rebuilt);
 * `rejected`: the new policy was refused and the old stays (policy.reload_failed); `halted`: the
 * pin drifted now or earlier, the proxy is halted, or the holder is closed.
 */
export type ReloadResult = 'reloaded' | 'unchanged' | 'rejected' | 'halted';

/** Told after a reload put `next` in force; `previous` is disposed as soon as every listener returns. */
export type ReloadListener = (next: PolicyRuntime, previous: PolicyRuntime) => void;

export class PolicyHolder {
  readonly #opts: PolicyHolderOptions;
  readonly #pin: string | null;
  readonly #build: (loaded: LoadedPolicy, env: NodeJS.ProcessEnv) => Promise<PolicyRuntime>;
  #runtime: PolicyRuntime;
  #hooks: PolicyHooks | null = null;
  #watch: FileWatch | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** reloads run one at a time, in order */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #listeners = new Set<ReloadListener>();
  #drifted: string | null = null;
  #closed = false;

  /**
   * Loads the policy, checks the pin and builds the runtime. Throws PolicyError (invalid policy),
   * PolicyPinMismatch, or the runtime's error (a granted secret or the upstream CA cannot be read).
   */
  static async open(opts: PolicyHolderOptions): Promise<PolicyHolder> {
    const loaded = loadPolicy(opts.file);
    const pin = opts.pin?.toLowerCase() ?? null;
    if (pin !== null && loaded.digest !== pin) throw new PolicyPinMismatch(opts.file, loaded.digest, opts.pin!);
    const build = opts.build ?? buildRuntime;
    return new PolicyHolder(opts, pin, build, await build(loaded, opts.env));
  }

  private constructor(
    opts: PolicyHolderOptions,
    pin: string | null,
    build: (loaded: LoadedPolicy, env: NodeJS.ProcessEnv) => Promise<PolicyRuntime>,
    runtime: PolicyRuntime,
  ) {
    this.#opts = opts;
    this.#pin = pin;
    this.#build = build;
    this.#runtime = runtime;
  }

  /** The runtime in force. A caller keeps the one it got for the whole request. */
  current(): PolicyRuntime {
    return this.#runtime;
  }

  /** The digest in force (what --policy-sha256 pins, `sluice check` prints and audit events carry). */
  digest(): string {
    return this.#runtime.loaded.digest;
  }

  /** The sentence of the pinned-policy drift that halted the holder, else null. */
  drifted(): string | null {
    return this.#drifted;
  }

  /** Announces the policy in force (labels, then policy.load) and, when asked, starts watching. */
  start(hooks: PolicyHooks): void {
    if (this.#hooks) throw new Error('PolicyHolder.start: already started');
    this.#hooks = hooks;
    this.#announce(this.#runtime);
    if (hooks.watch) {
      this.#watch = new FileWatch(() => this.#schedule(), this.#opts.logger);
      this.#rewatch();
    }
  }

  /** Re-reads the policy (SIGHUP, a file change). Never throws; runs after any reload under way. */
  reload(): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Subscribes to successful reloads (not to unchanged or rejected ones); returns the unsubscribe. */
  onReload(listener: ReloadListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** What is being watched: directory → the names in it that matter. Empty when not watching. */
  watched(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.#watch?.points() ?? new Map();
  }

  /** Stops watching, lets a reload under way finish, and disposes of the runtime in force. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching();
    await this.#queue;
    await dispose(this.#runtime);
  }

  async #reload(): Promise<ReloadResult> {
    if (this.#closed || this.#drifted !== null || this.#hooks?.halted?.()) return 'halted';
    const { file, env, logger } = this.#opts;
    let next: LoadedPolicy;
    try {
      next = loadPolicy(file);
    } catch (err) {
      // Pinned, the bytes decide first: an edit that breaks the policy changed it all the same.
      if (this.#pin !== null && (err as Partial<PolicyError>).digest !== this.#pin)
        return this.#drift((err as Partial<PolicyError>).digest ?? null);
      return this.#reject(err as Error);
    }
    if (this.#pin !== null && next.digest !== this.#pin) return this.#drift(next.digest);
    if (next.digest === this.#runtime.loaded.digest) {
      // Same bytes, but a symlink may point elsewhere now (a ConfigMap swap to identical content).
      this.#rewatch();
      return 'unchanged';
    }
    let runtime: PolicyRuntime;
    try {
      runtime = await this.#build(next, env);
    } catch (err) {
      return this.#reject(err as Error);
    }
    if (this.#closed) {
      await dispose(runtime);
      return 'halted';
    }
    const previous = this.#runtime;
    this.#runtime = runtime;
    this.#announce(runtime);
    logger.info({ sha256: next.digest }, 'policy reloaded');
    for (const listener of this.#listeners) {
      try {
        listener(runtime, previous);
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'a policy reload listener failed');
      }
    }
    void dispose(previous);
    this.#rewatch();
    return 'reloaded';
  }

  #reject(err: Error): ReloadResult {
    const detail = err.message;
    this.#hooks?.observer.event({ type: 'policy.reload_failed', detail });
    this.#opts.logger.warn({ error: detail }, 'policy reload rejected; the previous policy stays in force');
    this.#rewatch();
    return 'rejected';
  }

  #drift(found: string | null): ReloadResult {
    const { file, logger } = this.#opts;
    const what = found === null ? 'a file of it cannot be read' : `sha256 ${found}`;
    const detail = `the pinned policy ${file} changed at run time (${what}, pinned ${this.#pin}); sluice halted`;
    this.#drifted = detail;
    this.#stopWatching();
    this.#hooks?.observer.event({ type: 'policy.drift', detail, expected_sha256: this.#pin, reason: 'policy_halted' });
    logger.error({ expected: this.#pin, found }, 'pinned policy drifted; halting');
    this.#hooks?.onDrift(detail);
    return 'halted';
  }

  #announce(runtime: PolicyRuntime): void {
    const observer = this.#hooks?.observer;
    if (!observer) return;
    observer.setPolicy({
      sha256: runtime.loaded.digest,
      tools: [...runtime.compiled.tools.keys()],
      secrets: [...runtime.compiled.secrets.keys()],
      // The MCP tool names rules list literally: the only values of the mcp_tool metric label.
      mcpTools: [...runtime.compiled.tools.values()].flatMap((tool) => tool.rules.flatMap((rule) => [...(rule.mcp?.tools.exact ?? [])])),
    });
    observer.event({ type: 'policy.load', detail: `loaded ${runtime.loaded.file}` });
  }

  /** Re-resolves what to watch from the files in force: includes and symlink targets may have moved. */
  #rewatch(): void {
    if (!this.#watch || this.#closed || this.#drifted !== null) return;
    this.#watch.set(this.#runtime.loaded.files.flatMap(watchPoints));
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.reload();
    }, this.#hooks?.debounceMs ?? 50);
    this.#timer.unref();
  }

  #stopWatching(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#watch?.close();
    this.#watch = null;
  }
}

async function dispose(runtime: PolicyRuntime): Promise<void> {
  runtime.secrets.close();
  await runtime.pools.close();
}

/** A name in a directory whose change can change what a policy file reads. */
export interface WatchPoint {
  dir: string;
  name: string;
}

/** Symlink hops followed before giving up (a loop); Linux allows 40. */
const MAX_HOPS = 40;

/**
 * The places to watch for one file: every symlink met while resolving its path (a file link such as
 * policy.yaml -> ..data/policy.yaml, a directory link such as Kubernetes' ..data -> ..2024_01_01),
 * each in the directory that holds it, then the real file in its real directory, wherever that is.
 * Editing the target, swapping any link, or replacing the file all land on one of these. A
 * component that does not exist is watched for in its parent, so its appearance is seen.
 */
export function watchPoints(file: string): WatchPoint[] {
  const points: WatchPoint[] = [];
  const absolute = path.resolve(file);
  let resolved = path.parse(absolute).root;
  const pending = absolute.slice(resolved.length).split(path.sep);
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    // `resolved` holds no symlink, so its parent is the real parent.
    if (part === '..') {
      resolved = path.dirname(resolved);
      continue;
    }
    const next = path.join(resolved, part);
    let target: string | null;
    try {
      target = lstatSync(next).isSymbolicLink() ? readlinkSync(next) : null;
    } catch {
      points.push({ dir: resolved, name: part });
      return points;
    }
    if (target === null) {
      resolved = next;
      continue;
    }
    points.push({ dir: resolved, name: part });
    if (++hops > MAX_HOPS) return points;
    if (path.isAbsolute(target)) resolved = path.parse(target).root;
    pending.unshift(...target.split(path.sep));
  }
  points.push({ dir: path.dirname(resolved), name: path.basename(resolved) });
  return points;
}

/**
 * One fs.watch per directory (a file's own watch would follow the inode and miss a replacement or a
 * swapped link), reacting only to the names that matter there: the audit log or an editor's swap
 * file in the same directory must not reload the policy.
 */
class FileWatch {
  readonly #watchers = new Map<string, { watcher: FSWatcher; names: Set<string> }>();
  readonly #onChange: () => void;
  readonly #logger: Logger;

  constructor(onChange: () => void, logger: Logger) {
    this.#onChange = onChange;
    this.#logger = logger;
  }

  set(points: readonly WatchPoint[]): void {
    const wanted = new Map<string, Set<string>>();
    for (const { dir, name } of points) wanted.set(dir, (wanted.get(dir) ?? new Set()).add(name));
    for (const [dir, entry] of this.#watchers) {
      if (wanted.has(dir)) continue;
      entry.watcher.close();
      this.#watchers.delete(dir);
    }
    for (const [dir, names] of wanted) {
      const known = this.#watchers.get(dir);
      if (known) {
        known.names = names;
        continue;
      }
      try {
        const entry = { watcher: null as unknown as FSWatcher, names };
        entry.watcher = watch(dir, { persistent: false }, (_event, name) => {
          // Some platforms give no name: then any event may be ours.
          if (name === null || entry.names.has(name)) this.#onChange();
        });
        // The directory went away (a replaced ConfigMap revision): the reload this triggers re-resolves.
        entry.watcher.on('error', () => {
          entry.watcher.close();
          if (this.#watchers.get(dir) === entry) this.#watchers.delete(dir);
          this.#onChange();
        });
        this.#watchers.set(dir, entry);
      } catch (err) {
        // A directory that is missing now is covered by its parent's point; SIGHUP still reloads.
        this.#logger.warn({ dir, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'cannot watch a policy directory');
      }
    }
  }

  points(): Map<string, ReadonlySet<string>> {
    return new Map([...this.#watchers].map(([dir, entry]) => [dir, new Set(entry.names)]));
  }

  close(): void {
    for (const entry of this.#watchers.values()) entry.watcher.close();
    this.#watchers.clear();
  }
}
