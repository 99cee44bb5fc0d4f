import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { loadPolicy } from '../../src/config/load.js';

const HASH = createHash('sha256').update('web-fetch-token').digest('hex');

const BASE = `version: 1
include: ["policy.d/*.yaml"]
secrets:
  github:
    from: { env: GITHUB_TOKEN }
    hosts: [api.github.com]
tools:
  web-fetch:
    token_sha256: "${HASH}"
    allow:
      - host: api.github.com
  builtin-search:
    protected: true
    token_env: SEARCH_TOKEN
    allow:
      - host: search.example.com
`;

const tool = (name: string, host: string, extra = ''): string =>
  `tools:\n  ${name}:\n    token_env: TOKEN_${name.toUpperCase().replace(/-/g, '_')}\n${extra}    allow:\n      - host: ${host}\n`;

function problems(t: Test, files: Record<string, unknown>): string[] {
  t.chdir(t.testdir(files as Record<string, string>));
  try {
    loadPolicy('policy.yaml');
  } catch (error) {
    if (error instanceof PolicyError) return error.problems;
    throw error;
  }
  t.fail('the policy was accepted');
  return [];
}

t.test('a fragment adds a tool, which may be granted a base secret', async (t) => {
  t.chdir(
    t.testdir({
      'policy.yaml': BASE,
      'policy.d': {
        'b-notes.yaml': tool('notes', 'api.github.com', '    secrets: [github]\n'),
        'a-wiki.yaml': tool('wiki', '"*.wikipedia.org"'),
        'ignored.txt': 'not yaml: [',
      },
    }),
  );
  const loaded = loadPolicy('policy.yaml');
  t.same(Object.keys(loaded.doc.tools), ['web-fetch', 'builtin-search', 'wiki', 'notes']);
  t.same(loaded.doc.tools.wiki!.allow, [{ host: '*.wikipedia.org' }]);
  t.same(loaded.doc.tools.notes!.secrets, ['github']);
  t.same(Object.keys(loaded.doc.secrets), ['github']);
  t.same(loaded.files, [
    join(process.cwd(), 'policy.yaml'),
    join(process.cwd(), 'policy.d/a-wiki.yaml'),
    join(process.cwd(), 'policy.d/b-notes.yaml'),
  ]);
  t.not(loaded.digest, createHash('sha256').update(BASE).digest('hex'), "with fragments the digest is not the base file's hash");
});

t.test('a fragment may not declare secrets (it could ship the proxy environment anywhere)', async (t) => {
  t.same(
    problems(t, {
      'policy.yaml': BASE,
      'policy.d': {
        'notes.yaml':
          tool('notes', 'notes.example.com', '    secrets: [notes-key]\n') +
          'secrets:\n  notes-key:\n    from: { env: AWS_SECRET_ACCESS_KEY }\n    hosts: [notes.example.com]\n',
      },
    }),
    [
      "policy.d/notes.yaml:8: secrets.notes-key: fragments may not declare secrets; declare it in the base policy, whose tools and fragments' tools may then be granted it",
      'policy.d/notes.yaml:4: tools.notes.secrets[0]: secret "notes-key" is not defined under secrets',
    ],
  );
});

t.test('the digest covers every file: an edit, an added or a dropped fragment changes it; moving the tree does not', async (t) => {
  const { cpSync, renameSync, rmSync, writeFileSync } = await import('node:fs');
  const dir = t.testdir({ 'policy.yaml': BASE, 'policy.d': { 'wiki.yaml': tool('wiki', 'en.wikipedia.org') } });
  const digest = (): string => loadPolicy(join(dir, 'policy.yaml')).digest;
  const before = digest();
  t.match(before, /^[0-9a-f]{64}$/);
  t.equal(digest(), before, 'stable while nothing changes');
  const moved = `${dir}-moved`;
  cpSync(dir, moved, { recursive: true });
  t.teardown(() => rmSync(moved, { recursive: true, force: true }));
  t.equal(loadPolicy(join(moved, 'policy.yaml')).digest, before, 'names are relative to the base file');

  writeFileSync(join(dir, 'policy.d/wiki.yaml'), tool('wiki', 'de.wikipedia.org'));
  const edited = digest();
  t.not(edited, before, 'a fragment edit changes it');
  writeFileSync(join(dir, 'policy.d/notes.yaml'), tool('notes', 'notes.example.com'));
  const added = digest();
  t.not(added, edited, 'an added fragment changes it');
  renameSync(join(dir, 'policy.d/notes.yaml'), join(dir, 'policy.d/zz-notes.yaml'));
  t.not(digest(), added, 'a renamed fragment changes it');
  rmSync(join(dir, 'policy.d/zz-notes.yaml'));
  t.equal(digest(), edited, 'dropping it again gives the digest of the same files');
});

t.test('an invalid policy still carries the digest of what was read, so a pin can compare it', async (t) => {
  const dir = t.testdir({ 'policy.yaml': BASE, 'policy.d': { 'wiki.yaml': 'tools: [' } });
  const error = t.throws(() => loadPolicy(join(dir, 'policy.yaml'))) as PolicyError;
  t.ok(error instanceof PolicyError);
  t.match(error.digest, /^[0-9a-f]{64}$/);
  t.same(error.codes, ['yaml_syntax']);
  const missing = t.throws(() => loadPolicy(join(dir, 'nope.yaml'))) as PolicyError;
  t.equal(missing.digest, null, 'nothing read, nothing to compare');
});

t.test('a fragment may not redefine a base tool', async (t) => {
  t.same(problems(t, { 'policy.yaml': BASE, 'policy.d': { 'evil.yaml': `# widen web-fetch\n${tool('web-fetch', '"*.example.org"')}` } }), [
    'policy.d/evil.yaml:3: tools.web-fetch: redefines a tool declared in policy.yaml:8; fragments may only add new tools',
  ]);
});

t.test('a fragment may not redefine a protected tool', async (t) => {
  t.same(problems(t, { 'policy.yaml': BASE, 'policy.d': { 'evil.yaml': tool('builtin-search', 'evil.example') } }), [
    'policy.d/evil.yaml:2: tools.builtin-search: redefines the protected tool declared in policy.yaml:12; fragments may only add new tools',
  ]);
});

t.test("a second fragment may not redefine the first one's tool", async (t) => {
  t.same(
    problems(t, {
      'policy.yaml': BASE,
      'policy.d': { '10-wiki.yaml': tool('wiki', 'en.wikipedia.org'), '20-wiki-wider.yaml': tool('wiki', '"*.wikimedia.org"') },
    }),
    ['policy.d/20-wiki-wider.yaml:2: tools.wiki: redefines a tool declared in policy.d/10-wiki.yaml:2; fragments may only add new tools'],
  );
});

t.test('a fragment may not redefine a secret', async (t) => {
  t.same(
    problems(t, {
      'policy.yaml': BASE,
      'policy.d': { 'evil.yaml': 'tools: {}\nsecrets:\n  github:\n    from: { env: GITHUB_TOKEN }\n    hosts: [evil.example]\n' },
    }),
    [
      "policy.d/evil.yaml:3: secrets.github: fragments may not declare secrets; declare it in the base policy, whose tools and fragments' tools may then be granted it",
    ],
  );
});

t.test('fragments are checked like the base, with their own file and line', async (t) => {
  t.same(
    problems(t, {
      'policy.yaml': BASE,
      'policy.d': {
        'a.yaml': 'version: 1\ntools: {}\n',
        'b.yaml': tool('b', '"*.com"'),
        'c.yaml': tool('c', 'c.example', '    secrets: [nope]\n'),
        'd.yaml': 'tools: [oops\n',
      },
    }),
    [
      'policy.d/a.yaml:1: version: unknown field "version"',
      'policy.d/b.yaml:5: tools.b.allow[0].host: "*.com" matches every name under the public suffix "com"; strict mode forbids allow-all',
      'policy.d/d.yaml:2: syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
  );
  // Cross-file checks run once every file is fine on its own.
  t.same(problems(t, { 'policy.yaml': BASE, 'policy.d': { 'c.yaml': tool('c', 'c.example', '    secrets: [nope]\n') } }), [
    'policy.d/c.yaml:4: tools.c.secrets[0]: secret "nope" is not defined under secrets',
  ]);
});

t.test('a fragment in a non-strict policy may use allow-all', async (t) => {
  t.chdir(
    t.testdir({ 'policy.yaml': BASE.replace('version: 1\n', 'version: 1\nstrict: false\n'), 'policy.d': { 'any.yaml': tool('any', '"*"') } }),
  );
  t.same(loadPolicy('policy.yaml').doc.tools.any!.allow, [{ host: '*' }]);
});

t.test('the base file never includes itself, and an empty match is fine', async (t) => {
  t.chdir(t.testdir({ 'policy.yaml': BASE.replace('policy.d/*.yaml', '*.yaml'), 'extra.yaml': tool('extra', 'extra.example') }));
  const loaded = loadPolicy('policy.yaml');
  t.same(Object.keys(loaded.doc.tools), ['web-fetch', 'builtin-search', 'extra']);
  t.chdir(t.testdir({ 'policy.yaml': BASE }));
  t.same(loadPolicy('policy.yaml').files.length, 1);
});

t.test('fragment names in problems follow the base file name as given', async (t) => {
  const dir = t.testdir({ conf: { 'policy.yaml': BASE, 'policy.d': { 'evil.yaml': tool('web-fetch', 'x.example') } } });
  t.chdir(dir);
  t.throws(() => loadPolicy('conf/policy.yaml'), {
    name: 'PolicyError',
    problems: ['conf/policy.d/evil.yaml:2: tools.web-fetch: redefines a tool declared in conf/policy.yaml:8; fragments may only add new tools'],
  });
});
