// Plain HTTP and intercepted HTTPS requests: admit, apply the credentials step, then stream the
// request upstream through a pooled connection to the vetted address and stream the answer back,
// within the limits and scrubbed of secret values.
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { joinStreams } from '../http/join.js';
import type { Dispatcher } from 'undici';
import { DECODABLE_ENCODINGS, ScrubFailure, type ResponseScrub, type ScrubSink } from '../secrets/scrub.js';
import { SecretViolation } from '../secrets/violation.js';
import { admit, headOf, servernameOf, type RequestScope } from './admit.js';
import { sendAnswer } from './answers.js';
import type { PolicyRuntime, ProxyDeps } from './context.js';
import type { Exchange } from './exchange.js';
import { awaitTurn } from './framing.js';
import { clientHost, endToEndHeaders, flatten, withVia, withoutHeader } from './headers.js';
import { inspectHead, inspectorFor, inspectRequest, type ReadPrefix, type ResponseTransform } from './inspect.js';
import { bodySwapper, knownValues, scrubResponse, scrubStatusText, secretsForHead } from './secrets-step.js';
import { classifyUpstreamError } from './upstream-errors.js';
import type { Decision } from '../policy/types.js';

export async function forwardRequest(deps: ProxyDeps, scope: RequestScope, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!(await awaitTurn(req.socket, closedPromise(res)))) {
    res.destroy();
    return;
  }
  // The client may go while admission waits (a lookup, a slot, a hold for approval): its 'close'
  // has fired by then, so what would have run at the close (the record, the slot back) runs here.
  let gone = false;
  res.once('close', () => (gone = true));
  const admission = await admit(deps, scope, headOf('request', req));
  const ex = admission.ex;
  if (gone) {
    ex.report('net.req');
    if (admission.ok) admission.release();
    return;
  }
  res.once('close', () => ex.report('net.req'));
  if (!admission.ok) {
    sendAnswer(res, admission.answer, admission.close);
    if (admission.close) req.resume();
    return;
  }
  res.once('close', admission.release);
  // Destroyed while admission waited, its 'close' still to come: the listeners above run at it.
  if (res.destroyed) return;
  const { tool, target, decision, ip, runtime } = admission;
  const limits = decision.limits;

  // The content seam: a rule with an inspector field (git:, …) reads the body it needs and decides
  // before the credentials step, so nothing is swapped or injected into a request it refuses.
  let read: ReadPrefix | null = null;
  let transform: ResponseTransform | null = null;
  const inspector = inspectorFor(runtime, tool, decision);
  if (inspector) {
    const inspection = await inspectRequest(
      inspector,
      runtime,
      ex,
      tool,
      decision,
      inspectHead(req, decision, admission.upstreamPath),
      req,
      res,
      deps.observer,
    );
    if (!inspection.ok || res.destroyed) return;
    read = inspection.read;
    transform = inspection.transform;
  }

  const head = withVia(endToEndHeaders(req.rawHeaders).filter(([name]) => name.toLowerCase() !== 'host'));
  const credentials = secretsForHead(deps.observer, runtime, ex, tool, decision, head, admission.upstreamPath);
  if (!credentials.ok) {
    sendAnswer(res, credentials.answer);
    req.resume();
    return;
  }
  let headers = credentials.headers;
  const path = credentials.target;
  // The client's Host as it wrote it (admission checked that it names the target): signed requests
  // such as AWS SigV4 cover it byte for byte. Absent (absolute-form allows that), the target's.
  headers.unshift(['Host', clientHost(req.rawHeaders) ?? target.authority]);
  // Every response is scrubbed while the store knows a value: it must come in a coding sluice reads.
  if (knownValues(runtime)) headers = decodableEncodingsOnly(headers);

  const declaredLength = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
  const hasBody = read
    ? read.prefix.length > 0 || !read.ended
    : (declaredLength !== null && declaredLength > 0) || req.headers['transfer-encoding'] !== undefined;
  const relay = new ResponseRelay(deps, runtime, decision, ex, res, tool, transform);
  // In flight until the response closes: a shutdown drains it, and cuts it (recorded as cut) if the drain runs out.
  res.once(
    'close',
    deps.open.request(ex, scope.tunnel === null, () => relay.stop()),
  );
  let body: Readable | null = null;
  if (hasBody) {
    const swapped = bodySwapper(runtime, tool, decision, deps.observer, ex, head);
    const guarded = guardedBody(req, limits.max_request_bytes, limits.idle_timeout_ms, ex, tool, (err) => relay.clientFailed(err), read);
    joinStreams(guarded, swapped);
    body = swapped;
    // A swap changes the length: the body then goes upstream chunked.
    if (decision.secrets.length > 0) headers = withoutHeader(headers, 'content-length');
  }

  const { pool, origin } = runtime.pools.get(
    scope.scheme,
    { ip, port: target.port, servername: servernameOf(target.host) },
    limits.connect_timeout_ms,
  );
  pool.dispatch(
    {
      origin,
      path,
      method: req.method ?? 'GET',
      headers: flatten(headers),
      body,
      headersTimeout: limits.header_timeout_ms,
      bodyTimeout: limits.idle_timeout_ms,
    },
    relay,
  );
  if (limits.request_timeout_ms > 0) relay.setDeadline(limits.request_timeout_ms);
}

function closedPromise(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => res.once('close', () => resolve()));
}

/** A response that may need scrubbing must come in a coding sluice can decode. */
function decodableEncodingsOnly(headers: Array<[string, string]>): Array<[string, string]> {
  const accepted = headers.find(([n]) => n.toLowerCase() === 'accept-encoding')?.[1];
  const rest = withoutHeader(headers, 'accept-encoding');
  if (accepted === undefined) return rest;
  const kept = accepted
    .split(',')
    .map((token) => token.trim())
    .filter((token) => DECODABLE_ENCODINGS.includes(token.split(';')[0]!.trim().toLowerCase() as (typeof DECODABLE_ENCODINGS)[number]));
  if (kept.length > 0) rest.push(['Accept-Encoding', kept.join(', ')]);
  return rest;
}

/**
 * The request body as it goes upstream, counted against max_request_bytes; a client that stops
 * sending for idle_timeout_ms (while sluice is ready for more) fails the upload with client_timeout.
 * `read` is what an inspector already read (and counted): it goes first, then the rest of the body.
 */
function guardedBody(
  req: IncomingMessage,
  max: number,
  idleMs: number,
  ex: Exchange,
  tool: string,
  onFail: (err: Error) => void,
  read: ReadPrefix | null,
): Readable {
  const out = new PassThrough();
  if (read) {
    if (read.prefix.length > 0) out.write(read.prefix);
    if (read.ended) {
      out.end();
      return out;
    }
  }
  /** waiting for the upstream to take what the client already sent */
  let waitingUpstream = false;
  let timer: NodeJS.Timeout | null = null;
  let failed = false;
  const fail = (code: 'client_timeout' | 'upstream_timeout' | 'request_too_large', detail: string, err: Error): void => {
    disarm();
    // Read and drop what the client still sends: unread bytes at close would reset the connection
    // before the client reads sluice's answer.
    failed = true;
    req.resume();
    ex.settle(code, detail);
    out.destroy(err);
    onFail(err);
  };
  // One idle timer for the whole body: it restarts on every byte from the client and on every drain
  // toward the upstream, so it fires only when neither side moved for idle_timeout_ms.
  const arm = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      if (waitingUpstream) {
        const detail = `the upstream took no byte of the request body for idle_timeout_ms (${idleMs} ms)`;
        fail('upstream_timeout', detail, new ClientStalled(detail));
      } else {
        const detail = `the request body stalled: no byte for idle_timeout_ms (${idleMs} ms)`;
        fail('client_timeout', detail, new ClientStalled(detail));
      }
    }, idleMs);
  };
  const disarm = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  req.on('data', (chunk: Buffer) => {
    if (failed) return;
    ex.bytesUp += chunk.length;
    if (ex.bytesUp > max) {
      const detail = `the request body crossed the limit of ${max} bytes for tool ${tool}`;
      return fail('request_too_large', detail, new RequestTooLarge(detail));
    }
    arm();
    if (out.write(chunk)) return;
    waitingUpstream = true;
    req.pause();
  });
  out.on('drain', () => {
    if (failed) return;
    waitingUpstream = false;
    arm();
    req.resume();
  });
  req.on('end', () => {
    disarm();
    out.end();
  });
  req.on('close', () => {
    disarm();
    if (!req.complete) out.destroy(new ClientStalled('the client closed the connection in the middle of its request body'));
  });
  arm();
  // An inspector read the prefix and paused the request; the rest flows from here.
  if (read) req.resume();
  return out;
}

/** The client stopped sending its body (or went away in the middle of it). */
class ClientStalled extends Error {}

class RequestTooLarge extends Error {}

/** The total deadline per request (limits.request_timeout_ms) passed. */
class RequestDeadline extends Error {}

/** undici dispatch handler relaying the upstream response to the client with backpressure. */
class ResponseRelay implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  /** sluice answered in place of the upstream response and then aborted it */
  #answeredBySluice = false;
  /** set when the client's body failed, possibly before undici connected */
  #clientFailure: Error | null = null;
  /** set when request_timeout_ms passed, possibly before undici connected */
  #deadlinePassed: RequestDeadline | null = null;
  /** the body's way to the client while the store knows a value: decoded and scrubbed */
  #scrub: ResponseScrub | null = null;
  /** the head to write once the scrub says the body may go (its length may be known by then) */
  #head: { status: number; statusText: string; headers: Array<[string, string]> } | null = null;
  readonly #started = performance.now();
  readonly #maxResponseBytes: number;
  /** the held response of a rule with sha256, until its digest is checked */
  #pinned: { chunks: Buffer[]; hash: Hash } | null = null;
  /** an inspector's response transform (the content seam): upstream bytes → it → scrub or client */
  #transform: Duplex | null = null;

  constructor(
    private readonly deps: ProxyDeps,
    private readonly runtime: PolicyRuntime,
    private readonly decision: Decision,
    private readonly ex: Exchange,
    private readonly res: ServerResponse,
    private readonly tool: string,
    /** an inspector's transform of the response body (the content seam), applied before scrubbing */
    private readonly transform: ResponseTransform | null = null,
  ) {
    this.#maxResponseBytes = decision.limits.max_response_bytes;
    res.once('close', () => {
      if (!res.writableFinished) {
        this.#scrub?.destroy();
        this.#transform?.destroy();
        this.#abort?.();
      }
    });
    res.on('drain', () => (this.#scrub ? this.#scrub.resume() : this.#transform ? this.#transform.resume() : this.#resume?.()));
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#deadlinePassed) abort(this.#deadlinePassed);
    else if (this.#clientFailure) abort(this.#clientFailure);
  }

  /** The client's body failed (too large, stalled): sluice answers in place of the upstream and aborts it. */
  clientFailed(err: Error): void {
    this.#clientFailure = err;
    if (this.res.headersSent || this.#answeredBySluice) {
      if (this.res.headersSent) this.res.destroy();
    } else {
      this.#answeredBySluice = true;
      sendAnswer(this.res, this.ex.answer(this.ex.outcome ?? 'client_timeout', err.message), true);
    }
    this.#abort?.(err);
  }

  /** Shutdown cut the request (its exchange is settled as shutdown): a 503 if nothing was relayed yet, else a reset. */
  stop(): void {
    if (this.res.headersSent || this.#answeredBySluice) {
      this.res.destroy();
    } else {
      this.#answeredBySluice = true;
      sendAnswer(this.res, this.ex.answer('shutdown', 'sluice is shutting down; retry the request'), true);
    }
    this.#abort?.();
  }

  setDeadline(ms: number): void {
    const timer = setTimeout(() => {
      this.#deadlinePassed = new RequestDeadline(`the request did not complete within request_timeout_ms (${ms} ms)`);
      this.#abort?.(this.#deadlinePassed);
    }, ms);
    this.res.once('close', () => clearTimeout(timer));
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (status < 200) return true;
    this.#resume = resume;
    let headers = withVia(endToEndHeaders(rawHeaders.map((b) => b.toString('latin1'))));
    const lengthHeader = headers.find(([name]) => name.toLowerCase() === 'content-length');
    if (lengthHeader && Number(lengthHeader[1]) > this.#maxResponseBytes) {
      const detail = `the response (${lengthHeader[1]} bytes) exceeds the limit of ${this.#maxResponseBytes} bytes for tool ${this.tool}`;
      this.#refuse('response_too_large', detail);
      return false;
    }
    const transformed = this.transform?.({ status, headers }) ?? null;
    if (transformed) {
      headers = transformed.headers;
      this.#wireTransform(transformed.body);
    }
    const hasBody = this.ex.method !== 'HEAD' && status !== 204 && status !== 304;
    const scrub = scrubResponse(this.runtime, headers, hasBody, this.#sink(), this.#maxResponseBytes);
    if (scrub === 'undecodable') {
      this.#refuse('upstream_protocol', 'the response uses a content coding sluice cannot decode to scrub secret values');
      return false;
    }
    this.#scrub = scrub.body;
    if (scrub.body) scrub.body.onWritable = () => (this.#transform ? this.#transform.resume() : this.#resume?.());
    this.ex.status = status;
    this.#head = { status, statusText: scrubStatusText(this.runtime, statusText), headers: scrub.headers };
    if (this.decision.sha256 !== null) {
      // Artifact pinning: nothing is released until the whole body hashes to the pinned digest.
      this.#pinned = { chunks: [], hash: createHash('sha256') };
      return true;
    }
    // A scrubbed body says when its head may go (gzip data is checked before a byte of it).
    if (!this.#scrub) this.#writeHead(null);
    return true;
  }

  /** The transform's output goes on to the scrub or the client; its end ends the response. */
  #wireTransform(body: Duplex): void {
    this.#transform = body;
    body.on('data', (chunk: Buffer) => {
      if (!this.#downstream(chunk)) body.pause();
    });
    body.on('drain', () => this.#resume?.());
    body.once('end', () => this.#finish());
    body.once('error', (err: Error) => {
      const detail = `the response transform of rule ${this.decision.rule} failed: ${err.message}`;
      this.#scrub?.destroy();
      this.#release();
      this.#abort?.();
      if (this.res.headersSent) {
        this.ex.settle('upstream_protocol', detail);
        this.res.destroy();
      } else {
        this.#refuse('upstream_protocol', detail);
      }
    });
  }

  /** Body bytes after the transform (if any): to the scrub, or straight to the client. */
  #downstream(chunk: Buffer): boolean {
    return this.#scrub ? this.#scrub.write(chunk) : this.res.write(chunk);
  }

  /** The body is all through: end the scrub (it ends the response) or the response. */
  #finish(): void {
    if (this.#scrub) this.#scrub.end();
    else {
      this.res.end();
      this.#release();
    }
  }

  /** Where a scrubbed body goes: the client, after the head. */
  #sink(): ScrubSink {
    return {
      head: (length) => this.#writeHead(length),
      data: (chunk) => this.res.write(chunk),
      end: () => {
        this.res.end();
        this.#release();
      },
      fail: (error) => {
        this.#release();
        const code = error instanceof ScrubFailure ? error.code : 'upstream_protocol';
        const detail = `${error.message} (tool ${this.tool})`;
        this.#abort?.();
        if (this.res.headersSent) {
          this.ex.settle(code, detail);
          // Reset rather than end: the client must see a broken response, never a short well-formed one.
          this.res.destroy();
        } else {
          this.#refuse(code, detail);
        }
      },
    };
  }

  /**
   * Drops what the response needed once it is over: undici keeps up to 256 finished handlers per
   * upstream connection before it lets them go, so a handler must not hold its body or its head.
   */
  #release(): void {
    this.#scrub = null;
    this.#head = null;
    this.#pinned = null;
    this.#transform = null;
  }

  #writeHead(length: number | null): void {
    const head = this.#head!;
    const headers = length === null ? head.headers : [...head.headers, ['Content-Length', String(length)] as [string, string]];
    this.res.writeHead(head.status, head.statusText, flatten(headers));
  }

  /** Sluice answers in place of the upstream response, and aborts it. */
  #refuse(code: 'response_too_large' | 'upstream_protocol', detail: string): void {
    this.#answeredBySluice = true;
    sendAnswer(this.res, this.ex.answer(code, detail));
    this.#abort?.();
  }

  onData(chunk: Buffer): boolean {
    this.ex.bytesDown += chunk.length;
    if (this.ex.bytesDown > this.#maxResponseBytes) {
      this.#cut(`the response crossed the limit of ${this.#maxResponseBytes} bytes for tool ${this.tool}; it was cut`);
      return false;
    }
    if (this.#answeredBySluice) return false;
    if (this.#pinned) {
      this.#pinned.chunks.push(chunk);
      this.#pinned.hash.update(chunk);
      return true;
    }
    return this.#transform ? this.#transform.write(chunk) : this.#downstream(chunk);
  }

  #cut(detail: string): void {
    this.#scrub?.destroy();
    this.#transform?.destroy();
    if (!this.res.headersSent) {
      this.#refuse('response_too_large', detail);
      return;
    }
    this.ex.settle('response_too_large', detail);
    this.#abort?.();
    // Reset rather than end: the client must see a broken response, never a short well-formed one.
    this.res.destroy();
  }

  onComplete(): void {
    this.deps.observer.upstreamDuration(this.tool, (performance.now() - this.#started) / 1000);
    if (this.#answeredBySluice) return;
    if (this.#pinned) {
      const { chunks, hash } = this.#pinned;
      const digest = hash.digest('hex');
      if (digest !== this.decision.sha256!.toLowerCase()) {
        const detail = `the body from ${this.ex.host} hashes to sha256 ${digest}, not the pinned ${this.decision.sha256} of rule ${this.decision.rule}`;
        const answer = this.ex.answer('digest_mismatch', detail);
        sendAnswer(this.res, answer);
        this.#scrub?.destroy();
        this.#transform?.destroy();
        this.#release();
        return;
      }
      this.#pinned = null;
      // A scrub writes the head itself when its body may go.
      if (!this.#scrub) this.#writeHead(null);
      for (const chunk of chunks) {
        if (this.#transform) this.#transform.write(chunk);
        else this.#downstream(chunk);
      }
    }
    // The transform's end finishes the response (it may still hold bytes).
    if (this.#transform) {
      this.#transform.end();
      return;
    }
    // A scrub releases the rest when its body is out (a held gzip body is still being checked).
    this.#finish();
  }

  onError(err: Error): void {
    this.#scrub?.destroy();
    this.#transform?.destroy();
    this.#release();
    // The abort that follows sluice's own answer is not a failure to report over it.
    if (this.#answeredBySluice) return;
    const headersSent = this.res.headersSent || this.res.destroyed;
    if (err instanceof RequestDeadline) {
      this.ex.settle('upstream_timeout', err.message);
      // Headers already relayed: the client must see a cut response, not a short well-formed one.
      if (headersSent) this.res.destroy();
      else sendAnswer(this.res, this.ex.answer('upstream_timeout', err.message));
      return;
    }
    if (headersSent) {
      this.res.destroy();
      return;
    }
    if (err instanceof RequestTooLarge || err instanceof ClientStalled) {
      // The body step settled the outcome when it failed the upload.
      const code = this.ex.outcome ?? 'client_timeout';
      sendAnswer(this.res, this.ex.answer(code, err.message), true);
      return;
    }
    if (err instanceof SecretViolation) {
      sendAnswer(this.res, this.ex.answer(err.reason, err.message), true);
      return;
    }
    const failure = classifyUpstreamError(err, this.decision.limits);
    sendAnswer(this.res, this.ex.answer(failure.code, failure.detail));
  }
}
