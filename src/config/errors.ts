// Policy problems are sentences an operator can act on: "policy.yaml:14: tools.x.allow[2].host: ...".
// Every check (YAML, schema, semantic, fragments) reports a Problem; PolicyError carries them all,
// so one run of `sluice check` lists every mistake, not just the first.

/** Where a value sits in the policy document: keys and sequence indexes from the root. */
export type FieldPath = readonly (string | number)[];

export interface Problem {
  /** the file name as the operator gave it (fragments: joined to the base file's directory) */
  file: string;
  /** 1-based line; absent when the file itself is the problem (missing, unreadable) */
  line?: number;
  /** absent for problems about the whole document */
  path?: FieldPath;
  message: string;
}

/** "tools.web-fetch.allow[2].host"; keys that are not plain words are quoted. */
export function formatFieldPath(path: FieldPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

export function formatProblem(problem: Problem): string {
  const where = problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  const field = problem.path && problem.path.length > 0 ? `${formatFieldPath(problem.path)}: ` : '';
  return `${where}: ${field}${problem.message}`;
}

/** A policy that cannot be used. `problems` holds one sentence per mistake, in file order. */
export class PolicyError extends Error {
  /** stable code for callers and the README's error table */
  readonly code = 'SLUICE_POLICY_INVALID';
  readonly problems: string[];

  constructor(problems: readonly Problem[]) {
    const sentences = problems.map(formatProblem);
    super(sentences.join('\n'));
    this.name = 'PolicyError';
    this.problems = sentences;
  }
}
