// Where a field of a loaded policy is written: file and line, for messages about a policy that
// loaded fine (the warnings of `sluice check`). The loader keeps no YAML trees, so the files it read
// are parsed again; a tool's fields are found in the file that declares the tool.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FieldPath } from './errors.js';
import { lineOf, parseSource, type PolicySource } from './source.js';
import type { LoadedPolicy } from './types.js';

export type Locate = (field: FieldPath) => { file: string; line?: number };

/** name: the base file as the operator gave it; fragments are named relative to it, as problems are. */
export function policyLocator(loaded: LoadedPolicy, name: string): Locate {
  const sources: PolicySource[] = [];
  for (const [i, file] of loaded.files.entries()) {
    const shown = i === 0 ? name : path.join(path.dirname(name), path.relative(path.dirname(loaded.file), file));
    try {
      const parsed = parseSource(shown, readFileSync(file));
      if (parsed.ok) sources.push(parsed.source);
    } catch {
      // Changed or gone since it was loaded: the message goes without a line.
    }
  }
  return (field) => {
    const tool = field[0] === 'tools' ? String(field[1]) : null;
    const source =
      (tool !== null && sources.find((s) => Object.hasOwn((s.value as { tools?: object } | null)?.tools ?? {}, tool))) || sources[0];
    if (!source) return { file: name };
    return { file: source.name, line: lineOf(source, field) };
  };
}
