// The warning tier of `sluice check`: exfil_surface (silenced by exfil_ok), moot_rule (issue 15: a
// broader rule earlier in the list decides everything a later one would) and review_ended.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { RuleDoc } from '../../src/config/types.js';
import { loadExfilList } from '../../src/exfil/surface.js';
import { policyWarnings, WARNING_CODES } from '../../src/warnings/policy-warnings.js';
import { makeDoc } from '../policy/fixtures.js';

const exfil = loadExfilList();
const warn = (allow: RuleDoc[], tool: Record<string, unknown> = {}, now = 0) =>
  policyWarnings(makeDoc({ tools: { t: { allow, ...tool } } }), exfil, now).map((w) => `${w.code} ${w.path.join('.')}`);

t.test('moot rules', async (t) => {
  const cases: { name: string; allow: RuleDoc[]; moot: number[] }[] = [
    { name: 'same host, no restriction first', allow: [{ host: 'a.example' }, { host: 'a.example', methods: ['GET'] }], moot: [1] },
    { name: 'the narrow rule first is fine', allow: [{ host: 'a.example', methods: ['GET'] }, { host: 'a.example' }], moot: [] },
    {
      name: 'a wildcard covers a name under it',
      allow: [{ host: '*.example.com' }, { host: 'api.example.com', sha256: 'a'.repeat(64) }],
      moot: [1],
    },
    { name: 'a wildcard never covers its apex', allow: [{ host: '*.example.com' }, { host: 'example.com' }], moot: [] },
    {
      name: 'other ports',
      allow: [
        { host: 'a.example', ports: [443] },
        { host: 'a.example', ports: [8443] },
      ],
      moot: [],
    },
    { name: 'more ports cover fewer', allow: [{ host: 'a.example', ports: [443, 8443] }, { host: 'a.example:8443' }], moot: [1] },
    {
      name: 'methods superset',
      allow: [
        { host: 'a.example', methods: ['GET', 'POST'] },
        { host: 'a.example', methods: ['GET'] },
      ],
      moot: [1],
    },
    {
      name: 'methods not a superset',
      allow: [
        { host: 'a.example', methods: ['GET'] },
        { host: 'a.example', methods: ['GET', 'POST'] },
      ],
      moot: [],
    },
    {
      name: 'a prefix glob covers paths under it',
      allow: [
        { host: 'a.example', paths: ['/repos/**'] },
        { host: 'a.example', paths: ['/repos/x/*'] },
      ],
      moot: [1],
    },
    {
      name: 'disjoint paths',
      allow: [
        { host: 'a.example', paths: ['/a/**'] },
        { host: 'a.example', paths: ['/b'] },
      ],
      moot: [],
    },
    { name: 'paths never cover no paths', allow: [{ host: 'a.example', paths: ['/**'] }, { host: 'a.example' }], moot: [] },
    { name: 'other hosts', allow: [{ host: 'a.example' }, { host: 'b.example' }], moot: [] },
  ];
  for (const c of cases) {
    t.same(
      warn(c.allow).filter((w) => w.startsWith('moot_rule')),
      c.moot.map((i) => `moot_rule tools.t.allow.${i}`),
      c.name,
    );
  }
});

t.test('exfiltration surface, and exfil_ok', async (t) => {
  t.same(warn([{ host: 'pastebin.com' }]), ['exfil_surface tools.t.allow.0']);
  t.same(warn([{ host: 'pastebin.com', exfil_ok: 'the tool publishes build logs there' }]), []);
  t.same(warn([{ host: 'pastebin.com', methods: ['GET'] }]), []);
  const [sentence] = policyWarnings(makeDoc({ tools: { t: { allow: [{ host: 'hooks.slack.com' }] } } }), exfil, 0).map((w) => w.message);
  t.match(
    sentence,
    /^allows writing to hooks\.slack\.com \(chat_webhook: .*\) with no method restriction; narrow it: allow only reading methods/,
  );
  t.match(sentence, /add exfil_ok: "why" to the rule$/);
});

t.test('a review that ended', async (t) => {
  const tool = { on_violation: 'review', review_until: '2026-12-01T00:00:00Z' };
  t.same(warn([], tool, Date.parse('2026-12-02T00:00:00Z')), ['review_ended tools.t.review_until']);
  t.same(warn([], tool, Date.parse('2026-11-30T00:00:00Z')), []);
});

t.test("README's warnings table lists exactly the warning codes", async (t) => {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('\n### Policy warnings\n');
  t.ok(start >= 0, 'README.md has a "### Policy warnings" section');
  const section = readme.slice(start, readme.indexOf('\n#', start + 1));
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  t.same(rows.sort(), [...WARNING_CODES].sort());
});
