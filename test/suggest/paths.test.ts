// The path generaliser of `sluice policy suggest`: which segments count as ids, and which globs a
// set of paths becomes. Each glob set must cover every input path, and be the same in any order.
import t from 'tap';
import { compilePathGlob } from '../../src/match/path.js';
import { FANOUT, generalisePaths, isIdSegment } from '../../src/suggest/paths.js';

t.test('id-like segments', async (t) => {
  const cases: [string, boolean][] = [
    ['12345', true],
    ['0', true],
    ['3f2a9c1e-1b2c-4d5e-8f90-123456789abc', true],
    ['3F2A9C1E-1B2C-4D5E-8F90-123456789ABC', true],
    ['9fceb02d0ae598e95dc970b74767f19372d61af8', true],
    ['deadbeef0001', true],
    ['2026-12-02', true],
    ['dGhpcyBpcyBhIHRva2VuMTIz', true],
    ['abcDEF123456ghiJKL789mno', true],
    ['bot123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0', true],
    ['python3-requests-20240115', true],
    ['repos', false],
    ['v1', false],
    ['v1beta1', false],
    ['api', false],
    ['deadbeefcafe', false],
    ['authentication-service', false],
    ['requests-2.31.0.tar.gz', false],
    ['index.html', false],
    ['', false],
  ];
  for (const [segment, id] of cases) t.equal(isIdSegment(segment), id, JSON.stringify(segment));
});

t.test('paths to globs', async (t) => {
  const children = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}/${String.fromCharCode(97 + i)}`);
  const cases: { name: string; paths: string[]; globs: string[] }[] = [
    { name: 'one literal path', paths: ['/health'], globs: ['/health'] },
    { name: 'the root', paths: ['/'], globs: ['/'] },
    { name: 'numeric ids', paths: ['/users/1/repos', '/users/22/repos', '/users/333/repos'], globs: ['/users/*/repos'] },
    {
      name: 'uuid and hex ids',
      paths: ['/items/3f2a9c1e-1b2c-4d5e-8f90-123456789abc', '/blobs/9fceb02d0ae598e95dc970b74767f19372d61af8'],
      globs: ['/blobs/*', '/items/*'],
    },
    {
      name: 'a token in a path never appears',
      paths: ['/bot123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0/sendMessage'],
      globs: ['/*/sendMessage'],
    },
    { name: `fewer than ${FANOUT} children stay listed`, paths: children('/docs', FANOUT - 1), globs: children('/docs', FANOUT - 1) },
    { name: `${FANOUT} children become /prefix/**`, paths: children('/docs', FANOUT), globs: ['/docs/**'] },
    { name: 'the prefix itself is covered by /prefix/**', paths: ['/docs', ...children('/docs', FANOUT)], globs: ['/docs/**'] },
    { name: 'many children at the root stay listed (never "/**")', paths: children('', FANOUT + 1), globs: children('', FANOUT + 1) },
    { name: 'deep fan-out under a fixed prefix', paths: children('/api/v1/pkgs', 6).map((p) => `${p}/json`), globs: ['/api/v1/pkgs/**'] },
    { name: 'a literal next to an id glob it matches is dropped', paths: ['/items/7', '/items/8'], globs: ['/items/*'] },
    { name: 'a trailing slash is its own path', paths: ['/a/', '/a'], globs: ['/a', '/a/'] },
    { name: 'a literal "*" in a path becomes a glob that matches it', paths: ['/a/x*y'], globs: ['/a/*'] },
    { name: 'duplicates count once', paths: ['/x', '/x', '/x'], globs: ['/x'] },
  ];
  for (const c of cases) {
    const globs = generalisePaths(c.paths);
    t.same(globs, c.globs, c.name);
    t.same(generalisePaths([...c.paths].reverse()), globs, `${c.name}: order does not matter`);
    for (const path of c.paths)
      t.ok(
        globs.some((g) => compilePathGlob(g).regex.test(path)),
        `${c.name}: ${path} is covered`,
      );
  }
});

t.test('a generalised glob still refuses what was never seen nearby', async (t) => {
  const globs = generalisePaths(['/users/1/repos', '/users/2/repos']).map((g) => compilePathGlob(g).regex);
  t.notOk(
    globs.some((g) => g.test('/users/1/keys')),
    'a sibling of the id segment',
  );
  t.notOk(
    globs.some((g) => g.test('/admin')),
    'another prefix',
  );
});
