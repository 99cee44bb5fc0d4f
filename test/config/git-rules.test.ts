// The git: rule field (issue 21) in the policy: the schema (fields, types, defaults), sluice's own
// checks (ref globs, tag globs with tags off, strict mode's refusal of a glob over every branch),
// and what it compiles to (a rule that intercepts its host).
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { loadPolicy } from '../../src/config/load.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { decide, explain } from '../../src/policy/decide.js';

const HASH = createHash('sha256').update('agent-token').digest('hex');

const policy = (git: string, head = ''): string => `version: 1
${head}tools:
  agent:
    token_sha256: "${HASH}"
    allow:
      - host: git.example.com
        git:
${git}`;

function problems(t: Test, text: string): string[] {
  t.chdir(t.testdir({ 'policy.yaml': text }));
  try {
    loadPolicy('policy.yaml');
  } catch (error) {
    if (error instanceof PolicyError) return error.problems.map((sentence, i) => `${sentence} [${error.codes[i]}]`);
    throw error;
  }
  t.fail('the policy was accepted');
  return [];
}

t.test('the schema fills the defaults and the rule intercepts its host', async (t) => {
  t.chdir(t.testdir({ 'policy.yaml': policy('          push: { refs: ["refs/heads/agent/**"] }\n') }));
  const loaded = loadPolicy('policy.yaml');
  t.same(loaded.doc.tools.agent!.allow[0]!.git, {
    push: { refs: ['refs/heads/agent/**'], create: true, delete: false, tags: false, options: [] },
    fetch: true,
  });
  const compiled = compilePolicy(loaded.doc, loaded.digest);
  const rule = compiled.tools.get('agent')!.rules[0]!;
  t.same(
    rule.git?.push.refs.map((g) => g.pattern),
    ['refs/heads/agent/**'],
  );
  t.equal(rule.inspects, true, 'a git rule reads inside HTTPS');
  const connect = decide(compiled, 'agent', { phase: 'connect', host: 'git.example.com', port: 443, method: 'CONNECT' });
  t.equal(connect.intercept, true, 'its CONNECT is intercepted');
  const considered = explain(compiled, 'agent', { phase: 'connect', host: 'git.example.com', port: 443, method: 'CONNECT' }).considered;
  t.match(considered[0]?.why, 'git pushes (git:)', 'explain says the rule reads git pushes');
});

t.test('an empty git: is fetch allowed, no push', async (t) => {
  t.chdir(t.testdir({ 'policy.yaml': policy('          {}\n') }));
  const loaded = loadPolicy('policy.yaml');
  const rule = compilePolicy(loaded.doc, loaded.digest).tools.get('agent')!.rules[0]!;
  t.same(rule.git?.push, { refs: [], create: true, delete: false, tags: false, options: [] });
  t.equal(rule.git?.fetch, true);
});

t.test('schema problems', async (t) => {
  t.same(problems(t, policy('          push: { refz: [] }\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.push.refz: unknown field "refz" (did you mean "refs"?) [unknown_field]',
  ]);
  t.same(problems(t, policy('          fetch: "no"\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.fetch: must be true or false, not text [wrong_type]',
  ]);
  t.same(problems(t, policy('          push: { refs: ["heads/main"] }\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.push.refs[0]: expected a ref glob starting with "refs/" [bad_format]',
  ]);
  t.same(problems(t, policy('          pull: true\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.pull: unknown field "pull" (did you mean "push"?) [unknown_field]',
  ]);
});

t.test('sluice’s own checks of ref globs', async (t) => {
  t.same(problems(t, policy('          push: { refs: ["refs/heads/a**"] }\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.push.refs[0]: path pattern "/refs/heads/a**": "**" must be a whole segment [bad_ref_glob]',
  ]);
  t.same(problems(t, policy('          push: { refs: ["refs/heads/a b"] }\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.push.refs[0]: ref pattern "refs/heads/a b" contains a character a ref name cannot hold [bad_ref_glob]',
  ]);
  t.same(problems(t, policy('          push: { refs: ["refs/tags/v*"] }\n')), [
    'policy.yaml:8: tools.agent.allow[0].git.push.refs[0]: ref pattern "refs/tags/v*" names tags, but git.push.tags is false, which refuses every tag [bad_ref_glob]',
  ]);
  for (const wide of ['refs/heads/**', 'refs/**', 'refs/heads/*', 'refs/*/**']) {
    t.same(
      problems(t, policy(`          push: { refs: ["${wide}"] }\n`)),
      [
        `policy.yaml:8: tools.agent.allow[0].git.push.refs[0]: ref pattern "${wide}" matches every branch, main included; strict mode forbids it (name the branches the tool owns, e.g. "refs/heads/agent/**") [git_refs_too_wide]`,
      ],
      `strict refuses ${wide}`,
    );
  }
  t.chdir(t.testdir({ 'policy.yaml': policy('          push: { refs: ["refs/heads/**"] }\n', 'strict: false\n') }));
  t.ok(loadPolicy('policy.yaml'), 'strict: false allows a glob over every branch, knowingly');
});
