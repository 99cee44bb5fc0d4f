// The policy schema is compiled ahead of time (scripts/gen-policy-validator.mjs writes
// src/config/policy-validator.gen.ts): the committed module must be exactly what the schema and
// the generator give today, or a start would validate against a stale schema. What the validators
// answer is tested through loadPolicy (load.test.ts, schema.test.ts, error-codes.test.ts).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';

t.test('the committed validator is what the schema generates', async (t) => {
  // --check exits 1 with a message when they differ; execFileSync throws on that.
  t.doesNotThrow(() => execFileSync(process.execPath, ['scripts/gen-policy-validator.mjs', '--check'], { stdio: 'pipe' }));
});

t.test('the generated module never loads the Ajv compiler', async (t) => {
  const text = readFileSync('src/config/policy-validator.gen.ts', 'utf8');
  const imports = [...text.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
  t.same(imports, ['ajv/dist/runtime/ucs2length.js']);
  t.notMatch(text, /\brequire\(/);
});
