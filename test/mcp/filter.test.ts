// List-answer filtering of MCP-aware rules (issue 18), in application/json and in
// text/event-stream, with the stream split at every byte: what the agent may not call is gone,
// pagination cursors and everything else pass unchanged, unfiltered events pass byte for byte.
import { Readable } from 'node:stream';
import t from 'tap';
import { filterJsonText, jsonListFilter, sseListFilter, type ListTargets } from '../../src/mcp/filter.js';
import { mcpInspector } from '../../src/mcp/inspector.js';
import { compileMcp } from '../../src/mcp/names.js';
import { SseSplitter } from '../../src/mcp/sse.js';

const mcp = compileMcp({ tools: ['search', 'repo.*'], prompts: ['summarize'] });
const byId = (id: number | string, method: 'tools/list' | 'prompts/list' | 'resources/list'): ListTargets => ({
  ids: new Map([[JSON.stringify(id), method]]),
  byShape: false,
});
const toolsAnswer = (id: number, cursor?: string): object => ({
  jsonrpc: '2.0',
  id,
  result: {
    tools: [
      { name: 'search', inputSchema: { type: 'object' } },
      { name: 'delete_repository', inputSchema: { type: 'object' } },
      { name: 'repo.read', inputSchema: { type: 'object' } },
      { inputSchema: { type: 'object' } },
    ],
    ...(cursor ? { nextCursor: cursor } : {}),
  },
});

async function through(stream: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<string> {
  const out: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    Readable.from(chunks).pipe(stream);
    stream.on('data', (c: Buffer) => out.push(c));
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  return Buffer.concat(out).toString('utf8');
}

t.test('JSON: the list answer loses what may not be called, keeps its cursor', async (t) => {
  const text = JSON.stringify(toolsAnswer(3, 'page-2'));
  const out = JSON.parse(filterJsonText(mcp, byId(3, 'tools/list'), text)) as { result: { tools: Array<{ name: string }>; nextCursor: string } };
  t.same(
    out.result.tools.map((x) => x.name),
    ['search', 'repo.read'],
  );
  t.equal(out.result.nextCursor, 'page-2', 'the pagination cursor is kept');

  t.equal(filterJsonText(mcp, byId(4, 'tools/list'), text), text, 'another id is not touched');
  t.equal(filterJsonText(mcp, { ids: new Map(), byShape: true }, text) !== text, true, 'by shape, on a GET stream');
  const calm = JSON.stringify({ jsonrpc: '2.0', id: 3, result: { tools: [{ name: 'search' }] } });
  t.equal(filterJsonText(mcp, byId(3, 'tools/list'), calm), calm, 'nothing removed: the same bytes');
  // What sluice cannot read where a list may be is refused, not passed: a lenient client (Python's
  // json takes NaN) could read a list in it that was never filtered.
  const nan = `{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"delete_repository"}],"n":NaN}}`;
  t.throws(() => filterJsonText(mcp, byId(3, 'tools/list'), 'not json'), { name: 'UnreadableAnswer' }, 'the answer to a POST must be JSON');
  t.throws(() => filterJsonText(mcp, byId(3, 'tools/list'), nan), { name: 'UnreadableAnswer' }, 'NaN in a POST answer');
  t.throws(() => filterJsonText(mcp, { ids: new Map(), byShape: true }, nan), { name: 'UnreadableAnswer' }, 'NaN on a GET stream');
  t.equal(filterJsonText(mcp, { ids: new Map(), byShape: true }, '/messages?sessionId=1'), '/messages?sessionId=1', 'the endpoint event passes');
  t.equal(filterJsonText(mcp, byId(3, 'tools/list'), ''), '', 'an empty data field (a priming event with an id) passes');

  const batch = JSON.stringify([toolsAnswer(1), { jsonrpc: '2.0', id: 2, result: { prompts: [{ name: 'summarize' }, { name: 'x' }] } }]);
  const targets: ListTargets = {
    ids: new Map([
      ['1', 'tools/list'],
      ['2', 'prompts/list'],
    ]),
    byShape: false,
  };
  const filtered = JSON.parse(filterJsonText(mcp, targets, batch)) as Array<{ result: Record<string, Array<{ name: string }>> }>;
  t.same(
    filtered[1]!.result.prompts!.map((p) => p.name),
    ['summarize'],
    'a batch answer is filtered member by member',
  );
  const resources = JSON.stringify({ jsonrpc: '2.0', id: 5, result: { resources: [{ uri: 'file:///a' }] } });
  t.equal(filterJsonText(mcp, byId(5, 'resources/list'), resources), resources, 'no resources list: resources are not filtered');
});

t.test('JSON: the Transform holds the body and filters it at the end', async (t) => {
  const body = Buffer.from(JSON.stringify(toolsAnswer(1, 'c')));
  for (const at of [1, 17, body.length - 1]) {
    const out = await through(jsonListFilter(mcp, byId(1, 'tools/list'), 1 << 20), [body.subarray(0, at), body.subarray(at)]);
    t.same(
      (JSON.parse(out) as { result: { tools: Array<{ name: string }> } }).result.tools.map((x) => x.name),
      ['search', 'repo.read'],
      `split at ${at}`,
    );
  }
});

const EVENTS = [
  ': keep-alive comment\r\n\r\n',
  `event: message\r\nid: 1\r\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { data: 'é ü 漢字' } })}\r\n\r\n`,
  `event: message\nid: 2\ndata: ${JSON.stringify(toolsAnswer(7, 'next-é'))}\n\n`,
  `data: ${JSON.stringify({ jsonrpc: '2.0', id: 8, result: {} })}\r\r`,
];
const STREAM = Buffer.from(EVENTS.join(''));

function expected(): string {
  const filtered = JSON.parse(JSON.stringify(toolsAnswer(7, 'next-é'))) as { result: { tools: Array<{ name?: string }> } };
  filtered.result.tools = filtered.result.tools.filter((x) => x.name === 'search' || x.name === 'repo.read');
  return EVENTS[0]! + EVENTS[1]! + `event: message\nid: 2\ndata: ${JSON.stringify(filtered)}\n\n` + EVENTS[3]!;
}

t.test('SSE: split at every byte, the stream comes out the same', async (t) => {
  const want = expected();
  for (let at = 0; at <= STREAM.length; at++) {
    const out = await through(sseListFilter(mcp, byId(7, 'tools/list'), 1 << 20), [STREAM.subarray(0, at), STREAM.subarray(at)]);
    if (out !== want) {
      t.equal(out, want, `split at byte ${at}`);
      return;
    }
  }
  t.pass(`all ${STREAM.length + 1} two-chunk splits give the filtered stream`);
  const bytes = [...STREAM].map((b) => Buffer.from([b]));
  t.equal(await through(sseListFilter(mcp, byId(7, 'tools/list'), 1 << 20), bytes), want, 'one byte at a time');
});

t.test('SSE splitter: line endings, fields, multi-line data, an unfinished event', async (t) => {
  const splitter = new SseSplitter(1000);
  const events = splitter.push(Buffer.from('data: a\r\ndata:b\nevent:x\r\r: c\n\nid'));
  t.same(
    events.map((e) => e.data),
    ['a\nb', null],
  );
  t.equal(events[0]!.raw, 'data: a\r\ndata:b\nevent:x\r\r', 'raw keeps the bytes');
  t.same(
    events[0]!.lines.map((l) => [l.field, l.value]),
    [
      ['data', 'a'],
      ['data', 'b'],
      ['event', 'x'],
    ],
  );
  t.same(splitter.end(), { events: [], rest: 'id' }, 'an unfinished event is handed back raw');
  const trailingCr = new SseSplitter(1000);
  t.same(trailingCr.push(Buffer.from('data: x\r')), [], 'a CR at the end waits');
  t.same(
    trailingCr.push(Buffer.from('\n\r\n')).map((e) => e.raw),
    ['data: x\r\n\r\n'],
    'and was half a CRLF',
  );
  const small = new SseSplitter(10);
  t.throws(() => small.push(Buffer.from('data: ' + 'x'.repeat(20))), /grew past 10 characters/, 'a pending event is bounded');
});

t.test('SSE: a stream that begins with a byte order mark is filtered like any other, split anywhere', async (t) => {
  // Readers drop a leading U+FEFF; taken as part of the first line it hid the first event's data.
  const event = `data: ${JSON.stringify(toolsAnswer(7))}\n\n`;
  const stream = Buffer.from(`\ufeff${event}`);
  for (let at = 0; at <= 4; at++) {
    const out = await through(sseListFilter(mcp, byId(7, 'tools/list'), 1 << 20), [stream.subarray(0, at), stream.subarray(at)]);
    t.notMatch(out, /delete_repository/, `split at byte ${at}: the refused tool is gone`);
    t.match(out, /"search"/);
  }
});

t.test('JSON answers: bytes that are not UTF-8 do not shield a list; what is not JSON fails the answer', async (t) => {
  const answer = Buffer.from(JSON.stringify(toolsAnswer(7)).replace('"inputSchema"', '"x\u00ff":1,"inputSchema"'), 'latin1');
  t.equal(answer.includes(Buffer.from([0xff])), true, 'a lone 0xff byte in the body');
  const out = await through(jsonListFilter(mcp, byId(7, 'tools/list'), 1 << 20), [answer]);
  t.notMatch(out, /delete_repository/, 'the list is filtered all the same');
  const nan = Buffer.from('{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"delete_repository"}],"n":NaN}}');
  await t.rejects(through(jsonListFilter(mcp, byId(7, 'tools/list'), 1 << 20), [nan]), { name: 'UnreadableAnswer' });
  await t.rejects(through(sseListFilter(mcp, byId(7, 'tools/list'), 1 << 20), [Buffer.from(`data: ${nan.toString()}\n\n`)]), {
    name: 'UnreadableAnswer',
  });
});

t.test('SSE: an over-long event fails the stream', async (t) => {
  await t.rejects(through(sseListFilter(mcp, byId(1, 'tools/list'), 64), [Buffer.from('data: ' + 'x'.repeat(100))]), /grew past 64/);
});

t.test('a list a loose reader would read from another member is taken out with it', async (t) => {
  const answer = {
    jsonrpc: '2.0',
    id: 1,
    result: {
      tools: [{ name: 'search' }, { name: 'repo.read', Name: 'delete_repository' }, { name: 'search', nаme: 'x' }],
      Tools: [{ name: 'delete_repository' }],
    },
    Result: { tools: [{ name: 'delete_repository' }] },
  };
  const out = JSON.parse(filterJsonText(mcp, byId(1, 'tools/list'), JSON.stringify(answer))) as Record<string, unknown>;
  t.same(out, { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'search' }] } }, 'Result, Tools and the entry with a second Name are gone');
  const other = { jsonrpc: '2.0', id: 9, result: { content: [] }, RESULT: { content: [{ type: 'text', text: 'x' }] } };
  t.same(
    JSON.parse(filterJsonText(mcp, byId(1, 'tools/list'), JSON.stringify(other))),
    { jsonrpc: '2.0', id: 9, result: { content: [] } },
    'on any message',
  );
  const clean = JSON.stringify({ jsonrpc: '2.0', id: 9, result: { content: [] } });
  t.equal(filterJsonText(mcp, byId(1, 'tools/list'), clean), clean, 'a message with nothing loose passes as it came');
});

t.test('the answer to list requests: every 2xx is filtered, and a form sluice does not filter is cut', async (t) => {
  const head = {
    method: 'POST',
    path: '/mcp',
    query: null,
    headers: { accept: 'application/json, text/event-stream' },
    ruleId: 'agent.allow[0]',
  };
  const config = { mcp, maxResponseBytes: 1 << 20 };
  const verdict = mcpInspector.body(config, head, Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' })), true);
  if (!verdict.pass || !verdict.transform) return t.fail('a list request passes with a transform');
  const answer = Buffer.from(JSON.stringify(toolsAnswer(7)));
  const created = verdict.transform({ status: 201, headers: [['Content-Type', 'application/json']] });
  t.ok(created, '201 is filtered too');
  t.notMatch(await through(created!.body, [answer]), /delete_repository/);
  const plain = verdict.transform({ status: 200, headers: [['Content-Type', 'text/plain']] });
  t.ok(plain, 'text/plain is not passed as it came');
  await t.rejects(through(plain!.body, [answer]), /cannot read a "text\/plain" answer to list requests/);
  t.equal(verdict.transform({ status: 404, headers: [['Content-Type', 'text/plain']] }), null, 'an error answer passes');
  const get = mcpInspector.head(config, { ...head, method: 'GET' });
  if (!('pass' in get) || !get.pass || !get.transform) return t.fail('a GET stream passes with a transform');
  t.equal(get.transform({ status: 200, headers: [['Content-Type', 'text/html']] }), null, 'a GET of another page of the host passes');
});

t.test('a JSON-RPC body under another method (PUT, PATCH) is read like a POST', async (t) => {
  const config = { mcp, maxResponseBytes: 1 << 20 };
  const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_repository' } }));
  for (const method of ['POST', 'PUT', 'PATCH']) {
    const head = { method, path: '/mcp', query: null, headers: {}, ruleId: 'agent.allow[0]' };
    t.same(mcpInspector.head(config, head), { read: true }, `${method}: the body is read`);
    const verdict = mcpInspector.body(config, head, body, true);
    t.equal(verdict.pass ? null : verdict.reason, 'mcp_tool_not_allowed', `${method}: the call is refused`);
  }
  for (const method of ['DELETE', 'HEAD', 'OPTIONS']) {
    t.same(mcpInspector.head(config, { method, path: '/mcp', query: null, headers: {}, ruleId: 'r' }), { pass: true }, `${method} passes`);
  }
});
