// One policy file as text and as a YAML tree, so every later check can point at a line.
// JSON is YAML 1.2, so one parser serves both; duplicate keys are refused in either.
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { FieldPath, Problem } from './errors.js';

export interface PolicySource {
  /** the name problems use */
  name: string;
  tree: Document.Parsed;
  lines: LineCounter;
  /** the plain value (objects, arrays, scalars); the schema step fills in defaults in place */
  value: unknown;
}

export type Parsed = { ok: true; source: PolicySource } | { ok: false; problems: Problem[] };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Anchors and aliases are legal YAML, but a policy needs few; many expand exponentially (billion laughs). */
const MAX_ALIAS_COUNT = 100;

export function parseSource(name: string, bytes: Uint8Array): Parsed {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, problems: [{ code: 'not_utf8', file: name, message: 'the file is not valid UTF-8 text' }] };
  }
  const lines = new LineCounter();
  const tree = parseDocument(text, { lineCounter: lines, uniqueKeys: true, strict: true, prettyErrors: false });
  const syntax = [...tree.errors, ...tree.warnings].map((error): Problem => ({
    code: error.code === 'DUPLICATE_KEY' ? 'duplicate_key' : error.code === 'MULTIPLE_DOCS' ? 'multiple_documents' : 'yaml_syntax',
    file: name,
    line: lines.linePos(error.pos[0]).line,
    message: yamlMessage(error.code, error.message, text, error.pos[0]),
  }));
  if (syntax.length > 0) return { ok: false, problems: syntax };
  if (tree.contents === null) {
    return {
      ok: false,
      problems: [{ code: 'empty_file', file: name, line: 1, message: 'the file is empty; a policy needs at least "version: 1"' }],
    };
  }
  let value: unknown;
  try {
    value = tree.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    return {
      ok: false,
      problems: [{ code: 'alias_expansion', file: name, line: 1, message: `cannot expand the document: ${(error as Error).message}` }],
    };
  }
  return { ok: true, source: { name, tree, lines, value } };
}

function yamlMessage(code: string, message: string, text: string, offset: number): string {
  if (code === 'DUPLICATE_KEY') {
    return `duplicate key ${JSON.stringify(keyAt(text, offset))}; a key may appear only once in a mapping`;
  }
  if (code === 'MULTIPLE_DOCS') return 'a policy file holds one YAML document; remove the "---" separator';
  // yaml appends " at line L, column C" (we print the line ourselves).
  return `syntax error: ${message.replace(/ at line \d+, column \d+[\s\S]*$/, '')}`;
}

/** The key a duplicate-key error points at: a double-quoted, single-quoted or plain scalar. */
function keyAt(text: string, offset: number): string {
  const rest = text.slice(offset);
  const doubleQuoted = /^"(?:[^"\\]|\\.)*"/.exec(rest);
  if (doubleQuoted) {
    try {
      return JSON.parse(doubleQuoted[0]) as string;
    } catch {
      return doubleQuoted[0];
    }
  }
  const singleQuoted = /^'((?:[^']|'')*)'/.exec(rest);
  if (singleQuoted) return singleQuoted[1]!.replace(/''/g, "'");
  return /^[^:\n]*/.exec(rest)![0].trim();
}

/**
 * 1-based line of the value at path: the line of the key that names it (a missing value gives
 * its nearest present ancestor, so "missing required field" points at the parent).
 */
export function lineOf(source: PolicySource, path: FieldPath): number {
  let node: unknown = source.tree.contents;
  let offset = rangeStart(node) ?? 0;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (!pair) break;
      offset = rangeStart(pair.key) ?? rangeStart(pair.value) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
  }
  return source.lines.linePos(offset).line;
}

function rangeStart(node: unknown): number | undefined {
  return (node as Node | null | undefined)?.range?.[0];
}
