// The pure parts of git push rules: which commands a git: rule allows (src/git/rules.ts), the
// report-status answer git reads for a refused push, with and without side-band-64k, for
// report-status and report-status-v2 (src/git/report.ts), and which requests the inspector reads,
// refuses or passes on the head alone (src/git/inspector.ts).
import t from 'tap';
import { parseCommandList, type CommandList } from '../../src/git/commands.js';
import { gitInspector } from '../../src/git/inspector.js';
import { readPktLine, pktLine } from '../../src/git/pkt-line.js';
import { refusedAdvertisement, refusedPushReport } from '../../src/git/report.js';
import { checkPush, commandRefusal, compileGitRule, compileOptionGlob, compileRefGlob, optionRefusal } from '../../src/git/rules.js';
import type { InspectHead } from '../../src/proxy/inspector.js';

const Z = '0'.repeat(40);
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const update = (ref: string) => ({ oldId: A, newId: B, ref });
const create = (ref: string) => ({ oldId: Z, newId: B, ref });
const remove = (ref: string) => ({ oldId: A, newId: Z, ref });

t.test('commands against the flags and globs', async (t) => {
  const agent = compileGitRule({ push: { refs: ['refs/heads/agent/**', 'refs/heads/feature-*', 'refs/tags/release/*'] } });
  const open = compileGitRule({ push: { refs: ['refs/heads/agent/**', 'refs/tags/release/*'], delete: true, tags: true, create: false } });
  const rows: Array<[string, ReturnType<typeof compileGitRule>, { oldId: string; newId: string; ref: string }, string | null]> = [
    ['update an owned branch', agent, update('refs/heads/agent/x'), null],
    ['create an owned branch (create defaults to true)', agent, create('refs/heads/agent/a/b/c'), null],
    ['** covers the bare prefix too', agent, update('refs/heads/agent'), null],
    ['* stays in one component', agent, update('refs/heads/feature-1/x'), 'push to refs/heads/feature-1/x not allowed'],
    ['* matches in one component', agent, update('refs/heads/feature-1'), null],
    ['main', agent, update('refs/heads/main'), 'push to refs/heads/main not allowed'],
    ['a look-alike prefix', agent, update('refs/heads/agentx'), 'push to refs/heads/agentx not allowed'],
    ['case matters', agent, update('refs/heads/Agent/x'), 'push to refs/heads/Agent/x not allowed'],
    ['delete defaults to false', agent, remove('refs/heads/agent/x'), 'deleting refs/heads/agent/x not allowed'],
    ['tags default to false, even under a glob', agent, create('refs/tags/release/1'), 'pushing tag refs/tags/release/1 not allowed'],
    ['delete: true', open, remove('refs/heads/agent/x'), null],
    ['create: false', open, create('refs/heads/agent/new'), 'creating refs/heads/agent/new not allowed'],
    ['tags: true creates any tag', open, create('refs/tags/v1'), null],
    ['tags: true does not move an unnamed tag', open, update('refs/tags/v1'), 'moving tag refs/tags/v1 not allowed'],
    ['a tag a glob names may move', open, update('refs/tags/release/2'), null],
    ['deleting a tag needs delete', agent, remove('refs/tags/v1'), 'pushing tag refs/tags/v1 not allowed'],
    ['deleting a tag with tags and delete', open, remove('refs/tags/v1'), null],
    ['notes are refs like any other', agent, update('refs/notes/commits'), 'push to refs/notes/commits not allowed'],
  ];
  for (const [what, rule, command, refusal] of rows) t.equal(commandRefusal(rule, command), refusal, what);
  const none = compileGitRule({});
  t.equal(commandRefusal(none, update('refs/heads/x')), 'push to refs/heads/x not allowed', 'no refs by default');
  t.same(none.push, { refs: [], create: true, delete: false, tags: false, options: [] }, 'the defaults');
  t.equal(none.fetch, true);
  const mixed = checkPush(agent, [update('refs/heads/agent/x'), update('refs/heads/main')]);
  t.equal(mixed.allowed, false, 'one refused command refuses the push');
  t.same(
    mixed.results.map((r) => r.refusal),
    [null, 'push to refs/heads/main not allowed'],
  );
  t.equal(checkPush(agent, []).allowed, true, 'an empty push changes nothing and passes');
  t.throws(() => compileRefGlob('heads/main'), /must start with "refs\/"/);
  t.throws(() => compileRefGlob('refs/heads/a?'), /cannot hold/);
  t.throws(() => compileRefGlob('refs/heads/a**'), /whole segment/);
});

/** The pkt-lines of a buffer (data as latin1 text, flush as ''), and what is left after the first flush. */
function lines(buf: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < buf.length) {
    const read = readPktLine(buf, at);
    if (read.state !== 'line') throw new Error(`bad answer at ${at}: ${JSON.stringify(read)}`);
    out.push(read.line.kind === 'data' ? read.line.payload.toString('latin1') : '');
    at = read.next;
  }
  return out;
}

function listOf(first: string, ...more: string[]): CommandList {
  const body = Buffer.concat([...[first, ...more].map((l) => pktLine(l)), Buffer.from('0000')]);
  const parsed = parseCommandList(body);
  if (parsed.state !== 'done') throw new Error('bad list');
  return parsed.list;
}

t.test('the report-status of a refused push', async (t) => {
  const rule = compileGitRule({ push: { refs: ['refs/heads/agent/**'] } });
  for (const capability of ['report-status', 'report-status-v2']) {
    const list = listOf(`${A} ${B} refs/heads/agent/x\0${capability}`, `${A} ${B} refs/heads/main`);
    const answer = refusedPushReport(list, checkPush(rule, list.commands), 'push refused by rule r');
    t.equal(answer.status, 200, `${capability}: status 200`);
    t.equal(answer.headers['Content-Type'], 'application/x-git-receive-pack-result');
    t.same(
      lines(answer.body),
      [
        'unpack ok\n',
        'ng refs/heads/agent/x sluice: push refused whole: refs/heads/main was refused\n',
        'ng refs/heads/main sluice: push to refs/heads/main not allowed\n',
        '',
      ],
      `${capability}: one ng line per command, in push order, then a flush`,
    );
  }
  const banded = listOf(`${A} ${B} refs/heads/main\0report-status-v2 side-band-64k`);
  const answer = refusedPushReport(banded, checkPush(rule, banded.commands), 'push refused by rule r: push to refs/heads/main not allowed');
  const packets = lines(answer.body);
  t.equal(packets.at(-1), '', 'side-band ends with a flush');
  t.equal(packets[0], '\x02sluice: push refused by rule r: push to refs/heads/main not allowed\n', 'band 2 first: git prints it as remote:');
  const band1 = Buffer.from(
    packets
      .slice(1, -1)
      .map((p) => {
        t.equal(p.charCodeAt(0), 1, 'the report is on band 1');
        return p.slice(1);
      })
      .join(''),
    'latin1',
  );
  t.same(lines(band1), ['unpack ok\n', 'ng refs/heads/main sluice: push to refs/heads/main not allowed\n', ''], 'band 1 carries the report');

  // A push of many refs: the report is longer than one side-band packet and is split.
  const many = listOf(
    `${A} ${B} refs/heads/m0\0report-status side-band-64k`,
    ...Array.from({ length: 2000 }, (_, i) => `${A} ${B} refs/heads/m${i + 1}`),
  );
  const big = refusedPushReport(many, checkPush(rule, many.commands), 'x');
  const bigPackets = lines(big.body);
  t.ok(bigPackets.length > 3, 'split over several band-1 packets');
  const joined = Buffer.from(
    bigPackets
      .slice(1, -1)
      .map((p) => p.slice(1))
      .join(''),
    'latin1',
  );
  t.equal(lines(joined).length, 2001 + 1 + 1, 'every ref, unpack and flush survive the split');
});

t.test('a refused advertisement is an ERR packet', async (t) => {
  const answer = refusedAdvertisement('git-upload-pack', 'fetch not allowed (rule r)');
  t.equal(answer.headers['Content-Type'], 'application/x-git-upload-pack-advertisement');
  t.same(lines(answer.body), ['ERR sluice: fetch not allowed (rule r)\n']);
});

const head = (method: string, path: string, query: string | null = null, headers: Record<string, string> = {}): InspectHead => ({
  method,
  path,
  query,
  headers,
  ruleId: 'agent.allow[0]',
});

t.test('what the inspector reads, refuses or passes on the head', async (t) => {
  const fetching = compileGitRule({ push: { refs: ['refs/heads/agent/**'] } });
  const noFetch = compileGitRule({ push: { refs: ['refs/heads/agent/**'] }, fetch: false });
  const kind = (step: ReturnType<typeof gitInspector.head>): string => ('read' in step ? 'read' : step.pass ? 'pass' : step.reason);
  const rows: Array<[string, ReturnType<typeof compileGitRule>, InspectHead, string]> = [
    ['a push is read', fetching, head('POST', '/org/repo.git/git-receive-pack'), 'read'],
    ['any case of the service path', fetching, head('POST', '/org/repo.git/GIT-RECEIVE-PACK'), 'read'],
    ['a compressed push', fetching, head('POST', '/r/git-receive-pack', null, { 'content-encoding': 'gzip' }), 'uninspectable_body'],
    ['identity is no compression', fetching, head('POST', '/r/git-receive-pack', null, { 'content-encoding': 'identity' }), 'read'],
    ['a GET of receive-pack', fetching, head('GET', '/r/git-receive-pack'), 'uninspectable_body'],
    ['the push advertisement', noFetch, head('GET', '/r/info/refs', 'service=git-receive-pack'), 'pass'],
    ['the fetch advertisement', fetching, head('GET', '/r/info/refs', 'service=git-upload-pack'), 'pass'],
    ['fetch: false, the fetch advertisement', noFetch, head('GET', '/r/info/refs', 'service=git-upload-pack'), 'git_fetch_not_allowed'],
    [
      'fetch: false, two services named',
      noFetch,
      head('GET', '/r/info/refs', 'service=git-receive-pack&service=git-upload-pack'),
      'git_fetch_not_allowed',
    ],
    ['fetch: false, dumb info/refs', noFetch, head('GET', '/r/info/refs'), 'git_fetch_not_allowed'],
    ['fetch: false, upload-pack', noFetch, head('POST', '/r/git-upload-pack'), 'git_fetch_not_allowed'],
    ['fetch: false, a loose object', noFetch, head('GET', `/r/objects/ab/${'c'.repeat(38)}`), 'git_fetch_not_allowed'],
    ['fetch: false, a pack', noFetch, head('GET', `/r/objects/pack/pack-${'d'.repeat(40)}.pack`), 'git_fetch_not_allowed'],
    ['fetch: false, other paths of the host', noFetch, head('GET', '/api/v3/user'), 'pass'],
    ['upload-pack with fetch', fetching, head('POST', '/r/git-upload-pack'), 'pass'],
    // spellings a lenient server routes to the service: path parameters (Jetty, Tomcat), trailing slashes
    ['a push with a path parameter', fetching, head('POST', '/r/git-receive-pack;jsessionid=1'), 'read'],
    ['a push with a trailing slash', fetching, head('POST', '/r/git-receive-pack//'), 'read'],
    ['a push under a parameter on the repo', fetching, head('POST', '/r.git;v=1/git-receive-pack'), 'read'],
    ['fetch: false, upload-pack with a parameter', noFetch, head('POST', '/r/git-upload-pack;x'), 'git_fetch_not_allowed'],
    ['fetch: false, info/refs with a slash', noFetch, head('GET', '/r/info/refs/', 'service=git-upload-pack'), 'git_fetch_not_allowed'],
    ['fetch: false, a pack with a parameter', noFetch, head('GET', `/r/objects/pack/pack-${'d'.repeat(40)}.pack;x`), 'git_fetch_not_allowed'],
  ];
  for (const [what, rule, h, expected] of rows) t.equal(kind(gitInspector.head(rule, h)), expected, what);
  const adv = gitInspector.head(noFetch, head('GET', '/r/info/refs', 'service=git-upload-pack'));
  t.ok(!('read' in adv) && !adv.pass && adv.answer?.status === 200, 'the fetch advertisement is refused with an ERR answer git prints');
});

t.test('the inspector on a push body', async (t) => {
  const rule = compileGitRule({ push: { refs: ['refs/heads/agent/**'] } });
  const h = head('POST', '/r/git-receive-pack');
  const body = (first: string) => Buffer.concat([pktLine(first), Buffer.from('0000PACK')]);
  t.same(gitInspector.body(rule, h, body(`${A} ${B} refs/heads/agent/x\0report-status`), false), { pass: true });
  const refused = gitInspector.body(rule, h, body(`${A} ${B} refs/heads/main\0report-status side-band-64k`), false);
  t.match(refused, { pass: false, reason: 'git_ref_not_allowed', detail: /rule agent\.allow\[0\]: push to refs\/heads\/main not allowed/ });
  t.ok(!refused.pass && refused.answer?.status === 200, 'answered in report-status');
  const noReport = gitInspector.body(rule, h, body(`${A} ${B} refs/heads/main\0side-band-64k`), false);
  t.ok(!noReport.pass && noReport.answer === undefined, 'a client that asked for no report gets sluice’s plain 403');
  t.match(gitInspector.body(rule, h, Buffer.from('00'), true), { pass: false, reason: 'uninspectable_body' }, 'a body cut short');
  t.match(gitInspector.body(rule, h, Buffer.alloc(0), true), { pass: false, reason: 'uninspectable_body' }, 'an empty body');
  t.same(gitInspector.body(rule, h, Buffer.from('0000'), true), { pass: true }, 'a lone flush (git’s probe)');
});

t.test('the inspector asks for the body up to the flush that ends the command list, at any split', async (t) => {
  const rule = compileGitRule({ push: { refs: ['refs/heads/agent/**'] } });
  const list = Buffer.concat([
    pktLine(`${A} ${B} refs/heads/agent/x\0report-status`),
    pktLine(`${A} ${B} refs/heads/agent/y\n`),
    Buffer.from('0000'),
  ]);
  const whole = Buffer.concat([list, Buffer.from('PACK and the rest')]);
  let wrong = 0;
  for (let step = 1; step <= 7; step++) {
    const stepHead = gitInspector.head(rule, head('POST', '/r/git-receive-pack'));
    if (!('read' in stepHead) || !stepHead.enough) throw new Error('a push must be read');
    // Feed growing prefixes, `step` bytes at a time, as chunks would arrive.
    let doneAt = -1;
    for (let cut = 0; cut <= whole.length && doneAt < 0; cut += step) {
      if (stepHead.enough(whole.subarray(0, cut))) doneAt = cut;
    }
    if (doneAt < list.length || doneAt >= list.length + step) wrong++;
  }
  t.equal(wrong, 0, 'enough turns true at the first prefix that holds the flush, whatever the chunk size');
  const bad = gitInspector.head(rule, head('POST', '/r/git-receive-pack'));
  t.ok('read' in bad && bad.enough?.(Buffer.from('zzzz')), 'a malformed length is enough to decide (to refuse)');
});

t.test('push options: only those an options glob names; a push with another is refused whole', async (t) => {
  const strict = compileGitRule({ push: { refs: ['refs/heads/agent/**'] } });
  const some = compileGitRule({ push: { refs: ['refs/heads/agent/**'], options: ['ci.skip', 'merge_request.*'] } });
  t.equal(optionRefusal(some, 'ci.skip'), null);
  t.equal(optionRefusal(some, 'merge_request.create'), null);
  t.equal(optionRefusal(some, 'merge_request.target=main'), null);
  t.match(optionRefusal(some, 'ci.skipped'), /push option "ci\.skipped" not allowed/, 'a glob matches the whole option');
  t.match(optionRefusal(some, 'CI.SKIP'), /not allowed/, 'options are matched as sent (case counts)');
  t.match(optionRefusal(some, 'ci.variable=TOKEN=x'), /not allowed/);
  t.match(optionRefusal(strict, 'ci.skip'), /not allowed/, 'none by default');
  t.match(optionRefusal(compileGitRule({ push: { options: ['a.b'] } }), 'aXb'), /not allowed/, 'a dot is a dot');
  t.equal(optionRefusal(compileGitRule({ push: { options: ['*'] } }), 'anything=at all'), null, '"*" alone allows every option');
  t.throws(() => compileOptionGlob('bad\u0001'), /control character/);
  t.match(optionRefusal(strict, 'x'.repeat(500)) ?? '', /^push option "x{60}…" not allowed$/, 'a long option is shown cut');

  const h = head('POST', '/r/git-receive-pack');
  const body = (...options: string[]) =>
    Buffer.concat([
      pktLine(`${A} ${B} refs/heads/agent/x\0report-status push-options side-band-64k`),
      Buffer.from('0000'),
      ...options.map((o) => pktLine(o)),
      Buffer.from('0000PACK'),
    ]);
  t.same(gitInspector.body(some, h, body('ci.skip'), false), { pass: true });
  t.same(gitInspector.body(strict, h, body(), false), { pass: true }, 'the capability without options');
  const refused = gitInspector.body(some, h, body('ci.skip', 'ci.variable=TOKEN=x', 'other'), false);
  t.match(refused, {
    pass: false,
    reason: 'git_push_option_not_allowed',
    detail: /rule agent\.allow\[0\]: push option "ci\.variable=TOKEN=x" not allowed \(and 1 more\)/,
  });
  if (!refused.pass) {
    t.equal(refused.answer?.status, 200, 'answered in report-status');
    t.match(refused.answer?.body.toString('latin1'), /ng refs\/heads\/agent\/x sluice: push option "ci\.variable=TOKEN=x" not allowed/);
  }

  // The head asks for the body up to the options' flush, at any chunk size.
  const whole = body('ci.skip', 'merge_request.create');
  const listEnd = whole.length - 'PACK'.length;
  let wrong = 0;
  for (let step = 1; step <= 9; step++) {
    const stepHead = gitInspector.head(some, head('POST', '/r/git-receive-pack'));
    if (!('read' in stepHead) || !stepHead.enough) throw new Error('a push must be read');
    let doneAt = -1;
    for (let cut = 0; cut <= whole.length && doneAt < 0; cut += step) if (stepHead.enough(whole.subarray(0, cut))) doneAt = cut;
    if (doneAt < listEnd || doneAt >= listEnd + step) wrong++;
  }
  t.equal(wrong, 0, 'enough turns true at the first prefix that holds the options’ flush');
});
