// Real clients driven through sluice (curl, Python urllib, undici), plus raw sockets for exact
// bytes and CONNECT. Every client gets an environment without *_proxy variables, so only an
// explicit proxy is used and nothing leaves loopback by accident.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fetch, ProxyAgent } from 'undici';
import { hasFinalResponse, parseHttpResponses, type ParsedResponse } from './http-response.js';

const DEFAULT_TIMEOUT_MS = 20_000;
const PROXY_ENV = ['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'ftp_proxy'];

/** process.env without proxy settings (either case), plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!PROXY_ENV.includes(name.toLowerCase())) env[name] = value;
  }
  return { ...env, ...extra };
}

const availableTools = new Set<string>();

/** Throws (never skips) when a client the e2e tests rely on is missing. */
export function requireTool(command: 'curl' | 'python3'): void {
  if (availableTools.has(command)) return;
  const probe = spawnSync(command, ['--version'], { encoding: 'utf8', env: cleanEnv() });
  if (probe.error || probe.status !== 0) {
    const why = probe.error?.message ?? `exit ${probe.status}: ${probe.stderr.trim()}`;
    throw new Error(`${command} is required by the e2e tests, but \`${command} --version\` failed (${why}). Install it.`);
  }
  availableTools.add(command);
}

/** "Basic base64(user:password)", the Proxy-Authorization value a tool sends. */
export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** "http://tool:token@127.0.0.1:PORT", as HTTPS_PROXY would hold it. */
export function proxyUrl(port: number, tool?: string, token?: string, host = '127.0.0.1'): string {
  const credentials = tool === undefined ? '' : `${encodeURIComponent(tool)}:${encodeURIComponent(token ?? '')}@`;
  return `http://${credentials}${host.includes(':') ? `[${host}]` : host}:${port}`;
}

interface ProcessResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export function runProcess(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; input?: string; timeoutMs: number; cwd?: string },
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env, stdio: ['pipe', 'pipe', 'pipe'], ...(options.cwd ? { cwd: options.cwd } : {}) });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') });
    });
    child.stdin.end(options.input ?? '');
  });
}

function headerRecord(pairs: Iterable<[string, string]>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of pairs) {
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return headers;
}

export interface CurlHeaderBlock {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
}

export interface CurlResult {
  /** curl's exit code (0 ok, 22 with --fail, 56 CONNECT refused, 60 bad certificate, ...). */
  code: number | null;
  /** Status of the last response curl saw (a refused CONNECT's own status), 0 if none. */
  status: number;
  headers: Record<string, string>;
  body: string;
  bodyBuffer: Buffer;
  stderr: string;
  /** Every header block in order: a CONNECT answer, 1xx, redirects followed with -L. */
  blocks: CurlHeaderBlock[];
}

/** Splits curl's `-D -` output into its header blocks and the body that follows. */
function splitCurlOutput(stdout: Buffer): { blocks: CurlHeaderBlock[]; body: Buffer } {
  const blocks: CurlHeaderBlock[] = [];
  let offset = 0;
  while (stdout.subarray(offset, offset + 5).toString('latin1') === 'HTTP/') {
    const end = stdout.indexOf('\r\n\r\n', offset);
    if (end === -1) break;
    const [statusLine = '', ...lines] = stdout.subarray(offset, end).toString('latin1').split('\r\n');
    const pairs = lines.flatMap((line): Array<[string, string]> => {
      const colon = line.indexOf(':');
      return colon > 0 ? [[line.slice(0, colon), line.slice(colon + 1).trim()]] : [];
    });
    blocks.push({ statusLine, status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(statusLine)?.[1] ?? 0), headers: headerRecord(pairs) });
    offset = end + 4;
  }
  return { blocks, body: stdout.subarray(offset) };
}

/**
 * Runs curl with `-q -sS -D - --noproxy ''` before `args` (so ~/.curlrc and NO_PROXY play no part;
 * a proxy is used only when args say `-x`). Don't pass -i or -o: the headers and body are read from stdout.
 */
export async function curl(
  args: string[],
  options: { timeoutMs?: number; env?: Record<string, string>; input?: string } = {},
): Promise<CurlResult> {
  requireTool('curl');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fullArgs = ['-q', '-sS', '-D', '-', '--noproxy', '', '--max-time', String(timeoutMs / 1000), ...args];
  const run = await runProcess('curl', fullArgs, { env: cleanEnv(options.env), input: options.input, timeoutMs: timeoutMs + 5_000 });
  const { blocks, body } = splitCurlOutput(run.stdout);
  const last = blocks.at(-1);
  return {
    code: run.code,
    status: last?.status ?? 0,
    headers: last?.headers ?? {},
    body: body.toString('utf8'),
    bodyBuffer: body,
    stderr: run.stderr,
    blocks,
  };
}

/** What a high-level client saw: a response, or an error (refused tunnel, bad certificate, ...). */
export interface ClientResult {
  /** null when no HTTP response reached the client. */
  status: number | null;
  headers: Record<string, string>;
  body: string;
  /** e.g. "URLError: <urlopen error Tunnel connection failed: 403 Forbidden>"; null on a response. */
  error: string | null;
}

export interface ClientRequest {
  /** Proxy URL with credentials, e.g. proxyUrl(port, 'tool', token). Omit to go direct. */
  proxy?: string;
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
}

// Reads a JSON request on stdin, prints one JSON result. Redirects are not followed, so a test sees the 3xx.
const PYTHON_URLLIB = String.raw`
import json, ssl, sys, urllib.error, urllib.request
spec = json.load(sys.stdin)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
proxies = {'http': spec['proxy'], 'https': spec['proxy']} if spec.get('proxy') else {}
context = ssl.create_default_context(cafile=spec.get('caFile'))
opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies), urllib.request.HTTPSHandler(context=context), NoRedirect())
data = spec['body'].encode('utf-8') if spec.get('body') is not None else None
request = urllib.request.Request(spec['url'], data=data, method=spec.get('method'), headers=spec.get('headers') or {})
def emit(status, headers, body, error):
    print(json.dumps({'status': status, 'headers': headers, 'body': body.decode('utf-8', 'replace'), 'error': error}))
try:
    with opener.open(request, timeout=spec['timeoutSeconds']) as response:
        emit(response.status, response.getheaders(), response.read(), None)
except urllib.error.HTTPError as error:
    emit(error.code, list(error.headers.items()), error.read(), None)
except Exception as error:
    emit(None, [], b'', type(error).__name__ + ': ' + str(error))
`;

/** Python's urllib through a ProxyHandler; caFile is trusted for HTTPS (also as SSL_CERT_FILE). */
export async function pythonUrllib(request: ClientRequest & { caFile?: string }): Promise<ClientResult> {
  requireTool('python3');
  const timeoutMs = request.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const spec = { ...request, timeoutSeconds: timeoutMs / 1000 };
  const env = cleanEnv(request.caFile ? { SSL_CERT_FILE: request.caFile } : {});
  const run = await runProcess('python3', ['-c', PYTHON_URLLIB], { env, input: JSON.stringify(spec), timeoutMs: timeoutMs + 5_000 });
  if (run.code !== 0) throw new Error(`python3 urllib client failed (exit ${run.code}): ${run.stderr.trim()}`);
  const parsed = JSON.parse(run.stdout.toString('utf8')) as {
    status: number | null;
    headers: Array<[string, string]>;
    body: string;
    error: string | null;
  };
  return { status: parsed.status, headers: headerRecord(parsed.headers), body: parsed.body, error: parsed.error };
}

/**
 * undici's fetch through its ProxyAgent, the proxy's credentials in the proxy URL. HTTPS targets
 * are tunnelled with CONNECT; plain http is forwarded in absolute form unless `tunnel` is set.
 * Redirects are not followed.
 */
export async function nodeFetchViaProxy(request: ClientRequest & { proxy: string; caPem?: string; tunnel?: boolean }): Promise<ClientResult> {
  const agent = new ProxyAgent({
    uri: request.proxy,
    proxyTunnel: request.tunnel ?? false,
    ...(request.caPem ? { requestTls: { ca: request.caPem } } : {}),
  });
  try {
    const response = await fetch(request.url, {
      dispatcher: agent,
      method: request.method ?? 'GET',
      headers: request.headers,
      body: request.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(request.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    });
    return { status: response.status, headers: headerRecord(response.headers), body: await response.text(), error: null };
  } catch (error) {
    return { status: null, headers: {}, body: '', error: describeErrorChain(error) };
  } finally {
    await agent.close();
  }
}

/** "fetch failed: Request was cancelled.: UND_ERR_ABORTED Proxy response (407) ..." from the cause chain. */
function describeErrorChain(error: unknown): string {
  const parts: string[] = [];
  for (
    let current = error as { message?: string; code?: unknown; cause?: unknown } | undefined;
    current;
    current = current.cause as typeof current
  ) {
    const code = typeof current.code === 'string' ? `${current.code} ` : '';
    // A thrown non-Error (a string, say) has no message: print the value itself.
    // eslint-disable-next-line @typescript-eslint/no-base-to-string
    parts.push(`${code}${current.message ?? String(current)}`);
    if (parts.length > 5) break;
  }
  return parts.join(': ');
}

export interface RawResponse extends ParsedResponse {
  /** Everything received, byte-exact as latin1. */
  raw: string;
  /** Every complete response parsed from `raw` (the first one's fields are spread above). */
  responses: ParsedResponse[];
  /** Why the parse stopped on non-HTTP bytes, or null. */
  malformed: string | null;
  /** The peer closed (or reset) the connection before we stopped reading. */
  closed: boolean;
}

export interface RawOptions {
  /** 'response' (default): stop at the first final response; 'close': read until the peer closes. */
  until?: 'response' | 'close';
  timeoutMs?: number;
  /** The request's method as the parser needs it (HEAD and CONNECT answers are framed differently). */
  requestMethod?: string;
}

const NO_RESPONSE: ParsedResponse = {
  statusLine: '',
  status: 0,
  headers: {},
  rawHeaders: [],
  body: '',
  bodyBuffer: Buffer.alloc(0),
  framing: 'none',
};

/** Writes exact bytes on an open socket and reads the answer. The socket is destroyed afterwards. */
export function exchangeRaw(socket: net.Socket, bytes: string | Buffer, options: RawOptions = {}): Promise<RawResponse> {
  const until = options.until ?? 'response';
  const requestMethod = options.requestMethod ?? (typeof bytes === 'string' ? bytes : bytes.toString('latin1')).split(' ', 1)[0];
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const buf = Buffer.concat(chunks);
      const parsed = parseHttpResponses(buf, { closed, requestMethod });
      resolve({
        ...(parsed.responses[0] ?? NO_RESPONSE),
        raw: buf.toString('latin1'),
        responses: parsed.responses,
        malformed: parsed.malformed,
        closed,
      });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (until === 'response' && hasFinalResponse(parseHttpResponses(Buffer.concat(chunks), { requestMethod }).responses)) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.write(bytes);
  });
}

/** Opens a TCP connection to 127.0.0.1:port (or opts.host), writes `bytes` exactly, reads the answer. */
export async function rawRequest(port: number, bytes: string | Buffer, options: RawOptions & { host?: string } = {}): Promise<RawResponse> {
  const socket = await openSocket(port, options.host ?? '127.0.0.1');
  return exchangeRaw(socket, bytes, options);
}

/** A TCP connection to host:port, once connected. */
export function openSocket(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

export interface Tunnel {
  status: number;
  statusLine: string;
  headers: Record<string, string>;
  /** The body of a refusal (e.g. the 403 JSON); empty on 2xx. */
  body: string;
  /**
   * On 2xx, the open tunnel (paused, any early bytes put back): wrap it with tls.connect({ socket })
   * or write to it. The caller destroys it in every case.
   */
  socket: net.Socket;
}

/** Sends `CONNECT target` to the proxy with an optional Proxy-Authorization value, reads the answer. */
export async function connectTunnel(
  proxyPort: number,
  target: string,
  authHeader?: string,
  options: { host?: string; timeoutMs?: number; extraHeaders?: Record<string, string> } = {},
): Promise<Tunnel> {
  const socket = await openSocket(proxyPort, options.host ?? '127.0.0.1');
  const headerLines = [`Host: ${target}`];
  if (authHeader !== undefined) headerLines.push(`Proxy-Authorization: ${authHeader}`);
  for (const [name, value] of Object.entries(options.extraHeaders ?? {})) headerLines.push(`${name}: ${value}`);
  socket.write(`CONNECT ${target} HTTP/1.1\r\n${headerLines.join('\r\n')}\r\n\r\n`);

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const done = (closed: boolean): boolean => {
      const parsed = parseHttpResponses(Buffer.concat(chunks), { closed, requestMethod: 'CONNECT' });
      const response = parsed.responses.find((candidate) => candidate.status >= 200);
      if (!response) return false;
      cleanup();
      socket.pause();
      if (parsed.rest.length > 0) socket.unshift(parsed.rest);
      resolve({ status: response.status, statusLine: response.statusLine, headers: response.headers, body: response.body, socket });
      return true;
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      done(false);
    };
    const onClose = (): void => {
      if (!done(true))
        fail(
          new Error(
            `proxy closed the connection without a complete CONNECT answer: ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 200))}`,
          ),
        );
    };
    const fail = (error: Error): void => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new Error(`no CONNECT answer within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`)),
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onClose);
      socket.removeListener('error', onClose);
    };
    socket.on('data', onData);
    socket.on('end', onClose);
    socket.on('error', onClose);
  });
}

/** Completes a TLS handshake over an open tunnel (or any socket); rejects when the peer refuses or closes. */
export function tlsOverSocket(socket: Duplex, options: { servername?: string; ca: string }): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket, ca: options.ca, ...(options.servername === undefined ? {} : { servername: options.servername }) }, () => {
      s.off('close', onClose);
      resolve(s);
    });
    const onClose = (): void => reject(new Error('closed before the TLS handshake finished'));
    s.once('error', reject);
    s.once('close', onClose);
  });
}

/**
 * CONNECT through the proxy, then TLS inside the tunnel with `ca` trusted (sluice's CA for an
 * intercepted host, the upstream's for a passthrough one). Throws when the CONNECT is refused.
 */
export async function tlsTunnel(
  proxyPort: number,
  target: string,
  authHeader: string,
  options: { ca: string; servername?: string },
): Promise<tls.TLSSocket> {
  const tunnel = await connectTunnel(proxyPort, target, authHeader);
  if (tunnel.status !== 200) {
    tunnel.socket.destroy();
    throw new Error(
      `CONNECT ${target} answered ${tunnel.status} (${tunnel.headers['x-sluice-deny'] ?? tunnel.headers['x-sluice-error'] ?? ''})`,
    );
  }
  const servername =
    options.servername ?? (net.isIP(target.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')) ? undefined : target.replace(/:\d+$/, ''));
  return tlsOverSocket(tunnel.socket, { ca: options.ca, ...(servername === undefined ? {} : { servername }) });
}

export interface OpenResponse extends ParsedResponse {
  /** Bytes that came after the response (an upgraded protocol's first bytes). */
  rest: Buffer;
  /** The socket, still open, paused after the response; the caller destroys it. */
  socket: net.Socket;
}

/**
 * Writes `bytes` and reads exactly one final response (or a 101), leaving the socket open for what
 * comes next: the next request on a keep-alive connection, the frames after an upgrade, or a check
 * that the peer closes it.
 */
export function roundTrip(
  socket: net.Socket,
  bytes: string | Buffer,
  options: { timeoutMs?: number; requestMethod?: string } = {},
): Promise<OpenResponse> {
  const requestMethod = options.requestMethod ?? (typeof bytes === 'string' ? bytes : bytes.toString('latin1')).split(' ', 1)[0];
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
    };
    const settle = (closed: boolean): boolean => {
      const parsed = parseHttpResponses(buf, { closed, requestMethod });
      const response = parsed.responses.find((r) => r.status >= 200 || r.status === 101);
      if (!response) return false;
      cleanup();
      socket.pause();
      resolve({ ...response, rest: Buffer.from(parsed.rest), socket });
      return true;
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      settle(false);
    };
    const onClose = (): void => {
      if (settle(true)) return;
      cleanup();
      reject(new Error(`the connection closed without a complete response: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no response within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`));
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.resume();
    socket.write(bytes);
  });
}

/**
 * Resolves true once the peer has closed `socket` (destroying it), false when it is still open after
 * `timeoutMs` (then it is destroyed anyway). What arrived meanwhile is returned too.
 */
export function closedBy(socket: net.Socket, timeoutMs = 3_000): Promise<{ closed: boolean; received: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    if (socket.destroyed) return resolve({ closed: true, received: Buffer.alloc(0) });
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ closed, received: Buffer.concat(chunks) });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => finish(true));
    socket.once('close', () => finish(true));
    socket.once('error', () => finish(true));
    socket.resume();
  });
}
