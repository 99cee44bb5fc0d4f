// MCP-aware rules end to end (issue 18): the official @modelcontextprotocol/sdk client, through
// sluice intercepting with its CA, against the SDK's server over TLS on loopback. Allowed calls
// work, refused ones never reach the server and fail in the client naming the reason and the tool,
// list answers are filtered (JSON and SSE, cursors kept), a mixed batch is refused whole, the older
// HTTP+SSE transport is read too, a malformed body is a bad_request, the session survives refusals;
// each call is one mcp.call record beside the one canonical record of its HTTP exchange.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startDns } from '../helpers/dns.js';
import { connectClient, proxiedFetch, startMcpServer, type McpTestServer } from '../helpers/mcp.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, startTestSluice, waitForAudit, type AuditRecord, type TestSluice } from '../helpers/sluice.js';

let server: McpTestServer;
let sluice: TestSluice;
let dns: Awaited<ReturnType<typeof startDns>>;
let caPem: string;
let base: string;

t.before(async () => {
  const pki = await makeTestPki();
  const testCa = await testCaFile();
  server = await startMcpServer(pki.server);
  dns = await startDns({ 'api.test': [{ type: 'A', address: '127.0.0.2' }] });
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${server.port}]
tls:
  upstream_ca: ${testCa}
tools:
  web-fetch:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: api.test
        mcp:
          tools: [search, "repo.*"]
          prompts: [summarize]
`,
  });
  caPem = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
  base = `https://api.test:${server.port}`;
});
t.teardown(async () => {
  await sluice.close();
  await server.close();
  await dns.close();
});

const names = (tools: Array<{ name: string }>): string[] => tools.map((x) => x.name);

/** The mcp.call records and canonical records written after `mark`. */
async function since(mark: number): Promise<AuditRecord[]> {
  return (await sluice.audit()).filter((r) => r.seq > mark);
}

for (const [label, endpoint] of [
  ['Streamable HTTP, SSE answers', '/mcp'],
  ['Streamable HTTP, JSON answers', '/mcp-json'],
  ['Streamable HTTP, resumable SSE answers (priming events)', '/mcp-resumable'],
] as const) {
  t.test(`${label}: allowed calls work, refused ones never reach the server, lists are filtered`, async (t) => {
    const agent = await connectClient(`${base}${endpoint}`, 'streamable', sluice.proxyUrl(), caPem);
    t.teardown(() => agent.close());
    const session = agent.sessionId();
    t.ok(session, 'the server gave an Mcp-Session-Id through sluice');

    const page1 = await agent.client.listTools();
    t.same(names(page1.tools), ['search'], 'delete_repository is filtered out of page 1');
    t.equal(page1.nextCursor, 'page-2', 'the pagination cursor is kept');
    const page2 = await agent.client.listTools({ cursor: page1.nextCursor! });
    t.same(names(page2.tools), ['repo.read'], 'page 2, filtered too');

    const ok = await agent.client.callTool({ name: 'search', arguments: { q: 'sluice' } });
    t.match(JSON.stringify(ok.content), /search ran with/, 'the allowed call ran');

    const before = server.received.length;
    const refused = await agent.client.callTool({ name: 'delete_repository', arguments: { repo: 'x' } }).then(
      () => null,
      (err: Error) => err,
    );
    t.ok(refused, 'the refused call fails in the client');
    t.match(refused?.message, /mcp_tool_not_allowed/, 'the client error names the reason');
    t.match(refused?.message, /delete_repository/, 'and the tool');
    t.equal(server.received.length, before, 'nothing of it reached the server');
    t.notOk(server.received.includes('tools/call delete_repository'));

    const prompts = await agent.client.listPrompts();
    t.same(names(prompts.prompts), ['summarize'], 'prompts/list is filtered by the prompts list');
    await t.rejects(agent.client.getPrompt({ name: 'jailbreak' }), /mcp_prompt_not_allowed/);
    const resources = await agent.client.listResources();
    t.equal(resources.resources.length, 2, 'no resources list: resources are not filtered');

    const again = await agent.client.callTool({ name: 'repo.read', arguments: {} });
    t.match(JSON.stringify(again.content), /repo.read ran/, 'the session goes on after a refusal');
    t.equal(agent.sessionId(), session, 'the same Mcp-Session-Id throughout');
  });
}

t.test('the audit: one mcp.call per call, one canonical record per HTTP exchange; metrics per MCP tool', async (t) => {
  const agent = await connectClient(`${base}/mcp-json`, 'streamable', sluice.proxyUrl(), caPem);
  t.teardown(() => agent.close());
  const metricsBefore = await scrapeMetrics(sluice.adminPort);
  const mark = await auditMark(sluice);
  await agent.client.callTool({ name: 'search', arguments: {} });
  await agent.client.callTool({ name: 'delete_repository', arguments: {} }).catch(() => undefined);
  const canonical = await canonicalSince(sluice, mark, 2);
  const posts = canonical.filter((r) => r.method === 'POST');
  t.equal(posts.length, 2, 'two HTTP exchanges, two canonical records');
  t.same(
    posts.map((r) => [r.type, r.reason]),
    [
      ['net.req', null],
      ['policy.violation', 'mcp_tool_not_allowed'],
    ],
  );
  const calls = (await since(mark)).filter((r) => r.type === 'mcp.call');
  t.same(
    calls.map((r) => [r.mcp_method, r.mcp_name, r.decision, r.reason]),
    [
      ['tools/call', 'search', 'allow', null],
      ['tools/call', 'delete_repository', 'deny', 'mcp_tool_not_allowed'],
    ],
    'one mcp.call per call',
  );
  t.same(
    calls.map((r) => r.request_id),
    posts.map((r) => r.request_id),
    'each call names its exchange',
  );
  t.equal(posts[1]!.status, 200, 'the refusal was answered in JSON-RPC (200)');

  const after = await scrapeMetrics(sluice.adminPort);
  const delta = (where: Record<string, string>): number =>
    total(after, 'sluice_mcp_calls_total', where) - total(metricsBefore, 'sluice_mcp_calls_total', where);
  t.equal(delta({ tool: 'web-fetch', method: 'tools/call', mcp_tool: 'search', decision: 'allow' }), 1);
  t.equal(
    delta({ tool: 'web-fetch', method: 'tools/call', mcp_tool: 'other', decision: 'deny' }),
    1,
    'a name the policy does not list is "other"',
  );
  t.equal(total(after, 'sluice_mcp_calls_total', { mcp_tool: 'delete_repository' }), 0, 'never a label the policy does not name');
});

/** A raw POST through sluice into the session of a connected client. */
async function rawPost(session: string, body: string): Promise<{ status: number; headers: Headers; text: string }> {
  const { fetch: viaProxy, agent } = proxiedFetch(sluice.proxyUrl(), caPem);
  try {
    const res = await viaProxy(`${base}/mcp-json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': session },
      body,
    });
    return { status: res.status, headers: res.headers, text: await res.text() };
  } finally {
    await agent.close();
  }
}

t.test('a batch with one allowed and one refused call is refused whole', async (t) => {
  const agent = await connectClient(`${base}/mcp-json`, 'streamable', sluice.proxyUrl(), caPem);
  t.teardown(() => agent.close());
  const before = server.received.length;
  const batch = [
    { jsonrpc: '2.0', id: 101, method: 'tools/call', params: { name: 'search', arguments: {} } },
    { jsonrpc: '2.0', id: 102, method: 'tools/call', params: { name: 'delete_repository', arguments: {} } },
  ];
  const r = await rawPost(agent.sessionId()!, JSON.stringify(batch));
  t.equal(r.status, 200);
  t.equal(r.headers.get('x-sluice-deny'), 'mcp_tool_not_allowed');
  const answers = JSON.parse(r.text) as Array<{ id: number; error: { message: string; data: { reason: string } } }>;
  t.same(
    answers.map((a) => [a.id, a.error.data.reason]),
    [
      [101, 'mcp_tool_not_allowed'],
      [102, 'mcp_tool_not_allowed'],
    ],
  );
  t.match(answers[0]!.error.message, /held back/, 'the allowed member says why it did not run');
  t.match(answers[1]!.error.message, /delete_repository/);
  t.equal(server.received.length, before, 'no member of the batch reached the server');
  const violation = await waitForAudit(
    sluice,
    (e) => e.type === 'policy.violation' && e.reason === 'mcp_tool_not_allowed' && /batch of 2/.test(e.detail ?? ''),
  );
  t.ok(violation);
});

t.test('a malformed body is a bad_request and reaches nothing', async (t) => {
  const agent = await connectClient(`${base}/mcp-json`, 'streamable', sluice.proxyUrl(), caPem);
  t.teardown(() => agent.close());
  const before = server.received.length;
  for (const body of [
    '{"jsonrpc":"2.0","id":1,',
    '{"id":1,"method":"tools/call"}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}',
    // smuggling for a server that reads names case-insensitively (Go's encoding/json): refused, not guessed
    '{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"delete_repository"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_repository"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_repository"}}',
  ]) {
    const r = await rawPost(agent.sessionId()!, body);
    t.equal(r.status, 400, body);
    t.equal(r.headers.get('x-sluice-deny'), 'bad_request');
    t.match(JSON.parse(r.text).detail, /JSON|jsonrpc|params.name|case-insensitive reader|twice in one object/);
  }
  t.equal(server.received.length, before, 'the server saw none of them');
});

t.test('the older HTTP+SSE transport: lists filtered on the event stream, refused calls fail', async (t) => {
  const agent = await connectClient(`${base}/sse`, 'sse', sluice.proxyUrl(), caPem);
  t.teardown(() => agent.close());
  const page1 = await agent.client.listTools();
  t.same(names(page1.tools), ['search'], 'filtered on the GET stream');
  t.equal(page1.nextCursor, 'page-2');
  const ok = await agent.client.callTool({ name: 'search', arguments: {} });
  t.match(JSON.stringify(ok.content), /search ran/);
  const before = server.received.length;
  const refused = await agent.client.callTool({ name: 'drop_table', arguments: {} }).then(
    () => null,
    (err: Error) => err,
  );
  t.match(refused?.message, /mcp_tool_not_allowed/, 'the client error names the reason');
  t.match(refused?.message, /drop_table/, 'and the tool');
  t.equal(server.received.length, before, 'nothing reached the server');
  const again = await agent.client.callTool({ name: 'repo.read', arguments: {} });
  t.match(JSON.stringify(again.content), /repo.read ran/, 'the session goes on');
});

t.test('credentials: a placeholder in tools/call arguments is swapped only where the secret allows the body', async (t) => {
  const testCa = await testCaFile();
  const creds = await startTestSluice({
    env: { MCP_BODY_SECRET: 'mcp-body-real-value-0123456789', MCP_HEADER_SECRET: 'mcp-header-real-value-9876543210' },
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${server.port}]
tls:
  upstream_ca: ${testCa}
secrets:
  in_body:
    from: { env: MCP_BODY_SECRET }
    hosts: [api.test]
    swap_in: [body]
  in_header:
    from: { env: MCP_HEADER_SECRET }
    hosts: [api.test]
tools:
  web-fetch:
    token_sha256: "\${TOKEN_SHA}"
    secrets: [in_body, in_header]
    allow:
      - host: api.test
        mcp:
          tools: [search]
`,
  });
  t.teardown(() => creds.close());
  const credsCa = readFileSync(path.join(creds.caDir, 'ca.pem'), 'utf8');
  for (const endpoint of ['/mcp', '/mcp-json']) {
    const agent = await connectClient(`${base}${endpoint}`, 'streamable', creds.proxyUrl(), credsCa);
    t.teardown(() => agent.close());
    t.same(names((await agent.client.listTools()).tools), ['search'], `${endpoint}: filtered, then scrubbed`);
    const ran = await agent.client.callTool({ name: 'search', arguments: { token: '__sluice_secret_in_body__' } });
    t.same(server.argumentsSeen.at(-1), { token: 'mcp-body-real-value-0123456789' }, `${endpoint}: the server got the value`);
    const text = JSON.stringify(ran.content);
    t.notOk(text.includes('mcp-body-real-value'), `${endpoint}: the echo came back scrubbed`);
    t.match(text, /__sluice_secret_in_body__/, `${endpoint}: the agent sees its placeholder`);

    const before = server.received.length;
    const refused = await agent.client.callTool({ name: 'search', arguments: { token: '__sluice_secret_in_header__' } }).then(
      () => null,
      (err: Error) => err,
    );
    t.match(refused?.message, /secret_misplaced/, `${endpoint}: a secret without body in swap_in is refused`);
    t.equal(server.received.length, before, `${endpoint}: and never reached the server`);
  }
  const audit = await creds.audit();
  t.notOk(JSON.stringify(audit).includes('real-value'), 'no secret value in the audit');
  t.ok(
    audit.some((r) => r.type === 'secret.use' && r.secret === 'in_body' && r.where === 'body'),
    'the swap is recorded',
  );
});
