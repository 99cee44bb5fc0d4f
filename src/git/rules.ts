// A rule's `git:` field, compiled, and the pure check of a push's commands against it.
//   git: { push: { refs: [glob…], create: true, delete: false, tags: false, options: [glob…] }, fetch: true }
// Ref globs use the path matcher ("*" within one component, "**" across components), on the full
// ref name ("refs/heads/agent/**"). A command is allowed when:
//   - a branch or other ref (not refs/tags/): its name matches a glob; creating it needs create,
//     deleting it needs delete;
//   - a tag (refs/tags/…): tags must be true; creating it is then allowed, deleting it needs delete
//     too, and moving an existing tag needs a glob that names it.
// A push option (`git push -o`, which servers act on: CI variables, merge requests) must match an
// options glob. A push is allowed only when every command and option is: sluice refuses it whole,
// or sends it unchanged.
// Force pushes look like any other update here (telling them apart needs the repository's history).
import { compilePathGlob, type PathGlob } from '../match/path.js';
import type { GitRuleDoc } from '../config/types.js';
import { isZeroId, type RefCommand } from './commands.js';
import { printable } from './pkt-line.js';

export interface CompiledGitRule {
  readonly push: {
    readonly refs: readonly PathGlob[];
    readonly create: boolean;
    readonly delete: boolean;
    readonly tags: boolean;
    /** push options (`git push -o`) a push may carry; none by default */
    readonly options: readonly OptionGlob[];
  };
  readonly fetch: boolean;
}

/** A push-option glob: "*" stands for any run of characters, everything else for itself. */
export interface OptionGlob {
  readonly pattern: string;
  readonly regex: RegExp;
}

export function compileOptionGlob(pattern: string): OptionGlob {
  // eslint-disable-next-line no-control-regex -- git sends no option holding a control byte
  if (pattern === '' || /[\x00-\x1f\x7f]/.test(pattern))
    throw new Error(`push option pattern ${JSON.stringify(pattern)} is empty or holds a control character`);
  const source = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return { pattern, regex: new RegExp(`^${source}$`, 's') };
}

/** The ref glob as the path matcher compiles it ("refs/heads/x/**" → "/refs/heads/x/**"); throws with a reason. */
export function compileRefGlob(pattern: string): PathGlob {
  if (!pattern.startsWith('refs/')) throw new Error(`ref pattern "${pattern}" must start with "refs/"`);
  // eslint-disable-next-line no-control-regex -- control bytes are what a ref name may not hold
  if (/[\x00-\x20\x7f~^:?[\\%]/.test(pattern)) throw new Error(`ref pattern "${pattern}" contains a character a ref name cannot hold`);
  const glob = compilePathGlob(`/${pattern}`);
  return { pattern, regex: glob.regex };
}

export function compileGitRule(doc: GitRuleDoc): CompiledGitRule {
  const push = doc.push ?? {};
  return Object.freeze({
    push: Object.freeze({
      refs: Object.freeze((push.refs ?? []).map(compileRefGlob)),
      create: push.create ?? true,
      delete: push.delete ?? false,
      tags: push.tags ?? false,
      options: Object.freeze((push.options ?? []).map(compileOptionGlob)),
    }),
    fetch: doc.fetch ?? true,
  });
}

export function refMatches(rule: CompiledGitRule, ref: string): boolean {
  return rule.push.refs.some((glob) => glob.regex.test(`/${ref}`));
}

/** Why the rule refuses one command, as git shows it after "sluice: ", or null when it is allowed. */
export function commandRefusal(rule: CompiledGitRule, command: RefCommand): string | null {
  const { ref } = command;
  const creates = isZeroId(command.oldId);
  const deletes = isZeroId(command.newId);
  if (ref.startsWith('refs/tags/')) {
    if (!rule.push.tags) return `pushing tag ${ref} not allowed`;
    if (deletes) return rule.push.delete ? null : `deleting tag ${ref} not allowed`;
    if (creates) return null;
    return refMatches(rule, ref) ? null : `moving tag ${ref} not allowed`;
  }
  if (!refMatches(rule, ref)) return `push to ${ref} not allowed`;
  if (deletes) return rule.push.delete ? null : `deleting ${ref} not allowed`;
  if (creates && !rule.push.create) return `creating ${ref} not allowed`;
  return null;
}

/** Why the rule refuses a push option, or null when a glob allows it. */
export function optionRefusal(rule: CompiledGitRule, option: string): string | null {
  if (rule.push.options.some((glob) => glob.regex.test(option))) return null;
  const shown = `${printable(option.slice(0, 60))}${option.length > 60 ? '…' : ''}`;
  return `push option ${JSON.stringify(shown)} not allowed`;
}

export interface PushCheck {
  /** every command's refusal (null = that command alone would be allowed), in push order */
  readonly results: ReadonlyArray<{ command: RefCommand; refusal: string | null }>;
  readonly allowed: boolean;
}

/** Checks every command of a push; the push is allowed only when each one is. */
export function checkPush(rule: CompiledGitRule, commands: readonly RefCommand[]): PushCheck {
  const results = commands.map((command) => ({ command, refusal: commandRefusal(rule, command) }));
  return { results, allowed: results.every((r) => r.refusal === null) };
}
