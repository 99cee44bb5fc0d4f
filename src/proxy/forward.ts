// Plain HTTP and intercepted HTTPS requests: admit, then stream the request upstream through a
// pooled connection to the vetted address and stream the answer back, within the limits.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { admitRequest, servernameOf, type RequestScope } from './admit.js';
import { denyAnswer, sendAnswer, upstreamErrorAnswer } from './answers.js';
import type { ProxyDeps } from './context.js';
import type { Exchange } from './exchange.js';
import { endToEndHeaders, flatten, withVia } from './headers.js';
import { classifyUpstreamError } from './upstream-errors.js';

export async function forwardRequest(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const admission = await admitRequest(deps, scope, req);
  const ex = admission.ex;
  res.once('close', () => ex.report('net.req'));
  if (!admission.ok) {
    sendAnswer(res, admission.answer, admission.close);
    if (admission.close) req.resume();
    return;
  }
  const { tool, target, decision, ip } = admission;
  const limits = decision.limits;

  const declaredLength = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
  if (declaredLength !== null && declaredLength > limits.max_request_bytes) {
    const detail = `the request body (${declaredLength} bytes) exceeds the limit of ${limits.max_request_bytes} bytes for tool ${tool}`;
    const answer = denyAnswer('request_too_large', detail, ex.requestId);
    ex.limitExceeded('request_too_large', detail);
    ex.status = answer.status;
    sendAnswer(res, answer, true);
    return;
  }

  const headers = withVia(endToEndHeaders(req.rawHeaders).filter(([name]) => name.toLowerCase() !== 'host'));
  headers.unshift(['Host', target.authority]);
  const hasBody = (declaredLength !== null && declaredLength > 0) || req.headers['transfer-encoding'] !== undefined;
  const { pool, origin } = scope.runtime.pools.get(scope.scheme, { ip, port: target.port, servername: servernameOf(target.host) });
  const started = performance.now();

  pool.dispatch(
    {
      origin,
      path: admission.upstreamPath,
      method: req.method ?? 'GET',
      headers: flatten(headers),
      body: hasBody ? Readable.from(limitedBody(req, limits.max_request_bytes, ex, tool), { objectMode: false }) : null,
      headersTimeout: limits.idle_timeout_ms,
      bodyTimeout: limits.idle_timeout_ms,
    },
    new ResponseRelay(deps, ex, res, tool, limits.max_response_bytes, started),
  );
}

/** Streams the request body upstream, counting it; crossing the limit fails the upload. */
async function* limitedBody(req: IncomingMessage, max: number, ex: Exchange, tool: string): AsyncGenerator<Buffer> {
  for await (const chunk of req as AsyncIterable<Buffer>) {
    ex.bytesUp += chunk.length;
    if (ex.bytesUp > max) {
      ex.limitExceeded('request_too_large', `the request body crossed the limit of ${max} bytes for tool ${tool}`);
      throw new RequestTooLarge();
    }
    yield chunk;
  }
}

class RequestTooLarge extends Error {}

/** undici dispatch handler relaying the upstream response to the client with backpressure. */
class ResponseRelay implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;

  constructor(
    private readonly deps: ProxyDeps,
    private readonly ex: Exchange,
    private readonly res: ServerResponse,
    private readonly tool: string,
    private readonly maxResponseBytes: number,
    private readonly started: number,
  ) {
    res.once('close', () => {
      if (!res.writableFinished) this.#abort?.();
    });
    res.on('drain', () => this.#resume?.());
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (status < 200) return true;
    this.#resume = resume;
    const raw = rawHeaders.map((b) => b.toString('latin1'));
    const headers = withVia(endToEndHeaders(raw));
    const lengthHeader = headers.find(([name]) => name.toLowerCase() === 'content-length');
    if (lengthHeader && Number(lengthHeader[1]) > this.maxResponseBytes) {
      const detail = `the response (${lengthHeader[1]} bytes) exceeds the limit of ${this.maxResponseBytes} bytes for tool ${this.tool}`;
      const answer = denyAnswer('response_too_large', detail, this.ex.requestId);
      this.ex.limitExceeded('response_too_large', detail);
      this.ex.status = answer.status;
      this.#abort?.();
      sendAnswer(this.res, answer);
      return false;
    }
    this.ex.status = status;
    this.res.writeHead(status, statusText, flatten(headers));
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.ex.bytesDown += chunk.length;
    if (this.ex.bytesDown > this.maxResponseBytes) {
      this.ex.limitExceeded(
        'response_too_large',
        `the response crossed the limit of ${this.maxResponseBytes} bytes for tool ${this.tool}; it was cut`,
      );
      this.#abort?.();
      // Reset rather than end: the client must see a broken response, never a short well-formed one.
      this.res.destroy();
      return false;
    }
    return this.res.write(chunk);
  }

  onComplete(): void {
    this.deps.observer.upstreamDuration(this.tool, (performance.now() - this.started) / 1000);
    this.res.end();
  }

  onError(err: Error): void {
    if (this.res.headersSent || this.res.destroyed) {
      this.res.destroy();
      return;
    }
    if (err instanceof RequestTooLarge) {
      const answer = denyAnswer('request_too_large', this.ex.detail ?? 'request too large', this.ex.requestId);
      this.ex.status = answer.status;
      sendAnswer(this.res, answer, true);
      return;
    }
    const failure = classifyUpstreamError(err);
    const answer = upstreamErrorAnswer(failure.code, failure.detail, this.ex.requestId);
    this.ex.fail(failure.code, failure.detail, answer.status);
    sendAnswer(this.res, answer);
  }
}
