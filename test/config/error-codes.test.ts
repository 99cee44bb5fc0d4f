// README.md's "Policy errors" table lists every policy error code in src/ and every problem code the
// loader can report, and nothing else: a code added without its row (or a row left behind by a
// removed code) fails here. Each problem code must also be produced somewhere in src/.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PROBLEM_CODES } from '../../src/config/errors.js';

const SRC = path.resolve('src');

function sources(dir: string): Array<{ file: string; text: string }> {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') ? [{ file, text: readFileSync(file, 'utf8') }] : [];
  });
}

/** The first-column codes of the table under "### Policy errors". */
function readmeCodes(): string[] {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('\n### Policy errors\n');
  if (start < 0) return [];
  const end = readme.indexOf('\n#', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^\| `([A-Za-z0-9_]+)` \|/gm)].map((m) => m[1]!);
}

const all = sources(SRC);
const errorCodes = [...new Set(all.flatMap(({ text }) => [...text.matchAll(/'(SLUICE_POLICY_[A-Z0-9_]+)'/g)].map((m) => m[1]!)))].sort();

t.test('the README table has exactly one row per code', async (t) => {
  const rows = readmeCodes();
  t.ok(rows.length > 0, 'README.md has a "### Policy errors" table');
  t.same([...rows].sort(), [...errorCodes, ...PROBLEM_CODES].sort(), 'rows = SLUICE_POLICY_* codes in src/ + PROBLEM_CODES');
  t.equal(new Set(rows).size, rows.length, 'no code has two rows');
});

t.test('every problem code is produced somewhere in src/', async (t) => {
  const errorsFile = path.join(SRC, 'config', 'errors.ts');
  for (const code of PROBLEM_CODES) {
    const users = all.filter(({ file, text }) => file !== errorsFile && text.includes(`'${code}'`)).map(({ file }) => path.relative(SRC, file));
    t.ok(users.length > 0, `${code} is reported by ${users.join(', ') || 'nothing'}`);
  }
});

t.test('the error classes carry the codes the table names', async (t) => {
  t.same(errorCodes, ['SLUICE_POLICY_INVALID', 'SLUICE_POLICY_PIN_MISMATCH']);
});
