// The grants store (issue 17): the rules approvals write, and the use counts of every rule with
// max_uses (a policy rule's too), behind one small interface. The file store is the embedded
// default: one JSON file beside the policy, written atomically (temp file + rename) by sluice only.
// A shared store for a multi-replica gateway (Redis) fits the same interface: load and check read
// it, add and take are the only writes, and take is the one atomic step (Redis: a Lua INCR-if-below).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { GrantDoc } from '../policy/compile.js';

/** One grant: a rule for one tool, with how it came to be. */
export interface GrantRecord extends GrantDoc {
  /** the approval (held request) it answered */
  approval: string;
  scope: 'host' | 'path';
  created_at: string;
}

/** What the store holds at one moment. */
export interface GrantsSnapshot {
  /** sha256 of the stored form (the file's bytes): its own digest, never part of the policy's */
  readonly digest: string;
  readonly grants: readonly GrantRecord[];
  readonly uses: ReadonlyMap<string, number>;
}

/** A change sluice did not make (or a store it cannot read): the grants in memory stay. */
export class GrantsRefused extends Error {
  override readonly name = 'GrantsRefused';
  readonly found: string | null;
  constructor(message: string, found: string | null) {
    super(message);
    this.found = found;
  }
}

export interface GrantStore {
  /** where it is kept, for messages */
  readonly where: string;
  /** the grants and counts in force (what decisions read; never blocks) */
  snapshot(): GrantsSnapshot;
  /** null while the store holds what sluice last wrote; a GrantsRefused for a change it did not make */
  check(): Promise<GrantsRefused | null>;
  /** adds a grant (dropping grants that expired or are used up); resolves to the new snapshot */
  add(grant: GrantRecord, now: number): Promise<GrantsSnapshot>;
  /** takes one use of `key` if fewer than `max` were taken; false when used up */
  take(key: string, max: number): Promise<boolean>;
  /** calls back on a change of the store made by anyone (the caller checks who); returns the stop */
  watch(onChange: () => void): () => void;
}

interface StoredForm {
  version: 1;
  grants: GrantRecord[];
  uses: Record<string, number>;
}

const GRANT_RULE_FIELDS: ReadonlySet<string> = new Set(['host', 'ports', 'paths', 'methods', 'expires_at', 'max_uses']);

const EMPTY: StoredForm = { version: 1, grants: [], uses: {} };

/** The default grants file of a policy: "<policy dir>/<policy name>.grants.json". */
export function defaultGrantsFile(policyFile: string): string {
  const parsed = path.parse(path.resolve(policyFile));
  return path.join(parsed.dir, `${parsed.name}.grants.json`);
}

const digestOf = (bytes: string): string => createHash('sha256').update(bytes).digest('hex');

export class FileGrantStore implements GrantStore {
  readonly where: string;
  #form: StoredForm;
  #snapshot: GrantsSnapshot;
  /** the digest of the bytes sluice last read or wrote; anything else in the file was not written by it */
  #known: string;

  /** Reads the file (absent = no grants). Throws GrantsRefused when it cannot be read or is not a grants file. */
  static open(file: string): FileGrantStore {
    return new FileGrantStore(path.resolve(file));
  }

  private constructor(file: string) {
    this.where = file;
    const read = readForm(file);
    if (read instanceof GrantsRefused) throw read;
    this.#form = read.form;
    this.#known = read.digest;
    this.#snapshot = snapshotOf(read.form, read.digest);
  }

  snapshot(): GrantsSnapshot {
    return this.#snapshot;
  }

  check(): Promise<GrantsRefused | null> {
    const read = readForm(this.where);
    if (read instanceof GrantsRefused) return Promise.resolve(read);
    if (read.digest === this.#known) return Promise.resolve(null);
    return Promise.resolve(
      new GrantsRefused(`the grants file ${this.where} was changed by something other than sluice (sha256 ${read.digest})`, read.digest),
    );
  }

  add(grant: GrantRecord, now: number): Promise<GrantsSnapshot> {
    const grants = this.#form.grants.filter((g) => live(g, this.#form.uses, now));
    const keep = new Set(grants.map((g) => `grant:${g.id}`));
    // Counts of grants that are gone go too; a policy rule's count stays (the policy may still have it).
    const uses = Object.fromEntries(Object.entries(this.#form.uses).filter(([key]) => !key.startsWith('grant:') || keep.has(key)));
    this.#write({ version: 1, grants: [...grants, grant], uses });
    return Promise.resolve(this.#snapshot);
  }

  take(key: string, max: number): Promise<boolean> {
    const used = this.#form.uses[key] ?? 0;
    if (used >= max) return Promise.resolve(false);
    this.#write({ ...this.#form, uses: { ...this.#form.uses, [key]: used + 1 } });
    return Promise.resolve(true);
  }

  watch(onChange: () => void): () => void {
    const name = path.basename(this.where);
    let watcher: FSWatcher | null = null;
    try {
      watcher = watch(path.dirname(this.where), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) onChange();
      });
      watcher.on('error', () => watcher?.close());
    } catch {
      // A directory that cannot be watched: the check before every write and on reload still runs.
    }
    return () => watcher?.close();
  }

  #write(form: StoredForm): void {
    const bytes = `${JSON.stringify(form, null, 2)}\n`;
    const temp = `${this.where}.${process.pid}.tmp`;
    writeFileSync(temp, bytes, { mode: 0o600 });
    renameSync(temp, this.where);
    this.#form = form;
    this.#known = digestOf(bytes);
    this.#snapshot = snapshotOf(form, this.#known);
  }
}

function live(grant: GrantRecord, uses: Record<string, number>, now: number): boolean {
  const { expires_at: expires, max_uses: max } = grant.rule;
  if (expires !== undefined && Date.parse(expires) <= now) return false;
  return max === undefined || (uses[`grant:${grant.id}`] ?? 0) < max;
}

function snapshotOf(form: StoredForm, digest: string): GrantsSnapshot {
  return Object.freeze({ digest, grants: Object.freeze([...form.grants]), uses: new Map(Object.entries(form.uses)) });
}

function readForm(file: string): { form: StoredForm; digest: string } | GrantsRefused {
  if (!existsSync(file)) return { form: EMPTY, digest: digestOf('') };
  let bytes: string;
  try {
    bytes = readFileSync(file, 'utf8');
  } catch (err) {
    return new GrantsRefused(`cannot read the grants file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, null);
  }
  const digest = digestOf(bytes);
  const problem = formProblem(bytes);
  if (typeof problem === 'string') return new GrantsRefused(`the grants file ${file} is not valid: ${problem}`, digest);
  return { form: problem, digest };
}

/** The stored form, or what is wrong with it (no value from it is echoed). */
function formProblem(bytes: string): StoredForm | string {
  let value: unknown;
  try {
    value = JSON.parse(bytes);
  } catch {
    return 'not JSON';
  }
  const form = value as Partial<StoredForm> | null;
  if (typeof form !== 'object' || form === null || form.version !== 1) return 'version must be 1';
  if (!Array.isArray(form.grants)) return 'grants must be a list';
  if (typeof form.uses !== 'object' || form.uses === null) return 'uses must be a mapping';
  for (const [i, grant] of form.grants.entries()) {
    const g = grant as Partial<GrantRecord> | null;
    if (typeof g?.id !== 'string' || !/^[a-z0-9]{1,32}$/.test(g.id)) return `grants[${i}].id must be 1 to 32 lower-case letters or digits`;
    if (typeof g.tool !== 'string' || typeof g.rule !== 'object' || g.rule === null) return `grants[${i}] needs a tool and a rule`;
    const rule = g.rule;
    // What an approval writes, and nothing wider: one host (never a wildcard), its port, maybe a path.
    if (typeof rule.host !== 'string' || rule.host.includes('*')) return `grants[${i}].rule.host must be one host, not a wildcard`;
    const extra = Object.keys(rule).find((key) => !GRANT_RULE_FIELDS.has(key));
    if (extra !== undefined) return `grants[${i}].rule may not set ${JSON.stringify(extra.slice(0, 40))}`;
  }
  for (const [key, count] of Object.entries(form.uses)) {
    if (!Number.isInteger(count) || count < 0) return `uses of ${JSON.stringify(key.slice(0, 80))} must be a whole number`;
  }
  return form as StoredForm;
}
