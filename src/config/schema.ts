// The policy schema (config/network-egress.schema.json), compiled at build time, and its errors turned
// into sentences for operators. The schema fills in defaults; values are never echoed in schema
// errors because a misplaced token is exactly the kind of mistake this step catches.
import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { FieldPath, Problem, ProblemCode } from './errors.js';
import * as generated from './policy-validator.gen.js';
import { lineOf, type PolicySource } from './source.js';

/** The schema document; also what a README generator reads descriptions from. */
export const policySchema = JSON.parse(readFileSync(new URL('../../config/network-egress.schema.json', import.meta.url), 'utf8')) as {
  $id: string;
};

// Compiled ahead of time (scripts/gen-policy-validator.mjs, run by `npm run build`, holds the Ajv
// options): a start runs the generated code and never loads Ajv's compiler.
const validators: Record<'policy' | 'fragment', ValidateFunction> = {
  policy: generated.policy as unknown as ValidateFunction,
  fragment: generated.fragment as unknown as ValidateFunction,
};

/** Validates source.value in place (filling defaults); returns the problems, empty when valid. */
export function schemaProblems(source: PolicySource, kind: 'policy' | 'fragment'): Problem[] {
  const validate = validators[kind];
  if (validate(source.value)) return [];
  const errors = validate.errors ?? [];
  // A failed oneOf also reports each branch's own failure; its own sentence says it all.
  const oneOfPaths = errors.filter((e) => e.keyword === 'oneOf').map((e) => `${e.instancePath}|${e.schemaPath}/`);
  const problems: Problem[] = [];
  for (const error of errors) {
    if (error.keyword === 'propertyNames') continue;
    if (oneOfPaths.some((prefix) => `${error.instancePath}|${error.schemaPath}`.startsWith(prefix))) continue;
    const { code, path, message } = describe(error, toFieldPath(source.value, error.instancePath));
    problems.push({ code, file: source.name, line: lineOf(source, path), path, message });
  }
  return problems;
}

/** JSON pointer to a path whose sequence indexes are numbers (they locate YAML sequence items). */
function toFieldPath(root: unknown, pointer: string): (string | number)[] {
  const path: (string | number)[] = [];
  let node = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const segment = Array.isArray(node) ? Number(key) : key;
    path.push(segment);
    node = (node as Record<string | number, unknown> | undefined)?.[segment];
  }
  return path;
}

function describe(error: ErrorObject, path: FieldPath): { code: ProblemCode; path: FieldPath; message: string } {
  const params = error.params as Record<string, unknown>;
  const parent = (error.parentSchema ?? {}) as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const known = Object.keys((parent.properties as object | undefined) ?? {});
      return { code: 'unknown_field', path: [...path, field], message: `unknown field "${field}"${suggest(field, known)}` };
    }
    case 'required':
      return { code: 'missing_field', path, message: `missing required field "${String(params.missingProperty)}"` };
    case 'type':
      return { code: 'wrong_type', path, message: `must be ${typeWords(String(params.type))}, not ${jsonType(error.data)}` };
    case 'enum':
      return {
        code: 'invalid_choice',
        path,
        message: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'const':
      return { code: 'invalid_choice', path, message: `must be ${JSON.stringify(params.allowedValue)}` };
    case 'pattern': {
      const expected = String((parent['x-expected'] as string | undefined) ?? `text matching ${String(params.pattern)}`);
      if (error.propertyName !== undefined) {
        return {
          code: 'bad_format',
          path: [...path, error.propertyName],
          message: `name "${error.propertyName}" is not valid: expected ${expected}`,
        };
      }
      return { code: 'bad_format', path, message: `expected ${expected}` };
    }
    case 'minimum':
      return { code: 'out_of_range', path, message: `must be at least ${String(params.limit)}` };
    case 'maximum':
      return { code: 'out_of_range', path, message: `must be at most ${String(params.limit)}` };
    case 'minItems':
      return {
        code: 'too_few_entries',
        path,
        message: `must list at least ${String(params.limit)} ${params.limit === 1 ? 'entry' : 'entries'}`,
      };
    case 'minLength':
      return { code: 'empty_value', path, message: 'must not be empty' };
    case 'uniqueItems': {
      const [first, again] = [Number(params.j), Number(params.i)].sort((a, b) => a - b) as [number, number];
      return { code: 'repeated_entry', path: [...path, again], message: `repeats entry [${first}]; list each value once` };
    }
    case 'oneOf': {
      const fields = ((parent.oneOf as { required?: string[] }[] | undefined) ?? []).flatMap((branch) => branch.required ?? []);
      return { code: 'exactly_one', path, message: `set exactly one of ${fields.map((f) => `"${f}"`).join(' or ')}` };
    }
    default:
      return { code: 'schema', path, message: error.message ?? `fails the schema keyword ${error.keyword}` };
  }
}

const TYPE_WORDS: Record<string, string> = {
  string: 'text',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping of fields',
  null: 'null',
};

function typeWords(types: string): string {
  return types
    .split(',')
    .map((t) => TYPE_WORDS[t] ?? t)
    .join(' or ');
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a whole number' : 'a fraction';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return 'text';
  if (typeof value === 'boolean') return 'true/false';
  return typeof value;
}

/** ' (did you mean "allow"?)' for a near miss among the known fields, else ''. */
function suggest(field: string, known: readonly string[]): string {
  let best: { name: string; distance: number } | null = null;
  for (const name of known) {
    const distance = editDistance(field.toLowerCase(), name);
    if (distance <= 2 && (best === null || distance < best.distance)) best = { name, distance };
  }
  return best ? ` (did you mean "${best.name}"?)` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}
