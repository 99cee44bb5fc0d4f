// MCP tools/call round trips for the bench (row mcp_call): starts the official SDK's MCP server
// (Streamable HTTP, JSON answers, one session per client) over TLS on 127.0.0.1 with the bench
// upstream certificate, then drives CONC SDK clients, each calling the `echo` tool in a loop for
// SECONDS, either straight at the server or through a proxy (PROXY_URL, with the CA it intercepts
// with in CA_FILE). Prints one line: BENCH_JSON {"requests","errors","duration_us","p50_us","p99_us"}.
//   MCP_PORT (18444), SECONDS (2), CONC (8), PROXY_URL (none: direct), PROXY_AUTH (user:token), CA_FILE
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Agent, fetch, ProxyAgent } from 'undici';

const port = Number(process.env.MCP_PORT ?? 18444);
const seconds = Number(process.env.SECONDS ?? 2);
const conc = Number(process.env.CONC ?? 8);
const tlsDir = new URL('./tls/', import.meta.url);
const cert = fs.readFileSync(new URL('upstream.pem', tlsDir), 'utf8');
const key = fs.readFileSync(new URL('upstream-key.pem', tlsDir), 'utf8');

const sessions = new Map();
function newServer() {
  const server = new Server({ name: 'bench-mcp', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: 'echo', inputSchema: { type: 'object' } }] }));
  server.setRequestHandler(CallToolRequestSchema, (req) => ({ content: [{ type: 'text', text: JSON.stringify(req.params.arguments ?? {}) }] }));
  return server;
}
const httpsServer = https.createServer({ cert, key }, async (req, res) => {
  try {
    const id = req.headers['mcp-session-id'];
    let transport = typeof id === 'string' ? sessions.get(id) : undefined;
    if (!transport) {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: true,
        onsessioninitialized: (sid) => void sessions.set(sid, created),
      });
      transport = created;
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res);
  } catch {
    res.destroy();
  }
});
await new Promise((resolve) => httpsServer.listen(port, '127.0.0.1', resolve));

const proxyUrl = process.env.PROXY_URL;
const ca = process.env.CA_FILE ? fs.readFileSync(process.env.CA_FILE, 'utf8') : cert;
const auth = process.env.PROXY_AUTH;
const dispatcher = proxyUrl
  ? new ProxyAgent({ uri: proxyUrl, token: auth ? `Basic ${Buffer.from(auth).toString('base64')}` : undefined, requestTls: { ca } })
  : new Agent({ connect: { ca } });
const viaDispatcher = (url, init) => fetch(url instanceof Request ? url.url : url, { ...init, dispatcher });

const latencies = [];
let errors = 0;
const until = performance.now() + seconds * 1000;
const started = performance.now();
async function worker(n) {
  const client = new Client({ name: `bench-${n}`, version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`https://localhost:${port}/mcp`), { fetch: viaDispatcher }));
  while (performance.now() < until) {
    const t0 = performance.now();
    try {
      await client.callTool({ name: 'echo', arguments: { n, q: 'sluice' } });
      latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
  await client.close();
}
await Promise.all(Array.from({ length: conc }, (_, n) => worker(n)));
const duration = performance.now() - started;
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
console.log(
  `BENCH_JSON ${JSON.stringify({ requests: latencies.length, errors, duration_us: duration * 1000, p50_us: at(0.5) * 1000, p99_us: at(0.99) * 1000 })}`,
);
await dispatcher.close();
httpsServer.closeAllConnections();
httpsServer.close();
