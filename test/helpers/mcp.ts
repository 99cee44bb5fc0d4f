// A real MCP server (the official @modelcontextprotocol/sdk) over TLS on loopback, and the SDK's
// client going through sluice: the e2e harness of MCP-aware rules (issue 18).
//   /mcp       Streamable HTTP, stateful (Mcp-Session-Id), answers as text/event-stream
//   /mcp-json  Streamable HTTP, stateful, answers as application/json
//   /mcp-resumable  Streamable HTTP with an event store: SSE answers open with a priming event (empty data)
//   /sse       the older HTTP+SSE transport's event stream; its POSTs go to /messages?sessionId=…
// The server offers tools over two pages of tools/list (a pagination cursor), resources and
// prompts, and records every JSON-RPC request it received, so a test can show what reached it.
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { fetch, ProxyAgent, type RequestInit as UndiciRequestInit } from 'undici';
import type { CertAndKey } from './pki.js';

/** The tools the server offers, in two pages of tools/list. */
export const TOOL_PAGES = [
  ['search', 'delete_repository'],
  ['repo.read', 'drop_table'],
] as const;

export interface McpTestServer {
  port: number;
  /** every JSON-RPC method and tool name that reached the server, in order ("tools/call search") */
  received: string[];
  /** the tools/call arguments the server was given, in order */
  argumentsSeen: unknown[];
  close(): Promise<void>;
}

function newServer(received: string[], argumentsSeen: unknown[]): Server {
  const server = new Server({ name: 'sluice-test-mcp', version: '1.0.0' }, { capabilities: { tools: {}, resources: {}, prompts: {} } });
  const tool = (name: string) => ({ name, description: `the ${name} tool`, inputSchema: { type: 'object' as const, properties: {} } });
  server.setRequestHandler(ListToolsRequestSchema, (req) => {
    received.push('tools/list');
    const page = req.params?.cursor === 'page-2' ? 1 : 0;
    return { tools: TOOL_PAGES[page].map(tool), ...(page === 0 ? { nextCursor: 'page-2' } : {}) };
  });
  server.setRequestHandler(CallToolRequestSchema, (req) => {
    received.push(`tools/call ${req.params.name}`);
    argumentsSeen.push(req.params.arguments ?? null);
    return { content: [{ type: 'text', text: `${req.params.name} ran with ${JSON.stringify(req.params.arguments ?? {})}` }] };
  });
  server.setRequestHandler(ListResourcesRequestSchema, () => {
    received.push('resources/list');
    return {
      resources: [
        { uri: 'file:///docs/a.md', name: 'a' },
        { uri: 'file:///etc/passwd', name: 'passwd' },
      ],
    };
  });
  server.setRequestHandler(ReadResourceRequestSchema, (req) => {
    received.push(`resources/read ${req.params.uri}`);
    return { contents: [{ uri: req.params.uri, text: 'contents' }] };
  });
  server.setRequestHandler(ListPromptsRequestSchema, () => {
    received.push('prompts/list');
    return { prompts: [{ name: 'summarize' }, { name: 'jailbreak' }] };
  });
  server.setRequestHandler(GetPromptRequestSchema, (req) => {
    received.push(`prompts/get ${req.params.name}`);
    return { messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }] };
  });
  return server;
}

export async function startMcpServer(tlsPair: CertAndKey, host = '127.0.0.2'): Promise<McpTestServer> {
  const received: string[] = [];
  const argumentsSeen: unknown[] = [];
  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const sse = new Map<string, SSEServerTransport>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://mcp.test');
    if (url.pathname === '/mcp' || url.pathname === '/mcp-json' || url.pathname === '/mcp-resumable') {
      const id = req.headers['mcp-session-id'];
      let transport = typeof id === 'string' ? streamable.get(id) : undefined;
      if (!transport) {
        if (id !== undefined) {
          res.writeHead(404).end('unknown session');
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: url.pathname === '/mcp-json',
          // resumable streams: every SSE answer opens with a priming event (an id, empty data)
          ...(url.pathname === '/mcp-resumable' ? { eventStore: new InMemoryEventStore() } : {}),
          onsessioninitialized: (sid) => void streamable.set(sid, created),
        });
        transport = created;
        await newServer(received, argumentsSeen).connect(transport);
      }
      await transport.handleRequest(req, res);
      return;
    }
    if (url.pathname === '/sse' && req.method === 'GET') {
      const transport = new SSEServerTransport('/messages', res);
      sse.set(transport.sessionId, transport);
      res.on('close', () => sse.delete(transport.sessionId));
      await newServer(received, argumentsSeen).connect(transport);
      return;
    }
    if (url.pathname === '/messages' && req.method === 'POST') {
      const transport = sse.get(url.searchParams.get('sessionId') ?? '');
      if (!transport) {
        res.writeHead(404).end('unknown session');
        return;
      }
      await transport.handlePostMessage(req, res);
      return;
    }
    res.writeHead(404).end();
  };

  const server = https.createServer({ cert: tlsPair.certPem, key: tlsPair.keyPem }, (req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as { port: number }).port,
    received,
    argumentsSeen,
    close: async () => {
      for (const t of streamable.values()) await t.close().catch(() => undefined);
      for (const t of sse.values()) await t.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ProxiedClient {
  client: Client;
  /** the Mcp-Session-Id of a Streamable HTTP session (undefined for the older transport) */
  sessionId(): string | undefined;
  close(): Promise<void>;
}

/** The SDK's fetch, through sluice (CONNECT, then TLS that sluice's CA signed). */
export function proxiedFetch(proxyUrl: string, caPem: string): { fetch: typeof globalThis.fetch; agent: ProxyAgent } {
  const agent = new ProxyAgent({ uri: proxyUrl, requestTls: { ca: caPem } });
  const viaProxy = (input: string | URL | Request, init?: RequestInit): Promise<Response> =>
    fetch(input instanceof Request ? input.url : input, { ...(init as UndiciRequestInit), dispatcher: agent });
  return { fetch: viaProxy, agent };
}

/** An SDK client connected through sluice with the transport asked for. */
export async function connectClient(url: string, transport: 'streamable' | 'sse', proxyUrl: string, caPem: string): Promise<ProxiedClient> {
  const { fetch: viaProxy, agent } = proxiedFetch(proxyUrl, caPem);
  const client = new Client({ name: 'sluice-test-agent', version: '1.0.0' });
  const t =
    transport === 'streamable'
      ? new StreamableHTTPClientTransport(new URL(url), { fetch: viaProxy })
      : new SSEClientTransport(new URL(url), { fetch: viaProxy, eventSourceInit: { fetch: viaProxy } });
  await client.connect(t);
  return {
    client,
    sessionId: () => (t instanceof StreamableHTTPClientTransport ? t.sessionId : undefined),
    close: async () => {
      await client.close().catch(() => undefined);
      await agent.close();
    },
  };
}
