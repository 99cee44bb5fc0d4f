// The admin port: metrics, health, readiness, a policy summary, the last signed audit checkpoint and
// the interception CA certificate; and, mounted by serve, the approvals API and page (issue 17).
// It serves only what is listed here; the CA key and secret values are never reachable from it.
import http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
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
  /**
   * Host names (beyond IP literals and localhost) the admin port answers to (--admin-host), e.g. the
   * compose service name Prometheus scrapes it by. Anything else is refused (DNS rebinding).
   */
  allowedHosts?: readonly string[];
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

/**
 * Whether a request's Host may reach the admin port. A web page the operator's browser opens can point
 * a name it controls at 127.0.0.1 (DNS rebinding) and read /approvals, /policy or /metrics as same-origin;
 * its requests carry that name in Host. So only an IP literal, localhost or a name the operator listed
 * is answered. No Host at all (HTTP/1.0; Node refuses it on 1.1) is not a browser and is answered.
 */
export function adminHostAllowed(host: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (host === undefined) return true;
  let name = host.trim().toLowerCase();
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    return end > 0 && isIP(name.slice(1, end)) === 6 && /^(:\d{1,5})?$/.test(name.slice(end + 1));
  }
  const colon = name.lastIndexOf(':');
  if (colon !== -1) {
    if (!/^\d{1,5}$/.test(name.slice(colon + 1))) return false;
    name = name.slice(0, colon);
  }
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '') return false;
  return isIP(name) === 4 || name === 'localhost' || allowed.has(name);
}

/** Normalises --admin-host names (lowercase, no trailing dot); throws on one that is not a host name. */
export function adminHostNames(names: readonly string[]): string[] {
  return names.map((raw) => {
    const name = raw.trim().toLowerCase().replace(/\.$/, '');
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(name)) {
      throw new Error(`--admin-host ${JSON.stringify(raw)} is not a host name`);
    }
    return name;
  });
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const allowed = new Set(opts.allowedHosts ?? []);
  // The handler's one await (route) is inside try/catch, so its promise never rejects.
  // eslint-disable-next-line @typescript-eslint/no-misused-promises
  const server = http.createServer(async (req, res) => {
    if (!adminHostAllowed(req.headers.host, allowed)) {
      const body = 'the admin port answers only Host: an IP address, localhost or a name given with --admin-host\n';
      res.writeHead(421, { 'Content-Type': TEXT, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', Connection: 'close' });
      res.end(body);
      req.resume();
      return;
    }
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
