// The admin port: metrics, health, readiness, a policy summary, the last signed audit checkpoint and
// the interception CA certificate; and, mounted by serve, the approvals API and page (issue 17).
// It serves only what is listed here; the CA key and secret values are never reachable from it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminPolicySummary {
  sha256: string;
  loadedAt: Date;
  tools: Array<{ name: string; rules: number; secrets: string[] }>;
}

export interface AdminStatus {
  ready: boolean;
  /** why the proxy is not ready (shown by /readyz) */
  why: string | null;
  policy: AdminPolicySummary | null;
}

export interface AdminServerOptions {
  listen: { host: string; port: number };
  registry: Registry;
  status: () => AdminStatus;
  /** the interception CA certificate; null when interception is off */
  caPem: () => string | null;
  /** the last signed audit checkpoint (GET /audit/head); null or absent when the audit is not signed */
  auditHead?: () => object | null;
  /**
   * More routes (the approvals API, its page): answers the request itself and resolves true, or
   * resolves false to leave it to the routes here. It owns its methods, auth and streaming.
   */
  extra?: (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => Promise<boolean>;
}

export interface AdminServer {
  server: http.Server;
  address: AddressInfo;
  close(): Promise<void>;
}

type Reply = { status: number; type: string; body: string };

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

function text(status: number, body: string): Reply {
  return { status, type: TEXT, body: `${body}\n` };
}

async function route(pathname: string, opts: AdminServerOptions): Promise<Reply> {
  switch (pathname) {
    case '/metrics':
      return { status: 200, type: opts.registry.contentType, body: await opts.registry.metrics() };
    case '/healthz':
      return text(200, 'ok');
    case '/readyz': {
      const { ready, why } = opts.status();
      return ready ? text(200, 'ready') : text(503, `not ready: ${why ?? 'unknown'}`);
    }
    case '/policy': {
      const { policy } = opts.status();
      if (!policy) return { status: 503, type: JSON_TYPE, body: `${JSON.stringify({ error: 'no policy loaded' })}\n` };
      const summary = {
        sha256: policy.sha256,
        loaded_at: policy.loadedAt.toISOString(),
        tools: policy.tools.map((tool) => ({ name: tool.name, rules: tool.rules, secrets: tool.secrets })),
      };
      return { status: 200, type: JSON_TYPE, body: `${JSON.stringify(summary, null, 2)}\n` };
    }
    case '/audit/head': {
      // An anchor to keep outside the audit file: seq, hash and signature of the last checkpoint.
      const head = opts.auditHead?.() ?? null;
      if (!head) return { status: 404, type: JSON_TYPE, body: `${JSON.stringify({ error: 'the audit is not signed (no --audit-key)' })}\n` };
      return { status: 200, type: JSON_TYPE, body: `${JSON.stringify(head, null, 2)}\n` };
    }
    case '/ca.pem': {
      const pem = opts.caPem();
      return pem === null ? text(404, 'interception is off: no CA') : { status: 200, type: 'application/x-pem-file', body: pem };
    }
    default:
      return text(404, 'not found');
  }
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  // The handler's one await (route) is inside try/catch, so its promise never rejects.
  // eslint-disable-next-line @typescript-eslint/no-misused-promises
  const server = http.createServer(async (req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://admin').pathname;
    if (opts.extra) {
      try {
        if (await opts.extra(req, res, pathname)) return;
      } catch {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': TEXT });
        res.end('internal error\n');
        return;
      }
    }
    let reply: Reply;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply = text(405, 'method not allowed');
      res.setHeader('Allow', 'GET, HEAD');
    } else {
      try {
        reply = await route(pathname, opts);
      } catch {
        reply = text(500, 'internal error');
      }
    }
    res.writeHead(reply.status, {
      'Content-Type': reply.type,
      'Content-Length': Buffer.byteLength(reply.body),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  });
  // Small, short-lived requests only: bound what a slow or idle client can hold open.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
