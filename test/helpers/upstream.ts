// Real upstream servers for e2e tests: an httpbin-like HTTP(S) server that records every request
// and TCP connection it gets (so a test can prove what reached it, or that nothing did), a raw TCP
// or TLS peer for tests that need malformed or non-HTTP answers, and a scripted one on top of it that
// answers each request head exactly as a case needs.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { gzipSync } from 'node:zlib';
import { WebSocketServer } from 'ws';
import { hostForUrl } from '../../src/net/host.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Header names and values exactly as received, in order. */
  rawHeaders: Array<[string, string]>;
  /** The body as utf8; grows while the body arrives (see `complete`). */
  body: string;
  bodyBytes: number;
  complete: boolean;
}

export interface Upstream {
  host: string;
  port: number;
  /** e.g. "http://127.0.0.1:40123" or "https://[::1]:40123". */
  origin: string;
  requests: RecordedRequest[];
  /** TCP connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

export interface UpstreamOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Serve HTTPS with this certificate (see pki.ts). */
  tls?: { certPem: string; keyPem: string };
}

/** What the /anything routes send back. */
export interface EchoReply {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: string;
  bodyBytes: number;
}

const PATTERN = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789\n');
// A whole number of patterns (~64 KiB), so consecutive chunks continue the pattern.
const BULK_CHUNK_BYTES = PATTERN.length * 1771;

/** The deterministic bytes /small and /bulk send: a repeating pattern, so a test can compare. */
export function patternBytes(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let offset = 0; offset < length; offset += PATTERN.length) PATTERN.copy(out, offset);
  return out;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function intParam(url: URL, name: string, fallback: number): number {
  const value = Number(url.searchParams.get(name));
  return Number.isInteger(value) && value >= 0 && url.searchParams.has(name) ? value : fallback;
}

function sendText(res: http.ServerResponse, status: number, text: string, headers: http.OutgoingHttpHeaders = {}): void {
  const body = Buffer.from(text);
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...headers });
  res.end(body);
}

/** Streams `total` pattern bytes, respecting backpressure. */
function streamBulk(res: http.ServerResponse, total: number): void {
  const chunk = patternBytes(Math.min(total, BULK_CHUNK_BYTES));
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const slice = chunk.subarray(0, Math.min(chunk.length, total - sent));
      sent += slice.length;
      if (!res.write(slice)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => res.removeListener('drain', pump));
  pump();
}

function route(req: http.IncomingMessage, res: http.ServerResponse, record: RecordedRequest, body: Buffer): void {
  const url = new URL(req.url ?? '/', 'http://upstream.invalid');
  const path = url.pathname;

  if (path.startsWith('/anything')) {
    const reply: EchoReply = {
      method: record.method,
      url: record.url,
      headers: record.rawHeaders,
      body: body.toString('utf8'),
      bodyBytes: body.length,
    };
    const json = Buffer.from(JSON.stringify(reply));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': json.length });
    res.end(json);
  } else if (path === '/small') {
    const small = patternBytes(1024);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': small.length });
    res.end(small);
  } else if (path === '/bulk') {
    const total = intParam(url, 'bytes', 0);
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
    if (url.searchParams.get('close') === '1') {
      // Close-delimited: no length, no chunking; the end of the body is the end of the connection.
      res.useChunkedEncodingByDefault = false;
      res.shouldKeepAlive = false;
    } else if (url.searchParams.get('chunked') !== '1') {
      headers['content-length'] = total;
    }
    res.writeHead(200, headers);
    streamBulk(res, total);
  } else if (path.startsWith('/status/')) {
    const status = Number(path.slice('/status/'.length));
    if (!Number.isInteger(status) || status < 200 || status > 599) return sendText(res, 400, 'bad status\n');
    if (status === 204 || status === 304) {
      res.writeHead(status);
      res.end();
    } else {
      sendText(res, status, `status ${status}\n`);
    }
  } else if (path === '/redirect') {
    sendText(res, 302, 'redirecting\n', { location: url.searchParams.get('to') ?? '/' });
  } else if (path === '/echo-header') {
    const name = url.searchParams.get('name');
    if (!name) return sendText(res, 400, 'name required\n');
    sendText(res, 200, 'ok\n', { [name]: url.searchParams.get('value') ?? '' });
  } else if (path === '/slow') {
    const timer = setTimeout(() => sendText(res, 200, 'slow\n'), intParam(url, 'ms', 1000));
    res.on('close', () => clearTimeout(timer));
  } else if (path === '/gzip') {
    const gz = gzipSync(url.searchParams.get('text') ?? 'hello gzip');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-encoding': 'gzip', 'content-length': gz.length });
    res.end(gz);
  } else {
    sendText(res, 404, 'not found\n');
  }
}

/**
 * An httpbin-like server: /anything* (echo), /small (1 KiB), /bulk?bytes=N[&chunked=1|&close=1],
 * /status/N, /redirect?to=URL, /echo-header?name=X&value=Y, /slow?ms=N, /gzip?text=..., and a
 * WebSocket echo at /ws. Keep-alive is on. Bodies from /small and /bulk are patternBytes(n).
 */
export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const sockets = new Set<net.Socket>();
  let accepted = 0;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const record: RecordedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: pairs(req.rawHeaders),
      body: '',
      bodyBytes: 0,
      complete: false,
    };
    requests.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      record.bodyBytes += chunk.length;
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      record.body = body.toString('utf8');
      record.complete = true;
      route(req, res, record, body);
    });
    req.on('error', () => res.destroy());
  };

  const server: http.Server = options.tls
    ? https.createServer({ cert: options.tls.certPem, key: options.tls.keyPem }, onRequest)
    : http.createServer(onRequest);
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: net.Socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Broken client hellos and aborted requests are part of the tests, not errors of the helper.
  server.on('tlsClientError', () => {});
  server.on('clientError', (_error, socket: net.Socket) => socket.destroy());

  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: pairs(req.rawHeaders),
      body: '',
      bodyBytes: 0,
      complete: true,
    });
    if (new URL(req.url ?? '/', 'http://upstream.invalid').pathname !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: options.port ?? 0, exclusive: true }, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    host,
    port,
    origin: `${options.tls ? 'https' : 'http'}://${hostForUrl(host)}:${port}`,
    requests,
    connections: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        for (const socket of sockets) socket.destroy();
        wss.close();
        server.close(() => resolve());
      }),
  };
}

export interface RawUpstream {
  host: string;
  port: number;
  /** TCP (or, with `tls`, TLS) connections accepted so far. */
  connections(): number;
  /** Connections accepted and not yet closed (by either side). */
  openConnections(): number;
  /** Every byte received on every connection, in arrival order, as latin1 (byte-exact; decrypted with `tls`). */
  received(): string;
  /** Per connection, in the order accepted (the index is the handler's `id`): what it received, and whether it has closed. */
  connectionLog(): Array<{ received: string; closed: boolean }>;
  close(): Promise<void>;
}

export interface RawUpstreamOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Terminate TLS with this certificate (see pki.ts): the handler gets the decrypted socket. */
  tls?: { certPem: string; keyPem: string };
}

/**
 * A raw TCP (or TLS) peer: `handler` owns each socket (answer with anything, or nothing). The helper
 * also listens to 'data' to record what arrived, so handlers should use events, not socket.read().
 */
export async function startRawUpstream(
  handler: (socket: net.Socket, id: number) => void,
  options: RawUpstreamOptions = {},
): Promise<RawUpstream> {
  const host = options.host ?? '127.0.0.1';
  const sockets = new Set<net.Socket>();
  const received: Buffer[] = [];
  const log: Array<{ chunks: Buffer[]; closed: boolean }> = [];
  let accepted = 0;
  const onSocket = (socket: net.Socket): void => {
    const id = accepted;
    const entry = { chunks: [] as Buffer[], closed: false };
    log.push(entry);
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      entry.closed = true;
    });
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      entry.chunks.push(chunk);
    });
    handler(socket, id);
  };
  const server: net.Server = options.tls
    ? tls.createServer({ cert: options.tls.certPem, key: options.tls.keyPem }, onSocket)
    : net.createServer(onSocket);
  // A peer that hangs up mid-handshake is part of the tests, not an error of the helper.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: options.port ?? 0, exclusive: true }, () => resolve());
  });
  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    connections: () => accepted,
    openConnections: () => sockets.size,
    received: () => Buffer.concat(received).toString('latin1'),
    connectionLog: () => log.map((entry) => ({ received: Buffer.concat(entry.chunks).toString('latin1'), closed: entry.closed })),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One request head as a scripted upstream read it off the wire. */
export interface UpstreamRequestHead {
  method: string;
  /** the request target exactly as sent (origin-form for what sluice forwards) */
  target: string;
  /** header names lower-cased; repeated headers joined with ", " */
  headers: Record<string, string>;
  /** which connection it came on (an index into connectionLog()) */
  connection: number;
}

export interface ScriptedUpstream extends RawUpstream {
  /** Every request head read, in order, on every connection. */
  requests: UpstreamRequestHead[];
}

/**
 * What a scripted upstream does with one request head: write any answer on the socket. Return 'raw'
 * when the connection stops being HTTP (after a 101): later bytes are then only recorded.
 */
export type UpstreamScript = (request: UpstreamRequestHead, socket: net.Socket) => 'raw' | void;

/**
 * A raw upstream that reads HTTP/1.1 request heads (bodies framed by Content-Length are skipped)
 * and lets `script` answer each one byte for byte: a 101 that echoes the wrong token, a 403 that
 * keeps the connection open, a header echoing what it received. Everything received is recorded,
 * so a test can prove which bytes, and which requests, never arrived.
 */
export async function startScriptedUpstream(script: UpstreamScript, options: RawUpstreamOptions = {}): Promise<ScriptedUpstream> {
  const requests: UpstreamRequestHead[] = [];
  const raw = await startRawUpstream((socket, connection) => {
    let pending = Buffer.alloc(0);
    let skip = 0;
    let http = true;
    socket.on('data', (chunk: Buffer) => {
      if (!http) return;
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, pending.length);
          pending = pending.subarray(n);
          skip -= n;
          if (skip > 0) return;
        }
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [line = '', ...lines] = pending.subarray(0, end).toString('latin1').split('\r\n');
        pending = pending.subarray(end + 4);
        const [method = '', target = ''] = line.split(' ');
        const headers: Record<string, string> = {};
        for (const l of lines) {
          const colon = l.indexOf(':');
          if (colon <= 0) continue;
          const name = l.slice(0, colon).toLowerCase();
          const value = l.slice(colon + 1).trim();
          headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
        }
        const request = { method, target, headers, connection };
        requests.push(request);
        skip = Number(headers['content-length'] ?? 0) || 0;
        if (script(request, socket) === 'raw') {
          http = false;
          return;
        }
      }
    });
  }, options);
  return { ...raw, requests };
}
