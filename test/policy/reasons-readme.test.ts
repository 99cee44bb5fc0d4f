// The README's tables of deny reasons and error codes say what the outcome table in
// src/policy/reasons.ts says: every code once, with its status, under the header that carries it.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { DENY_REASONS, ERROR_CODES, OUTCOME, type Outcome } from '../../src/policy/reasons.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** `| \`code\` | status | ...` rows of the table that follows a header cell naming `first`. */
function table(first: string): Map<string, number> {
  const start = readme.indexOf(`| ${first} |`);
  if (start < 0) throw new Error(`README has no table starting with "${first}"`);
  const rows = new Map<string, number>();
  for (const line of readme.slice(start).split('\n').slice(2)) {
    const m = /^\| `([a-z_]+)` \| (\d{3}) \|/.exec(line);
    if (!m) break;
    rows.set(m[1]!, Number(m[2]));
  }
  return rows;
}

t.test('README deny reasons and error codes match the outcome table', async (t) => {
  const tables: Array<[string, readonly Outcome[], string]> = [
    ['reason', DENY_REASONS, 'X-Sluice-Deny'],
    ['`X-Sluice-Error`', ERROR_CODES, 'X-Sluice-Error'],
  ];
  for (const [first, codes, header] of tables) {
    const rows = table(first);
    t.same([...rows.keys()].sort(), [...codes].sort(), `the ${header} table lists exactly the ${header} codes`);
    for (const code of codes) {
      t.equal(OUTCOME[code].header, header, `${code} is sent as ${header}`);
      t.equal(rows.get(code), OUTCOME[code].status, `${code}: the README's status is the table's`);
    }
  }
});
