import t from 'tap';
import fc from '../helpers/fc.js';
import { compilePathGlob, normalizePath } from '../../src/match/path.js';

// [raw request target, normalized path | invalid-reason fragment, query]
type Row = [raw: string, expected: { path: string; query?: string | null } | { invalid: string }];
const normalization: Row[] = [
  ['/', { path: '/' }],
  ['', { path: '/' }],
  ['/a/b', { path: '/a/b' }],
  ['/a/b/', { path: '/a/b/' }],
  ['/a/./b', { path: '/a/b' }],
  ['/a/../b', { path: '/b' }],
  ['/a/../../b', { path: '/b' }],
  ['/../../etc/passwd', { path: '/etc/passwd' }],
  ['/a/b/..', { path: '/a/' }],
  ['/a/b/.', { path: '/a/b/' }],
  ['/..', { path: '/' }],
  ['/.', { path: '/' }],
  ['/a/..', { path: '/' }],
  ['/%2e%2e/secret', { path: '/secret' }],
  ['/public/%2e%2e/secret', { path: '/secret' }],
  ['/public/%2E%2E/secret', { path: '/secret' }],
  ['/public/.%2e/secret', { path: '/secret' }],
  ['/public/%2e/x', { path: '/public/x' }],
  ['/%7euser', { path: '/~user' }],
  ['/%7Euser', { path: '/~user' }],
  ['/%41%62%30%2D%5F', { path: '/Ab0-_' }],
  ['/a%3bb', { path: '/a%3Bb' }],
  ['/a%3Bb', { path: '/a%3Bb' }],
  ['/a%20b', { path: '/a%20b' }],
  ['/caf%c3%a9', { path: '/caf%C3%A9' }],
  ['/%252e%252e/x', { path: '/%252e%252e/x' }],
  ['/a//b', { path: '/a/b' }],
  ['//a', { path: '/a' }],
  ['/a//../b', { path: '/b' }],
  ['/a/b//', { path: '/a/b/' }],
  ['/a?x=1&y=../..', { path: '/a', query: 'x=1&y=../..' }],
  ['/a/../b?q=%2F', { path: '/b', query: 'q=%2F' }],
  ['/?', { path: '/', query: '' }],
  ['?x', { path: '/', query: 'x' }],
  ['/a;b/c', { path: '/a;b/c' }],
  ['/a...b/...', { path: '/a...b/...' }],
  ['/a%2Fb', { invalid: 'encoded slash' }],
  ['/a%2fb', { invalid: 'encoded slash' }],
  ['/a%5cb', { invalid: 'encoded backslash' }],
  ['/a%5C..%5Cb', { invalid: 'encoded backslash' }],
  ['/a\\b', { invalid: 'backslash' }],
  ['/a/..\\b', { invalid: 'backslash' }],
  ['/a%00b', { invalid: 'NUL' }],
  ['/a%', { invalid: 'malformed' }],
  ['/a%2', { invalid: 'malformed' }],
  ['/a%zz', { invalid: 'malformed' }],
  ['/a b', { invalid: 'space' }],
  ['/a\tb', { invalid: 'control' }],
  ['/café', { invalid: 'non-ASCII' }],
  ['/a#frag', { invalid: 'fragment' }],
  ['/public/..;/secret', { invalid: 'dot segment with parameters' }],
  ['/public/.;x/secret', { invalid: 'dot segment with parameters' }],
  ['a/b', { invalid: 'does not start with' }],
  ['*', { invalid: 'does not start with' }],
  ['http://example.com/a', { invalid: 'does not start with' }],
];

t.test('normalizePath table', async (t) => {
  t.ok(normalization.length >= 30);
  for (const [raw, expected] of normalization) {
    const got = normalizePath(raw);
    if ('invalid' in expected) {
      t.equal(got.ok, false, `${JSON.stringify(raw)} is invalid`);
      if (!got.ok) t.match(got.why, expected.invalid, `${JSON.stringify(raw)} why`);
    } else {
      t.same(got, { ok: true, path: expected.path, query: expected.query ?? null }, JSON.stringify(raw));
    }
  }
});

// [pattern, path, matches]
const globs: Array<[string, string, boolean]> = [
  ['/repos/**', '/repos', true],
  ['/repos/**', '/repos/', true],
  ['/repos/**', '/repos/a', true],
  ['/repos/**', '/repos/a/b/c', true],
  ['/repos/**', '/repository', false],
  ['/repos/**', '/repo', false],
  ['/repos/**', '/', false],
  ['/repos/*', '/repos/a', true],
  ['/repos/*', '/repos/', true],
  ['/repos/*', '/repos', false],
  ['/repos/*', '/repos/a/b', false],
  ['/repos/*/issues', '/repos/x/issues', true],
  ['/repos/*/issues', '/repos/x/y/issues', false],
  ['/repos/*.json', '/repos/a.json', true],
  ['/repos/*.json', '/repos/a.jsonx', false],
  ['/repos/*.json', '/repos/a/b.json', false],
  ['/a/**/b', '/a/b', true],
  ['/a/**/b', '/a/x/b', true],
  ['/a/**/b', '/a/x/y/b', true],
  ['/a/**/b', '/a/xb', false],
  ['/a/**/b', '/ab', false],
  ['/**', '/', true],
  ['/**', '/anything/at/all', true],
  ['/**/*.tar.gz', '/x/y/pkg.tar.gz', true],
  ['/**/*.tar.gz', '/pkg.tar.gz', true],
  ['/**/*.tar.gz', '/pkgXtarXgz', false],
  ['/', '/', true],
  ['/', '/a', false],
  ['/exact', '/exact', true],
  ['/exact', '/exact/', false],
  ['/exact', '/Exact', false],
  ['/v1.0/x', '/v1x0/x', false],
  ['/a+b(c)', '/a+b(c)', true],
  ['/a+b(c)', '/aab(c)', false],
  ['/%7euser/*', '/~user/x', true],
  ['/a%3bb', '/a%3Bb', true],
  ['/dir/', '/dir/', true],
  ['/dir/', '/dir', false],
];

t.test('glob semantics table', async (t) => {
  for (const [pattern, path, expected] of globs) {
    t.equal(compilePathGlob(pattern).regex.test(path), expected, `${pattern} vs ${path}`);
  }
});

t.test('compilePathGlob refuses patterns that could never match a normalized path', async (t) => {
  const bad: Array<[string, string]> = [
    ['repos/**', 'must start with'],
    ['/a?b=1', 'query'],
    ['/a/../b', '".." segment'],
    ['/a/./b', '"." segment'],
    ['/a//b', 'empty segment'],
    ['/a**/b', 'whole segment'],
    ['/a/***', 'whole segment'],
    ['/a%2Fb', 'encoded slash'],
    ['/a\\b', 'backslash'],
  ];
  for (const [pattern, why] of bad) t.throws(() => compilePathGlob(pattern), { message: new RegExp(why) }, pattern);
});

t.test('normalizePath never throws and leaves no dot or empty segment', async () => {
  const pathChars = fc.constantFrom('/', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'a', '?', ';', '\\', '#', '~', '0', ' ', 'é');
  const hostile = fc.oneof(
    fc.string(),
    fc.string({ unit: pathChars }),
    fc.string({ unit: pathChars }).map((s) => `/${s}`),
  );
  fc.assert(
    fc.property(hostile, (raw) => {
      const got = normalizePath(raw);
      if (!got.ok) return typeof got.why === 'string' && got.why.length > 0;
      const { path } = got;
      return (
        path.startsWith('/') &&
        !/\/\.\.?(\/|$)/.test(path) &&
        !path.includes('//') &&
        !path.includes('\\') &&
        !path.includes('?') &&
        // idempotent: normalizing again changes nothing
        (normalizePath(path) as { path?: string }).path === path
      );
    }),
    { numRuns: 5000 },
  );
});
