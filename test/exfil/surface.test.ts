// The exfiltration-surface list (data/exfil-hosts.json) and the question "can this rule write to
// one of its hosts?": host overlap (exact, wildcard either side), write methods (none restricted,
// a listed one, or any request for capture services), and the paths where writes happen.
import t from 'tap';
import { exfilHits, globsMayOverlap, loadExfilList, parseExfilList, type RuleShape } from '../../src/exfil/surface.js';

const list = loadExfilList();

t.test('the shipped list parses and covers every category the issue names', async (t) => {
  const used = new Set(list.entries.map((e) => e.category));
  for (const category of [
    'code_host',
    'code_host_content',
    'paste_site',
    'object_store',
    'registry_publish',
    'chat_webhook',
    'request_capture',
    'model_hub',
  ]) {
    t.ok(list.categories.has(category), `category ${category} is described`);
    t.ok(used.has(category), `category ${category} has hosts`);
  }
  t.equal(new Set(list.entries.map((e) => e.host)).size, list.entries.length, 'each host is listed once');
});

t.test('matching rules against the list', async (t) => {
  const cases: { rule: RuleShape; hosts: string[]; writes?: (string[] | null)[] }[] = [
    { rule: { host: 'pastebin.com' }, hosts: ['pastebin.com'], writes: [null] },
    { rule: { host: 'pastebin.com', methods: ['GET'] }, hosts: [] },
    { rule: { host: 'pastebin.com', methods: ['GET', 'POST'] }, hosts: ['pastebin.com'], writes: [['POST']] },
    { rule: { host: 'PasteBin.com:443' }, hosts: ['pastebin.com'] },
    { rule: { host: 'example.com' }, hosts: [] },
    { rule: { host: 'api.github.com', methods: ['GET', 'HEAD'] }, hosts: [] },
    { rule: { host: 'api.github.com', methods: ['post'] }, hosts: ['api.github.com'], writes: [['POST']] },
    // A capture service records every request: even GET writes.
    { rule: { host: 'webhook.site', methods: ['GET'] }, hosts: ['webhook.site'], writes: [['GET']] },
    { rule: { host: 'abc123.ngrok.io', methods: ['GET'] }, hosts: ['*.ngrok.io'] },
    // Wildcards on either side.
    { rule: { host: '*.github.com' }, hosts: ['api.github.com', 'gist.github.com', 'uploads.github.com'] },
    { rule: { host: 'mybucket.s3.amazonaws.com', methods: ['PUT'] }, hosts: ['*.s3.amazonaws.com'] },
    { rule: { host: '*.amazonaws.com' }, hosts: ['s3.amazonaws.com', '*.s3.amazonaws.com'] },
    { rule: { host: '*' }, hosts: list.entries.map((e) => e.host) },
    // Paths: a rule whose paths cannot reach the write paths does not write.
    { rule: { host: 'upload.pypi.org', paths: ['/simple/**'] }, hosts: [] },
    { rule: { host: 'upload.pypi.org', paths: ['/legacy/'] }, hosts: ['upload.pypi.org'] },
    { rule: { host: 'upload.pypi.org', paths: ['/**'] }, hosts: ['upload.pypi.org'] },
    { rule: { host: 'registry.npmjs.org', methods: ['GET'] }, hosts: [] },
    { rule: { host: 'registry.npmjs.org', methods: ['PUT'] }, hosts: ['registry.npmjs.org'] },
    { rule: { host: 'api.telegram.org', methods: ['GET'], paths: ['/bot*/sendMessage'] }, hosts: ['api.telegram.org'] },
    { rule: { host: 'api.telegram.org', paths: ['/file/**'] }, hosts: [] },
    { rule: { host: 'huggingface.co', methods: ['GET'] }, hosts: [] },
    { rule: { host: 'huggingface.co', methods: ['POST'] }, hosts: ['huggingface.co'] },
    { rule: { host: 'not a host' }, hosts: [] },
  ];
  for (const c of cases) {
    const hits = exfilHits(list, c.rule);
    t.same(
      hits.map((h) => h.entry.host),
      c.hosts,
      JSON.stringify(c.rule),
    );
    if (c.writes)
      t.same(
        hits.map((h) => h.writeMethods),
        c.writes,
        `${JSON.stringify(c.rule)}: write methods`,
      );
  }
});

t.test('path globs that may overlap', async (t) => {
  const cases: [string, string, boolean][] = [
    ['/a', '/a', true],
    ['/a', '/b', false],
    ['/a/**', '/a/b/c', true],
    ['/**', '/x', true],
    ['/a/*', '/a/b', true],
    ['/a/*', '/a/b/c', false],
    ['/bot*/x', '/botABC/x', true],
    ['/bot*/x', '/file/x', false],
    ['/v*.json', '/v1.json', true],
    ['/v*.json', '/v1.xml', false],
    ['/a/b', '/a', false],
  ];
  for (const [a, b, overlap] of cases) {
    t.equal(globsMayOverlap(a, b), overlap, `${a} ~ ${b}`);
    t.equal(globsMayOverlap(b, a), overlap, `${b} ~ ${a}`);
  }
});

t.test('a malformed list is refused, naming the entry', async (t) => {
  t.throws(() => parseExfilList({ categories: { x: 'y' }, hosts: [{ host: '*', category: 'x', methods: ['POST'] }] }), /hosts\[0\]/);
  t.throws(
    () => parseExfilList({ categories: { x: 'y' }, hosts: [{ host: 'a.example', category: 'z', methods: ['POST'] }] }),
    /unknown category/,
  );
  t.throws(() => parseExfilList({ categories: { x: 'y' }, hosts: [{ host: 'a.example', category: 'x', methods: [] }] }), /methods/);
  t.throws(() => parseExfilList({ hosts: [] }), /categories/);
});
