// Loads a policy: read the exact bytes, parse (YAML or JSON), validate against the schema (which
// fills defaults), run the semantic checks, then add the fragments named by include, and digest the
// bytes read. Synchronous, because `sluice check`, serve and hot reload all want the verdict before
// doing anything else. Any problem anywhere makes the whole policy unusable: PolicyError lists them
// all (and still carries the digest, which a pinned policy compares).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type * as Tinyglobby from 'tinyglobby';
import { PolicyError, type FieldPath, type Problem, type ProblemCode } from './errors.js';
import { schemaProblems } from './schema.js';
import { checkSecrets, checkSettings, checkTools } from './semantic.js';
import { lineOf, parseSource, type PolicySource } from './source.js';
import { swapInOf, type LoadedPolicy, type PolicyDoc, type SecretDoc, type ToolDoc } from './types.js';

// required, not imported: its ESM build pulls fdir and picomatch through the ESM loader, and only
// a policy with `include:` calls it; the CommonJS build loads on that first call.
let globbing: typeof Tinyglobby | undefined;
function globSync(patterns: readonly string[], options: Tinyglobby.GlobOptions): string[] {
  globbing ??= createRequire(import.meta.url)('tinyglobby') as typeof Tinyglobby;
  return globbing.globSync(patterns, options);
}

/** The placeholder a tool writes for a secret when the policy names none. */
export function defaultPlaceholder(alias: string): string {
  return `__sluice_secret_${alias}__`;
}

/** Reads and validates the policy at `file` and every fragment it includes. Throws PolicyError. */
export function loadPolicy(file: string): LoadedPolicy {
  const absolute = resolve(file);
  const bytes = readBytes(file, absolute);
  if (!(bytes instanceof Uint8Array)) throw new PolicyError([bytes]);
  const base = checkFile(file, absolute, bytes, 'policy', true);
  const parts = [base];
  if (base.source && base.problems.length === 0) parts.push(...readFragments(base as GoodPart));
  const digest = policyDigest(parts);
  return finish(parts, digest, (doc) => ({
    doc,
    file: absolute,
    digest: digest!,
    files: parts.map((part) => part.absolute),
    loadedAt: new Date(),
  }));
}

/**
 * Validates policy text that is not (yet) a file, e.g. from an editor or a test. Relative paths
 * are taken from fileName's directory; `include` needs files, so it is refused here.
 */
export function parsePolicy(text: string, fileName: string): PolicyDoc {
  const base = checkFile(fileName, resolve(fileName), new TextEncoder().encode(text), 'policy', true);
  const doc = base.source?.value as PolicyDoc | undefined;
  if (base.problems.length === 0 && doc?.include !== undefined) {
    base.problems.push(
      problemAt('include_needs_file', base.source!, ['include'], 'fragments can only be included when the policy is loaded from a file'),
    );
  }
  return finish([base], null, (checked) => checked);
}

/**
 * The policy's one digest (LoadedPolicy.digest), over the very bytes that were parsed, so what it
 * names is what is in force. A lone file: its sha256, as sha256sum prints it. With fragments: the
 * sha256 of one "<sha256 of the file>  <name relative to the base file's directory>" line per file,
 * in load order, so a byte changed in any file, or a file added, dropped or renamed, changes it,
 * while moving the whole tree elsewhere does not. Null when a file could not be read.
 */
function policyDigest(parts: readonly Part[]): string | null {
  if (parts.some((part) => part.bytes === null)) return null;
  if (parts.length === 1) return sha256Hex(parts[0]!.bytes!);
  const combined = createHash('sha256');
  const base = dirname(parts[0]!.absolute);
  for (const part of parts) combined.update(`${sha256Hex(part.bytes!)}  ${relative(base, part.absolute)}\n`);
  return combined.digest('hex');
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** One file as checked on its own: a source when it parsed, and what is wrong with it. */
interface Part {
  name: string;
  absolute: string;
  /** what was read; null when the file could not be */
  bytes: Uint8Array | null;
  source: PolicySource | null;
  problems: Problem[];
}

/** A part that parsed and passed its own checks. */
type GoodPart = Part & { source: PolicySource };

type Tools = Record<string, ToolDoc>;
type Secrets = Record<string, SecretDoc>;

/** Merges the parts when each is fine on its own, then checks them together; throws on any problem. */
function finish<T>(parts: Part[], digest: string | null, build: (doc: PolicyDoc) => T): T {
  const problems = parts.flatMap((part) => part.problems);
  if (problems.length > 0) throw new PolicyError(problems, digest);
  const good = parts as GoodPart[];
  const doc = good[0]!.source.value as PolicyDoc;
  const combined = combine(doc, good);
  if (combined.length > 0) throw new PolicyError(combined, digest);
  // Tool names arrive in requests: "constructor" must not find Object.prototype's.
  doc.tools = Object.assign(Object.create(null) as Tools, doc.tools);
  doc.secrets = Object.assign(Object.create(null) as Secrets, doc.secrets);
  return build(doc);
}

function readBytes(name: string, absolute: string): Uint8Array | Problem {
  try {
    return readFileSync(absolute);
  } catch (error) {
    return { code: 'unreadable', file: name, message: `cannot read the file: ${readFailure(error)}` };
  }
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'it does not exist';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return code ?? (error as Error).message;
}

/** Parses and checks one file on its own; one that fails to parse or fails the schema stops there. */
function checkFile(name: string, absolute: string, bytes: Uint8Array, kind: 'policy' | 'fragment', baseStrict: boolean): Part {
  const parsed = parseSource(name, bytes);
  if (!parsed.ok) return { name, absolute, bytes, source: null, problems: parsed.problems };
  const source = parsed.source;
  const problems = schemaProblems(source, kind);
  if (problems.length > 0) return { name, absolute, bytes, source, problems: byLine(problems) };
  const value = source.value as { tools: Tools; secrets: Secrets } & PolicyDoc;
  const strict = kind === 'policy' ? value.strict : baseStrict;
  if (kind === 'policy') problems.push(...checkSettings(source, value));
  problems.push(...checkTools(source, value.tools, strict, Date.now()), ...checkSecrets(source, value.secrets, strict));
  fillDerivedDefaults(value, dirname(absolute));
  return { name, absolute, bytes, source, problems: byLine(problems) };
}

function byLine(problems: Problem[]): Problem[] {
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/**
 * The fragments named by include, in sorted path order, each checked under the base's strict
 * setting. Globs are relative to the base file's directory; the base file itself never counts.
 */
function readFragments(base: GoodPart): Part[] {
  const doc = base.source.value as PolicyDoc;
  if (!doc.include || doc.include.length === 0) return [];
  const directory = dirname(base.absolute);
  const found = globSync(doc.include, { cwd: directory, onlyFiles: true, expandDirectories: false, absolute: true });
  const files = [...new Set(found.map((file) => resolve(file)))].filter((file) => file !== base.absolute).sort();
  return files.map((file) => {
    const name = join(dirname(base.name), relative(directory, file));
    const bytes = readBytes(name, file);
    if (!(bytes instanceof Uint8Array)) return { name, absolute: file, bytes: null, source: null, problems: [bytes] };
    return checkFile(name, file, bytes, 'fragment', doc.strict);
  });
}

function problemAt(code: ProblemCode, source: PolicySource, path: FieldPath, message: string): Problem {
  return { code, file: source.name, line: lineOf(source, path), path, message };
}

interface Owner {
  part: GoodPart;
  protected: boolean;
}

/**
 * Adds the fragments' tools to doc (threat #9: a dynamic tool must not shadow a trusted one, so a
 * name is declared once, by the base or by one fragment; secrets come from the base alone), then checks what
 * only the whole policy shows: secrets that tools name, and placeholders that collide.
 */
function combine(doc: PolicyDoc, parts: readonly GoodPart[]): Problem[] {
  const problems: Problem[] = [];
  const toolOwners = new Map<string, Owner>();
  const secretOwners = new Map<string, Owner>();
  for (const [index, part] of parts.entries()) {
    const value = part.source.value as { tools: Tools; secrets: Secrets };
    for (const [kind, entries, owners, merged] of [
      ['secret', value.secrets, secretOwners, doc.secrets],
      ['tool', value.tools, toolOwners, doc.tools],
    ] as const) {
      for (const [name, entry] of Object.entries(entries)) {
        const owner = owners.get(name);
        const field = [`${kind}s`, name];
        if (kind === 'secret' && index > 0) {
          // A fragment's secret would let it send the proxy's environment or files to hosts of its choosing.
          problems.push(
            problemAt(
              'fragment_secret',
              part.source,
              field,
              "fragments may not declare secrets; declare it in the base policy, whose tools and fragments' tools may then be granted it",
            ),
          );
          continue;
        }
        if (owner) {
          const where = `${owner.part.name}:${lineOf(owner.part.source, field)}`;
          const what = owner.protected ? `the protected ${kind}` : `a ${kind}`;
          problems.push(
            problemAt('redefined', part.source, field, `redefines ${what} declared in ${where}; fragments may only add new ${kind}s`),
          );
          continue;
        }
        owners.set(name, { part, protected: kind === 'tool' && (entry as ToolDoc).protected === true });
        if (index > 0) (merged as Record<string, unknown>)[name] = entry;
      }
    }
  }
  for (const [name, { part }] of toolOwners) {
    doc.tools[name]!.secrets.forEach((alias, i) => {
      if (!secretOwners.has(alias)) {
        problems.push(
          problemAt('undefined_secret', part.source, ['tools', name, 'secrets', i], `secret "${alias}" is not defined under secrets`),
        );
      }
    });
  }
  problems.push(...placeholderClashes(doc, secretOwners));
  return problems;
}

/** sluice finds placeholders by substring, so none may equal or contain another. */
function placeholderClashes(doc: PolicyDoc, owners: ReadonlyMap<string, Owner>): Problem[] {
  const problems: Problem[] = [];
  const seen: { alias: string; placeholder: string }[] = [];
  for (const [alias, { part }] of owners) {
    const placeholder = doc.secrets[alias]!.placeholder;
    const clash = seen.find((other) => other.placeholder.includes(placeholder) || placeholder.includes(other.placeholder));
    seen.push({ alias, placeholder });
    if (!clash) continue;
    const other = owners.get(clash.alias)!.part;
    const where = `${other.name}:${lineOf(other.source, ['secrets', clash.alias])}`;
    const how = clash.placeholder === placeholder ? 'the same placeholder as' : 'a placeholder overlapping that of';
    problems.push(
      problemAt(
        'placeholder_clash',
        part.source,
        ['secrets', alias],
        `has ${how} secret "${clash.alias}" (${where}); each secret needs its own`,
      ),
    );
  }
  return problems;
}

/**
 * Defaults the schema cannot state: a secret's placeholder comes from its alias, and relative
 * file paths are taken from the directory of the file that names them, not from the cwd.
 */
function fillDerivedDefaults(value: { secrets: Secrets; tls?: PolicyDoc['tls'] }, directory: string): void {
  for (const [alias, secret] of Object.entries(value.secrets)) {
    secret.placeholder ??= defaultPlaceholder(alias);
    secret.swap_in = swapInOf(secret);
    if ('file' in secret.from) secret.from = { file: resolve(directory, secret.from.file) };
  }
  if (value.tls?.upstream_ca) value.tls.upstream_ca = resolve(directory, value.tls.upstream_ca);
}
