// The credentials step of the data path: swap placeholders for values toward a secret's own
// hosts, only where the secret's swap_in allows and only over TLS sluice verified (the exchange's
// scheme is https), refuse what may not leave, record each use, and scrub values out of what comes back.
import type { Transform } from 'node:stream';
import type { Observer } from '../observe/events.js';
import type { Decision } from '../policy/types.js';
import { createBodySwapper } from '../secrets/body.js';
import { planRequestSecrets, type RequestSecretsPlan } from '../secrets/placeholders.js';
import { createResponseScrub, scrubHeaders, scrubText, type ResponseScrub, type ScrubSink } from '../secrets/scrub.js';
import type { KnownSecret } from '../secrets/store.js';
import type { PolicyRuntime } from './context.js';
import type { Answer } from './answers.js';
import type { Exchange } from './exchange.js';

/**
 * The credentials step for a request's head (plain, intercepted or an upgrade): placeholders
 * swapped and injections made toward the secret's hosts, each use recorded; or the answer that
 * refuses the request. With on_violation: review a leak is recorded and the request goes on as sent.
 */
export function secretsForHead(
  observer: Observer,
  runtime: PolicyRuntime,
  ex: Exchange,
  tool: string,
  decision: Decision,
  headers: Array<[string, string]>,
  target: string,
): { ok: true; headers: Array<[string, string]>; target: string } | { ok: false; answer: Answer } {
  const plan = planSecrets(runtime, tool, decision, headers, target, ex.scheme === 'https');
  if (plan.ok) {
    for (const use of plan.uses) recordUse(observer, ex, use.alias, use.where);
    return { ok: true, headers: plan.headers, target: plan.target };
  }
  if (plan.reason === 'secret_leak' && runtime.loaded.doc.on_violation === 'review') {
    ex.reviewed('secret_leak', plan.detail);
    return { ok: true, headers, target };
  }
  return { ok: false, answer: ex.answer(plan.reason, plan.detail) };
}

function planSecrets(
  runtime: PolicyRuntime,
  tool: string,
  decision: Decision,
  headers: Array<[string, string]>,
  target: string,
  tls: boolean,
): RequestSecretsPlan {
  const store = runtime.secrets;
  return planRequestSecrets({
    tls,
    tool,
    granted: runtime.compiled.tools.get(tool)?.secrets ?? [],
    inScope: decision.secrets,
    headers,
    target,
    secrets: runtime.loaded.doc.secrets,
    values: (alias) => store.get(alias),
    known: store.knownValues(),
    maxDecodedBytes: decision.limits.max_request_bytes,
  });
}

/** A secret.use event per alias and place it was used. */
export function recordUse(observer: Observer, ex: Exchange, alias: string, where: string): void {
  observer.event({
    type: 'secret.use',
    request_id: ex.requestId,
    tool: ex.tool,
    decision: 'allow',
    method: ex.method,
    scheme: ex.scheme,
    host: ex.host,
    port: ex.port,
    path: ex.path,
    ip: ex.ip,
    rule: ex.rule,
    secret: alias,
    where,
  });
}

/**
 * The request body as it must go upstream: placeholders swapped, anything forbidden refused
 * mid-stream; a body with a Content-Encoding decoded (within the request limit) and checked whole
 * first. `headers` are the request's, for its Content-Encoding.
 */
export function bodySwapper(
  runtime: PolicyRuntime,
  tool: string,
  decision: Decision,
  observer: Observer,
  ex: Exchange,
  headers: ReadonlyArray<readonly [string, string]>,
): Transform {
  const store = runtime.secrets;
  return createBodySwapper({
    tls: ex.scheme === 'https',
    headers,
    maxDecodedBytes: decision.limits.max_request_bytes,
    tool,
    granted: runtime.compiled.tools.get(tool)?.secrets ?? [],
    inScope: decision.secrets,
    secrets: runtime.loaded.doc.secrets,
    values: (alias) => store.get(alias),
    known: store.knownValues(),
    onUse: (alias) => recordUse(observer, ex, alias, 'body'),
  });
}

/** The values the store knows now, or null when it knows none (then there is nothing to scrub). */
export function knownValues(runtime: PolicyRuntime): readonly KnownSecret[] | null {
  const known = runtime.secrets.knownValues();
  return known.length === 0 ? null : known;
}

/**
 * Scrubbing for every response, whatever the tool, the host or the decision: a value one tool
 * planted upstream can be read back by another tool, or through another name of the same server.
 * The head is scrubbed; a body (when the response has one) goes through a ResponseScrub feeding
 * `sink`, Content-Length and Content-Encoding dropped (the sink's head() gives the new length when
 * it is known). 'undecodable' for a content coding sluice can not read: then the response is
 * refused rather than passed unscrubbed. When the store knows no value, nothing changes.
 */
export function scrubResponse(
  runtime: PolicyRuntime,
  headers: Array<[string, string]>,
  hasBody: boolean,
  sink: ScrubSink,
  maxDecodedBytes: number,
): { headers: Array<[string, string]>; body: ResponseScrub | null } | 'undecodable' {
  const known = knownValues(runtime);
  if (!known) return { headers, body: null };
  const scrubbed = scrubHeaders(headers, known);
  if (!hasBody) return { headers: scrubbed, body: null };
  // The body is decoded and its length may change: it goes to the client uncompressed.
  const encodings: string[] = [];
  let length: string | undefined;
  const kept: Array<[string, string]> = [];
  for (const [i, pair] of scrubbed.entries()) {
    const lower = pair[0].toLowerCase();
    if (lower === 'content-encoding') encodings.push(headers[i]![1]);
    else if (lower === 'content-length') length = headers[i]![1];
    else kept.push(pair);
  }
  const contentLength = length !== undefined && /^\d{1,15}$/.test(length.trim()) ? Number(length) : null;
  const body = createResponseScrub(encodings, known, sink, { maxDecodedBytes, contentLength });
  if (!body) return 'undecodable';
  return { headers: kept, body };
}

/** Header names and values scrubbed of every known value (a 101 head, say). */
export function scrubHead(runtime: PolicyRuntime, headers: Array<[string, string]>): Array<[string, string]> {
  const known = knownValues(runtime);
  return known ? scrubHeaders(headers, known) : headers;
}

/**
 * Text from the upstream that sluice repeats (a reason phrase, a token in a detail), scrubbed.
 * undici decodes a reason phrase as UTF-8; Node's HTTP client keeps raw bytes ('latin1').
 */
export function scrubStatusText(runtime: PolicyRuntime, text: string, encoding: 'utf8' | 'latin1' = 'utf8'): string {
  const known = knownValues(runtime);
  return known === null || text.length === 0 ? text : scrubText(text, known, encoding);
}
