// The push command list parser (src/git/commands.ts) and pkt-line reader: tables of well-formed and
// malformed lists, every split point of a real list (the seam calls the parser on a growing
// prefix: each prefix must say "incomplete" until the flush, then give the same commands), and
// fast-check: no input throws, and any prefix of a valid list is incomplete, never malformed.
import fc from '../helpers/fc.js';
import t from 'tap';
import { parseCommandList, refnameProblem, type CommandListParse } from '../../src/git/commands.js';
import { pktLine, readPktLine } from '../../src/git/pkt-line.js';

const Z = '0'.repeat(40);
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const S256 = 'c'.repeat(64);

const pkt = (text: string): string => pktLine(text).toString('latin1');
const list = (...lines: string[]): Buffer => Buffer.from(lines.map((l) => (l === '' ? '0000' : pkt(l))).join(''), 'latin1');
const FIRST = `${A} ${B} refs/heads/agent/x\0report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.39.5\n`;

function done(parse: CommandListParse) {
  if (parse.state !== 'done') throw new Error(`expected done, got ${JSON.stringify(parse)}`);
  return parse.list;
}

t.test('pkt-line lengths', async (t) => {
  t.same(readPktLine(Buffer.from('0000'), 0), { state: 'line', line: { kind: 'flush' }, next: 4 });
  t.same(readPktLine(Buffer.from('0001'), 0), { state: 'line', line: { kind: 'delim' }, next: 4 });
  t.same(readPktLine(Buffer.from('0002'), 0), { state: 'line', line: { kind: 'response-end' }, next: 4 });
  t.equal(readPktLine(Buffer.from('0003'), 0).state, 'malformed', '0003 is no length');
  const empty = readPktLine(Buffer.from('0004'), 0);
  t.ok(empty.state === 'line' && empty.line.kind === 'data' && empty.line.payload.length === 0, '0004 is an empty data line');
  t.equal(readPktLine(Buffer.from('000Ahello!'), 0).state, 'line', 'upper-case hex is read as git reads it');
  t.equal(readPktLine(Buffer.from('fff1'), 0).state, 'malformed', 'over 65520 is refused');
  t.equal(readPktLine(Buffer.from('fff0'), 0).state, 'incomplete', '65520 is the largest, waiting for its bytes');
  t.equal(readPktLine(Buffer.from('00'), 0).state, 'incomplete', 'half a length waits');
  t.equal(readPktLine(Buffer.from('0x'), 0).state, 'malformed', 'a non-hex byte in half a length is refused at once');
  t.equal(readPktLine(Buffer.from('+001'), 0).state, 'malformed', 'a sign is no hex digit');
  t.equal(readPktLine(Buffer.from(' 01a'), 0).state, 'malformed', 'nor is a space');
  t.throws(() => pktLine(Buffer.alloc(65517)), RangeError, 'a payload over the maximum cannot be written');
  t.equal(pktLine(Buffer.alloc(65516)).length, 65520);
});

t.test('well-formed command lists', async (t) => {
  const one = done(parseCommandList(list(FIRST, '')));
  t.same(one.commands, [{ oldId: A, newId: B, ref: 'refs/heads/agent/x' }]);
  t.same(one.capabilities, ['report-status-v2', 'side-band-64k', 'quiet', 'object-format=sha1', 'agent=git/2.39.5']);
  t.equal(one.end, list(FIRST, '').length, 'end is just after the flush');

  const withPack = Buffer.concat([list(FIRST, ''), Buffer.from('PACK\0\0\0\x02 anything at all')]);
  t.equal(done(parseCommandList(withPack)).end, list(FIRST, '').length, 'the pack after the flush is never read');

  const three = done(
    parseCommandList(list(`${Z} ${A} refs/heads/new\0report-status`, `${A} ${Z} refs/heads/gone\n`, `${A} ${B} refs/tags/v1`, '')),
  );
  t.same(
    three.commands.map((c) => c.ref),
    ['refs/heads/new', 'refs/heads/gone', 'refs/tags/v1'],
  );
  t.same(three.capabilities, ['report-status'], 'report-status (v1)');

  t.same(done(parseCommandList(list(''))).commands, [], 'a lone flush (git’s probe of a large push) is an empty list');
  t.same(done(parseCommandList(list(`${A} ${B} refs/heads/x`, ''))).capabilities, [], 'no capabilities at all');
  const shallow = done(parseCommandList(list(`shallow ${A}`, FIRST, '')));
  t.equal(shallow.commands.length, 1, 'shallow lines before the commands are skipped');
  const upper = done(parseCommandList(list(`${A.toUpperCase()} ${B} refs/heads/x\0report-status`, '')));
  t.equal(upper.commands[0]!.oldId, A, 'upper-case ids are read (git does) and lower-cased');
  const sha256 = done(parseCommandList(list(`${'0'.repeat(64)} ${S256} refs/heads/x\0report-status object-format=sha256`, '')));
  t.same(sha256.commands[0], { oldId: '0'.repeat(64), newId: S256, ref: 'refs/heads/x' }, 'sha256 ids with object-format=sha256');
});

t.test('malformed command lists are refused with a reason', async (t) => {
  const rows: Array<[string, Buffer]> = [
    ['not pkt-lines at all', Buffer.from('PACK....')],
    ['a bad length', Buffer.from(`zzzz${A}`)],
    ['a delimiter packet', Buffer.concat([list(FIRST), Buffer.from('0001')])],
    ['a response-end packet', Buffer.concat([list(FIRST), Buffer.from('0002')])],
    ['a short old id', list(`${A.slice(1)} ${B} refs/heads/x\0report-status`, '')],
    ['a sha256-length id without object-format', list(`${S256} ${S256} refs/heads/x\0report-status`, '')],
    ['a sha1 id under object-format=sha256', list(`${A} ${B} refs/heads/x\0report-status object-format=sha256`, '')],
    ['a non-hex id', list(`${'g'.repeat(40)} ${B} refs/heads/x\0report-status`, '')],
    ['no space between ids', list(`${A}-${B} refs/heads/x`, '')],
    ['no ref name', list(`${A} ${B} `, '')],
    ['a ref outside refs/', list(`${A} ${B} HEAD`, '')],
    ['a ref with a space', list(`${A} ${B} refs/heads/a b`, '')],
    ['a ref with ..', list(`${A} ${B} refs/heads/a..b`, '')],
    ['a ref ending in .lock', list(`${A} ${B} refs/heads/a.lock`, '')],
    ['a ref with a control byte', list(`${A} ${B} refs/heads/a\x01b`, '')],
    ['capabilities on a later command', list(FIRST, `${A} ${B} refs/heads/y\0atomic`, '')],
    ['a shallow line after a command', list(FIRST, `shallow ${A}`, '')],
    ['a bad shallow line', list(`shallow xyz`, '')],
    ['a signed push', list(`push-cert\0report-status`, 'certificate version 0.1', '')],
    ['two refs on one line', list(`${A} ${B} refs/heads/x refs/heads/main`, '')],
  ];
  for (const [what, body] of rows) {
    const parsed = parseCommandList(body);
    t.equal(parsed.state, 'malformed', what);
  }
  const signed = parseCommandList(list(`push-cert\0report-status`, ''));
  t.match(signed, { state: 'malformed', why: /signed push/ }, 'a signed push says why');
});

t.test('every split point of a real list: incomplete until the flush, then the same list', async (t) => {
  const whole = Buffer.concat([list(`shallow ${B}`, FIRST, `${Z} ${A} refs/tags/v1`, `${A} ${Z} refs/heads/gone`, ''), Buffer.from('PACK')]);
  const end = done(parseCommandList(whole)).end;
  const expected = done(parseCommandList(whole));
  let wrong = 0;
  for (let cut = 0; cut <= whole.length; cut++) {
    const parsed = parseCommandList(whole.subarray(0, cut));
    if (cut < end ? parsed.state !== 'incomplete' : parsed.state !== 'done' || JSON.stringify(parsed.list) !== JSON.stringify(expected)) wrong++;
  }
  t.equal(wrong, 0, `all ${whole.length + 1} prefixes are incomplete before byte ${end} and the same list from there`);
});

t.test('fast-check: never throws; a prefix of a valid list is never malformed', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const parsed = parseCommandList(Buffer.from(bytes));
      return ['incomplete', 'malformed', 'done'].includes(parsed.state);
    }),
    { numRuns: 2000 },
  );
  const ref = fc.stringMatching(/^[a-z0-9]{1,12}(\/[a-z0-9-]{1,12}){0,3}$/).map((s) => `refs/heads/${s}`);
  const id = fc.stringMatching(/^[0-9a-f]{40}$/);
  fc.assert(
    fc.property(fc.array(fc.tuple(id, id, ref), { minLength: 1, maxLength: 6 }), fc.nat(), (commands, at) => {
      const lines = commands.map(([o, n, r], i) => `${o} ${n} ${r}${i === 0 ? '\0report-status' : ''}\n`);
      const whole = list(...lines, '');
      const parsed = done(parseCommandList(whole));
      if (parsed.commands.length !== commands.length) return false;
      return parseCommandList(whole.subarray(0, at % whole.length)).state === 'incomplete';
    }),
    { numRuns: 500 },
  );
  t.pass('properties hold');
});

t.test('ref names as git check-ref-format reads them', async (t) => {
  for (const ok of ['refs/heads/main', 'refs/heads/agent/a-b_c.d', 'refs/tags/v1.2.3', 'refs/notes/commits'])
    t.equal(refnameProblem(ok), null, ok);
  for (const bad of [
    'main',
    'refs/heads/',
    'refs/heads/a.',
    'refs/heads/.a',
    'refs/heads/a//b',
    'refs/heads/a@{1}',
    'refs/heads/a~1',
    'refs/heads/a^',
    'refs/heads/a:b',
    'refs/heads/a?',
    'refs/heads/a*',
    'refs/heads/a[',
    'refs/heads/a\\b',
    'refs/heads/x.lock/y',
  ]) {
    t.not(refnameProblem(bad), null, bad);
  }
});

t.test('push options: read after the list when asked for, up to their own flush', async (t) => {
  const first = `${A} ${B} refs/heads/agent/x\0report-status push-options side-band-64k\n`;
  const withOptions = done(parseCommandList(Buffer.concat([list(first, '', 'ci.skip', 'ci.variable=A=1\n', ''), Buffer.from('PACK')])));
  t.same(withOptions.options, ['ci.skip', 'ci.variable=A=1'], 'in order, a trailing LF dropped');
  t.equal(withOptions.commands.length, 1);
  t.equal(withOptions.end, list(first, '', 'ci.skip', 'ci.variable=A=1\n', '').length, 'the pack starts after the options’ flush');
  const noneSent = done(parseCommandList(list(first, '', '')));
  t.same(noneSent.options, [], 'asked for, none sent: an empty section');
  // Without the capability, what follows the flush is the pack: never read as options.
  const plain = done(parseCommandList(Buffer.concat([list(FIRST, ''), Buffer.from('0010ci.skip')])));
  t.same(plain.options, []);
  t.equal(plain.end, list(FIRST, '').length);
  for (const [name, body, why] of [
    ['a delim among the options', Buffer.concat([list(first, '', 'ci.skip'), Buffer.from('0001')]), /a delim packet among the push options/],
    ['an option holding a NUL', list(first, '', 'ci.skip\0smuggled', ''), /a push option holding a NUL or newline/],
    ['an option holding a newline', list(first, '', 'ci.skip\nsecond', ''), /a push option holding a NUL or newline/],
    ['the pack where options belong', Buffer.concat([list(first, ''), Buffer.from('PACK\0\0\0\x02')]), /./],
  ] as const) {
    const parsed = parseCommandList(body);
    t.equal(parsed.state, 'malformed', name);
    if (parsed.state === 'malformed') t.match(parsed.why, why, name);
  }
  // Every split point: incomplete until the options' flush, then the same list.
  const whole = Buffer.concat([list(first, `${Z} ${A} refs/heads/agent/y`, '', 'merge_request.create', 'ci.skip', ''), Buffer.from('PACK')]);
  const expected = done(parseCommandList(whole));
  let wrong = 0;
  for (let cut = 0; cut <= whole.length; cut++) {
    const parsed = parseCommandList(whole.subarray(0, cut));
    if (cut < expected.end ? parsed.state !== 'incomplete' : parsed.state !== 'done' || JSON.stringify(parsed.list) !== JSON.stringify(expected))
      wrong++;
  }
  t.equal(wrong, 0, `all ${whole.length + 1} prefixes are incomplete before byte ${expected.end} and the same list from there`);
});
