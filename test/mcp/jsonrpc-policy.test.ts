// The pure parts of MCP-aware rules (issue 18): JSON-RPC parsing of POST bodies, the method and
// name policy, the answers sluice makes for a refusal, and names and globs.
import t from 'tap';
import { refusalAnswer, MCP_REFUSED_CODE } from '../../src/mcp/answer.js';
import { checkMessages } from '../../src/mcp/check.js';
import { boundedName, parseJsonRpcBody, MAX_BATCH, readsAs } from '../../src/mcp/jsonrpc.js';
import { compileMcp, compileNames } from '../../src/mcp/names.js';

const RULE = 'agent.allow[0]';
const mcp = compileMcp({ tools: ['search', 'repo.*'], prompts: ['summarize'], methods: ['completion/complete'] });
const call = (id: number | string, method: string, params?: object): object => ({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
const tool = (id: number, name: string): object => call(id, 'tools/call', { name, arguments: { q: 'x' } });

t.test('parseJsonRpcBody: single messages, batches and what is malformed', async (t) => {
  const good: Array<[string, unknown, boolean, string[]]> = [
    ['a request', call(1, 'tools/list'), false, ['request']],
    ['a string id', call('a', 'ping'), false, ['request']],
    ['a notification', { jsonrpc: '2.0', method: 'notifications/initialized' }, false, ['notification']],
    ['a response to the server', { jsonrpc: '2.0', id: 7, result: {} }, false, ['response']],
    ['an error response', { jsonrpc: '2.0', id: null, error: { code: 1, message: 'x' } }, false, ['response']],
    ['a batch', [call(1, 'ping'), { jsonrpc: '2.0', method: 'notifications/cancelled', params: {} }], true, ['request', 'notification']],
    ['params as an array', call(1, 'x', []), false, ['request']],
  ];
  for (const [name, value, batch, kinds] of good) {
    const parsed = parseJsonRpcBody(Buffer.from(JSON.stringify(value)));
    t.ok(parsed.ok, name);
    if (!parsed.ok) continue;
    t.equal(parsed.batch, batch, `${name}: batch`);
    t.same(
      parsed.messages.map((m) => m.kind),
      kinds,
      `${name}: kinds`,
    );
  }
  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{"jsonrpc":"2.0",', /not JSON/],
    ['not UTF-8', '\xff', /not JSON/],
    ['an empty batch', '[]', /empty JSON-RPC batch/],
    ['no jsonrpc member', '{"id":1,"method":"ping"}', /"jsonrpc": "2.0"/],
    ['jsonrpc 1.0', '{"jsonrpc":"1.0","id":1,"method":"ping"}', /"jsonrpc": "2.0"/],
    ['a number', '42', /not a JSON object/],
    ['a method that is a number', '{"jsonrpc":"2.0","id":1,"method":3}', /method that is not/],
    ['an object id', '{"jsonrpc":"2.0","id":{},"method":"ping"}', /id that is not/],
    ['a fractional id', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', /id that is not/],
    ['params that are a string', '{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', /params/],
    ['both method and result', '{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}', /both a request and a response/],
    ['neither method nor result', '{"jsonrpc":"2.0","id":1}', /neither a request/],
    ['a bad batch member', '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"id":2}]', /member \[1\]/],
  ];
  for (const [name, body, why] of bad) {
    const parsed = parseJsonRpcBody(name === 'not UTF-8' ? Buffer.from([0xff, 0xfe]) : Buffer.from(body));
    t.notOk(parsed.ok, name);
    if (!parsed.ok) t.match(parsed.why, why, `${name}: ${parsed.why}`);
  }
  const big = parseJsonRpcBody(JSON.stringify(Array.from({ length: MAX_BATCH + 1 }, (_, i) => call(i, 'ping'))));
  t.notOk(big.ok, 'a batch over MAX_BATCH is refused');
});

t.test('checkMessages: what passes, what is checked by name, what is refused', async (t) => {
  const cases: Array<[string, object, string | null]> = [
    ['initialize', call(1, 'initialize', { protocolVersion: '2025-06-18' }), null],
    ['ping', call(1, 'ping'), null],
    ['tools/list', call(1, 'tools/list', { cursor: 'c1' }), null],
    ['resources/templates/list', call(1, 'resources/templates/list'), null],
    ['an allowed tool', tool(1, 'search'), null],
    ['a tool a glob allows', tool(1, 'repo.read'), null],
    ['a tool not allowed', tool(1, 'delete_repository'), 'mcp_tool_not_allowed'],
    ['a glob is anchored', tool(1, 'xrepo.read'), 'mcp_tool_not_allowed'],
    ['case matters', tool(1, 'Search'), 'mcp_tool_not_allowed'],
    ['resources/read with no resources list', call(1, 'resources/read', { uri: 'file:///etc/passwd' }), null],
    ['an allowed prompt', call(1, 'prompts/get', { name: 'summarize' }), null],
    ['a prompt not allowed', call(1, 'prompts/get', { name: 'jailbreak' }), 'mcp_prompt_not_allowed'],
    ['a listed method', call(1, 'completion/complete', {}), null],
    ['an unlisted method', call(1, 'logging/setLevel', { level: 'debug' }), 'mcp_method_not_allowed'],
    ['tools/call as a notification is still checked', { jsonrpc: '2.0', method: 'tools/call', params: { name: 'rm' } }, 'mcp_tool_not_allowed'],
  ];
  for (const [name, message, reason] of cases) {
    const parsed = parseJsonRpcBody(JSON.stringify(message));
    if (!parsed.ok) throw new Error(parsed.why);
    const verdict = checkMessages(mcp, parsed.messages, RULE);
    t.equal(verdict.refused?.reason ?? null, reason, `${name}: ${verdict.refused?.detail ?? 'passes'}`);
    t.equal(verdict.calls.length, 1, `${name}: one call`);
  }
  const strict = compileMcp({ tools: [], resources: ['file:///docs/*'] });
  const read = (uri: string) => checkMessages(strict, [{ kind: 'request', id: 1, method: 'resources/read', params: { uri } }], RULE);
  t.equal(read('file:///docs/a/b.md').refused, null, 'a resource glob "*" spans "/"');
  t.equal(read('file:///etc/passwd').refused?.reason, 'mcp_resource_not_allowed');
  t.match(read('file:///etc/passwd').refused?.detail, /resource "file:\/\/\/etc\/passwd" is not allowed by rule agent.allow\[0\]/);
  t.equal(
    checkMessages(strict, [{ kind: 'request', id: 1, method: 'tools/call', params: { name: 'search' } }], RULE).refused?.reason,
    'mcp_tool_not_allowed',
    'tools: [] allows none',
  );

  const quiet = checkMessages(
    mcp,
    [
      { kind: 'notification', id: null, method: 'notifications/initialized', params: undefined },
      { kind: 'response', id: 3 },
    ],
    RULE,
  );
  t.same(quiet.calls, [], 'client notifications and responses are no calls');

  const noName = checkMessages(mcp, [{ kind: 'request', id: 1, method: 'tools/call', params: { arguments: {} } }], RULE);
  t.match(noName.malformed, /tools\/call has no params.name/, 'a tools/call without a name is malformed');

  const lists = checkMessages(
    mcp,
    [
      { kind: 'request', id: 5, method: 'tools/list', params: undefined },
      { kind: 'request', id: '5', method: 'prompts/list', params: undefined },
    ],
    RULE,
  );
  t.same(
    [...lists.lists.entries()],
    [
      ['5', 'tools/list'],
      ['"5"', 'prompts/list'],
    ],
    'list ids are kept apart by type',
  );
});

t.test('refusalAnswer: a JSON-RPC error per request, the refused batch held back whole', async (t) => {
  const messages = [tool(1, 'search'), tool(2, 'delete_repository'), { jsonrpc: '2.0', method: 'notifications/progress', params: {} }];
  const parsed = parseJsonRpcBody(JSON.stringify(messages));
  if (!parsed.ok) throw new Error(parsed.why);
  const verdict = checkMessages(mcp, parsed.messages, RULE);
  t.equal(verdict.calls.length, 2);
  t.equal(verdict.refused?.name, 'delete_repository');
  const answer = JSON.parse(refusalAnswer(verdict, parsed.messages, true)!) as Array<{
    id: number;
    error: { code: number; message: string; data: { reason: string; name: string } };
  }>;
  t.equal(answer.length, 2, 'one answer per request, none for the notification');
  t.same(
    answer.map((a) => [a.id, a.error.code, a.error.data.reason, a.error.data.name]),
    [
      [1, MCP_REFUSED_CODE, 'mcp_tool_not_allowed', 'search'],
      [2, MCP_REFUSED_CODE, 'mcp_tool_not_allowed', 'delete_repository'],
    ],
  );
  t.match(answer[1]!.error.message, /^sluice: mcp_tool_not_allowed: tool "delete_repository" is not allowed by rule agent.allow\[0\]/);
  t.match(answer[0]!.error.message, /held back: the batch also held a refused call/);

  const single = parseJsonRpcBody(JSON.stringify(tool(9, 'rm')));
  if (!single.ok) throw new Error(single.why);
  const one = JSON.parse(refusalAnswer(checkMessages(mcp, single.messages, RULE), single.messages, false)!) as { id: number };
  t.equal(one.id, 9, 'a single message gets a single answer');

  const note = parseJsonRpcBody(JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'rm' } }));
  if (!note.ok) throw new Error(note.why);
  t.equal(refusalAnswer(checkMessages(mcp, note.messages, RULE), note.messages, false), null, 'nothing to answer in JSON-RPC');
});

t.test('names: exact names, globs, bounded names', async (t) => {
  const names = compileNames(['a.b', 'x*', 'f?o', 'we(ird)+[x]']);
  t.ok(names.matches('a.b'));
  t.notOk(names.matches('aXb'), '"." is literal');
  t.ok(names.matches('x'));
  t.ok(names.matches('xyz/abc'));
  t.ok(names.matches('foo'));
  t.notOk(names.matches('fooo'));
  t.ok(names.matches('we(ird)+[x]'), 'regex characters are literal');
  t.same([...names.exact], ['a.b', 'we(ird)+[x]'], 'only names without wildcards are labels');
  t.equal(boundedName('a\nb'), 'a?b');
  t.equal(boundedName('x'.repeat(300)).length, 129);
});

t.test('member names a case-insensitive reader takes for another are refused (CVE-2026-27896 smuggling)', async (t) => {
  // What a server on Go's encoding/json reads in each: the case or Unicode fold, last one wins.
  const smuggled: Array<[string, string]> = [
    [
      'a second method in another case',
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"delete_repository"}}',
    ],
    ['only the upper-case method', '{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","result":{},"params":{"name":"delete_repository"}}'],
    [
      'params under another case',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"Params":{"name":"delete_repository"}}',
    ],
    [
      'params with the long s (U+017F)',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"param\u017f":{"name":"delete_repository"}}',
    ],
    ['a tool name twice', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_repository"}}'],
    [
      'a uri with the dotted capital I (U+0130)',
      '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///ok","ur\u0130":"file:///etc/shadow"}}',
    ],
    ['an id in another case', '{"jsonrpc":"2.0","method":"tools/list","ID":7}'],
    [
      'a Kelvin sign in a batch member',
      '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","params":{"\u212Aey":1,"_meta":{},"_MEta":{"x":1}}}]',
    ],
  ];
  for (const [name, body] of smuggled) {
    const parsed = parseJsonRpcBody(body);
    t.notOk(parsed.ok, name);
    if (!parsed.ok) t.match(parsed.why, /case-insensitive reader/, `${name}: ${parsed.why}`);
  }
  // The same name twice: JSON.parse and Go take the last, gjson, jsonparser and simdjson the first.
  const twice: Array<[string, string]> = [
    ['method twice', '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repository"}}'],
    ['a tool name twice', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_repository"}}'],
    [
      'a name spelled with an escape',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","\\u006eame":"delete_repository"}}',
    ],
    [
      'twice deep in the arguments',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":{"path":"/a","path":"/etc"}}}}',
    ],
    ['in a batch member', '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"id":3,"method":"ping"}]'],
  ];
  for (const [name, body] of twice) {
    const parsed = parseJsonRpcBody(body);
    t.notOk(parsed.ok, name);
    if (!parsed.ok) t.match(parsed.why, /twice in one object/, `${name}: ${parsed.why}`);
  }
  const deep = parseJsonRpcBody(
    `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"a":${'['.repeat(50000)}${']'.repeat(50000)}}}}`,
  );
  t.notOk(deep.ok, 'what cannot be read member by member is refused, not passed');
  t.equal(readsAs('Method', 'method'), true);
  t.equal(readsAs('method', 'method'), false, 'the name itself');
  t.equal(readsAs('methods', 'method'), false, 'another length');
  t.equal(readsAs('paramſ', 'params'), true);
  t.equal(readsAs('\u212Aey', 'key'), true, 'the Kelvin sign');
  t.ok(
    parseJsonRpcBody(JSON.stringify(call(1, 'tools/call', { name: 'search', arguments: { Name: 'x', METHOD: 'y' } }))).ok,
    'arguments are the tool’s own',
  );
  t.ok(parseJsonRpcBody(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'x', params: { names: ['a'], Cursor2: 1 } })).ok, 'other names pass');
});
