// The approvals API and page on the admin port (issue 17): GET /approvals, GET /approvals/events
// (Server-Sent Events), POST /approvals/{id}, GET /ui. Reading needs nothing; every change needs
// `Authorization: Bearer <admin token>`, and without a configured token changes are refused with a
// sentence saying how to set one. The admin port is one of sluice's own addresses, so a tool can
// never reach it through the proxy (the self-connect rule).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Approvals, ApprovalEvent } from './approvals.js';
import { approvalsPage } from './page.js';

export interface ApprovalRoutesOptions {
  approvals: Approvals;
  /** the admin token (--admin-token-file / --admin-token-env); null = none configured: changes refused */
  token: string | null;
  /** seconds between SSE keep-alive comments (default 15) */
  heartbeatSeconds?: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const MAX_BODY_BYTES = 16 * 1024;
export const NO_TOKEN_DETAIL =
  'no admin token is configured, so nothing can be changed: start sluice with --admin-token-file FILE or --admin-token-env NAME (SLUICE_ADMIN_TOKEN_FILE / SLUICE_ADMIN_TOKEN_ENV), then send Authorization: Bearer <token>';

export function approvalRoutes(
  opts: ApprovalRoutesOptions,
): (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => Promise<boolean> {
  const want = opts.token === null ? null : createHash('sha256').update(opts.token).digest();
  const authorized = (req: http.IncomingMessage): boolean => {
    if (want === null) return false;
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(createHash('sha256').update(m[1]!).digest(), want);
  };

  return async (req, res, pathname) => {
    if (pathname === '/ui') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      const nonce = randomBytes(16).toString('base64');
      const body = approvalsPage(nonce);
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        // Only this page's own inline script and style, and requests back to this origin.
        'Content-Security-Policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    }
    if (pathname === '/approvals') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      json(res, 200, opts.approvals.list());
      return true;
    }
    if (pathname === '/approvals/events') {
      if (req.method !== 'GET') return methodNotAllowed(res, 'GET');
      stream(req, res, opts.approvals, (opts.heartbeatSeconds ?? 15) * 1000);
      return true;
    }
    const m = /^\/approvals\/([^/]+)$/.exec(pathname);
    if (!m) return false;
    if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
    // Checked before the body is read: an unauthorized client changes nothing and learns nothing.
    if (want === null) {
      json(res, 403, { error: 'no_admin_token', detail: NO_TOKEN_DETAIL });
      req.resume();
      return true;
    }
    if (!authorized(req)) {
      json(res, 403, { error: 'forbidden', detail: 'POST /approvals/{id} needs Authorization: Bearer <admin token>' });
      req.resume();
      return true;
    }
    const body = await readBody(req);
    if (body === null) {
      json(res, 400, { error: `the body must be JSON of at most ${MAX_BODY_BYTES} bytes` });
      return true;
    }
    const answer = await opts.approvals.decide(decodeURIComponent(m[1]!), body);
    json(res, answer.status, answer.body);
    return true;
  };
}

/** The SSE stream: what is pending and the last decisions first, then every event as it happens. */
function stream(req: http.IncomingMessage, res: http.ServerResponse, approvals: Approvals, heartbeatMs: number): void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    Connection: 'keep-alive',
  });
  const send = (e: ApprovalEvent): void => {
    res.write(`event: ${e.type}\ndata: ${JSON.stringify(e.type === 'requested' ? e.approval : e.decision)}\n\n`);
  };
  for (const decision of approvals.recent())
    send({ type: decision.decision === 'timeout' || decision.decision === 'withdrawn' ? 'expired' : 'decided', decision });
  for (const approval of approvals.list()) send({ type: 'requested', approval });
  res.write(': ready\n\n');
  const unsubscribe = approvals.subscribe(send);
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
  heartbeat.unref();
  const stop = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
  };
  req.socket.setTimeout(0);
  res.on('close', stop);
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, {
    'Content-Type': JSON_TYPE,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

function methodNotAllowed(res: http.ServerResponse, allow: string): true {
  res.setHeader('Allow', allow);
  json(res, 405, { error: 'method not allowed' });
  return true;
}

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        resolve(null);
      }
    });
    req.on('error', () => resolve(null));
  });
}
