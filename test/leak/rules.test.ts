import t from 'tap';
import rules from '../../src/leak/gitleaks-rules.json' with { type: 'json' };
import { compileRe2, re2ToJs } from '../../src/leak/re2.js';
import { defaultShapes, EXCLUDED } from '../../src/leak/shapes.js';

t.test('every gitleaks rule and allowlist regex converts and compiles', async (t) => {
  const failures: string[] = [];
  for (const rule of rules.rules) {
    const sources = [rule.regex, ...rule.allowlists.flatMap((a) => ('regexes' in a ? a.regexes : []))].filter(
      (s): s is string => typeof s === 'string',
    );
    for (const source of sources) {
      const compiled = compileRe2(source);
      if (compiled instanceof Error) failures.push(`${rule.id}: ${compiled.message}`);
    }
  }
  for (const source of rules.global.regexes) if (compileRe2(source) instanceof Error) failures.push(`global: ${source}`);
  t.same(failures, []);
  t.ok(rules.rules.length > 200, `${rules.rules.length} rules`);
});

t.test('the loaded set: sluice shapes first, then gitleaks, minus the excluded', async (t) => {
  const names = defaultShapes().shapes.map((s) => s.name);
  t.equal(names[0], 'aws_access_key_id');
  for (const id of Object.keys(EXCLUDED)) t.notOk(names.includes(`gitleaks:${id}`), id);
  t.ok(names.filter((n) => n.startsWith('gitleaks:')).length > 200);
});

t.test('RE2 to JS: inline case-insensitivity, \\z, POSIX classes, named groups', async (t) => {
  t.equal(re2ToJs('SG\\.(?i)[a-z]{2}'), 'SG\\.[a-zA-Z]{2}');
  t.equal(re2ToJs('(?i)ab(?-i:C)d'), '[aA][bB](?:C)[dD]');
  t.equal(re2ToJs('x\\z'), 'x$');
  t.equal(re2ToJs('[[:alnum:]]'), '[a-zA-Z0-9]');
  t.equal(re2ToJs('(?P<n>a)'), '(?<n>a)');
  t.equal(re2ToJs('(?s:.)'), '(?:[\\s\\S])');
  const regex = compileRe2('\\b(SG\\.(?i)[a-z0-9=_\\-\\.]{66})(?:[\\x60\'"\\s;]|\\\\[nr]|$)');
  t.ok(regex instanceof RegExp && regex.test(`SG.${'Ab'.repeat(33)}`));
});
