// Policy problems are sentences an operator can act on: "policy.yaml:14: tools.x.allow[2].host: ...".
// Every check (YAML, schema, semantic, fragments) reports a Problem; PolicyError carries them all,
// so one run of `sluice check` lists every mistake, not just the first. Each problem also has a
// stable code (`sluice check` prints it), explained with what to do in README.md's "Policy errors"
// table; test/config/error-codes.test.ts keeps that table and PROBLEM_CODES equal.

/** Where a value sits in the policy document: keys and sequence indexes from the root. */
export type FieldPath = readonly (string | number)[];

/** Every kind of problem the loader reports, grouped by the step that finds it. */
export const PROBLEM_CODES = [
  // reading and parsing one file
  'unreadable',
  'not_utf8',
  'yaml_syntax',
  'duplicate_key',
  'multiple_documents',
  'empty_file',
  'alias_expansion',
  // the schema
  'unknown_field',
  'missing_field',
  'wrong_type',
  'invalid_choice',
  'bad_format',
  'out_of_range',
  'too_few_entries',
  'empty_value',
  'repeated_entry',
  'exactly_one',
  'schema',
  // sluice's own rules for one file
  'strict_review',
  'strict_private_ip',
  'bad_cidr',
  'cidr_too_wide',
  'bad_dns_server',
  'allow_all',
  'bad_host',
  'port_twice',
  'bad_path',
  'secret_host_too_wide',
  'reserved_header',
  'require_needs_header',
  'strict_plaintext',
  // MCP-aware rules (issue 18)
  'bad_mcp',
  // git push rules (issue 21)
  'bad_ref_glob',
  'git_refs_too_wide',
  // issue 16: per-tool review (learning a tool's traffic)
  'review_until_needed',
  'review_too_long',
  'review_until_unused',
  'bad_time',
  // the base file and its fragments together
  'include_needs_file',
  'fragment_secret',
  'redefined',
  'undefined_secret',
  'placeholder_clash',
  // files the policy names, read when it is put in force
  'upstream_ca_unreadable',
] as const;
export type ProblemCode = (typeof PROBLEM_CODES)[number];

export interface Problem {
  code: ProblemCode;
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
  /** stable code for callers and README.md's "Policy errors" table */
  readonly code = 'SLUICE_POLICY_INVALID';
  readonly problems: string[];
  /** the code of each problem, in the same order as problems */
  readonly codes: ProblemCode[];
  /**
   * The digest of the files as read (see LoadedPolicy.digest), or null when one could not be read.
   * A pinned policy compares it even when the policy is invalid: an edit that breaks it is drift too.
   */
  readonly digest: string | null;

  constructor(problems: readonly Problem[], digest: string | null = null) {
    const sentences = problems.map(formatProblem);
    super(sentences.join('\n'));
    this.name = 'PolicyError';
    this.problems = sentences;
    this.codes = problems.map((problem) => problem.code);
    this.digest = digest;
  }

  /** The sentences, each followed by its code in brackets, as `sluice check` prints them. */
  report(): string {
    return this.problems.map((sentence, i) => `${sentence} [${this.codes[i]}]`).join('\n');
  }
}

/** --policy-sha256 names another digest than the policy's: sluice refuses to start. */
export class PolicyPinMismatch extends Error {
  /** stable code for callers and README.md's "Policy errors" table */
  readonly code = 'SLUICE_POLICY_PIN_MISMATCH';

  constructor(file: string, found: string, pinned: string) {
    super(`${file}: sha256 ${found} does not match the pinned --policy-sha256 ${pinned}`);
    this.name = 'PolicyPinMismatch';
  }
}
